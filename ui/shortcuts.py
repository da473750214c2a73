"""Keyboard shortcuts and clicks on the step list: one small script given to ``launch(js=...)``.

Gradio has no hotkeys of its own, so the script listens for keys on the page and clicks the
button that does the action (the same event a mouse click sends, so shortcuts need no API of
their own). Keys are ignored while typing in a text field. Keys 0-5 pick the error type of the
current step (they click its choice, whose ``input`` event saves it). A click on a step selects
it (it writes the step's number, from 1, into the "Step" field and clicks the hidden "Go"
button); a click on a step's clip span plays that span of the clip (seek to its start, play,
pause at its end).

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
    ("n", "next trace to label (queue order)", "btn-next-trace"),
)
ERROR_KEYS = "012345"  # 0: none, 1-5: the error types in annotation_db.ERROR_TYPES order
ERROR_TYPE_ID = "error-type"

STEP_INPUT_ID = "step-index"  # the page's "Step" field (numbered from 1)
GO_BUTTON_ID = "btn-go"  # hidden: shows the step typed into STEP_INPUT_ID
PLAYER_ID = "player"


def help_markdown() -> str:
    keys = " \u00b7 ".join(f"<kbd>{key}</kbd> {what}" for key, what, _ in SHORTCUTS)
    return (
        f"**Keys:** {keys} \u00b7 <kbd>1</kbd>-<kbd>5</kbd> error type (<kbd>0</kbd> none) \u00b7 "
        "click a step to select it, its \u25b6 span to play that moment"
    )


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
  const pickError = (n) => {{
    const choices = document.querySelectorAll("#{ERROR_TYPE_ID} input[type=radio]");
    const choice = choices[n];
    if (!choice || choice.disabled) return false;
    choice.click();
    return true;
  }};
  document.addEventListener("keydown", (event) => {{
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key.toLowerCase();
    if ("{ERROR_KEYS}".includes(key) && key.length === 1) {{
      if (pickError(parseInt(key, 10))) event.preventDefault();
      return;
    }}
    const id = KEYS[key];
    if (id && press(id)) event.preventDefault();
  }});
  let stopAt = null;
  document.addEventListener("click", (event) => {{
    const seek = event.target.closest("[data-seek]");
    if (seek) {{
      const video = document.querySelector("#{PLAYER_ID} video");
      if (video) {{
        video.currentTime = parseFloat(seek.dataset.seek);
        stopAt = seek.dataset.end ? parseFloat(seek.dataset.end) : null;
        if (!video.__studioStop) {{
          video.__studioStop = true;
          video.addEventListener("timeupdate", () => {{
            if (stopAt !== null && video.currentTime >= stopAt) {{ video.pause(); stopAt = null; }}
          }});
        }}
        video.play().catch(() => {{}});
      }}
    }}
    const step = event.target.closest("[data-step]");
    if (!step) return;
    const input = document.querySelector("#{STEP_INPUT_ID} input");
    if (!input) return;
    input.value = String(parseInt(step.dataset.step, 10) + 1);
    input.dispatchEvent(new Event("input", {{ bubbles: true }}));
    setTimeout(() => press("{GO_BUTTON_ID}"), 0);
  }});
}}"""
