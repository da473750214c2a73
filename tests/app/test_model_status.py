"""What the page says while the model is on its way (built, then loaded), and Analyze waiting
for it: ``ModelHolder.status`` and the page's status line, Analyze button and polling timer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ui.config import AppConfig


class Loaded:
    def describe(self):
        return {}


def holder_with(loader):
    from ui.models import ModelHolder

    holder = ModelHolder(AppConfig(), loader=lambda: loader(holder))
    return holder


def load_in_background(holder):
    return holder.start_background()


def test_status_follows_a_build_then_the_load_then_ready():
    from ui.models import ModelStatus

    at_build, release = threading.Event(), threading.Event()
    seen = {}

    def loader(holder):
        holder._on_build_progress(0.5, "training step 60 of 120")
        at_build.set()
        release.wait(30)
        seen["building"] = holder.status()
        holder._build = None  # the build is over; the weights are being read
        seen["loading"] = holder.status()
        return Loaded()

    holder = holder_with(loader)
    assert holder.status() == ModelStatus("not loaded", "The model loads on the first analysis.")
    thread = load_in_background(holder)
    assert at_build.wait(30)
    release.set()
    thread.join(30)
    building = seen["building"]
    assert building.phase == "building" and building.busy and building.fraction == 0.5
    assert building.message.startswith(
        "Building the tiny demo model (first run only): training step 60 of 120, 50% done"
    )
    assert building.seconds_left is not None and building.seconds_left > 0
    assert seen["loading"].phase == "loading" and seen["loading"].busy
    assert seen["loading"].message.startswith("Loading the model (")
    assert holder.status() == ModelStatus("ready", "Model ready.", 1.0, 0.0)


def test_an_analysis_waiting_for_the_model_hears_each_status_until_ready():
    """statuses_until_ready follows a load another thread runs, and returns when it is done."""
    steps = iter([0.2, 0.6, 0.9])

    def loader(holder):
        for fraction in steps:
            holder._on_build_progress(fraction, f"at {fraction}")
            threading.Event().wait(0.3)
        return Loaded()

    holder = holder_with(loader)
    assert list(holder.statuses_until_ready(0.1)) == []  # nobody loads it: get() will
    thread = load_in_background(holder)
    while holder._build is None:
        threading.Event().wait(0.01)
    heard = [status.message.split(": ")[1].split(",")[0] for status in holder.statuses_until_ready(0.1)]
    thread.join(30)
    assert holder.state == "ready" and isinstance(holder.get(), Loaded)
    assert heard and set(heard) <= {"at 0.2", "at 0.6", "at 0.9"} and heard == sorted(heard)


def test_a_failed_load_says_why_and_is_not_busy():
    from ui.services import AppError

    def loader(holder):
        raise RuntimeError("disk on fire")

    holder = holder_with(loader)
    with pytest.raises(AppError):
        holder.get()
    status = holder.status()
    assert status.phase == "failed" and not status.busy
    assert status.message == "The model could not be loaded: RuntimeError: disk on fire"


@pytest.mark.parametrize(
    ("elapsed", "fraction", "at_least", "at_most"),
    [
        (0.0, 0.0, 5.0, 60.0),  # nothing done yet: the recipe's own cost
        (40.0, 0.0, 40.0, 400.0),  # preparing, ten times slower than expected: so is the rest
        (10.0, 0.5, 10.0, 15.0),  # half way: as long again, plus reading the weights
        (20.0, 1.0, 0.0, 5.0),  # built: only the load is left
    ],
)
def test_seconds_left_extrapolate_the_build(elapsed, fraction, at_least, at_most):
    from ui.models import tiny_build_seconds_left

    assert at_least <= tiny_build_seconds_left(elapsed, fraction) <= at_most


def test_the_page_turns_analyze_off_and_polls_only_while_the_model_is_on_its_way():
    from ui.layout import model_updates

    release = threading.Event()

    def loader(holder):
        holder._on_build_progress(0.25, "training step 1 of 120")
        release.wait(30)
        return Loaded()

    class FakeStudio:
        models = holder_with(loader)

    studio = FakeStudio()
    html, button, timer = model_updates(studio)
    assert "The model loads on the first analysis." in html
    assert button["interactive"] is True and timer.active is False

    thread = load_in_background(studio.models)
    for _ in range(300):
        if studio.models._build is not None:
            break
        threading.Event().wait(0.05)
    html, button, timer = model_updates(studio)
    assert "Building the tiny demo model" in html and "<progress" in html
    assert button["interactive"] is False and timer.active is True

    release.set()
    thread.join(30)
    html, button, timer = model_updates(studio)
    assert "Model ready." in html and "<progress" not in html
    assert button["interactive"] is True and timer.active is False


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium at /usr/bin/chromium"
)
def test_the_page_shows_the_build_and_analyze_waits_for_the_model(tmp_path):
    """In chromium: while the model builds the page says so and Analyze is off; when it is
    ready the page says so and Analyze is on, without a reload."""
    import gc

    from playwright.sync_api import sync_playwright

    from tests.app.conftest import ARGS, CHROMIUM, base_config
    from ui.layout import build_app, launch_kwargs
    from ui.models import ModelHolder
    from ui.services import Studio

    release = threading.Event()

    def loader(holder):
        holder._on_build_progress(0.4, "training step 80 of 200")
        release.wait(120)
        holder._build = None
        return Loaded()

    config = base_config(tmp_path, checkpoint="tiny")
    holder = ModelHolder(config, loader=lambda: loader(holder))
    studio = Studio(config, models=holder)
    demo = build_app(config, studio)
    demo.launch(**{**launch_kwargs(config, studio), "prevent_thread_lock": True, "quiet": True})
    try:
        holder.start_background()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"http://127.0.0.1:{config.port}/", wait_until="load")
            page.wait_for_selector("#model-status:has-text('training step 80 of 200, 40% done')")
            assert "s left" in page.inner_text("#model-status")
            assert page.is_disabled("#btn-analyze")
            release.set()
            page.wait_for_selector("#model-status:has-text('Model ready.')")
            assert page.is_enabled("#btn-analyze")
            browser.close()
    finally:
        release.set()
        demo.close()
        studio.close()
        gc.unfreeze()


@pytest.mark.browser
@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium at /usr/bin/chromium"
)
def test_after_an_analysis_that_loaded_the_model_the_page_says_it_is_ready(tmp_path, tiny_checkpoint, clip):
    """With --no-preload the first analysis loads the model; when it ends, the status line above
    Analyze says the model is ready (it no longer says the model loads on the first analysis)."""
    from playwright.sync_api import sync_playwright

    from tests.app.conftest import ARGS, CHROMIUM, base_config, serve, stop

    app = serve(base_config(tmp_path, checkpoint=str(tiny_checkpoint), preload=False))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(120_000)
            page.goto(app.url, wait_until="load")
            page.wait_for_selector("#model-status:has-text('The model loads on the first analysis')")
            page.fill("#annotator input, #annotator textarea", "mo")
            page.set_input_files("#upload input[type=file]", str(clip))
            page.fill("#question textarea", "Which way does the shape move?")
            page.fill("#options textarea", "left\nright")
            page.click("#btn-analyze")
            page.wait_for_selector("#label-status:has-text('Done in')")  # the Label view opens
            page.get_by_role("tab", name="Analyze").click()
            page.wait_for_selector("#model-status:has-text('Model ready.')")
            browser.close()
    finally:
        stop(app)
