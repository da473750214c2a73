"""The page's figures in plotly's JSON form (plain dicts: {"data": [...], "layout": {...}}),
drawn by plotly.js in the page: step scores, per-token KL, calibration. Text from the model
goes through ``ui.render.esc``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ui.render import STEP_COLOURS, UNLABELED_COLOUR, VERDICT_COLOURS, esc, flagged_steps, fmt_score

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
    """Bars: each step's contrastive score, coloured by my label; flagged bars (``flagged_steps``) outlined; other
    perturbations' scores as markers."""
    mine = mine or {}
    title = "Step scores (colour: your label)"
    scored = [s for s in steps if s.get("score") is not None]
    if not scored:
        return _figure(title, [], "no scores (analysis without perturbations, or imported)")
    x = [int(s["index"]) + 1 for s in scored]
    flagged = flagged_steps(steps)
    verdicts = [(mine.get(int(s["index"])) or {}).get("verdict") for s in scored]
    data = [
        {
            "type": "bar",
            "x": x,
            "y": [s["score"] for s in scored],
            "marker": {
                "color": [VERDICT_COLOURS.get(v, UNLABELED_COLOUR) for v in verdicts],
                "line": {
                    "color": ["#000" if int(s["index"]) in flagged else "rgba(0,0,0,0)" for s in scored],
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
    """Reject rate per score decile (1 = lowest scores): a useful score rises from left to right.
    Each bar says how many steps it holds; the title gives the AUROC with its count."""
    calibration = stats.get("calibration") or {}
    auroc = calibration.get("auroc")
    deciles = calibration.get("deciles") or []
    n = sum(d["steps"] for d in deciles)
    rejects = sum(d["rejects"] for d in deciles)
    title = "Reject rate by score decile (1 = lowest scores)"
    if auroc is not None:
        title += f" \u00b7 AUROC {auroc:.2f} over {n} steps ({rejects} rejected)"
    if not deciles:
        return _figure(title, [], "no scored steps with a majority verdict yet")
    data = [
        {
            "type": "bar",
            "x": [int(d["decile"]) for d in deciles],
            "y": [d["reject_rate"] for d in deciles],
            "text": [f"{d['rejects']}/{d['steps']}" for d in deciles],
            "textposition": "outside",
            "hovertext": [
                f"scores {fmt_score(d['min_score'])}\u2013{fmt_score(d['max_score'])}<br>"
                f"{d['rejects']} of {d['steps']} rejected"
                for d in deciles
            ],
            "hoverinfo": "y+text",
            "marker": {"color": VERDICT_COLOURS["reject"]},
            "width": 0.8,  # one decile wide, however few deciles hold steps
            "name": "reject rate",
        }
    ]
    return _figure(
        title,
        data,
        xaxis={
            "title": {"text": "score decile (1 = lowest scores)"},
            "tickvals": list(range(1, 11)),
            "range": [0.5, 10.5],
        },
        yaxis={"title": {"text": "reject rate (rejected / steps)"}, "range": [0, 1.15]},
    )
