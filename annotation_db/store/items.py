"""What every label and preference verb checks first: the annotator's name and the item
(a step of a trace, or an alternative at it) it is on."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from annotation_db.errors import (
    InvalidAnnotatorError,
    UnknownAlternativeError,
    UnknownStepError,
    UnknownTraceError,
)

MAX_ANNOTATOR_CHARS = 100


def check_annotator(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidAnnotatorError("an annotator name is required; sign in or pass --annotator NAME")
    name = name.strip()
    if len(name) > MAX_ANNOTATOR_CHARS or any(ord(ch) < 32 for ch in name):
        raise InvalidAnnotatorError(
            f"annotator names are at most {MAX_ANNOTATOR_CHARS} printable characters; pick a shorter name"
        )
    return name


def ensure_annotator(db: Database, annotator: str, now: str) -> None:
    db.execute("INSERT OR IGNORE INTO annotators (name, created_at) VALUES (?, ?)", [annotator, now])


def resolve(db: Database, trace_id: str, step_index: int, alternative_id: int | None) -> int:
    """The step id of (trace, index); checks that the alternative belongs to that step."""
    row = db.execute("SELECT id FROM steps WHERE trace_id = ? AND idx = ?", [trace_id, step_index]).fetchone()
    if row is None:
        n = db.execute("SELECT count(*) FROM steps WHERE trace_id = ?", [trace_id]).fetchone()[0]
        if n == 0 and db.execute("SELECT 1 FROM traces WHERE id = ?", [trace_id]).fetchone() is None:
            raise UnknownTraceError(f"no trace {trace_id!r} is stored; import it or pick one from the queue")
        raise UnknownStepError(f"trace {trace_id!r} has no step {step_index!r}; its steps are 0 to {n - 1}")
    if alternative_id is not None:
        alt = db.execute("SELECT step_id FROM alternatives WHERE id = ?", [alternative_id]).fetchone()
        if alt is None or alt[0] != row[0]:
            raise UnknownAlternativeError(
                f"no alternative {alternative_id!r} at step {step_index} of trace {trace_id!r}; reload the trace"
            )
    return row[0]


def require_trace(db: Database, trace_id: str) -> None:
    if db.execute("SELECT 1 FROM traces WHERE id = ?", [trace_id]).fetchone() is None:
        raise UnknownTraceError(f"no trace {trace_id!r} is stored; import it or pick one from the queue")
