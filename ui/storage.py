"""Labels on a Space: say when they would not survive a restart, and let an admin download a
consistent copy of the database while the app serves (``annotation_db.backup``).

Who may download it: with login on (``--auth-file`` or ``--oauth``), the names given by
``--admin`` (repeatable), or anyone signed in when none is given; without login, anyone on a
local app, and nobody on a Space (a public Space would hand every label to every visitor).
"""

from __future__ import annotations

import html
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from inference.errors import UserError
from ui.config import AppConfig, on_space

log = logging.getLogger("ui.storage")


class BackupRefusedError(UserError):
    """This user may not download the database (the message says who may)."""


def announce_storage(config: AppConfig) -> None:
    """One log line at startup when the labels would be lost at the Space's next restart."""
    if config.storage_warning:
        log.warning("%s (database: %s)", config.storage_warning, config.db)


def storage_banner(config: AppConfig) -> str:
    if not config.storage_warning:
        return ""
    return (
        '<div class="banner read-only"><b>Labels are not kept:</b> this Space keeps its database at '
        f"{html.escape(config.db)}, which is wiped at every restart; {html.escape(config.storage_warning)}. "
        "Until then, download a backup from the Export tab before the Space restarts.</div>"
    )


def backup_refusal(config: AppConfig, user: str | None, environ=None) -> str | None:
    """Why ``user`` may not download the database, or None when they may (module docstring)."""
    import os

    if config.auth_on:
        if not user:
            return "sign in to download the database backup"
        admins = [*config.admins, *(name for name, role in config.auth_roles if role == "admin")]
        if admins and user not in admins:
            return f"only {', '.join(admins)} may download the database backup (--admin, or role admin in --auth-file)"
        return None
    if on_space(os.environ if environ is None else environ):
        return "this Space has no login: set --auth-file or --oauth (and --admin) to download a backup"
    return None


def write_backup(config: AppConfig, user: str | None) -> Path:
    """A consistent copy of the database in a fresh temporary folder, named by the time."""
    from annotation_db.backup import backup_database

    refusal = backup_refusal(config, user)
    if refusal:
        raise BackupRefusedError(refusal)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(tempfile.mkdtemp(prefix="studio-backup-"))
    return backup_database(config.db, folder / f"annotations-{stamp}.db")
