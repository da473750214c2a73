"""Errors a user of the store can cause. Each has a one-line message that says what to do.

``StoreIOError`` and its subclasses are not caused by the caller's input but by the
database's disk (full, read-only, failing): whoever runs the program can fix them, so they are
``StoreError`` too and get the same one-line treatment. A write that raises one saved nothing.

``annotation_db`` never imports ``inference``, so these do not derive from
``inference.errors.UserError``: callers that show errors to people (the UI, the CLI) catch
``StoreError`` beside ``UserError``. Anything else that escapes the store is a bug.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error caused by what a caller handed to the store, or by its disk."""


class ImportFormatError(StoreError):
    """A line of an import file is not a valid Trace / manifest entry (the message names it)."""


class TraceConflictError(StoreError):
    """A trace id is already stored with different content (other clip, question or steps)."""


class UnknownTraceError(StoreError):
    """No trace with this id is stored."""


class UnknownStepError(StoreError):
    """The trace has no step with this index."""


class UnknownAlternativeError(StoreError):
    """No alternative with this id is stored at the given step."""


class UnknownLabelError(StoreError):
    """No label with this id is stored."""


class InvalidLabelError(StoreError):
    """A verdict, error type, comment or time spent is not acceptable."""


class InvalidAlternativeError(StoreError):
    """An alternative's text or source is not acceptable."""


class InvalidAnnotatorError(StoreError):
    """An annotator name is empty, too long or not a string."""


class LabelOwnershipError(StoreError):
    """An annotator tried to change or undo another annotator's label."""


class NothingToUndoError(StoreError):
    """The annotator has no earlier state of this label to go back to."""


class ExportFormatError(StoreError):
    """An export format, output suffix or filter is not supported."""


class StoreBusyError(StoreError):
    """Another writer held the database longer than the busy timeout."""


class DatabaseOpenError(StoreError):
    """The file cannot be opened as an annotation database."""


class DatabaseTooNewError(StoreError):
    """The database was migrated by a newer version of annotation_db than this one."""


class StoreIOError(StoreError):
    """The database's disk refused a read or a write (I/O error, file gone); nothing was saved."""


class StoreFullError(StoreIOError):
    """The disk holding the database is full; the write was rolled back."""


class StoreReadOnlyError(StoreIOError):
    """The database, its folder or its disk cannot be written; the write was refused."""


class ExportWriteError(StoreError):
    """An export file cannot be written: its disk is full, or its folder is read-only."""


class ExportEmptyError(StoreError):
    """An export would write no records (no file is written)."""


class InvalidRoleError(StoreError):
    """A role is not annotator, reviewer or admin."""


class PermissionDeniedError(StoreError):
    """The acting person's role does not allow this (e.g. an annotator adjudicating)."""


class InvalidReviewError(StoreError):
    """A reviewer's verdict, error type or note is not acceptable."""


class AuthFileError(StoreError):
    """A line of the ``--auth-file`` is not ``name:password`` or ``name:password:role``."""
