"""Errors a user can cause. Each carries a one-line message that says what to do.

The UI shows ``str(exc)``; the CLI prints it and exits with code 2; logs keep the detail.
"""


class UserError(Exception):
    """Base of every error caused by what a user handed in (a file, a request, a setting)."""
