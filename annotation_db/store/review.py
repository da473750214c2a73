"""The Store verbs of roles, review, resolution and error analysis (``Store`` inherits them).

Each verb checks its input, runs one transaction through the Store's ``_read`` / ``_write``
and hands the work to ``annotation_db.roles``, ``review``, ``resolution`` or ``analysis``.
Review verbs check the acting person's stored role inside the write transaction, so the server
enforces who may adjudicate whatever a page offers (``PermissionDeniedError``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from annotation_db import analysis, review, roles
from annotation_db.errors import ImportFormatError, InvalidReviewError, UnknownTraceError
from annotation_db.resolution import ResolutionRule, resolve_items, rollout_conflicts
from annotation_db.store.items import check_annotator, resolve


class ReviewVerbs:
    """Roles, review, resolved labels, clip kinds and the analysis; mixed into ``Store``."""

    # ------------------------------------------------------------------ roles

    def role(self, name: str) -> str:
        """The stored role of ``name`` (annotator when unknown). The UI passes it through
        ``roles.effective_role`` (without a login everyone is an annotator)."""
        name = check_annotator(name)
        with self._read() as db:
            return roles.stored_role(db, name)

    def roles(self) -> dict[str, str]:
        """Every known annotator's role, by name."""
        with self._read() as db:
            return dict(db.execute("SELECT name, role FROM annotators ORDER BY name").fetchall())

    def set_role(self, name: str, role: str, *, by: str | None = None) -> bool:
        """Give ``name`` the role ``role``. ``by``: the acting person, who must be an admin;
        None means the operator (command line, auth file). True when the role changed."""
        name, role = check_annotator(name), roles.check_role(role)
        now = self._now()
        with self._write() as db:
            if by is not None:
                by = check_annotator(by)
                roles.require(by, roles.stored_role(db, by), "set_roles")
            return roles.write_role(db, name, role, by, now)

    def sync_roles(self, entries: Iterable[tuple[str, str]]) -> list[str]:
        """Store the roles of an auth file's (name, role) pairs in one transaction; the names
        whose role changed, sorted. The UI calls it at start with ``--auth-file``."""
        checked = [(check_annotator(n), roles.check_role(r)) for n, r in entries]
        now = self._now()
        with self._write() as db:
            return sorted(n for n, r in checked if roles.write_role(db, n, r, None, now))

    # ------------------------------------------------------------------ review

    def _reviewer(self, db, name: str) -> tuple[str, str]:
        name = check_annotator(name)
        role = roles.stored_role(db, name)
        roles.require(name, role, "review")
        return name, role

    def review_queue(
        self,
        reviewer: str,
        *,
        rule: ResolutionRule | None = None,
        sample_rate: float = 0.0,
        seed: int = 0,
        include_reviewed: bool = False,
        trace_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Items to review (``annotation_db.review.queue``); reviewers and admins only."""
        if not 0.0 <= sample_rate <= 1.0:
            raise InvalidReviewError(f"sample_rate is a fraction between 0 and 1, not {sample_rate!r}")
        with self._read() as db:
            self._reviewer(db, reviewer)
            return review.queue(
                db,
                rule or ResolutionRule(),
                sample_rate=sample_rate,
                seed=seed,
                include_reviewed=include_reviewed,
                trace_id=trace_id,
                limit=limit,
            )

    def review_item(
        self,
        reviewer: str,
        trace_id: str,
        step_index: int,
        *,
        alternative_id: int | None = None,
        rule: ResolutionRule | None = None,
    ) -> dict[str, Any]:
        """One item with every annotator's label, its review, history and resolution."""
        with self._read() as db:
            self._reviewer(db, reviewer)
            step_id = resolve(db, trace_id, step_index, alternative_id)
            return review.item_view(db, step_id, alternative_id, rule or ResolutionRule())

    def _review_write(self, reviewer, trace_id, step_index, alternative_id, change) -> dict[str, Any]:
        now = self._now()
        with self._write() as db:
            name, role = self._reviewer(db, reviewer)
            step_id = resolve(db, trace_id, step_index, alternative_id)
            change(db, step_id, name, role, now)
            return review.item_view(db, step_id, alternative_id, ResolutionRule())

    def _review_action(
        self, reviewer, trace_id, step_index, alternative_id, action: str, state
    ) -> dict[str, Any]:
        """One review event (``decide`` / ``send_back``) with the item's new state."""
        return self._review_write(
            reviewer,
            trace_id,
            step_index,
            alternative_id,
            lambda db, step_id, name, _role, now: review.apply(
                db, step_id, alternative_id, name, action, state, now
            ),
        )

    def adjudicate(
        self,
        reviewer: str,
        trace_id: str,
        step_index: int,
        verdict: str,
        *,
        alternative_id: int | None = None,
        error_type: str | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Set the item's final verdict (accept | reject). Returns ``review_item``'s view."""
        state = review.check_decision(verdict, error_type, note)
        return self._review_action(reviewer, trace_id, step_index, alternative_id, "decide", state)

    def send_back(
        self, reviewer: str, trace_id: str, step_index: int, note: str, *, alternative_id: int | None = None
    ) -> dict[str, Any]:
        """Send the item back to its annotators with a note (it has no verdict until decided)."""
        state = {"status": "sent_back", "note": review.check_note(note, required=True)}
        return self._review_action(reviewer, trace_id, step_index, alternative_id, "send_back", state)

    def clear_review(
        self, reviewer: str, trace_id: str, step_index: int, *, alternative_id: int | None = None
    ) -> dict[str, Any]:
        """Remove the item's review (kept in history; ``undo_review`` brings it back)."""

        def change(db, step_id, name, _role, now):
            if review.current(db, step_id, alternative_id) is None:
                raise InvalidReviewError("this item has no review to clear")
            review.apply(db, step_id, alternative_id, name, "clear", None, now)

        return self._review_write(reviewer, trace_id, step_index, alternative_id, change)

    def undo_review(
        self, reviewer: str, trace_id: str, step_index: int, *, alternative_id: int | None = None
    ) -> dict[str, Any]:
        """Go back to the item's review state before its last change (that change's author or an
        admin only). NothingToUndoError when there is none."""
        return self._review_write(
            reviewer,
            trace_id,
            step_index,
            alternative_id,
            lambda db, step_id, name, role, now: review.undo(db, step_id, alternative_id, name, role, now),
        )

    def sent_back_notes(self, trace_id: str) -> list[dict[str, Any]]:
        """Reviewers' notes on the trace's sent-back items (anyone may read them)."""
        with self._read() as db:
            if db.execute("SELECT 1 FROM traces WHERE id = ?", [trace_id]).fetchone() is None:
                raise UnknownTraceError(
                    f"no trace {trace_id!r} is stored; import it or pick one from the queue"
                )
            return review.sent_back_notes(db, trace_id)

    # ------------------------------------------------------------------ resolution, analysis

    def resolved_labels(
        self, rule: ResolutionRule | None = None, *, annotators: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every labeled or reviewed item's resolved verdict and how it was decided, in import
        order: trace_id, step_index, alternative_id and ``Resolution`` fields."""
        with self._read() as db:
            resolved = resolve_items(db, rule, annotators)
            place = {
                r[0]: (r[1], r[2], r[3])
                for r in db.execute(
                    "SELECT s.id, t.seq, s.trace_id, s.idx FROM steps s JOIN traces t ON t.id = s.trace_id "
                    "WHERE s.id IN (SELECT step_id FROM labels UNION SELECT step_id FROM reviews)"
                ).fetchall()
            }
        keys = sorted(resolved, key=lambda k: (place[k[0]][0], place[k[0]][2], -1 if k[1] is None else k[1]))
        return [
            {
                "trace_id": place[k[0]][1],
                "step_index": place[k[0]][2],
                "alternative_id": k[1],
                **resolved[k].to_dict(),
            }
            for k in keys
        ]

    def rollout_conflicts(
        self, trace_id: str | None = None, *, rule: ResolutionRule | None = None
    ) -> list[dict[str, Any]]:
        """Human-decided pairs whose rollouts favour the rejected candidate (``resolution.
        rollout_conflicts``), for the whole store or one trace."""
        with self._read() as db:
            return rollout_conflicts(db, rule, trace_id)

    def set_clip_kind(self, clip_sha256: str, kind: str | None) -> None:
        """Tag a stored clip with a kind for the error analysis (None removes the tag)."""
        now = self._now()
        with self._write() as db:
            analysis.write_clip_kind(db, clip_sha256, kind, now)

    def tag_clip_kinds(self, manifest: str | Path) -> dict[str, int]:
        """Tag stored clips with the ``kind`` of their entries in a clips manifest (files next
        to it, matched by content hash). Returns {"tagged", "not_stored"}."""
        manifest = Path(manifest)
        try:
            kinds = analysis.manifest_kinds(manifest)
        except (OSError, ValueError) as exc:
            raise ImportFormatError(f"{manifest}: {exc}; pass a clips manifest.jsonl") from None
        now = self._now()
        with self._write() as db:
            tagged = sum(
                analysis.write_clip_kind(db, sha, kind, now, missing_ok=True) for sha, kind in kinds.items()
            )
        return {"tagged": tagged, "not_stored": len(kinds) - tagged}

    def analysis_steps(self, rule: ResolutionRule | None = None) -> list[dict[str, Any]]:
        """The original steps with a resolved verdict, as the error analysis groups them (what a
        dashboard bar lists): trace_id, step_index, verdict, error_type (``unspecified`` for a
        rejected step without one), clip kind, position bucket, model version and scores."""
        with self._read() as db:
            steps = analysis.read_steps(db)
            resolved = resolve_items(db, rule)
        out = []
        for s in steps:
            r = resolved.get((s.step_id, None))
            if r is None or r.verdict is None:
                continue
            out.append(
                {
                    "trace_id": s.trace_id,
                    "step_index": s.index,
                    "verdict": r.verdict,
                    "error_type": (r.error_type or "unspecified") if r.verdict == "reject" else None,
                    "kind": s.kind,
                    "position": analysis.position_bucket(s.index, s.n_steps),
                    "version": s.version,
                    "scores": dict(s.scores),
                }
            )
        return out

    def analysis(self, rule: ResolutionRule | None = None) -> dict[str, Any]:
        """``stats()`` under ``rule``: resolution, annotator quality and error analysis included."""
        from annotation_db import stats

        with self._read() as db:
            return stats.compute(db, rule)
