"""The dashboard's error-analysis charts (plotly JSON, as ``ui.render``'s) and the steps behind a bar.

Each chart answers one question of ``annotation_db.analysis`` (README, "Review and error
analysis"): which error types, on which clip kinds, where in the reasoning, which perturbation
finds which error (AUROC with its 95% interval), and did training help (reject rate and answer
accuracy per model version, with Wilson intervals). Every bar says its counts.

A bar carries its group in ``customdata`` as "chart|group" (``BAR_KEY``); a click on it sends that
text to the server (``ui.review_view``'s script), and ``bar_steps`` lists the steps it counts,
from ``Store.analysis_steps`` (the same steps and groups as the figures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from annotation_db.analysis import BASE, POSITION_BUCKETS
from ui.figures import _figure
from ui.render import ERROR_TYPE_NAMES, VERDICT_COLOURS

# chart name -> elem_id of its gr.Plot (the click script binds these)
CHARTS = {
    "error_type": "chart-error-type",
    "clip_kind": "chart-clip-kind",
    "position": "chart-position",
    "perturbation": "chart-perturbation",
    "model": "chart-model",
}
BAR_STEP_HEADERS = ["Trace", "Step", "Verdict", "Error type", "Clip kind", "Position", "Model", "Score"]
QUALITY_HEADERS = [
    "Annotator",
    "Role",
    "Labels",
    "Agreement with resolved",
    "Agreement with others",
    "Seconds per step (median)",
    "Unsure share",
]
ERROR_COLOUR = VERDICT_COLOURS["reject"]
INTERVAL_COLOUR = "#444"


def bar_key(chart: str, group: str) -> str:
    return f"{chart}|{group}"


def _type_name(error_type: str) -> str:
    return ERROR_TYPE_NAMES.get(error_type, error_type)


def _pct(value: float | None) -> str:
    return "\u2014" if value is None else f"{value:.0%}"


def error_type_figure(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """Which kind of error does the model make? Rejected steps per error type."""
    counts = analysis.get("by_error_type") or {}
    rejected = analysis.get("rejected", 0)
    title = f"Rejected steps by error type \u00b7 {rejected} of {analysis.get('steps', 0)} steps rejected"
    if not rejected:
        return _figure(title, [], "no rejected step with a resolved verdict yet")
    names = list(counts)
    data = [
        {
            "type": "bar",
            "x": [_type_name(t).replace(" ", "<br>", 1) for t in names],
            "y": [counts[t] for t in names],
            "text": [str(counts[t]) for t in names],
            "textposition": "outside",
            "customdata": [bar_key("error_type", t) for t in names],
            "marker": {"color": ERROR_COLOUR},
            "name": "rejected steps",
        }
    ]
    return _figure(
        title,
        data,
        height=300,
        xaxis={"automargin": True, "tickangle": 0},
        yaxis={
            "title": {"text": "rejected steps"},
            "range": [0, max(counts.values()) * 1.15 + 1],
        },  # room for the counts
    )


def _rate_bars(chart: str, groups: Sequence[Mapping[str, Any]], label: str) -> list[dict[str, Any]]:
    """Reject rate per group with its Wilson interval as error bars; text: rejected / steps."""
    lows = [g["rate"] - g["ci"][0] if g["ci"] else 0 for g in groups]
    highs = [g["ci"][1] - g["rate"] if g["ci"] else 0 for g in groups]
    return [
        {
            "type": "bar",
            "x": [g["group"] for g in groups],
            "y": [g["rate"] for g in groups],
            "error_y": {
                "type": "data",
                "array": highs,
                "arrayminus": lows,
                "color": INTERVAL_COLOUR,
                "visible": True,
            },
            "text": [f"{g['k']}/{g['n']}" for g in groups],
            "textposition": "inside",
            "insidetextanchor": "start",  # at the bar's foot, clear of the interval's whisker
            "hovertext": [
                f"{g['k']} of {g['n']} rejected; "
                + ", ".join(f"{_type_name(t)} {c}" for t, c in g["error_types"].items())
                for g in groups
            ],
            "customdata": [bar_key(chart, g["group"]) for g in groups],
            "marker": {"color": ERROR_COLOUR},
            "name": label,
        }
    ]


def clip_kind_figure(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """On which clips? Reject rate per clip kind (95% interval; rejected / steps on the bar)."""
    groups = analysis.get("by_clip_kind") or []
    title = "Reject rate by clip kind (95% interval; rejected/steps on each bar)"
    if not groups:
        return _figure(title, [], "no step with a resolved verdict yet")
    return _figure(
        title,
        _rate_bars("clip_kind", groups, "reject rate"),
        yaxis={"title": {"text": "reject rate"}, "range": [0, 1.05]},
    )


def position_figure(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """Where in the reasoning? Reject rate per quarter of the trace."""
    groups = analysis.get("by_position") or []
    title = "Reject rate by step position in the trace (95% interval; rejected/steps)"
    if not groups:
        return _figure(title, [], "no step with a resolved verdict yet")
    return _figure(
        title,
        _rate_bars("position", groups, "reject rate"),
        xaxis={
            "title": {"text": "place of the step in its trace"},
            "categoryorder": "array",
            "categoryarray": list(POSITION_BUCKETS),
        },
        yaxis={"title": {"text": "reject rate"}, "range": [0, 1.05]},
    )


def perturbation_figure(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """Which perturbation finds which error? AUROC per score (one series each) and error type,
    with its 95% interval; 0.5 is chance. Hover: rejected of that type vs accepted steps."""
    entries = analysis.get("perturbations") or []
    title = "Does a perturbation's score find the error? AUROC per error type (95% interval; 0.5 = chance)"
    if not entries:
        return _figure(title, [], "needs scored steps, both accepted and rejected")
    types = list(dict.fromkeys(e["error_type"] for e in entries))
    data = []
    for score in dict.fromkeys(e["score"] for e in entries):
        mine = {e["error_type"]: e for e in entries if e["score"] == score}
        shown = [t for t in types if t in mine and mine[t]["auroc"] is not None]
        rows = [mine[t] for t in shown]
        data.append(
            {
                "type": "bar",
                "name": score,
                "x": [_type_name(t) for t in shown],
                "y": [e["auroc"] for e in rows],
                "error_y": {
                    "type": "data",
                    "array": [e["ci"][1] - e["auroc"] for e in rows],
                    "arrayminus": [e["auroc"] - e["ci"][0] for e in rows],
                    "color": INTERVAL_COLOUR,
                    "visible": True,
                },
                "text": [f"{e['positives']}/{e['negatives']}" for e in rows],
                "textposition": "inside",
                "insidetextanchor": "start",
                "hovertext": [
                    f"{score}: AUROC {e['auroc']:.2f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}], "
                    f"{e['positives']} rejected vs {e['negatives']} accepted steps"
                    for e in rows
                ],
                "customdata": [bar_key("perturbation", f"{score}:{t}") for t in shown],
            }
        )
    return _figure(
        title,
        data,
        barmode="group",
        showlegend=True,
        shapes=[
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": 0.5,
                "y1": 0.5,
                "line": {"dash": "dot", "color": "#888"},
            }
        ],
        yaxis={"title": {"text": "AUROC"}, "range": [0, 1.05]},
    )


def model_figure(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """Did training help? Reject rate and answer accuracy per model version (95% Wilson
    intervals); with a base model, each adapter is also compared on the clips both answered."""
    versions = (analysis.get("models") or {}).get("versions") or {}
    title = "Model versions: reject rate and answer accuracy (95% interval; k/n on each bar)"
    if not versions:
        return _figure(title, [], "no step with a resolved verdict yet")
    names = list(versions)
    data = []
    for metric, colour in (("reject_rate", ERROR_COLOUR), ("accuracy", VERDICT_COLOURS["accept"])):
        figures = [versions[v][metric] for v in names]
        data.append(
            {
                "type": "bar",
                "name": metric.replace("_", " "),
                "x": names,
                "y": [f["rate"] for f in figures],
                "error_y": {
                    "type": "data",
                    "array": [f["ci"][1] - f["rate"] if f["ci"] else 0 for f in figures],
                    "arrayminus": [f["rate"] - f["ci"][0] if f["ci"] else 0 for f in figures],
                    "color": INTERVAL_COLOUR,
                    "visible": True,
                },
                "text": [f"{f['k']}/{f['n']}" for f in figures],
                "textposition": "inside",
                "insidetextanchor": "start",
                "customdata": [bar_key("model", v) for v in names],
                "marker": {"color": colour},
            }
        )
    return _figure(
        title, data, barmode="group", showlegend=True, yaxis={"title": {"text": "rate"}, "range": [0, 1.05]}
    )


def comparison_markdown(analysis: Mapping[str, Any]) -> str:
    """Base against each adapter on the (clip, question) pairs both answered."""
    comparisons = (analysis.get("models") or {}).get("comparisons") or []
    if not comparisons:
        return (
            f"No paired comparison: it needs traces of the {BASE} model and of an adapter on the same clips."
        )
    lines = ["| Model | Clips both answered | Reject rate | Accuracy |", "|---|---|---|---|"]
    for c in comparisons:
        for name, fig in ((c["base"], c["base_figures"]), (c["model"], c["model_figures"])):
            lines.append(
                f"| {name} | {c['clips']} | {_rate_cell(fig['reject_rate'])} | {_rate_cell(fig['accuracy'])} |"
            )
    return "\n".join(lines)


def _rate_cell(figure: Mapping[str, Any]) -> str:
    if figure["rate"] is None:
        return "\u2014 (0)"
    lo, hi = figure["ci"]
    return f"{figure['rate']:.0%} [{lo:.0%}, {hi:.0%}] ({figure['k']}/{figure['n']})"


def quality_rows(quality: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    """Who labels well? One row per annotator (agreement as rate with k/n)."""
    rows = []
    for name, q in quality.items():
        resolved, others = q["agreement_with_resolved"], q["agreement_with_others"]
        median = q["median_time_per_item_s"]
        rows.append(
            [
                name,
                q["role"],
                q["labels"],
                f"{_pct(resolved['rate'])} ({resolved['k']}/{resolved['n']})",
                f"{_pct(others['rate'])} ({others['k']}/{others['n']})",
                "\u2014" if median is None else f"{median:.1f}",
                _pct(q["unsure_share"]),
            ]
        )
    return rows


def bar_steps(steps: Sequence[Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    """The steps a bar counts (``key``: "chart|group", from the bar's customdata), in store
    order. Rate bars (clip kind, position, model) list their rejected steps first: those are
    what the bar's rate is about; the perturbation bar lists the rejected steps of its type by
    score, highest first."""
    chart, _, group = (key or "").partition("|")
    if chart == "error_type":
        return [s for s in steps if s["verdict"] == "reject" and s["error_type"] == group]
    field = {"clip_kind": "kind", "position": "position", "model": "version"}.get(chart)
    if field is not None:
        mine = [s for s in steps if s[field] == group]
        return [s for s in mine if s["verdict"] == "reject"] + [s for s in mine if s["verdict"] != "reject"]
    if chart == "perturbation":
        score, _, error_type = group.partition(":")
        mine = [
            s
            for s in steps
            if score in s["scores"] and s["verdict"] == "reject" and error_type in ("any", s["error_type"])
        ]
        return sorted(mine, key=lambda s: -s["scores"][score])
    raise ValueError(f"unknown chart {chart!r}")


def bar_rows(steps: Sequence[Mapping[str, Any]], key: str) -> list[list[Any]]:
    """``bar_steps`` as table rows (steps numbered from 1, as on the label view)."""
    chart, _, group = (key or "").partition("|")
    score = group.partition(":")[0] if chart == "perturbation" else "score"
    return [
        [
            s["trace_id"],
            s["step_index"] + 1,
            s["verdict"],
            _type_name(s["error_type"]) if s["error_type"] else "",
            s["kind"],
            s["position"],
            s["version"],
            "" if s["scores"].get(score) is None else round(s["scores"][score], 3),
        ]
        for s in bar_steps(steps, key)
    ]
