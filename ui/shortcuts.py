"""Keyboard shortcuts and clicks on the step list: one small script given to ``launch(js=...)``.

Gradio has no hotkeys of its own, so the script listens for keys on the page and clicks the
button that does the action (the same event a mouse click sends, so shortcuts need no API of
their own). Keys are ignored while typing in a text field. A click on a step selects it (it
writes the step number into the "Step" field and clicks the hidden "Go" button); a click on a
step's clip span also seeks the player there at once.

``SHORTCUTS`` is the one list both the script and the help line on the page are made from.
"""

from __future__ import annotations

import json

# (key, what it does, elem_id of the button it clicks)
SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("j", "next step", "btn-next"),
    ("k", "previous step", "btn-prev"),
    ("a", "accept", "btn-accept"),
    ("r", "reject", "btn-reject"),
    ("u", "unsure", "btn-unsure"),
    ("z", "undo", "btn-undo"),
)

STEP_INPUT_ID = "step-index"  # the Number holding the current step (0-based)
GO_BUTTON_ID = "btn-go"  # hidden: shows the step typed into STEP_INPUT_ID
PLAYER_ID = "player"


def help_markdown() -> str:
    keys = " \u00b7 ".join(f"<kbd>{key}</kbd> {what}" for key, what, _ in SHORTCUTS)
    return f"**Keys:** {keys} \u00b7 click a step to select it, click its \u25b6 span to play that moment"


def script() -> str:
    """A JavaScript function (Gradio runs it once when the page loads)."""
    keys = json.dumps({key: elem_id for key, _, elem_id in SHORTCUTS})
    return f"""() => {{
  if (window.__studioShortcuts) return;
  window.__studioShortcuts = true;
  const KEYS = {keys};
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
  document.addEventListener("keydown", (event) => {{
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const id = KEYS[event.key.toLowerCase()];
    if (id && press(id)) event.preventDefault();
  }});
  document.addEventListener("click", (event) => {{
    const seek = event.target.closest("[data-seek]");
    if (seek) {{
      const video = document.querySelector("#{PLAYER_ID} video");
      if (video) video.currentTime = parseFloat(seek.dataset.seek);
    }}
    const step = event.target.closest("[data-step]");
    if (!step) return;
    const input = document.querySelector("#{STEP_INPUT_ID} input");
    if (!input) return;
    input.value = step.dataset.step;
    input.dispatchEvent(new Event("input", {{ bubbles: true }}));
    setTimeout(() => press("{GO_BUTTON_ID}"), 0);
  }});
}}"""
