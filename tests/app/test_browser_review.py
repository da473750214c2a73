"""The Review tab and the analysis dashboard in a real browser (Playwright driving Debian's
headless chromium), signed in as a reviewer: the review queue driven by the keyboard (j / k to
move, 1-5 for the error type, r to reject, z to undo, b to send back), then a click on a
dashboard bar lists its step and a click on that step opens it in the Label tab, whose
rollout-conflict badge shows. An annotator never sees the Review tab.

Skipped where /usr/bin/chromium is absent. STUDIO_SCREENSHOTS=DIR keeps the screenshots."""

from __future__ import annotations

import pytest

from tests.app.conftest import ARGS, CHROMIUM, make_trace, serve, stop
from tests.app.test_browser import screenshot
from tests.app.test_review import USERS, seed, signed_in_config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from annotation_db import Store

    tmp = tmp_path_factory.mktemp("review-browser")
    with Store.open(tmp / "annotations.db") as store:
        seed(store)
        # rv-conflict step 1: both accept the original (rollouts 0.3) over a rejected
        # alternative (rollouts 0.8): the rollouts disagree with the people.
        store.add_trace(make_trace("rv-conflict", ["It rolls.", "It stops."], [0.2, 0.3]))
        alt = store.add_alternative("alice", "rv-conflict", 1, "It keeps rolling.")
        store.set_expected_correctness("rv-conflict", 1, 0.3)
        store.set_expected_correctness("rv-conflict", 1, 0.8, alternative_id=alt["id"])
        store.set_label("alice", "rv-conflict", 1, "accept")
        store.set_label("alice", "rv-conflict", 1, "reject", alternative_id=alt["id"], error_type="other")
        store.set_label("alice", "rv-conflict", 0, "accept")
        store.set_role("rita", "reviewer")  # the app stores it again from the auth file
        store.send_back("rita", "rv-conflict", 0, "does it <roll>?")
    running = serve(signed_in_config(tmp))
    yield running
    stop(running)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def signed_in(browser, site, name):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    response = context.request.post(site.url + "login", form={"username": name, "password": USERS[name]})
    assert response.status == 200
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(site.url, wait_until="load")
    page.wait_for_selector("#who:has-text('signed in')")
    return context, page


def shown(page, trace_id: str) -> None:
    page.wait_for_selector(f"#review-item .review-item[data-trace='{trace_id}'][data-step='1']")


def test_review_by_keyboard_then_a_bar_opens_its_step(browser, site, tmp_path):
    context, page = signed_in(browser, site, "rita")
    store = site.studio.store
    page.click("button[role=tab]:has-text('Review')")
    shown(page, "rv-decide")
    assert page.locator("#review-item .review-label").count() == 2
    screenshot(page, tmp_path, "review-tab.png")
    page.keyboard.press("j")
    shown(page, "rv-refuse")
    page.keyboard.press("k")
    shown(page, "rv-decide")
    page.keyboard.press("2")  # audio misperception
    page.keyboard.press("r")
    page.wait_for_selector(
        "#review-status:has-text('Step 2 of rv-decide: reject (audio misperception), final')"
    )
    shown(page, "rv-refuse")  # moved on to the next item waiting
    page.keyboard.press("z")
    page.wait_for_selector("#review-status:has-text('Undone on step 2 of rv-decide: now open')")
    assert store.review_item("rita", "rv-decide", 1)["review"] is None
    page.keyboard.press("2")
    page.keyboard.press("r")
    page.wait_for_selector("#review-status:has-text('final')")
    shown(page, "rv-refuse")
    page.fill("#review-note textarea", "is it red at 0:01?")
    page.locator("#review-note textarea").blur()
    page.keyboard.press("b")
    page.wait_for_selector("#review-status:has-text('Step 2 of rv-refuse: sent back with the note')")
    assert [n["note"] for n in store.sent_back_notes("rv-refuse")] == ["is it red at 0:01?"]
    # the label view's keys did nothing meanwhile: no label was added by rita
    assert [x for x in store.labels_for_trace("rv-decide") if x["annotator"] == "rita"] == []

    page.click("button[role=tab]:has-text('Dashboard')")
    bar = page.locator("#chart-error-type g.point path:visible")  # one bar above 0: audio, 1 step
    bar.wait_for()
    assert bar.count() == 1
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#bar-caption:has-text('1 step of the bar error_type: audio_misperception')")
    screenshot(page, tmp_path, "dashboard-bar.png")
    page.locator("#bar-steps span.text").get_by_text("rv-decide", exact=True).click()
    page.wait_for_selector("#step-info:has-text('Step 2')")
    assert page.locator("#trace-id textarea, #trace-id input").first.input_value() == "rv-decide"
    context.close()


def test_the_label_view_flags_rollout_conflicts_and_notes_sent_back(browser, site):
    context, page = signed_in(browser, site, "alice")
    assert page.locator("button[role=tab]:has-text('Review')").count() == 0  # annotators: no Review tab
    page.click("button[role=tab]:has-text('Queue')")
    page.fill("#open-id textarea, #open-id input", "rv-conflict")
    page.click("#btn-open")
    page.wait_for_selector("#rollout-conflicts .conflict-step[data-step='1']:has-text('rollouts disagree')")
    # and the reviewer's note on the step sent back, as text
    note = page.locator("#rollout-conflicts .conflict-step[data-step='0']")
    assert note.inner_text() == "Step 1: \u21a9 sent back by rita: does it <roll>?"
    context.close()
