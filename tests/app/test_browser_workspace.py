"""The labeling workspace in a real browser: labels go only to the trace on screen (a key pressed
while an analysis runs, after one failed, after opening another trace from the queue), the
error type and comment of a step are editable after its verdict, "next trace" follows the
queue, and the first minute (title, Analyze and the stream above the fold, steps streamed one
by one, timings that add up).

Skipped where /usr/bin/chromium is absent (see tests/app/test_browser.py)."""

from __future__ import annotations

import re
import threading

import pytest

from tests.app.conftest import CHROMIUM, TIMEOUT_MS, make_trace
from tests.app.test_browser import sign_in_by_name

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def open_by_id(page, trace_id: str) -> None:
    page.get_by_role("tab", name="Queue").click()
    page.locator("#open-id textarea, #open-id input").first.fill(trace_id)
    page.click("#btn-open")
    page.wait_for_selector("#position:has-text('step')")
    page.wait_for_function(
        f"document.querySelector('#trace-id textarea, #trace-id input').value === {trace_id!r}"
    )


def press_outside_fields(page, key: str) -> None:
    page.locator("#shortcut-help").click()  # focus outside the text fields
    page.keyboard.press(key)


def force_accept(page) -> None:
    """What a stale page could send: the Accept button clicked although it is off."""
    page.evaluate(
        "(() => { const b = document.querySelector('#btn-accept'); b.disabled = false; b.click(); })()"
    )


def hold_analyses(app):
    """Hold the next analysis at its start until the returned event is set."""
    gate = threading.Event()
    reason = app.studio.reason

    def held(media, request):
        gate.wait(timeout=120)
        return reason(media, request)

    app.studio.reason = held
    return gate, reason


def test_a_key_pressed_during_an_analysis_labels_nothing(page, app, clip):
    app.studio.store.add_trace(make_trace("w-during", ["One.", "Two."], [0.2, 0.1], str(clip), "d" * 64))
    sign_in_by_name(page, "wes")
    page.set_input_files("#upload input[type=file]", str(clip))
    page.fill("#question textarea", "Which way does the shape move?")
    page.fill("#options textarea", "left\nright")
    open_by_id(page, "w-during")
    assert page.locator("#btn-accept").is_enabled()
    gate, reason = hold_analyses(app)
    try:
        page.get_by_role("tab", name="Analyze").click()
        page.click("#btn-analyze")
        page.wait_for_selector("#status:has-text('Decoding the clip')", timeout=TIMEOUT_MS)
        page.get_by_role("tab", name="Label").click()
        page.wait_for_selector("#steps:has-text('An analysis runs')")
        assert page.locator("#btn-accept").is_disabled()
        press_outside_fields(page, "a")
        force_accept(page)  # the server refuses it too: this page shows no trace now
        page.wait_for_selector("text=this page shows no trace now")
    finally:
        gate.set()
        app.studio.reason = reason
    page.wait_for_selector("#label-status:has-text('Done in')", timeout=TIMEOUT_MS)
    assert app.studio.store.labels_for_trace("w-during", "wes") == []
    new_id = page.locator("#trace-id textarea, #trace-id input").first.input_value()
    assert new_id != "w-during"
    press_outside_fields(page, "a")  # now the new trace is on screen: the label goes there
    page.wait_for_selector("#step-0.labeled-accept")
    assert [(x["trace_id"], x["step_index"]) for x in app.studio.store.labels_for_trace(new_id, "wes")] == [
        (new_id, 0)
    ]


def test_after_a_failed_analysis_nothing_can_be_labeled(page, app, clip, tmp_path):
    app.studio.store.add_trace(make_trace("w-fail", ["One.", "Two."], [0.2, 0.1], str(clip), "e" * 64))
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are not frames")
    sign_in_by_name(page, "fay")
    page.set_input_files("#upload input[type=file]", str(not_video))
    page.fill("#question textarea", "Which way?")
    open_by_id(page, "w-fail")
    page.get_by_role("tab", name="Analyze").click()
    page.click("#btn-analyze")
    page.wait_for_selector("#status:has-text('Failed: ')", timeout=TIMEOUT_MS)
    assert "is not a video file that can be read" in page.locator("#status").inner_text()
    page.get_by_role("tab", name="Label").click()
    page.wait_for_selector("#steps:has-text('The analysis failed')")
    assert page.locator("#btn-accept").is_disabled()
    assert page.locator("#trace-card").inner_text() == "No trace open."
    press_outside_fields(page, "a")
    force_accept(page)
    page.wait_for_selector("text=this page shows no trace now")
    assert app.studio.store.labels_for_trace("w-fail", "fay") == []


def test_a_trace_opened_from_the_queue_shows_its_own_question(page, app, clip):
    first = make_trace("w-q1", ["One.", "Two."], [0.9, 0.1], str(clip), "f" * 64)
    second = make_trace("w-q2", ["Uno.", "Dos.", "Tres."], [0.8, 0.2, 0.1], str(clip), "f" * 64)
    second.update(question="How many beeps?", options=["3", "7"], reference_answer="B")
    app.studio.store.add_traces([first, second])
    sign_in_by_name(page, "gus")
    open_by_id(page, "w-q1")
    assert "What moves?" in page.locator("#trace-card").inner_text()
    page.get_by_role("tab", name="Queue").click()
    page.locator("#queue-table").get_by_text("w-q2", exact=True).click()
    page.wait_for_function("document.querySelector('#trace-id textarea, #trace-id input').value === 'w-q2'")
    card = page.locator("#trace-card").inner_text()
    assert "How many beeps?" in card and "B. 7" in card and "reference B" in card
    assert "What moves?" not in card and "the ball" not in card
    assert "wrong (reference B)" in card  # the answer badge judged against this trace's reference
    press_outside_fields(page, "a")
    page.wait_for_selector("#step-0.labeled-accept")
    labels = app.studio.store.labels_for_trace("w-q2", "gus")
    assert [(x["step_index"], x["verdict"]) for x in labels] == [(0, "accept")]
    assert app.studio.store.labels_for_trace("w-q1", "gus") == []


def test_error_type_and_comment_after_the_verdict_and_next_trace(page, app, clip):
    app.studio.store.add_traces(
        [
            make_trace("w-note", ["One.", "Two.", "Three."], [0.99, 0.5, 0.4], str(clip), "9" * 64),
            make_trace("w-next", ["Other."], [0.98], str(clip), "9" * 64),
        ]
    )
    sign_in_by_name(page, "hal")
    open_by_id(page, "w-note")
    assert re.fullmatch(
        r"step 1 of 3 · trace \d+ of \d+ in your queue", page.locator("#position").inner_text()
    )
    store = app.studio.store
    press_outside_fields(page, "r")  # reject step 1, move to step 2
    page.wait_for_selector("#step-1.current")
    page.keyboard.press("k")
    page.wait_for_selector("#step-0.current")
    page.keyboard.press("3")  # the error type, after the verdict: saved on the label at once
    page.wait_for_selector("#label-status:has-text('note saved')")
    assert [(x["verdict"], x["error_type"]) for x in store.labels_for_trace("w-note", "hal")] == [
        ("reject", "hallucination")
    ]
    page.locator("#comment textarea").fill("the ball is red, not blue")
    page.locator("#shortcut-help").click()  # leaving the box saves the comment
    page.wait_for_selector("#step-0 .comment:has-text('the ball is red')")
    assert store.labels_for_trace("w-note", "hal")[0]["comment"] == "the ball is red, not blue"
    # before the verdict: the note is a draft the verdict carries
    page.keyboard.press("j")
    page.wait_for_selector("#step-1.current")
    page.keyboard.press("2")
    page.wait_for_selector("#label-status:has-text('note ready')")
    page.keyboard.press("u")
    page.wait_for_selector("#step-1.labeled-unsure")
    assert [
        (x["step_index"], x["verdict"], x["error_type"]) for x in store.labels_for_trace("w-note", "hal")
    ] == [
        (0, "reject", "hallucination"),
        (1, "unsure", "audio_misperception"),
    ]
    assert page.locator("#position").inner_text().startswith("step 3 of 3")
    page.keyboard.press("n")  # the next trace hal has not finished, in the queue's order
    page.wait_for_function("document.querySelector('#trace-id textarea, #trace-id input').value !== 'w-note'")
    assert page.locator("#position").inner_text().startswith("step 1 of ")


def test_first_minute_on_a_1280x720_screen(browser, app, clip):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.goto(app.url, wait_until="load")
    tab.wait_for_selector("#btn-analyze")
    assert "video-SALMONN-o1 Studio" in tab.locator("#title").inner_text()
    assert "reasons step by step" in tab.locator("#title").inner_text()
    for selector in ("#btn-analyze", "#status", "#stream"):
        box = tab.locator(selector).bounding_box()
        assert box["y"] + min(box["height"], 40) <= 720, f"{selector} is below the fold"
    tab.set_input_files("#upload input[type=file]", str(clip))
    tab.fill("#question textarea", "Which way does the shape move?")
    tab.fill("#options textarea", "left\nright")
    # record how many steps the stream shows, each time it changes
    tab.evaluate(
        """() => {
          window.__counts = [];
          const target = document.querySelector('#stream');
          new MutationObserver(() => {
            const n = target.querySelectorAll('.step:not(.pending)').length;
            const last = window.__counts[window.__counts.length - 1];
            if (!last || last[0] !== n) window.__counts.push([n, performance.now()]);
          }).observe(target, {subtree: true, childList: true, characterData: true});
        }"""
    )
    tab.click("#btn-analyze")
    tab.wait_for_selector("#label-status:has-text('Done in')", timeout=TIMEOUT_MS)
    counts = tab.evaluate("window.__counts")
    trace_id = tab.locator("#trace-id textarea, #trace-id input").first.input_value()
    n = len(app.studio.store.get_trace(trace_id).trace.steps)
    shown = [c for c, _ in counts if c > 0]
    assert shown[:n] == list(range(1, n + 1)), f"steps did not appear one by one: {counts}"
    times = {c: t for c, t in counts}
    gaps = [times[k + 1] - times[k] for k in range(1, n)]
    assert all(gap >= 150 for gap in gaps), f"steps landed together: {gaps} ms apart"
    done = tab.locator("#label-status").inner_text()
    total, parts = re.match(r"Done in (\d+\.\d) s \(([^)]*)\)", done).groups()
    seconds = [float(p.rsplit(" ", 1)[1]) for p in parts.split(", ")]
    assert sum(seconds) == pytest.approx(float(total), abs=0.05 * len(seconds) + 0.05)
    context.close()


def test_numbers_a_person_reads(page, app, clip):
    """Steps from 1 (the Step field too), scores as shares with the raw value on hover, one
    "check first" mark on a short trace, queue cells cut, order names in words, dashboard
    deciles 1..10 and the AUROC with its count."""
    store = app.studio.store
    trace = make_trace(
        "w-num", ["One.", "Two.", "Three.", "Four."], [2.594e-05, 1e-4, 5e-05, 2e-05], str(clip), "8" * 64
    )
    for step in trace["steps"]:
        step["top_t"] = step["index"] != 3  # top-T = 3 of 4 steps
    trace["question"] = "Why " * 100
    store.add_trace(trace)
    for k, verdict in enumerate(["accept", "reject", "reject", "accept"]):
        store.set_label("ivy", "w-num", k, verdict, error_type=None if verdict == "accept" else "other")
    sign_in_by_name(page, "jon")
    page.get_by_role("tab", name="Queue").click()
    page.wait_for_selector("#queue-table:has-text('w-num')")
    assert page.locator("#queue-order input").input_value() == "most suspicious first (highest step score)"
    table = page.locator("#queue-table").inner_text()
    assert "Why Why" in table and "Why " * 30 not in table  # the 400-character question is cut
    open_by_id(page, "w-num")
    assert page.locator("#step-index input").input_value() == "1"
    assert page.locator("#step-0 .step-no").inner_text() == "Step 1"
    assert page.locator("#steps .badge.top-t").count() == 1  # a third of 4 steps: one
    assert page.locator("#step-1 .badge.top-t").count() == 1
    title = page.locator("#step-0 .score").get_attribute("title")
    assert title == "contrastive score (mean token KL): 2.594e-05; 26% of the highest in this trace"
    assert page.locator("#step-0 .score").inner_text().strip() == "26%"
    page.get_by_role("tab", name="Dashboard").click()
    page.wait_for_selector("#calibration-plot .js-plotly-plot .xtick")
    ticks = [t.text_content() for t in page.locator("#calibration-plot .xtick").all()]
    assert ticks == [str(k) for k in range(1, 11)]
    assert "AUROC" in page.locator("#calibration-plot .gtitle").text_content()
    assert re.search(r"Score vs verdict over \d+ scored steps", page.locator("#stats").inner_text())
