"""The page in a real browser (Playwright driving Debian's headless chromium): upload and analyse
a clip, open a stored trace, label with the keyboard, seek the player from a step, and check
that model text is shown as text (a step reading ``<img src=x onerror=alert(1)>`` stays text).

Skipped where /usr/bin/chromium is absent (``apt-get install chromium``). Set
STUDIO_SCREENSHOTS=DIR to keep the screenshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.app.conftest import CHROMIUM, TIMEOUT_MS, XSS, make_trace

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("STUDIO_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


def sign_in_by_name(page, name: str) -> None:
    field = page.locator("#annotator textarea, #annotator input").first
    field.fill(name)
    field.press("Enter")
    page.wait_for_selector(f"#who:has-text('Labeling as {name}')")


def test_upload_and_analyze_shows_the_steps(page, app, clip, tmp_path):
    page.set_input_files("#upload input[type=file]", str(clip))
    page.fill("#question textarea", "Which way does the shape move?")
    page.fill("#options textarea", "left\nright")
    page.click("#btn-analyze")
    page.wait_for_selector("#steps [data-step='0']", timeout=TIMEOUT_MS)
    page.wait_for_selector("#label-status:has-text('Done in')", timeout=TIMEOUT_MS)
    trace_id = page.locator("#trace-id textarea, #trace-id input").first.input_value()
    stored = app.studio.store.get_trace(trace_id).to_dict()
    assert page.locator("#steps .step").count() == len(stored["steps"])
    assert page.locator("#step-0 .step-text").inner_text() == stored["steps"][0]["text"]
    assert "Answer" in page.locator("#trace-card").inner_text()
    # the score chart (one bar per step) and the token KL curve are drawn
    page.wait_for_selector("#scores-plot .js-plotly-plot .bars")
    page.wait_for_selector("#kl-plot .js-plotly-plot .scatterlayer")
    assert page.locator("#scores-plot .bars .point").count() == len(stored["steps"])
    assert screenshot(page, tmp_path, "analyze.png").stat().st_size > 0


def test_model_text_is_text_and_keys_label_the_steps(page, app, clip, tmp_path):
    texts = ["The ball enters from the left.", XSS, "The answer is A."]
    app.studio.store.add_trace(
        make_trace("b-keys", texts, [0.2, 0.7, 0.1], clip_path=str(clip), clip_sha="b" * 64)
    )
    sign_in_by_name(page, "zoe")
    page.get_by_role("tab", name="Queue").click()
    page.locator("#open-id textarea, #open-id input").first.fill("b-keys")
    page.click("#btn-open")
    page.wait_for_selector("#step-0.current")

    # the step that reads like markup is shown as those characters, and makes no element
    assert page.locator("#step-1 .step-text").inner_text() == XSS
    assert page.locator("#steps img").count() == 0
    assert page.locator("#shortcut-help").inner_text().startswith("Keys:")

    page.locator("#step-info").click()  # focus outside the text fields
    page.keyboard.press("r")  # reject step 1, move to step 2
    page.wait_for_selector("#step-0.labeled-reject")
    page.wait_for_selector("#step-1.current")
    page.keyboard.press("k")
    page.wait_for_selector("#step-0.current")
    page.keyboard.press("j")
    page.wait_for_selector("#step-1.current")
    page.keyboard.press("a")
    page.wait_for_selector("#step-1.labeled-accept")
    page.wait_for_selector("#step-2.current")
    page.keyboard.press("z")  # nothing on step 3 yet: undoes the accept of step 2
    page.wait_for_selector("#step-1.current:not(.labeled-accept)")
    labels = app.studio.store.labels_for_trace("b-keys", "zoe")
    assert [(x["step_index"], x["verdict"]) for x in labels] == [(0, "reject")]
    assert labels[0]["time_spent_s"] > 0

    # a click on a step selects it; a click on its span seeks the player there
    page.click("#step-2 .step-text")
    page.wait_for_selector("#step-2.current")
    page.wait_for_function(
        "document.querySelector('#player video') && document.querySelector('#player video').readyState >= 1"
    )
    # the span button plays that span: from its start, pausing at its end (1.0-1.5 s)
    page.click("#step-2 button.seek")
    page.wait_for_function("document.querySelector('#player video').currentTime >= 1.0")
    page.wait_for_function(
        "(() => { const v = document.querySelector('#player video'); return v.paused && v.currentTime >= 1.45; })()",
        timeout=30_000,
    )
    assert page.evaluate("document.querySelector('#player video').currentTime") < 1.8
    assert screenshot(page, tmp_path, "label.png").stat().st_size > 0

    # the name is kept in the browser: a reload asks for nothing
    page.reload(wait_until="load")
    page.wait_for_selector("#who:has-text('Labeling as zoe')")
    assert page.locator("#annotator textarea, #annotator input").first.input_value() == "zoe"


def test_alternatives_comments_and_questions_are_text(page, app, clip, tmp_path):
    """Markup anywhere a person or the model can write (a step, an alternative, a correction,
    a comment, a question) is shown as its characters: no element is made, no script runs (the
    ``page`` fixture fails the test on any dialog)."""
    question = '<script>alert("q")</script>Which way?'
    comment = "<b onmouseover=alert(4)>bold</b>"
    model_alt = "<iframe src=javascript:alert(3)></iframe>"
    human_alt = "<svg onload=alert(2)></svg>"
    trace = make_trace(
        "b-text", ["The ball rolls.", XSS, "The answer is A."], [0.3, 0.6, 0.1], str(clip), "c" * 64
    )
    trace["question"] = question
    store = app.studio.store
    store.add_trace(trace)
    store.set_label("mia", "b-text", 0, "reject", error_type="hallucination", comment=comment)
    store.add_alternative("mia", "b-text", 1, model_alt, source="model")
    store.add_alternative("mia", "b-text", 1, human_alt, source="human")
    sign_in_by_name(page, "mia")
    page.get_by_role("tab", name="Queue").click()
    page.wait_for_selector("#queue-table:has-text('Which way?')")
    assert question in page.locator("#queue-table").inner_text()
    page.locator("#open-id textarea, #open-id input").first.fill("b-text")
    page.click("#btn-open")
    page.wait_for_selector("#step-1.current")  # the first step mia has not labeled
    assert comment in page.locator("#step-0 .comment").inner_text()
    page.get_by_text("Alternatives, corrections and rollouts").click()
    page.wait_for_selector("#alternatives:has-text('iframe')")
    shown = page.locator("#alternatives").inner_text()
    assert model_alt in shown and human_alt in shown
    assert "(human)" in page.locator("#alternative").inner_text()  # the choice to prefer, by number
    assert shown.count(human_alt) == 1  # each alternative's text once
    # no element came from the payloads (Gradio's own icons are svg: look for the payloads' marks)
    made = "script, iframe, [onload], [onerror], [onmouseover], img[src='x']"
    for where in ("#steps", "#alternatives", "#alternative", "#queue-table", "#step-info"):
        assert page.locator(where).locator(made).count() == 0, f"markup made an element in {where}"
    assert screenshot(page, tmp_path, "text.png").stat().st_size > 0


def test_a_waiting_analysis_shows_its_place_in_the_queue(browser, page, app, clip):
    """The model runs one analysis at a time: a second page asking meanwhile sees where it
    waits ("queue: 1/1"), then gets its result. The first analysis is held at its start until
    the second page has shown its place, whatever the machine's speed."""
    import threading

    gate = threading.Event()
    reason = app.studio.reason

    def held(media, request):
        gate.wait(timeout=120)
        return reason(media, request)

    other = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    other.goto(app.url, wait_until="load")
    for tab in (page, other):
        tab.set_input_files("#upload input[type=file]", str(clip))
        tab.fill("#question textarea", "Which way does the shape move?")
        tab.fill("#options textarea", "left\nright")
    app.studio.reason = held
    try:
        page.click("#btn-analyze")
        page.wait_for_selector("#status:has-text('Decoding the clip')", timeout=TIMEOUT_MS)
        other.click("#btn-analyze")
        other.wait_for_function("/queue: 1\\/1/.test(document.body.innerText)", timeout=60_000)
    finally:
        gate.set()
        app.studio.reason = reason
    for tab in (page, other):
        tab.wait_for_selector("#label-status:has-text('Done in')", timeout=TIMEOUT_MS)
    other.context.close()
