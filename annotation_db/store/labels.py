"""Labels: one per (item, annotator), every change kept in ``label_events`` (append-only,
enforced by triggers); ``undo_label`` restores the state before the annotator's last change,
repeatedly. Every verb that changes a label takes the acting annotator and touches only that
annotator's labels; ``LabelOwnershipError`` where a label id of someone else is passed."""

from __future__ import annotations

import math
from typing import Any

from sqlite_utils import Database

from annotation_db.errors import (
    InvalidLabelError,
    LabelOwnershipError,
    NothingToUndoError,
    UnknownLabelError,
)
from annotation_db.migrations import ERROR_TYPES, VERDICTS
from annotation_db.store.items import check_annotator, ensure_annotator, require_trace, resolve

MAX_COMMENT_CHARS = 10_000  # a paragraph or two; longer text is almost surely a paste mistake

_LABEL_COLUMNS = """l.id, s.trace_id, s.idx AS step_index, l.item_kind, l.alternative_id, l.annotator,
    l.verdict, l.error_type, l.comment, l.time_spent_s, l.created_at, l.updated_at"""
_EVENT_COLUMNS = "id, action, verdict, error_type, comment, time_spent_s, prev_event_id, at"


class LabelVerbs:
    """Set, clear, undo, edit and read labels (mixed into ``Store``)."""

    def set_label(
        self,
        annotator: str,
        trace_id: str,
        step_index: int,
        verdict: str,
        *,
        alternative_id: int | None = None,
        error_type: str | None = None,
        comment: str = "",
        time_spent_s: float = 0.0,
    ) -> dict[str, Any]:
        """Set ``annotator``'s label of step ``step_index`` of ``trace_id`` (or of alternative
        ``alternative_id`` at that step). A second call updates the label; every call is kept in
        the history. ``verdict``: accept | reject | unsure; ``error_type`` (reject / unsure
        only): visual_misperception | audio_misperception | hallucination | reasoning_logic |
        other; ``time_spent_s`` is this action's seconds (the label keeps the running total).
        Returns the label (keys: id, trace_id, step_index, item_kind, alternative_id, annotator,
        verdict, error_type, comment, time_spent_s, created_at, updated_at)."""
        return self.set_labels(
            annotator,
            [
                {
                    "trace_id": trace_id,
                    "step_index": step_index,
                    "alternative_id": alternative_id,
                    "verdict": verdict,
                    "error_type": error_type,
                    "comment": comment,
                    "time_spent_s": time_spent_s,
                }
            ],
        )[0]

    def set_labels(self, annotator: str, labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several ``set_label`` calls by one annotator in one transaction (all or none).
        Each dict has trace_id, step_index, verdict and optionally alternative_id, error_type,
        comment, time_spent_s."""
        annotator = check_annotator(annotator)
        checked = []
        for item in labels:
            fields = _check_label(
                item.get("verdict"),
                item.get("error_type"),
                item.get("comment", ""),
                item.get("time_spent_s", 0.0),
            )
            checked.append((item["trace_id"], item["step_index"], item.get("alternative_id"), fields))
        now = self._now()
        with self._write() as db:
            ensure_annotator(db, annotator, now)
            label_ids = []
            for trace_id, step_index, alternative_id, fields in checked:
                step_id = resolve(db, trace_id, step_index, alternative_id)
                label_ids.append(_apply(db, step_id, alternative_id, annotator, "set", fields, now))
            return [_label_by_id(db, label_id) for label_id in label_ids]

    def clear_label(
        self, annotator: str, trace_id: str, step_index: int, *, alternative_id: int | None = None
    ) -> None:
        """Remove ``annotator``'s label of the item (kept in history; ``undo_label`` brings it back)."""
        annotator = check_annotator(annotator)
        now = self._now()
        with self._write() as db:
            step_id = resolve(db, trace_id, step_index, alternative_id)
            if _current_label_id(db, step_id, alternative_id, annotator) is None:
                raise UnknownLabelError(f"{annotator} has no label on this item to clear")
            _apply(db, step_id, alternative_id, annotator, "clear", None, now)

    def undo_label(
        self, annotator: str, trace_id: str, step_index: int, *, alternative_id: int | None = None
    ) -> dict[str, Any] | None:
        """Go back to ``annotator``'s state of the item before their last change (set, clear or
        undo); call again to go further back. Returns the label now in force, or None when the
        item is left unlabeled. NothingToUndoError when there is no earlier state."""
        annotator = check_annotator(annotator)
        now = self._now()
        with self._write() as db:
            step_id = resolve(db, trace_id, step_index, alternative_id)
            current = _latest_event(db, step_id, alternative_id, annotator)
            if current is None or (current["prev_event_id"] is None and current["verdict"] is None):
                raise NothingToUndoError(f"{annotator} has no earlier label on this item to go back to")
            if current["prev_event_id"] is None:
                state, prev = None, None
            else:
                target = _event(db, current["prev_event_id"])
                state = None if target["verdict"] is None else target
                prev = target["prev_event_id"]
            label_id = _apply(db, step_id, alternative_id, annotator, "undo", state, now, prev_event_id=prev)
            return None if label_id is None else _label_by_id(db, label_id)

    def label(self, label_id: int) -> dict[str, Any]:
        """One label by id (any annotator may read it)."""
        with self._read() as db:
            return _label_by_id(db, label_id)

    def edit_label(self, annotator: str, label_id: int, **changes: Any) -> dict[str, Any]:
        """Change fields (verdict, error_type, comment, time_spent_s) of the label ``label_id``.
        Raises LabelOwnershipError unless ``annotator`` owns it. Unchanged fields are kept."""
        annotator = check_annotator(annotator)
        unknown = set(changes) - {"verdict", "error_type", "comment", "time_spent_s"}
        if unknown:
            raise ValueError(f"edit_label cannot change {', '.join(sorted(unknown))}")
        with self._write():
            current = self.label(label_id)
            _check_owner(current, annotator)
            fields = {k: current[k] for k in ("verdict", "error_type", "comment")} | {"time_spent_s": 0.0}
            if "verdict" in changes and changes["verdict"] == "accept" and "error_type" not in changes:
                fields["error_type"] = None  # accepting drops the error type
            fields.update(changes)
            return self.set_label(
                annotator,
                current["trace_id"],
                current["step_index"],
                fields["verdict"],
                alternative_id=current["alternative_id"],
                error_type=fields["error_type"],
                comment=fields["comment"],
                time_spent_s=fields["time_spent_s"],
            )

    def undo_label_by_id(self, annotator: str, label_id: int) -> dict[str, Any] | None:
        """``undo_label`` for the label ``label_id``; LabelOwnershipError unless it is ``annotator``'s."""
        annotator = check_annotator(annotator)
        with self._write():
            current = self.label(label_id)
            _check_owner(current, annotator)
            return self.undo_label(
                annotator,
                current["trace_id"],
                current["step_index"],
                alternative_id=current["alternative_id"],
            )

    def labels_for_trace(self, trace_id: str, annotator: str | None = None) -> list[dict[str, Any]]:
        """Current labels on a trace's steps and alternatives (only ``annotator``'s if given),
        ordered by step, item (original step first), annotator."""
        sql = f"SELECT {_LABEL_COLUMNS} FROM labels l JOIN steps s ON s.id = l.step_id WHERE s.trace_id = ?"
        args: list[Any] = [trace_id]
        if annotator is not None:
            sql += " AND l.annotator = ?"
            args.append(check_annotator(annotator))
        sql += " ORDER BY s.idx, l.alternative_id IS NOT NULL, l.alternative_id, l.annotator"
        with self._read() as db:
            require_trace(db, trace_id)
            return list(db.query(sql, args))

    def peer_labels(self, annotator: str, trace_id: str) -> list[dict[str, Any]]:
        """Blind mode: other annotators' labels on this trace, only on the items ``annotator``
        has labeled already (so nobody sees others' verdicts before giving their own)."""
        annotator = check_annotator(annotator)
        sql = f"""SELECT {_LABEL_COLUMNS} FROM labels l JOIN steps s ON s.id = l.step_id
                  WHERE s.trace_id = ? AND l.annotator != ? AND EXISTS (
                      SELECT 1 FROM labels m WHERE m.annotator = ? AND m.step_id = l.step_id
                      AND m.alternative_id IS l.alternative_id)
                  ORDER BY s.idx, l.alternative_id IS NOT NULL, l.alternative_id, l.annotator"""
        with self._read() as db:
            require_trace(db, trace_id)
            return list(db.query(sql, [trace_id, annotator, annotator]))

    def label_history(
        self, annotator: str, trace_id: str, step_index: int, *, alternative_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Every change ``annotator`` made to the item, oldest first (keys: id, action, verdict,
        error_type, comment, time_spent_s, prev_event_id, at; verdict None = no label)."""
        annotator = check_annotator(annotator)
        with self._read() as db:
            step_id = resolve(db, trace_id, step_index, alternative_id)
            return list(
                db.query(
                    f"SELECT {_EVENT_COLUMNS} FROM label_events WHERE step_id = ? AND annotator = ? "
                    "AND alternative_id IS ? ORDER BY id",
                    [step_id, annotator, alternative_id],
                )
            )


def _check_label(verdict: Any, error_type: Any, comment: Any, time_spent_s: Any) -> dict[str, Any]:
    if verdict not in VERDICTS:
        raise InvalidLabelError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if isinstance(error_type, str):
        # Accept the human spellings the UI shows ("Reasoning/logic", "visual misperception").
        error_type = error_type.strip().lower().replace("/", "_").replace(" ", "_").replace("-", "_") or None
    if error_type is not None:
        if error_type not in ERROR_TYPES:
            raise InvalidLabelError(f"error type must be one of {', '.join(ERROR_TYPES)}, not {error_type!r}")
        if verdict == "accept":
            raise InvalidLabelError(
                "an accepted step has no error type; drop the error type or reject the step"
            )
    if comment is None:
        comment = ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise InvalidLabelError(f"a comment is text of at most {MAX_COMMENT_CHARS} characters; shorten it")
    if (
        not isinstance(time_spent_s, int | float)
        or isinstance(time_spent_s, bool)
        or not math.isfinite(time_spent_s)
        or time_spent_s < 0
    ):
        raise InvalidLabelError(f"time spent must be a number of seconds >= 0, not {time_spent_s!r}")
    return {
        "verdict": verdict,
        "error_type": error_type,
        "comment": comment,
        "time_spent_s": float(time_spent_s),
    }


def _check_owner(label: dict[str, Any], annotator: str) -> None:
    if label["annotator"] != annotator:
        raise LabelOwnershipError(
            f"label {label['id']} belongs to {label['annotator']}; {annotator} can only change their own labels"
        )


def _current_label_id(db: Database, step_id: int, alternative_id: int | None, annotator: str) -> int | None:
    if alternative_id is None:
        row = db.execute(
            "SELECT id FROM labels WHERE step_id = ? AND annotator = ? AND alternative_id IS NULL",
            [step_id, annotator],
        ).fetchone()
    else:
        row = db.execute(
            "SELECT id FROM labels WHERE alternative_id = ? AND annotator = ?", [alternative_id, annotator]
        ).fetchone()
    return None if row is None else row[0]


def _latest_event(
    db: Database, step_id: int, alternative_id: int | None, annotator: str
) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT max(id) FROM label_events WHERE step_id = ? AND alternative_id IS ? AND annotator = ?",
        [step_id, alternative_id, annotator],
    ).fetchone()
    return None if row[0] is None else _event(db, row[0])


def _event(db: Database, event_id: int) -> dict[str, Any]:
    return list(db.query(f"SELECT {_EVENT_COLUMNS} FROM label_events WHERE id = ?", [event_id]))[0]


def _apply(
    db: Database,
    step_id: int,
    alternative_id: int | None,
    annotator: str,
    action: str,
    state: dict[str, Any] | None,
    now: str,
    *,
    prev_event_id: int | None | str = "latest",
) -> int | None:
    """Append a history event and make ``state`` (None: no label) the current label.

    ``prev_event_id`` is the event that undoing this one returns to: for set and clear the
    state before them (the latest event); undo passes the target's own predecessor.
    Returns the label id, or None when the item is left unlabeled.
    """
    if prev_event_id == "latest":
        latest = _latest_event(db, step_id, alternative_id, annotator)
        prev_event_id = None if latest is None else latest["id"]
    kind = "step" if alternative_id is None else "alternative"
    state = state or {}
    spent = float(state.get("time_spent_s", 0.0)) if action == "set" else 0.0
    event_id = db.execute(
        "INSERT INTO label_events (item_kind, step_id, alternative_id, annotator, action, verdict, error_type, "
        "comment, time_spent_s, prev_event_id, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            kind,
            step_id,
            alternative_id,
            annotator,
            action,
            state.get("verdict"),
            state.get("error_type"),
            state.get("comment"),
            spent,
            prev_event_id,
            now,
        ],
    ).lastrowid
    label_id = _current_label_id(db, step_id, alternative_id, annotator)
    if state.get("verdict") is None:
        if label_id is not None:
            db.execute("DELETE FROM labels WHERE id = ?", [label_id])
        return None
    # The label's time is all the time the annotator spent on the item, across every change.
    total = db.execute(
        "SELECT coalesce(sum(time_spent_s), 0) FROM label_events WHERE step_id = ? AND alternative_id IS ? "
        "AND annotator = ?",
        [step_id, alternative_id, annotator],
    ).fetchone()[0]
    values = [state["verdict"], state["error_type"], state["comment"] or "", total, now, event_id]
    if label_id is None:
        return db.execute(
            "INSERT INTO labels (item_kind, step_id, alternative_id, annotator, verdict, error_type, comment, "
            "time_spent_s, updated_at, event_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [kind, step_id, alternative_id, annotator, *values, now],
        ).lastrowid
    db.execute(
        "UPDATE labels SET verdict = ?, error_type = ?, comment = ?, time_spent_s = ?, updated_at = ?, "
        "event_id = ? WHERE id = ?",
        [*values, label_id],
    )
    return label_id


def _label_by_id(db: Database, label_id: int) -> dict[str, Any]:
    sql = f"SELECT {_LABEL_COLUMNS} FROM labels l JOIN steps s ON s.id = l.step_id WHERE l.id = ?"
    rows = list(db.query(sql, [label_id]))
    if not rows:
        raise UnknownLabelError(f"no label {label_id!r} is stored; reload the labels")
    return rows[0]
