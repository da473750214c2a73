"""Review and adjudication: the steps where annotators disagree, and a reviewer's final word.

A reviewer (role reviewer or admin, see ``annotation_db.roles``) looks at an item (an original
step or an alternative) with every annotator's verdict, error type and comment side by side and
either **decides** it (final verdict accept / reject, optional error type and note) or **sends it
back** with a note (the annotators see the note beside the step; the item has no resolved
verdict until a reviewer decides it). One review state per item, shared by the reviewers.

History. Every change appends a row to ``review_events`` (append-only, enforced by triggers),
with the state after it; ``reviews`` holds the state in force. Undo works as for labels: it
returns to the state before the last change, repeatedly. A reviewer may undo only a change they
made (an admin any): nobody takes back another person's decision, though a reviewer may replace
it with their own decision, which the history keeps.

The review queue lists items with at least one label and no review, where the annotators
disagree (more than one verdict among accept / reject / unsure: reason ``verdict``; or rejecting
labels with different error types: reason ``error_type``), where every label is unsure (reason
``unsure``: nobody could decide), or that a deterministic sample picks
(``sample_rate``, by a hash of the seed and the item: reason ``sampled``), plus sent-back items
that an annotator has relabeled since (reason ``returned``).

The functions here work on one connection inside the caller's transaction; ``Store`` wraps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from sqlite_utils import Database

from annotation_db.errors import InvalidReviewError, NothingToUndoError, PermissionDeniedError
from annotation_db.migrations import ERROR_TYPES
from annotation_db.resolution import ItemLabel, ItemReview, ResolutionRule, resolve, resolve_items

MAX_NOTE_CHARS = 10_000  # as a label comment
_EVENT_KEYS = (
    "id",
    "action",
    "reviewer",
    "status",
    "verdict",
    "error_type",
    "note",
    "decided_by",
    "origin_event_id",
    "prev_event_id",
    "at",
)
_STATE_KEYS = ("status", "verdict", "error_type", "note", "decided_by", "origin_event_id")


def check_decision(verdict: Any, error_type: Any, note: Any) -> dict[str, Any]:
    """A reviewer's decision, checked: verdict accept | reject, error type (reject only), note."""
    if verdict not in ("accept", "reject"):
        raise InvalidReviewError(f"a final verdict is accept or reject, not {verdict!r}")
    if isinstance(error_type, str):
        error_type = error_type.strip().lower().replace("/", "_").replace(" ", "_").replace("-", "_") or None
    if error_type is not None and error_type not in ERROR_TYPES:
        raise InvalidReviewError(f"error type must be one of {', '.join(ERROR_TYPES)}, not {error_type!r}")
    if error_type is not None and verdict == "accept":
        raise InvalidReviewError("an accepted step has no error type; drop the error type or reject the step")
    return {"status": "decided", "verdict": verdict, "error_type": error_type, "note": check_note(note)}


def check_note(note: Any, *, required: bool = False) -> str:
    if note is None:
        note = ""
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise InvalidReviewError(f"a note is text of at most {MAX_NOTE_CHARS} characters; shorten it")
    if required and not note.strip():
        raise InvalidReviewError("sending a step back needs a note saying what to look at; write one")
    return note.strip()


# ---------------------------------------------------------------------- writes (one transaction)


def latest_event(db: Database, step_id: int, alternative_id: int | None) -> dict[str, Any] | None:
    row = db.execute(
        f"SELECT {', '.join(_EVENT_KEYS)} FROM review_events WHERE id = "
        "(SELECT max(id) FROM review_events WHERE step_id = ? AND alternative_id IS ?)",
        [step_id, alternative_id],
    ).fetchone()
    return None if row is None else dict(zip(_EVENT_KEYS, row, strict=True))


def _event(db: Database, event_id: int) -> dict[str, Any]:
    row = db.execute(
        f"SELECT {', '.join(_EVENT_KEYS)} FROM review_events WHERE id = ?", [event_id]
    ).fetchone()
    return dict(zip(_EVENT_KEYS, row, strict=True))


def apply(
    db: Database,
    step_id: int,
    alternative_id: int | None,
    reviewer: str,
    action: str,
    state: dict[str, Any] | None,
    now: str,
    *,
    prev_event_id: int | None | str = "latest",
) -> None:
    """Append a review event and make ``state`` (None: no review) the item's review state.
    ``state`` holds status, verdict, error_type, note and, for undo, decided_by and
    origin_event_id of the state it restores."""
    if prev_event_id == "latest":
        latest = latest_event(db, step_id, alternative_id)
        prev_event_id = None if latest is None else latest["id"]
    state = dict(state or {})
    state.setdefault("decided_by", reviewer)
    kind = "step" if alternative_id is None else "alternative"
    event_id = db.execute(
        "INSERT INTO review_events (item_kind, step_id, alternative_id, reviewer, action, status, verdict, "
        "error_type, note, decided_by, origin_event_id, prev_event_id, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            kind,
            step_id,
            alternative_id,
            reviewer,
            action,
            state.get("status"),
            state.get("verdict"),
            state.get("error_type"),
            state.get("note") or "",
            state["decided_by"],
            state.get("origin_event_id"),
            prev_event_id,
            now,
        ],
    ).lastrowid
    db.execute("DELETE FROM reviews WHERE step_id = ? AND alternative_id IS ?", [step_id, alternative_id])
    if state.get("status") is not None:
        db.execute(
            "INSERT INTO reviews (item_kind, step_id, alternative_id, status, verdict, error_type, note, reviewer, "
            "event_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                kind,
                step_id,
                alternative_id,
                state["status"],
                state.get("verdict"),
                state.get("error_type"),
                state.get("note") or "",
                state["decided_by"],
                event_id,
                now,
            ],
        )


def undo(
    db: Database, step_id: int, alternative_id: int | None, actor: str, actor_role: str, now: str
) -> None:
    """Return the item to its review state before the last change (see the module doc)."""
    current = latest_event(db, step_id, alternative_id)
    if current is None or (current["prev_event_id"] is None and current["status"] is None):
        raise NothingToUndoError("this item has no earlier review state to go back to")
    # The change being undone made the state in force; only its author (or an admin) takes it back.
    if current["decided_by"] != actor and actor_role != "admin":
        raise PermissionDeniedError(
            f"the last review change of this item is {current['decided_by']}'s; only they or an admin can undo it"
        )
    if current["prev_event_id"] is None:
        state, prev = None, None
    else:
        target = _event(db, current["prev_event_id"])
        state = {k: target[k] for k in _STATE_KEYS}
        state["origin_event_id"] = target["origin_event_id"] or target["id"]
        prev = target["prev_event_id"]
    apply(db, step_id, alternative_id, actor, "undo", state, now, prev_event_id=prev)


# ---------------------------------------------------------------------- reads


def current(db: Database, step_id: int, alternative_id: int | None) -> dict[str, Any] | None:
    """The item's review in force: {status, verdict, error_type, note, reviewer, updated_at}."""
    row = db.execute(
        "SELECT status, verdict, error_type, note, reviewer, updated_at FROM reviews "
        "WHERE step_id = ? AND alternative_id IS ?",
        [step_id, alternative_id],
    ).fetchone()
    keys = ("status", "verdict", "error_type", "note", "reviewer", "updated_at")
    return None if row is None else dict(zip(keys, row, strict=True))


def history(db: Database, step_id: int, alternative_id: int | None) -> list[dict[str, Any]]:
    """Every review event of the item, oldest first."""
    rows = db.execute(
        f"SELECT {', '.join(_EVENT_KEYS)} FROM review_events WHERE step_id = ? AND alternative_id IS ? ORDER BY id",
        [step_id, alternative_id],
    ).fetchall()
    return [dict(zip(_EVENT_KEYS, r, strict=True)) for r in rows]


_LABEL_ROWS = """SELECT l.step_id, l.alternative_id, s.trace_id, s.idx, l.annotator, l.verdict, l.error_type,
                        l.comment, l.time_spent_s, l.updated_at
                 FROM labels l JOIN steps s ON s.id = l.step_id JOIN traces t ON t.id = s.trace_id"""
_LABEL_KEYS = ("annotator", "verdict", "error_type", "comment", "time_spent_s", "updated_at")


def item_view(db: Database, step_id: int, alternative_id: int | None, rule: ResolutionRule) -> dict[str, Any]:
    """Everything the review view shows for one item: the step (and alternative) text, every
    annotator's label, the review in force, its history and the resolution."""
    trace_id, idx, step_text = db.execute(
        "SELECT trace_id, idx, text FROM steps WHERE id = ?", [step_id]
    ).fetchone()
    alt_text = None
    if alternative_id is not None:
        alt_text = db.execute("SELECT text FROM alternatives WHERE id = ?", [alternative_id]).fetchone()[0]
    rows = db.execute(
        _LABEL_ROWS + " WHERE l.step_id = ? AND l.alternative_id IS ? ORDER BY l.annotator",
        [step_id, alternative_id],
    ).fetchall()
    labels = [dict(zip(_LABEL_KEYS, r[4:], strict=True)) for r in rows]
    review = current(db, step_id, alternative_id)
    resolution = (
        resolve_items(db, rule).get((step_id, alternative_id)) if rule.method == "dawid_skene" else None
    )
    if resolution is None:
        resolution = resolve(_item_labels(labels), _item_review(review), rule)
    return {
        "trace_id": trace_id,
        "step_index": idx,
        "alternative_id": alternative_id,
        "item_kind": "step" if alternative_id is None else "alternative",
        "step_text": step_text,
        "alternative_text": alt_text,
        "labels": labels,
        "review": review,
        "history": history(db, step_id, alternative_id),
        "resolution": resolution.to_dict(),
    }


def _item_labels(labels: list[dict[str, Any]]) -> list[ItemLabel]:
    return [ItemLabel(x["annotator"], x["verdict"], x["error_type"], x["updated_at"]) for x in labels]


def _item_review(review: dict[str, Any] | None) -> ItemReview | None:
    if review is None:
        return None
    return ItemReview(
        review["status"], review["verdict"], review["error_type"], review["reviewer"], review["updated_at"]
    )


def sampled(seed: int, step_id: int, alternative_id: int | None, rate: float) -> bool:
    """Whether the deterministic sample at ``rate`` picks this item (same answer every call)."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{step_id}:{alternative_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def reasons(labels: list[dict[str, Any]], review: dict[str, Any] | None, picked: bool) -> list[str]:
    """Why an item is on the review queue (empty: it is not)."""
    if review is not None:
        if review["status"] == "sent_back" and any(x["updated_at"] > review["updated_at"] for x in labels):
            return ["returned"]
        return []
    out = []
    verdicts = {x["verdict"] for x in labels}
    if len(verdicts) > 1:
        out.append("verdict")
    elif verdicts == {"unsure"}:
        out.append("unsure")
    if len({x["error_type"] for x in labels if x["verdict"] == "reject"}) > 1:
        out.append("error_type")
    if picked and not out:
        out.append("sampled")
    return out


def _candidates(
    db: Database, *, sample_rate: float, seed: int, include_reviewed: bool, trace_id: str | None
) -> Iterator[tuple[tuple[int, int | None], dict[str, Any], dict[str, Any] | None, list[str]]]:
    """(item key, item with its labels, review, reasons) of every item on the queue, in order."""
    where, args = "", []
    if trace_id is not None:
        where, args = " WHERE s.trace_id = ?", [trace_id]
    rows = db.execute(
        _LABEL_ROWS
        + where
        + " ORDER BY t.seq, s.idx, l.alternative_id IS NOT NULL, l.alternative_id, l.annotator",
        args,
    ).fetchall()
    items: dict[tuple[int, int | None], dict[str, Any]] = {}
    for r in rows:
        item = items.setdefault(
            (r[0], r[1]),
            {"trace_id": r[2], "step_index": r[3], "alternative_id": r[1], "labels": []},
        )
        item["labels"].append(dict(zip(_LABEL_KEYS, r[4:], strict=True)))
    keys = ("status", "verdict", "error_type", "note", "reviewer", "updated_at")
    reviews = {
        (r[0], r[1]): dict(zip(keys, r[2:], strict=True))
        for r in db.execute(
            "SELECT step_id, alternative_id, status, verdict, error_type, note, reviewer, updated_at FROM reviews"
        ).fetchall()
    }
    for key, item in items.items():
        review = reviews.get(key)
        why = reasons(item["labels"], review, sampled(seed, key[0], key[1], sample_rate))
        if not why and include_reviewed and review is not None:
            why = ["reviewed"]
        if why:
            yield key, item, review, why


def queue(
    db: Database,
    rule: ResolutionRule,
    *,
    sample_rate: float = 0.0,
    seed: int = 0,
    include_reviewed: bool = False,
    trace_id: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Items for review in import order (trace, step, original before alternatives); see the
    module doc. ``include_reviewed`` also lists every item that has a review (reason
    ``reviewed``). Each item: trace_id, step_index, alternative_id, item_kind, reasons, labels
    (every annotator's), review, resolution."""
    resolutions = resolve_items(db, rule) if rule.method == "dawid_skene" else {}
    out = []
    for key, item, review, why in _candidates(
        db, sample_rate=sample_rate, seed=seed, include_reviewed=include_reviewed, trace_id=trace_id
    ):
        resolution = resolutions.get(key) or resolve(_item_labels(item["labels"]), _item_review(review), rule)
        out.append(
            {
                **item,
                "item_kind": "step" if key[1] is None else "alternative",
                "reasons": why,
                "review": review,
                "resolution": resolution.to_dict(),
            }
        )
        if limit is not None and len(out) >= limit:
            break
    return out


def count_pending(db: Database) -> int:
    """How many items wait on the review queue without sampling: ``reasons`` in SQL, since the
    statistics count them on every call (tests/store/test_analysis.py checks both agree)."""
    return db.execute(
        """SELECT count(*) FROM (
               SELECT step_id, alternative_id, count(DISTINCT verdict) AS verdicts,
                      sum(verdict != 'unsure') AS votes,
                      count(DISTINCT CASE WHEN verdict = 'reject' THEN coalesce(error_type, '') END) AS types,
                      max(updated_at) AS latest
               FROM labels GROUP BY step_id, alternative_id) x
           LEFT JOIN reviews r ON r.step_id = x.step_id AND r.alternative_id IS x.alternative_id
           WHERE (r.id IS NULL AND (x.verdicts > 1 OR x.types > 1 OR x.votes = 0))
              OR (r.status = 'sent_back' AND x.latest > r.updated_at)"""
    ).fetchone()[0]


def sent_back_notes(db: Database, trace_id: str) -> list[dict[str, Any]]:
    """The notes of the trace's items that a reviewer sent back, for the labeling view."""
    rows = db.execute(
        """SELECT s.idx, r.alternative_id, r.note, r.reviewer, r.updated_at FROM reviews r
           JOIN steps s ON s.id = r.step_id WHERE s.trace_id = ? AND r.status = 'sent_back'
           ORDER BY s.idx, r.alternative_id IS NOT NULL, r.alternative_id""",
        [trace_id],
    ).fetchall()
    keys = ("step_index", "alternative_id", "note", "reviewer", "updated_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]
