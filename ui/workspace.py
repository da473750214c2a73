"""The labeling workspace's rules, without Gradio: which trace a page may label, the limits on
what a person types, the position line, the next trace to label, the progress and the timings
of an analysis. ``ui.handlers`` calls these; tests call them directly.

The page's session state ("which trace does this page show") is a plain value here:
``None`` for a session that has no page (a program calling the API names the trace itself),
``""`` for a page that shows no trace (an analysis runs or failed, a new clip was chosen), or
the id of the trace the page shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ui.services import AppError, parse_options

# Limits on what a person types (the store checks its own, e.g. 10,000 characters per comment;
# these are the page's, tighter, so a paste mistake is caught with a message that says where).
MAX_QUESTION_CHARS = 1_000
MAX_OPTION_CHARS = 300
MAX_OPTIONS = 10
MAX_COMMENT_CHARS = 10_000  # the store's own limit (annotation_db.store): one rule, checked first here
MAX_CORRECTION_CHARS = 2_000
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

QUEUE_ORDER_NAMES = {
    "max_score": "most suspicious first (highest step score)",
    "oldest": "oldest first",
    "newest": "newest first",
    "fewest_annotators": "fewest annotators first",
}


class WrongTraceError(AppError):
    """A label, undo, comment or preference for a trace this page does not show."""


def check_shown(shown: str | None, trace_id: str | None) -> str:
    """The trace id a request may act on, or WrongTraceError (nothing is stored)."""
    trace_id = (trace_id or "").strip()
    if shown is None:  # no page: the caller names the trace
        if not trace_id:
            raise AppError("no trace is open: analyse a clip or open one from the Queue tab")
        return trace_id
    if not shown:
        raise WrongTraceError(
            "this page shows no trace now (an analysis runs or failed, or a new clip was chosen): nothing was saved"
        )
    if trace_id != shown:
        raise WrongTraceError(
            f"this page shows trace {shown}, not {trace_id or 'none'}: nothing was saved; reload the page"
        )
    return trace_id


def check_question(prompt_kind: str, question: str, options_text: str, reference: str):
    """(question, options, reference) as the analysis takes them, or AppError with one line."""
    question = (question or "").strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise AppError(f"the question has {len(question):,} characters; keep it under {MAX_QUESTION_CHARS:,}")
    options = parse_options(options_text)
    if len(options) > MAX_OPTIONS:
        raise AppError(f"{len(options)} options given; at most {MAX_OPTIONS} (one per line)")
    for k, option in enumerate(options):
        if len(option) > MAX_OPTION_CHARS:
            raise AppError(f"option {LETTERS[k]} is longer than {MAX_OPTION_CHARS} characters; shorten it")
    return question, options, check_reference(prompt_kind, options, reference)


def check_reference(prompt_kind: str, options: Sequence[str], reference: str | None) -> str | None:
    """The reference answer as the right/wrong badge and rollouts compare it: an option letter,
    YES / NO for SynthDec, or None (none given)."""
    reference = (reference or "").strip().upper().rstrip(".")
    if not reference:
        return None
    if prompt_kind == "synthdec":
        if reference not in ("YES", "NO"):
            raise AppError("the SynthDec reference answer is YES or NO")
    elif options:
        valid = LETTERS[: len(options)]
        if len(reference) != 1 or reference not in valid:
            raise AppError(f"the reference answer is one option letter: {', '.join(valid)}")
    else:
        raise AppError("a reference answer needs options (its letter) or the SynthDec prompt (YES / NO)")
    return reference


def check_comment(text: str | None) -> str:
    text = text or ""
    if len(text) > MAX_COMMENT_CHARS:
        raise AppError(f"the comment has {len(text):,} characters; keep it under {MAX_COMMENT_CHARS:,}")
    return text


def check_correction(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise AppError("the correction is empty; write the step as it should read")
    if len(text) > MAX_CORRECTION_CHARS:
        raise AppError(f"the correction has {len(text):,} characters; keep it under {MAX_CORRECTION_CHARS:,}")
    return text


# ---- where the annotator is ------------------------------------------------------------------


def queue_place(items: Sequence[Mapping[str, Any]], trace_id: str) -> str:
    """ "trace 4 of 120 in your queue" (the queue in its order, finished traces included)."""
    ids = [item["trace_id"] for item in items]
    if trace_id not in ids:
        return f"not in your queue ({len(ids)} traces)"
    return f"trace {ids.index(trace_id) + 1} of {len(ids)} in your queue"


def position_line(step: int, n_steps: int, place: str) -> str:
    """ "step 3 of 9 · trace 4 of 120 in your queue" (``step`` 0-based, shown from 1)."""
    head = f"step {step + 1} of {n_steps}" if n_steps else "no steps"
    return f"{head} \u00b7 {place}" if place else head


def next_unlabeled(items: Sequence[Mapping[str, Any]], current: str | None) -> str | None:
    """The trace after ``current`` in the queue's order that I have not finished (wrapping
    round to the start), else None. ``items``: the queue, finished traces included."""
    todo = [item["trace_id"] for item in items if item["labeled_by_me"] < item["n_steps"]]
    ids = [item["trace_id"] for item in items]
    if current in ids:
        after = ids[ids.index(current) + 1 :] + ids[: ids.index(current)]
        todo = [t for t in after if t in set(todo)]
    return next((t for t in todo if t != current), None)


# ---- an analysis: its progress and its timings ------------------------------------------------

# Share of the progress bar per phase, in order (rough shares of a real-model analysis on a GPU:
# generation dominates, scoring runs one forward pass per perturbation).
PHASES = (
    ("decode", 0.08),
    ("load", 0.04),
    ("encode", 0.06),
    ("generate", 0.50),
    ("answer", 0.02),
    ("score", 0.18),
    ("attention", 0.07),
    ("store", 0.05),
)


def progress_fraction(phase: str, within: float = 0.0) -> float | None:
    """0..1 for being ``within`` (0..1) of the way through ``phase`` (None: not a known phase)."""
    done = 0.0
    for name, share in PHASES:
        if name == phase:
            return round(min(done + share * min(max(within, 0.0), 1.0), 1.0), 3)
        done += share
    return None


PHASE_LABELS = {
    "decode": "decode",
    "load": "model wait",
    "encode": "encode",
    "generate": "generate",
    "answer": "answer",
    "score": "score",
    "attention": "spans",
    "store": "save",
    "display": "display",
}


class PhaseClock:
    """Wall time per phase of one analysis, as the person waited for it: each phase runs
    from its start to the start of the next, so the phases add up to the total."""

    def __init__(self, now: float) -> None:
        self.started = now
        self.phase: str | None = None
        self.since = now
        self.seconds: dict[str, float] = {}

    def enter(self, phase: str, now: float) -> None:
        if phase == self.phase:
            return
        self.stop(now)
        self.phase, self.since = phase, now

    def stop(self, now: float) -> None:
        if self.phase is not None:
            self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + now - self.since
        self.phase, self.since = None, now

    def total(self, now: float) -> float:
        return now - self.started


def done_text(total_s: float, phases: Mapping[str, float]) -> str:
    """ "Done in 13.6 s (decode 1.1, ..., save 0.1)": every phase that ran, each rounded to 0.1 s;
    the parts add up to the total ("other": the time outside every phase, when 0.05 s or more)."""
    parts = [(PHASE_LABELS.get(name, name), s) for name, s in phases.items()]
    other = total_s - sum(s for _, s in parts)
    if other >= 0.05:
        parts.append(("other", other))
    return f"Done in {total_s:.1f} s ({', '.join(f'{label} {s:.1f}' for label, s in parts)})"


# ---- the page's desk: what one page shows (kept in a gr.State per browser session) ------------


def new_desk(shown: str = "", place: str = "") -> dict[str, Any]:
    """The state of one page: the trace it shows ("" none), its place in the queue, the step
    whose error type and comment the page last loaded (to save only what the person changed),
    and drafts (error type / comment typed on steps not labeled yet, by step index)."""
    return {"shown": shown, "place": place, "step": None, "note": ["", ""], "drafts": {}}


def shown_trace(desk: Mapping[str, Any] | None) -> str | None:
    """The trace a session's page shows: None for a session without a page (the API)."""
    return None if desk is None else desk.get("shown", "")


def changed_note(
    desk: Mapping[str, Any] | None, step: int, error_type: str | None, comment: str | None
) -> tuple[str, str] | None:
    """The (error type, comment) of ``step`` when the person changed them since the page loaded
    that step, else None (a program calling the API sends no note: nothing to save)."""
    if desk is None or desk.get("step") != step:
        return None
    note = (error_type or "", comment or "")
    return note if list(note) != list(desk.get("note") or ["", ""]) else None


def note_for(desk: Mapping[str, Any] | None, step: int, label: Mapping[str, Any] | None) -> tuple[str, str]:
    """What the error type and comment fields show on ``step``: my label's, else my draft."""
    if label:
        return label.get("error_type") or "", label.get("comment") or ""
    draft = ((desk or {}).get("drafts") or {}).get(str(step))
    return (draft[0], draft[1]) if draft else ("", "")


def with_loaded(desk: dict[str, Any] | None, step: int, note: tuple[str, str]) -> dict[str, Any] | None:
    if desk is None:
        return None
    return {**desk, "step": step, "note": list(note)}


def with_draft(desk: dict[str, Any] | None, step: int, note: tuple[str, str] | None) -> dict[str, Any] | None:
    """The desk with ``note`` kept as the draft of ``step`` (None or empty: the draft dropped)."""
    if desk is None:
        return None
    drafts = dict(desk.get("drafts") or {})
    if note and any(note):
        drafts[str(step)] = list(note)
    else:
        drafts.pop(str(step), None)
    return {**desk, "drafts": drafts}


def sampled_message(asked: int, ids: Sequence[int], existing: set[int], step: int) -> str:
    """What a request for ``asked`` alternatives gave: new ones, repeats of stored ones (the
    store keeps one alternative per text) and empty samples, counted so they add up."""
    new = list(dict.fromkeys(i for i in ids if i not in existing))
    repeats = len(ids) - len(new)
    empty = asked - len(ids)
    parts = [f"{len(new)} new alternative{'s' if len(new) != 1 else ''} for step {step + 1}"]
    if repeats:
        parts.append(f"{repeats} repeated one already shown")
    if empty:
        parts.append(f"{empty} came out empty")
    return f"Sampled {asked}: " + ", ".join(parts)
