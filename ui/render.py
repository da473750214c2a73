"""Pure functions from traces, labels and statistics to what the page shows: HTML and plotly figures.

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
    return "n/a" if value is None else f"{value:.4g}"


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
    """Per step, the clip span it attends to most (``inference.reasoning.attribution``), if computed."""
    attention = (trace.get("scoring") or {}).get("frame_attention") or {}
    spans = attention.get("spans") or []
    n = len(trace.get("steps") or [])
    return [tuple(spans[k]) if k < len(spans) and spans[k] else None for k in range(n)]


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
        message = (
            "Generating the first step\u2026"
            if streaming
            else "No steps yet: analyse a clip or open a trace."
        )
        return f'<div class="steps empty"{list_id}>{esc(message)}</div>'
    scale = trace_kl_scale(steps)
    items = []
    for step in steps:
        k = int(step["index"])
        label = mine.get(k)
        classes = ["step"]
        if k == current:
            classes.append("current")
        if label:
            classes.append(f"labeled-{label['verdict']}")
        head = [f'<span class="step-no">Step {k + 1}</span>']
        if step.get("score") is not None:
            head.append(
                f'<span class="score" title="contrastive score (mean token KL)">score {fmt_score(step["score"])}</span>'
            )
        for name, value in (step.get("scores") or {}).items():
            if len(step.get("scores") or {}) > 1:
                head.append(f'<span class="score-extra">{esc(name)} {fmt_score(value)}</span>')
        if step.get("top_t"):
            head.append(
                '<span class="badge top-t" title="among the top-T highest scores: check it first">top-T</span>'
            )
        if step.get("expected_correctness") is not None:
            head.append(f'<span class="badge rollout">p(correct) {step["expected_correctness"]:.2f}</span>')
        span = spans[k] if k < len(spans) else None
        if span:
            head.append(
                f'<button class="seek" data-seek="{span[0]:.3f}" title="play the moment this step attends to most">'
                f"\u25b6 {fmt_span(span)}</button>"
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
    """(label, alternative id) for a Radio; labels are shown as text by Gradio."""
    out = []
    for alt in alternatives:
        text = alt["text"] if len(alt["text"]) <= 120 else alt["text"][:117] + "..."
        out.append((f"#{alt['id']} ({alt.get('source', '')}): {text}", int(alt["id"])))
    return out


# ---- figures ------------------------------------------------------------------------------------


# Figures are plotly's JSON form (plain dicts: {"data": [...], "layout": {...}}), drawn by
# plotly.js in the page; ``ui.handlers.plot`` hands them to gr.Plot as they are. Building
# ``plotly.graph_objects.Figure`` objects instead validated every field in Python: ~25 ms per
# figure with a named template, several ms without, on every label.
_AXIS = {"gridcolor": "#e5e5e5", "zerolinecolor": "#bdbdbd"}


def _figure(title: str, data: list[dict], note: str = "", **layout: Any) -> dict[str, Any]:
    base = {
        "title": {"text": title, "font": {"size": 14}},
        "height": 260,
        "margin": {"l": 45, "r": 10, "t": 40, "b": 40},
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
        "showlegend": len(data) > 1,
        "legend": {"orientation": "h", "y": -0.3},
    }
    if note:
        base["annotations"] = [
            {"text": note, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}
        ]
    for axis in ("xaxis", "yaxis"):
        layout[axis] = {**_AXIS, **layout.get(axis, {})}
    return {"data": data, "layout": {**base, **layout}}


def _hover(text: str, limit: int = 90) -> str:
    short = text if len(text) <= limit else text[: limit - 1] + "\u2026"
    return esc(short)


def scores_figure(steps: Sequence[Mapping[str, Any]], mine: Mapping[int, Mapping[str, Any]] | None = None):
    """Bars: each step's contrastive score, coloured by my label; top-T bars outlined; other
    perturbations' scores as markers."""
    mine = mine or {}
    title = "Step scores (colour: your label)"
    scored = [s for s in steps if s.get("score") is not None]
    if not scored:
        return _figure(title, [], "no scores (analysis without perturbations, or imported)")
    x = [int(s["index"]) + 1 for s in scored]
    verdicts = [(mine.get(int(s["index"])) or {}).get("verdict") for s in scored]
    data = [
        {
            "type": "bar",
            "x": x,
            "y": [s["score"] for s in scored],
            "marker": {
                "color": [VERDICT_COLOURS.get(v, UNLABELED_COLOUR) for v in verdicts],
                "line": {
                    "color": ["#000" if s.get("top_t") else "rgba(0,0,0,0)" for s in scored],
                    "width": 2,
                },
            },
            "hovertext": [
                f"{_hover(s['text'])}<br>{v or 'unlabeled'}" for s, v in zip(scored, verdicts, strict=True)
            ],
            "hoverinfo": "x+y+text",
            "name": "score",
        }
    ]
    names = sorted({n for s in scored for n in (s.get("scores") or {})})
    for name in names if len(names) > 1 else []:  # one perturbation: the bars say it all
        data.append(
            {
                "type": "scatter",
                "x": x,
                "y": [(s.get("scores") or {}).get(name) for s in scored],
                "mode": "markers",
                "name": name,
                "marker": {"size": 8, "symbol": "diamond"},
            }
        )
    return _figure(
        title, data, xaxis={"title": {"text": "step"}, "dtick": 1}, yaxis={"title": {"text": "mean token KL"}}
    )


def kl_figure(steps: Sequence[Mapping[str, Any]]):
    """The per-token KL along the whole reasoning: one line, markers coloured by step, each
    token's text on hover. (Drawn once per trace: the step list shows which step is current.)"""
    x, y, hover, colour = [], [], [], []
    for step in steps:
        kls = step.get("token_kl") or []
        pieces = step.get("kl_tokens") or [""] * len(kls)
        k = int(step["index"])
        for piece, value in zip(pieces, kls, strict=False):
            x.append(len(x))
            y.append(value)
            hover.append(f"step {k + 1}: {esc(piece)}")
            colour.append(STEP_COLOURS[k % len(STEP_COLOURS)])
    if not x:
        return _figure("Per-token KL", [], "no token KL (not scored)")
    data = [
        {
            "type": "scatter",
            "x": x,
            "y": y,
            "mode": "lines+markers",
            "line": {"color": "#9e9e9e", "width": 1},
            "marker": {"color": colour, "size": 5},
            "hovertext": hover,
            "hoverinfo": "y+text",
            "name": "token KL",
        }
    ]
    return _figure(
        "Per-token KL (colour: step)",
        data,
        xaxis={"title": {"text": "token"}},
        yaxis={"title": {"text": "KL"}},
    )


def calibration_figure(stats: Mapping[str, Any]):
    """Reject rate per score decile: a useful score rises from left to right."""
    calibration = stats.get("calibration") or {}
    auroc = calibration.get("auroc")
    title = "Reject rate by score decile" + (f" (AUROC {auroc:.2f})" if auroc is not None else "")
    deciles = calibration.get("deciles") or []
    if not deciles:
        return _figure(title, [], "no scored steps with a majority verdict yet")
    data = [
        {
            "type": "bar",
            "x": [str(d["decile"]) for d in deciles],
            "y": [d["reject_rate"] for d in deciles],
            "hovertext": [
                f"scores {d['min_score']:.3g}\u2013{d['max_score']:.3g}<br>{d['rejects']} of {d['steps']} rejected"
                for d in deciles
            ],
            "hoverinfo": "y+text",
            "marker": {"color": VERDICT_COLOURS["reject"]},
            "name": "reject rate",
        }
    ]
    return _figure(
        title,
        data,
        xaxis={"title": {"text": "score decile (1 = lowest scores)"}},
        yaxis={"title": {"text": "reject rate"}, "range": [0, 1]},
    )


# ---- tables (Gradio shows Dataframe cells as text) ---------------------------------------------

QUEUE_HEADERS = ["trace", "clip", "question", "steps", "max score", "labeled by me", "annotators"]


def queue_rows(items: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            item["trace_id"],
            item["clip_name"] or "",
            item["question"] or "",
            item["n_steps"],
            None if item["max_score"] is None else round(item["max_score"], 5),
            f"{item['labeled_by_me']}/{item['n_steps']}",
            item["n_annotators"],
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
    ]
    return "\n".join(lines)
