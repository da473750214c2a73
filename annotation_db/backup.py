"""A consistent copy of the database while the app keeps writing to it.

SQLite's online backup API copies the pages of one read transaction, so the copy is the database
as of one moment, with every committed label and none half-written; a file copy of a live WAL
database can miss the WAL's frames or catch a checkpoint midway. The copy is switched out of WAL
mode so it is one self-contained file, ready to open or to pass as ``--db``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from annotation_db.errors import StoreIOError


class BackupError(StoreIOError):
    """The backup could not be read from the database or written to its destination."""


def backup_database(source: str | Path, out: str | Path) -> Path:
    """Copy the database at ``source`` into ``out`` (a new file) and return ``out``."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise BackupError(f"{source} does not exist: nothing to back up (check --db)")
    try:
        src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source} to back it up: {exc}") from exc
    try:
        dst = sqlite3.connect(out)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        out.unlink(missing_ok=True)
        raise BackupError(f"cannot back up {source} to {out}: {exc}; check free space there") from exc
    finally:
        src.close()
    return out
