"""The keys of the Review tab and the click on a dashboard bar: a script added to the page's
(``ui.shortcuts.script``), given to ``launch(js=...)`` by ``ui.layout``.

The Review tab's keys take over while that tab is shown: a capturing listener on the window
runs before the label view's listener on the document and stops it, so a key pressed on the
Review tab never labels a step. Keys are ignored while typing in a text field, as on the label
view. A click on a dashboard bar: plotly's ``plotly_click`` (bound to each chart again whenever
it is redrawn) writes the bar's "chart|group" into a hidden box and clicks the hidden button
whose event lists the bar's steps.
"""

from __future__ import annotations

import json

from ui.analysis_figures import CHARTS

# (key, what it does, elem_id of the button it clicks): only while the Review tab is shown
REVIEW_SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("a", "accept (final)", "btn-review-accept"),
    ("r", "reject (final)", "btn-review-reject"),
    ("b", "send back with the note", "btn-review-send-back"),
    ("z", "undo my last review change", "btn-review-undo"),
    ("j", "next item", "btn-review-next"),
    ("k", "previous item", "btn-review-prev"),
)
REVIEW_PANEL_ID = "review-panel"
REVIEW_ERROR_ID = "review-error-type"
BAR_PICK_ID = "bar-pick"
BAR_PICK_BUTTON_ID = "btn-bar-pick"


def help_markdown() -> str:
    keys = " \u00b7 ".join(f"<kbd>{key}</kbd> {what}" for key, what, _ in REVIEW_SHORTCUTS)
    return f"**Keys:** {keys} \u00b7 <kbd>1</kbd>-<kbd>5</kbd> error type (<kbd>0</kbd> none)"


def script(base: str) -> str:
    """``base`` (``ui.shortcuts.script()``) plus: the Review tab's keys, which take over while
    that tab is shown (a capturing listener runs before the label view's), and the click on a
    dashboard bar (plotly's ``plotly_click``, bound to each chart whenever it is redrawn)."""
    keys = json.dumps({key: elem_id for key, _, elem_id in REVIEW_SHORTCUTS})
    charts = json.dumps(list(CHARTS.values()))
    return f"""() => {{
  ({base})();
  if (window.__studioReview) return;
  window.__studioReview = true;
  const KEYS = {keys};
  const shown = () => {{ const el = document.getElementById("{REVIEW_PANEL_ID}"); return !!(el && el.offsetParent); }};
  const typing = (el) => {{
    const tag = ((el && el.tagName) || "").toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || (el && el.isContentEditable);
  }};
  const press = (id) => {{
    const el = document.getElementById(id);
    const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (button && !button.disabled) {{ button.click(); return true; }}
    return false;
  }};
  window.addEventListener("keydown", (event) => {{
    if (!shown() || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key.toLowerCase();
    event.stopImmediatePropagation();
    if ("012345".includes(key) && key.length === 1) {{
      const choice = document.querySelectorAll("#{REVIEW_ERROR_ID} input[type=radio]")[parseInt(key, 10)];
      if (choice) {{ choice.click(); event.preventDefault(); }}
      return;
    }}
    const id = KEYS[key];
    if (id && press(id)) event.preventDefault();
  }}, true);
  const pick = (data) => {{
    const point = data && data.points && data.points[0];
    if (!point || !point.customdata) return;
    const box = document.querySelector("#{BAR_PICK_ID} textarea, #{BAR_PICK_ID} input");
    if (!box) return;
    box.value = String(point.customdata);
    box.dispatchEvent(new Event("input", {{ bubbles: true }}));
    setTimeout(() => press("{BAR_PICK_BUTTON_ID}"), 0);
  }};
  setInterval(() => {{
    for (const id of {charts}) {{
      const plot = document.querySelector("#" + id + " .js-plotly-plot");
      if (plot && plot.on && plot.__studioPick !== plot._fullLayout) {{
        plot.__studioPick = plot._fullLayout;  // a redraw makes a new layout and drops listeners
        plot.removeListener && plot.removeListener("plotly_click", pick);
        plot.on("plotly_click", pick);
      }}
    }}
  }}, 500);
}}"""
