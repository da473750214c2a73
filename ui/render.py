"""Pure functions from traces, labels and statistics to what the page shows: HTML and tables
(the figures are in ``ui.figures``).

Every piece of text that comes from the model, an imported file or a person (step text, answer,
comments, names) goes through ``html.escape`` here and nowhere is it inserted as markup: a step
that reads ``<img src=x onerror=alert(1)>`` is shown as those characters.

Steps are the Trace JSON's step dicts (``Trace.to_dict()["steps"]``; a stored trace becomes
that dict in one place, ``ui.services.page_trace``).
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence
from typing import Any

VERDICT_COLOURS = {"accept": "#2e7d32", "reject": "#c62828", "unsure": "#f9a825"}
UNLABELED_COLOUR = "#9e9e9e"
VERDICT_MARKS = {"accept": "\u2713 accept", "reject": "\u2717 reject", "unsure": "? unsure"}
ERROR_TYPE_NAMES = {
    "visual_misperception": "visual misperception",
    "audio_misperception": "audio misperception",
    "hallucination": "hallucination",
    "reasoning_logic": "reasoning / logic",
    "other": "other",
}
DOT = " \u00b7 "
STEP_COLOURS = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#9e9d24")
KL_SHADE = (198, 40, 40)  # red: the more a token changes under the perturbation, the redder


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt_score(value: float | None) -> str:
    """Three significant digits, in plain notation where that stays short (0.0123, 12.3)."""
    if value is None:
        return "n/a"
    return f"{value:.3g}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"


def fmt_span(span: Sequence[float] | None) -> str:
    return "" if not span else f"{span[0]:.1f}\u2013{span[1]:.1f} s"


# ---- steps --------------------------------------------------------------------------------------


def trace_kl_scale(steps: Sequence[Mapping[str, Any]]) -> float:
    """The largest token KL in the trace: the shading's full colour (0 when unscored)."""
    return max((max(s["token_kl"]) for s in steps if s.get("token_kl")), default=0.0)


KL_LEVELS = 10  # shades of red; a class per level keeps the page light (a style per token is ~3x the bytes)


def kl_shade_css() -> str:
    """CSS of the shading classes ``.kl0`` (none) to ``.kl9`` (darkest)."""
    r, g, b = KL_SHADE
    return "\n".join(
        f".step-text .kl{level} {{ background-color: rgba({r},{g},{b},{0.6 * level / (KL_LEVELS - 1):.3f}); }}"
        for level in range(KL_LEVELS)
    )


def kl_level(kl: float, scale: float) -> int:
    """0..9: the token's KL as a share of ``scale`` (the trace's largest), rounded."""
    return round(min(max(kl / scale, 0.0), 1.0) * (KL_LEVELS - 1)) if scale > 0 else 0


def shaded_text(step: Mapping[str, Any], scale: float) -> str:
    """The step's text, each token shaded by its KL (as a share of ``scale``), escaped.
    Falls back to the plain escaped text when the token pieces do not spell the text."""
    pieces, kls = step.get("kl_tokens"), step.get("token_kl")
    return _shaded(step.get("text", ""), tuple(pieces or ()), tuple(kls or ()), scale)


@functools.lru_cache(maxsize=4096)
def _shaded(text: str, pieces: tuple[str, ...], kls: tuple[float, ...], scale: float) -> str:
    # Cached: every label redraws the whole list, and a trace's steps do not change.
    if not pieces or len(pieces) != len(kls) or "".join(pieces) != text or scale <= 0:
        return esc(text)
    return "".join(
        f'<span class="kl{kl_level(kl, scale)}" title="KL {kl:.3g}">{esc(piece)}</span>'
        for piece, kl in zip(pieces, kls, strict=True)
    )


def step_spans(trace: Mapping[str, Any]) -> list[tuple[float, float] | None]:
    """Per step, the clip span it attends to most (``inference.reasoning.attribution``), if
    computed. A span stored with no length (start == end: one frame, from an older run or an
    import) is widened to that frame's time on screen: to the next sampled frame's time, else
    half a second, within the clip."""
    attention = (trace.get("scoring") or {}).get("frame_attention") or {}
    spans = attention.get("spans") or []
    clip = trace.get("clip") or {}
    times = sorted(float(t) for t in clip.get("frame_times_s") or [])
    duration = float(clip.get("duration_s") or 0.0)
    n = len(trace.get("steps") or [])
    out: list[tuple[float, float] | None] = []
    for k in range(n):
        span = spans[k] if k < len(spans) and spans[k] else None
        if span is None:
            out.append(None)
            continue
        start, end = float(span[0]), float(span[1])
        if end - start < 0.05:
            later = [t for t in times if t > start + 0.05]
            end = later[0] if later else start + 0.5
            if duration > start:
                end = min(end, duration)
        out.append((start, end))
    return out


def flagged_steps(steps: Sequence[Mapping[str, Any]]) -> set[int]:
    """The steps to check first: those marked top-T, but at most a third of the steps (at least
    one) and only scored ones, highest score first. Top-T = 3 (the paper's) marks 3 of 4 steps
    of a short trace, which tells nothing; a third keeps the mark for steps that stand out."""
    marked = [s for s in steps if s.get("top_t") and s.get("score") is not None]
    cap = max(1, len(steps) // 3)
    marked.sort(key=lambda s: -float(s["score"]))
    return {int(s["index"]) for s in marked[:cap]}


def score_cell(score: float | None, top: float) -> str:
    """A step's score as a bar and a share of the trace's highest score (the raw value on hover)."""
    if score is None:
        return ""
    share = score / top if top > 0 else 0.0
    width = round(min(max(share, 0.0), 1.0) * 100)
    return (
        f'<span class="score" title="contrastive score (mean token KL): {score:.4g}; '
        f'{share:.0%} of the highest in this trace">'
        f'<span class="score-bar"><span style="width:{width}%"></span></span> {share:.0%}</span>'
    )


def label_badge(label: Mapping[str, Any] | None, mine: bool = True) -> str:
    if not label:
        return '<span class="badge unlabeled">unlabeled</span>' if mine else ""
    verdict = label["verdict"]
    error = ERROR_TYPE_NAMES.get(label.get("error_type") or "", "")
    who = "" if mine else f"{esc(label['annotator'])}: "
    text = VERDICT_MARKS.get(verdict, verdict) + (f" \u00b7 {error}" if error else "")
    return f'<span class="badge verdict-{esc(verdict)}">{who}{esc(text)}</span>'


def steps_html(
    steps: Sequence[Mapping[str, Any]],
    current: int | None = None,
    mine: Mapping[int, Mapping[str, Any]] | None = None,
    peers: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
    spans: Sequence[tuple[float, float] | None] | None = None,
    streaming: bool = False,
    show_labels: bool = True,
    selectable: bool = True,
    empty_message: str = "",
) -> str:
    """The list of steps: number, scores, top-T badge, clip span (click to seek), labels, text.

    Each step is a ``div.step[data-step=i]`` (a click selects it, ``ui.shortcuts``); the span is a
    ``button.seek[data-seek=seconds]``. ``selectable=False`` leaves out the step ids and
    ``data-step`` (a second, read-only list on the page: a click there must not select a step of
    the trace being labeled)."""
    mine = mine or {}
    peers = peers or {}
    spans = spans or []
    list_id = ' id="steps-list"' if selectable else ""
    if not steps:
        message = empty_message or (
            "Generating the first step\u2026"
            if streaming
            else "No trace open: analyse a clip, or open a trace from the Queue (key n: the next one to label)."
        )
        return f'<div class="steps empty"{list_id}>{esc(message)}</div>'
    scale = trace_kl_scale(steps)
    top = max((float(s["score"]) for s in steps if s.get("score") is not None), default=0.0)
    flagged = flagged_steps(steps)
    items = []
    for step in steps:
        k = int(step["index"])
        label = mine.get(k)
        classes = ["step"]
        if k == current:
            classes.append("current")
        if label:
            classes.append(f"labeled-{label['verdict']}")
        head = [f'<span class="step-no">Step {k + 1}</span>', score_cell(step.get("score"), top)]
        for name, value in (step.get("scores") or {}).items():
            if len(step.get("scores") or {}) > 1:
                head.append(
                    f'<span class="score-extra" title="{esc(name)}: {fmt_score(value)}">{esc(name)} '
                    f"{fmt_score(value)}</span>"
                )
        if k in flagged:
            head.append(
                '<span class="badge top-t" title="one of the highest scores of this trace: check it first">'
                "check first</span>"
            )
        if step.get("expected_correctness") is not None:
            head.append(f'<span class="badge rollout">p(correct) {step["expected_correctness"]:.2f}</span>')
        span = spans[k] if k < len(spans) else None
        if span:
            head.append(
                f'<button class="seek" data-seek="{span[0]:.3f}" data-end="{span[1]:.3f}" '
                f'title="play the moment this step attends to most">\u25b6 {fmt_span(span)}</button>'
            )
        if show_labels:
            head.append(label_badge(label))
            for other in peers.get(k, []):
                head.append(label_badge(other, mine=False))
        body = shaded_text(step, scale)
        comment = ""
        if label and label.get("comment"):
            comment = f'<div class="comment">\U0001f4ac {esc(label["comment"])}</div>'
        where = f' data-step="{k}" id="step-{k}"' if selectable else ""
        items.append(
            f'<div class="{" ".join(classes)}"{where}>'
            f'<div class="step-head">{" ".join(head)}</div>'
            f'<div class="step-text">{body}</div>{comment}</div>'
        )
    if streaming:
        items.append('<div class="step pending">\u2026</div>')
    return f'<div class="steps"{list_id}>{"".join(items)}</div>'


def base_html(
    trace: Mapping[str, Any] | None = None,
    steps: Sequence[Mapping[str, Any]] = (),
    answer: Mapping[str, Any] | None = None,
    reference: str | None = None,
    status: str = "",
) -> str:
    """The base model's reasoning (adapter off) beside the adapter's: its answer and steps with
    scores, read-only (it is a stored trace of its own: open it from the Queue to label it).
    While it streams, ``steps`` / ``answer`` so far and a ``status``; at the end, the stored trace."""
    head = '<div class="base-compare"><h3>Base model (adapter off)</h3>'
    if trace is None and not steps and not status:  # nothing asked yet: say how to ask
        hint = 'Tick "Also run the base model" before Analyze to see its reasoning here.'
        return f'{head}<div class="status">{esc(hint)}</div></div>'
    if trace is not None:
        steps, answer = trace["steps"], trace["answer"]
        reference = trace.get("reference_answer")
        status = f"Trace {trace['id']} saved (open it from the Queue tab to label it)."
    streaming = trace is None and answer is None
    spans = step_spans(trace) if trace is not None else None
    return (
        f'{head}<div class="status">{esc(status)}</div>'
        f"{answer_html(answer, reference, pending=streaming and bool(steps))}"
        f"{steps_html(steps, None, spans=spans, streaming=streaming, show_labels=False, selectable=False)}"
        "</div>"
    )


def status_html(text: str, fraction: float | None = None, failed: bool = False) -> str:
    """The analysis status: a progress bar (``fraction`` 0..1; None: no bar) and one line."""
    bar = ""
    if fraction is not None:
        pct = round(min(max(fraction, 0.0), 1.0) * 100)
        bar = f'<div class="progress" title="{pct}%"><span style="width:{pct}%"></span></div>'
    kind = "status failed" if failed else "status"
    return f'<div class="{kind}">{bar}<span class="status-text">{esc(text)}</span></div>'


def stream_html(
    steps: Sequence[Mapping[str, Any]],
    answer: Mapping[str, Any] | None,
    reference: str | None = None,
    spans: Sequence[tuple[float, float] | None] | None = None,
    empty_message: str = "",
) -> str:
    """The Analyze tab's read-only view of an analysis: the steps as they are decoded (with their
    scores once scored), then the answer."""
    streaming = answer is None and not empty_message
    listed = steps_html(
        steps,
        None,
        spans=spans,
        streaming=streaming,
        show_labels=False,
        selectable=False,
        empty_message=empty_message or ("" if streaming else "The model gave no steps."),
    )
    shown = answer_html(answer, reference, pending=streaming and bool(steps)) if steps or answer else ""
    return f'<div class="stream">{listed}{shown}</div>'


def trace_card(trace: Mapping[str, Any] | None) -> str:
    """The label view's read-only header: the trace's own clip, question, options, reference
    and model answer (always those of the trace being labeled)."""
    if trace is None:
        return '<div class="trace-card empty">No trace open.</div>'
    clip = trace.get("clip") or {}
    options = trace.get("options") or []
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    items = "".join(f"<li><b>{letters[i]}.</b> {esc(o)}</li>" for i, o in enumerate(options[:26]))
    options_html = f'<ul class="trace-options">{items}</ul>' if items else ""
    reference = trace.get("reference_answer")
    question = trace.get("question") or ""
    if trace.get("prompt_kind") == "synthdec" and not question:
        question = "Is the video AI-generated? (SynthDec)"
    meta = [f"clip {esc(clip.get('name') or '')}", f"{esc(trace.get('source') or '')} trace"]
    if reference:
        meta.append(f"reference <b>{esc(reference)}</b>")
    return (
        '<div class="trace-card">'
        f'<div class="trace-meta">{DOT.join(meta)}</div>'
        f'<div class="trace-question" title="{esc(question)}">{esc(question)}</div>'
        f"{options_html}"
        f"{answer_html(trace.get('answer'), reference)}</div>"
    )


def answer_html(answer: Mapping[str, Any] | None, reference: str | None = None, pending: bool = False) -> str:
    if pending:
        return '<div class="answer pending">Answer: waiting for the reasoning to finish\u2026</div>'
    if not answer or not (answer.get("text") or answer.get("choice")):
        return '<div class="answer empty">No answer yet.</div>'
    choice = answer.get("choice")
    verdict = ""
    if reference and choice:
        right = choice.strip().upper() == reference.strip().upper()
        verdict = f' <span class="badge {"right" if right else "wrong"}">{"right" if right else "wrong"} (reference {esc(reference.strip().upper())})</span>'
    return (
        f'<div class="answer"><b>Answer</b>{f" ({esc(choice)})" if choice else ""}: '
        f"{esc(answer.get('text') or '')}{verdict}</div>"
    )


def step_info(
    steps: Sequence[Mapping[str, Any]], current: int | None, label: Mapping[str, Any] | None
) -> str:
    """One line over the label buttons: which step is current and my label of it."""
    if current is None or not steps:
        return "No step selected."
    head = f"Step {current + 1} of {len(steps)}"
    if not label:
        return f"{head} \u00b7 not labeled by you yet"
    error = ERROR_TYPE_NAMES.get(label.get("error_type") or "")
    return f"{head} \u00b7 your label: {label['verdict']}" + (f" ({error})" if error else "")


def alternatives_html(
    alternatives: Sequence[Mapping[str, Any]],
    preferences: Mapping[int, str] | None = None,
    rollouts: Mapping[str, Any] | None = None,
) -> str:
    """The alternatives at the current step (dicts with id, text, source, created_by, ...)."""
    preferences = preferences or {}
    if not alternatives and not rollouts:
        return '<div class="alternatives empty">No alternatives for this step yet.</div>'
    correctness = {}
    if rollouts:
        for item in rollouts.get("results", []):
            correctness[item.get("alternative_id")] = item["expected_correctness"]
    rows = []
    if None in correctness:
        rows.append(f'<li class="original">original step: p(correct) = {correctness[None]:.2f}</li>')
    for alt in alternatives:
        bits = [f"#{int(alt['id'])}", esc(alt.get("source", ""))]
        if alt.get("created_by"):
            bits.append(f"by {esc(alt['created_by'])}")
        p = correctness.get(alt["id"], alt.get("expected_correctness"))
        if p is not None:
            bits.append(f"p(correct) = {p:.2f}")
        choice = preferences.get(alt["id"])
        if choice:
            bits.append(f"you prefer the {'alternative' if choice == 'alternative' else 'original'}")
        rows.append(
            f'<li><span class="alt-meta">{DOT.join(bits)}</span><div class="alt-text">{esc(alt["text"])}</div></li>'
        )
    return f'<ul class="alternatives">{"".join(rows)}</ul>'


def alternative_choices(alternatives: Sequence[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """(label, alternative id) for the Radio that picks one to prefer: its number and source
    only (the text is in the list above it, shown once)."""
    return [(f"#{int(alt['id'])} ({alt.get('source', '')})", int(alt["id"])) for alt in alternatives]


# ---- tables (Gradio shows Dataframe cells as text) ---------------------------------------------

QUEUE_HEADERS = ["trace", "question", "clip", "steps", "by me", "annotators", "top score"]
QUEUE_WIDTHS = ["17%", "37%", "14%", "6%", "7%", "10%", "9%"]  # each header fits on one line at 1280 px
QUEUE_CELL_CHARS = 90  # longer cells are cut on screen; a click on one shows it whole


def queue_rows(items: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            item["trace_id"],
            item["question"] or "",
            item["clip_name"] or "",
            item["n_steps"],
            f"{item['labeled_by_me']}/{item['n_steps']}",
            item["n_annotators"],
            "" if item["max_score"] is None else fmt_score(item["max_score"]),
        ]
        for item in items
    ]


PROGRESS_HEADERS = ["annotator", "labels", "steps labeled", "traces done", "time (min)"]


def progress_rows(progress: Mapping[str, Any]) -> list[list[Any]]:
    return [
        [name, p["labels"], p["steps_labeled"], p["traces_done"], round(p["time_s"] / 60, 1)]
        for name, p in (progress.get("annotators") or {}).items()
    ]


AGREEMENT_HEADERS = ["annotators", "items both labeled", "Cohen's kappa"]


def agreement_rows(stats: Mapping[str, Any]) -> list[list[Any]]:
    return [
        [
            " & ".join(pair["annotators"]),
            pair["items"],
            None if pair["kappa"] is None else round(pair["kappa"], 3),
        ]
        for pair in (stats.get("agreement") or {}).get("pairs", [])
    ]


def stats_markdown(stats: Mapping[str, Any], progress: Mapping[str, Any]) -> str:
    """Counts as Markdown (numbers and fixed words only: names go to Dataframes)."""
    verdicts = stats.get("verdicts") or {}
    errors = stats.get("error_types") or {}
    agreement = stats.get("agreement") or {}
    alpha = agreement.get("krippendorff_alpha")
    lines = [
        f"**{progress.get('traces', 0)}** traces, **{progress.get('steps', 0)}** steps "
        f"(**{progress.get('steps_labeled', 0)}** labeled by someone), "
        f"**{progress.get('alternatives', 0)}** alternatives, **{stats.get('labels', 0)}** labels.",
        "",
        "| verdict | labels |",
        "| --- | --- |",
        *[f"| {v} | {n} |" for v, n in verdicts.items()],
        "",
        "| error type | labels |",
        "| --- | --- |",
        *[f"| {ERROR_TYPE_NAMES.get(e, e)} | {n} |" for e, n in errors.items()],
        "",
        f"Krippendorff's alpha (verdict, {agreement.get('items_multiply_labeled', 0)} items with 2+ labels): "
        + ("n/a" if alpha is None else f"**{alpha:.3f}**"),
        "",
        calibration_line(stats),
    ]
    return "\n".join(lines)


def calibration_line(stats: Mapping[str, Any]) -> str:
    """AUROC and the reject rate with the counts behind them (4 labels make no AUROC worth a
    second decimal)."""
    calibration = stats.get("calibration") or {}
    deciles = calibration.get("deciles") or []
    n = sum(d["steps"] for d in deciles)
    rejects = sum(d["rejects"] for d in deciles)
    if not n:
        return "Score vs verdict: no scored step has a majority verdict yet."
    auroc = calibration.get("auroc")
    shown = "n/a (needs rejected and accepted steps)" if auroc is None else f"**{auroc:.2f}**"
    few = " (few steps: read it loosely)" if n < 30 else ""
    return (
        f"Score vs verdict over **{n}** scored steps with a majority verdict: **{rejects}** rejected "
        f"({rejects / n:.0%}); AUROC {shown}{few}."
    )
