"""Alternatives (a model sample or a human rewrite of a step), preferences between an
alternative and the original step, and the expected correctness rollouts estimate."""

from __future__ import annotations

import json
from typing import Any

from annotation_db.errors import InvalidAlternativeError, InvalidLabelError
from annotation_db.store.items import check_annotator, ensure_annotator, resolve

CHOICES = ("alternative", "original")  # what record_preference can prefer


class AlternativeVerbs:
    """Alternatives and preferences (mixed into ``Store``)."""

    def set_expected_correctness(
        self,
        trace_id: str,
        step_index: int,
        value: float | None,
        *,
        alternative_id: int | None = None,
    ) -> None:
        """Record the expected correctness of step ``step_index`` (or of its alternative
        ``alternative_id``) estimated by rollouts: the share of completions from it that reach
        the reference answer (the paper's p for the soft pDPO label). None clears it. A later
        estimate replaces an earlier one (rollouts are re-run with more samples, not averaged)."""
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
            raise InvalidLabelError("expected_correctness must be a fraction between 0 and 1")
        with self._write() as db:
            step_id = resolve(db, trace_id, step_index, alternative_id)
            if alternative_id is None:
                db.execute("UPDATE steps SET expected_correctness = ? WHERE id = ?", [value, step_id])
            else:
                db.execute(
                    "UPDATE alternatives SET expected_correctness = ? WHERE id = ? AND step_id = ?",
                    [value, alternative_id, step_id],
                )

    def add_alternative(
        self,
        annotator: str,
        trace_id: str,
        step_index: int,
        text: str,
        *,
        source: str = "human",
        settings: dict[str, Any] | None = None,
        expected_correctness: float | None = None,
    ) -> dict[str, Any]:
        """Add a candidate for step ``step_index`` (a human rewrite by ``annotator``, or a model
        sample). The same text at the same step is the same alternative: its id is returned.
        Returns {id, trace_id, step_index, text, source, created_by}."""
        annotator = check_annotator(annotator)
        if not isinstance(text, str) or not text.strip():
            raise InvalidAlternativeError("an alternative needs a non-empty text; type the replacement step")
        if source not in ("human", "model"):
            raise InvalidAlternativeError(f"alternative source must be human or model, not {source!r}")
        if expected_correctness is not None and not (
            isinstance(expected_correctness, int | float) and 0 <= expected_correctness <= 1
        ):
            raise InvalidAlternativeError("expected_correctness must be a fraction between 0 and 1")
        text = text.strip()
        now = self._now()
        with self._write() as db:
            step_id = resolve(db, trace_id, step_index, None)
            ensure_annotator(db, annotator, now)
            row = db.execute(
                "SELECT id FROM alternatives WHERE step_id = ? AND text = ?", [step_id, text]
            ).fetchone()
            if row is None:
                cursor = db.execute(
                    "INSERT INTO alternatives (step_id, text, source, settings, expected_correctness, created_by, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [step_id, text, source, json.dumps(settings or {}), expected_correctness, annotator, now],
                )
                alt_id = cursor.lastrowid
            else:
                alt_id = row[0]
            source_, created_by = db.execute(
                "SELECT source, created_by FROM alternatives WHERE id = ?", [alt_id]
            ).fetchone()
        return {
            "id": alt_id,
            "trace_id": trace_id,
            "step_index": step_index,
            "text": text,
            "source": source_,
            "created_by": created_by,
        }

    def record_preference(
        self,
        annotator: str,
        trace_id: str,
        step_index: int,
        alternative_id: int,
        chosen: str | None = "alternative",
    ) -> dict[str, Any]:
        """Record that ``annotator`` prefers the alternative (``chosen="alternative"``) or the
        original step (``"original"``) at this step; None withdraws the preference. Every call
        is kept in ``preference_events``. Returns {trace_id, step_index, alternative_id,
        annotator, chosen}."""
        annotator = check_annotator(annotator)
        if chosen is not None and chosen not in CHOICES:
            raise InvalidLabelError(f"chosen must be alternative, original or None, not {chosen!r}")
        now = self._now()
        with self._write() as db:
            step_id = resolve(db, trace_id, step_index, alternative_id)
            ensure_annotator(db, annotator, now)
            db.execute(
                "INSERT INTO preference_events (step_id, alternative_id, annotator, chosen, at) VALUES (?, ?, ?, ?, ?)",
                [step_id, alternative_id, annotator, chosen, now],
            )
            if chosen is None:
                db.execute(
                    "DELETE FROM preferences WHERE alternative_id = ? AND annotator = ?",
                    [alternative_id, annotator],
                )
            else:
                db.execute(
                    "INSERT INTO preferences (step_id, alternative_id, annotator, chosen, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (alternative_id, annotator) "
                    "DO UPDATE SET chosen = excluded.chosen, updated_at = excluded.updated_at",
                    [step_id, alternative_id, annotator, chosen, now, now],
                )
        return {
            "trace_id": trace_id,
            "step_index": step_index,
            "alternative_id": alternative_id,
            "annotator": annotator,
            "chosen": chosen,
        }

    def preferences_for_trace(self, trace_id: str, annotator: str | None = None) -> list[dict[str, Any]]:
        """Current preferences at a trace's steps (only ``annotator``'s if given)."""
        sql = """SELECT s.trace_id, s.idx AS step_index, p.alternative_id, p.annotator, p.chosen, p.updated_at
                 FROM preferences p JOIN steps s ON s.id = p.step_id WHERE s.trace_id = ?"""
        args: list[Any] = [trace_id]
        if annotator is not None:
            sql += " AND p.annotator = ?"
            args.append(check_annotator(annotator))
        with self._read() as db:
            return list(db.query(sql + " ORDER BY s.idx, p.alternative_id, p.annotator", args))
