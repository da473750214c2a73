"""The Review tab without Gradio: who may review, the queue as rows, one item in its trace's
context, moving along the queue, and the reviewer's actions.

The store enforces roles on every review verb (``PermissionDeniedError``); ``check_reviewer``
refuses earlier and one more case the store cannot see: without a login everyone is an
annotator (``annotation_db.roles.effective_role``), so a typed-in name that happens to be a
stored reviewer reviews nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from annotation_db import PermissionDeniedError, Store
from annotation_db.roles import can, effective_role
from ui.render import ERROR_TYPE_NAMES, VERDICT_COLOURS, esc

QUEUE_HEADERS = ["Trace", "Step", "Item", "Why", "Annotators' verdicts", "Review"]
CARD = "border:1px solid #ccc;border-radius:6px;padding:6px 10px;min-width:200px;max-width:420px"
REASON_NAMES = {
    "verdict": "verdicts differ",
    "error_type": "error types differ",
    "unsure": "all unsure",
    "sampled": "sampled",
    "returned": "relabeled after send-back",
    "reviewed": "reviewed",
}


@dataclass(frozen=True)
class ItemKey:
    """One review item: an original step (alternative_id None) or one of its alternatives."""

    trace_id: str
    step_index: int
    alternative_id: int | None = None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> ItemKey:
        return cls(item["trace_id"], int(item["step_index"]), item["alternative_id"])


def role_of(store: Store, login: str | None, signed_in: bool) -> str:
    """The role that counts for ``login`` (annotator without a login)."""
    if not login:
        return "annotator"
    return effective_role(store.role(login), signed_in=signed_in)


def check_reviewer(store: Store, login: str | None, signed_in: bool) -> str:
    """``login`` when it may review; PermissionDeniedError (one line) otherwise."""
    if not signed_in or not login:
        raise PermissionDeniedError(
            "reviewing needs a signed-in reviewer or admin (--auth-file name:password:reviewer); "
            "without a login everyone is an annotator"
        )
    role = role_of(store, login, signed_in)
    if not can(role, "review"):
        raise PermissionDeniedError(
            f"{login} is an {role}; only reviewers and admins can review; ask an admin"
        )
    return login


def parse_alternative(value: Any) -> int | None:
    """The API's alternative id: empty / None / negative = the original step."""
    if value is None or value == "":
        return None
    number = int(float(value))
    return None if number < 0 else number


def _verdicts(labels: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for x in labels:
        text = f"{x['annotator']}: {x['verdict']}"
        if x.get("error_type"):
            text += f" ({ERROR_TYPE_NAMES.get(x['error_type'], x['error_type'])})"
        parts.append(text)
    return "; ".join(parts)


def proposed_error_type(labels: Sequence[Mapping[str, Any]]) -> str:
    """The error type the reviewer starts from: the commonest among the rejecting labels (the
    first named on a tie), "" when none names one."""
    named = [x["error_type"] for x in labels if x["verdict"] == "reject" and x["error_type"]]
    return max(named, key=named.count) if named else ""


def review_state(review: Mapping[str, Any] | None) -> str:
    if review is None:
        return "open"
    if review["status"] == "sent_back":
        return f"sent back by {review['reviewer']}"
    text = f"{review['verdict']} by {review['reviewer']}"
    if review.get("error_type"):
        text += f" ({ERROR_TYPE_NAMES.get(review['error_type'], review['error_type'])})"
    return text


def queue_rows(items: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The review queue as table rows (steps numbered from 1, as on the label view)."""
    return [
        [
            item["trace_id"],
            item["step_index"] + 1,
            "original" if item["alternative_id"] is None else f"alternative {item['alternative_id']}",
            ", ".join(REASON_NAMES.get(r, r) for r in item["reasons"]),
            _verdicts(item["labels"]),
            review_state(item["review"]),
        ]
        for item in items
    ]


def neighbour(items: Sequence[Mapping[str, Any]], current: ItemKey | None, step: int) -> ItemKey | None:
    """The item ``step`` places after (1) or before (-1) ``current`` on the queue; the first
    item when ``current`` is not on it; None at either end or on an empty queue."""
    keys = [ItemKey.of(i) for i in items]
    if not keys:
        return None
    if current not in keys:
        return keys[0]
    k = keys.index(current) + step
    return keys[k] if 0 <= k < len(keys) else None


def after(
    all_items: Sequence[Mapping[str, Any]], pending: Sequence[Mapping[str, Any]], current: ItemKey
) -> ItemKey | None:
    """The next pending item after ``current`` in queue order (``all_items``: the queue with the
    reviewed items, so an item just decided still has its place); else the first pending one."""
    order = [ItemKey.of(i) for i in all_items]
    waiting = [ItemKey.of(i) for i in pending]
    if current in order:
        place = order.index(current)
        later = [k for k in waiting if k in order and order.index(k) > place]
        if later:
            return later[0]
    others = [k for k in waiting if k != current]
    return others[0] if others else None


# ---- one item in its trace's context ----------------------------------------------------------


def _label_cells(labels: Sequence[Mapping[str, Any]]) -> str:
    if not labels:
        return '<p class="review-none">No annotator has labeled this item.</p>'
    cells = []
    for x in labels:
        colour = VERDICT_COLOURS.get(x["verdict"], "#666")
        kind = ERROR_TYPE_NAMES.get(x["error_type"], x["error_type"]) if x["error_type"] else "\u2014"
        spent = f"{x['time_spent_s']:.0f} s on it" if x.get("time_spent_s") else ""
        cells.append(
            f'<div class="review-label" data-annotator="{esc(x["annotator"])}" style="{CARD}">'
            f"<b>{esc(x['annotator'])}</b>"
            f'<div class="verdict" style="color:{colour}">{esc(x["verdict"])}</div>'
            f'<div class="error-type">{esc(kind)}</div>'
            f'<div class="review-comment">{esc(x["comment"]) or "<i>no comment</i>"}</div>'
            f'<div class="when">{esc(spent)}</div></div>'
        )
    return (
        '<div class="review-labels" style="display:flex;gap:12px;flex-wrap:wrap">' + "".join(cells) + "</div>"
    )


def _history(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return ""
    rows = []
    for e in events:
        what = e["action"]
        if e["status"] == "decided":
            what += f" \u2192 {e['verdict']}" + (f" ({e['error_type']})" if e["error_type"] else "")
        elif e["status"] == "sent_back":
            what += " \u2192 sent back"
        elif e["status"] is None:
            what += " \u2192 no review"
        note = f": {esc(e['note'])}" if e["note"] else ""
        rows.append(f"<li>{esc(e['at'][:19])} {esc(e['reviewer'])} {esc(what)}{note}</li>")
    return f'<details class="review-history"><summary>History ({len(events)})</summary><ul>{"".join(rows)}</ul></details>'


def item_html(item: Mapping[str, Any], trace: Mapping[str, Any], place: str = "") -> str:
    """The item as the reviewer reads it: the trace's question, the previous step, the step (or
    the alternative beside it), every annotator's label side by side, the review in force, the
    resolved verdict and the review history. Model and annotator text is escaped."""
    k = item["step_index"]
    steps = trace.get("steps") or []
    previous = steps[k - 1]["text"] if 0 < k <= len(steps) else None
    resolution = item["resolution"]
    resolved = resolution["verdict"] or f"none ({resolution['status']})"
    parts = [
        f'<div class="review-item" data-trace="{esc(item["trace_id"])}" data-step="{k}">',
        f'<div class="review-place">{esc(place)}</div>',
        f"<p><b>Question:</b> {esc(trace.get('question'))}</p>",
    ]
    if trace.get("options"):
        parts.append("<p><b>Options:</b> " + " \u00b7 ".join(esc(o) for o in trace["options"]) + "</p>")
    if previous is not None:
        parts.append(f'<p class="review-prev"><b>Step {k} (previous):</b> {esc(previous)}</p>')
    parts.append(f'<p class="review-step"><b>Step {k + 1}:</b> {esc(item["step_text"])}</p>')
    if item["alternative_id"] is not None:
        parts.append(
            f'<p class="review-alt"><b>Alternative {item["alternative_id"]}:</b> {esc(item["alternative_text"])}</p>'
        )
    parts.append(_label_cells(item["labels"]))
    parts.append(
        f'<p class="review-state"><b>Review:</b> {esc(review_state(item["review"]))}'
        f" \u00b7 <b>resolved verdict:</b> {esc(resolved)}</p>"
    )
    if item["review"] and item["review"].get("note"):
        parts.append(f'<p class="review-note"><b>Note:</b> {esc(item["review"]["note"])}</p>')
    parts.append(_history(item["history"]))
    parts.append("</div>")
    return "".join(parts)


def conflict_badge(conflicts: Sequence[Mapping[str, Any]], step_index: int) -> str:
    """The label view's mark for a step whose human decision the rollouts contradict."""
    mine = [c for c in conflicts if c["step_index"] == step_index]
    if not mine:
        return ""
    c = mine[0]
    chosen = (
        "the original"
        if c["chosen"]["alternative_id"] is None
        else f"alternative {c['chosen']['alternative_id']}"
    )
    p_chosen = c["chosen"]["expected_correctness"]
    p_rejected = c["rejected"]["expected_correctness"]
    return (
        '<span class="badge rollout-conflict" title="the human decision fixes the direction; '
        f'rollouts only set its strength (soft label {c["soft_label"]:.2f})">'
        f"\u26a0 rollouts disagree: people chose {esc(chosen)} (rollouts {p_chosen:.2f} vs {p_rejected:.2f})</span>"
    )


def trace_flags_html(conflicts: Sequence[Mapping[str, Any]], notes: Sequence[Mapping[str, Any]]) -> str:
    """One line per flagged step of a trace: its rollout conflict (``conflict_badge``) and the
    reviewer's note when it was sent back, in step order."""
    lines = []
    for k in sorted({c["step_index"] for c in conflicts} | {n["step_index"] for n in notes}):
        parts = [conflict_badge(conflicts, k)]
        for n in notes:
            if n["step_index"] == k:
                which = "" if n["alternative_id"] is None else f" (alternative {n['alternative_id']})"
                parts.append(
                    f'<span class="badge sent-back">\u21a9 sent back{esc(which)} by {esc(n["reviewer"])}: '
                    f"{esc(n['note'])}</span>"
                )
        body = " ".join(x for x in parts if x)
        lines.append(f'<div class="conflict-step" data-step="{k}"><b>Step {k + 1}:</b> {body}</div>')
    return "".join(lines)
