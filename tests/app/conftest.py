"""App fixtures: the app served on a free local port with the tiny model, a generated clip, and
hand-made traces to import (one step reads ``<img src=x onerror=alert(1)>``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from gradio_client import handle_file

from testkit.app_api import analyze_args
from testkit.app_process import free_port

XSS = "<img src=x onerror=alert(1)>"


@dataclass
class RunningApp:
    url: str
    studio: Any  # ui.services.Studio
    demo: Any  # gr.Blocks
    config: Any  # ui.config.AppConfig

    def client(self, **kwargs):
        from gradio_client import Client

        return Client(self.url, verbose=False, **kwargs)


def serve(config) -> RunningApp:
    from ui.layout import build_app, launch_kwargs
    from ui.services import Studio

    studio = Studio(config)
    demo = build_app(config, studio)
    demo.launch(**{**launch_kwargs(config, studio), "prevent_thread_lock": True, "quiet": True})
    return RunningApp(f"http://127.0.0.1:{config.port}/", studio, demo, config)


def stop(app: RunningApp) -> None:
    app.demo.close()
    app.studio.close()


def base_config(tmp: Path, **changes):
    from ui.config import AppConfig

    config = AppConfig(
        db=str(tmp / "annotations.db"),
        media_dir=str(tmp / "clips"),
        port=free_port(),
        preload=False,
        torch_threads=0,  # leave torch's threads alone for the rest of the test session
        max_upload_mb=50,
        max_duration_s=120,
    )
    return replace(config, **changes)


@pytest.fixture(scope="session")
def app(tiny_checkpoint, tmp_path_factory) -> Iterator[RunningApp]:
    """The app with the tiny model (loaded on the first analysis), shared by the session."""
    running = serve(base_config(tmp_path_factory.mktemp("app"), checkpoint=str(tiny_checkpoint)))
    yield running
    stop(running)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A 3 s synthetic clip with sound, as a user would upload it."""
    from examples.synth import write_clip

    return write_clip(tmp_path_factory.mktemp("upload") / "my clip.mp4", seconds=3.0, fps=8, size=(160, 96))


def make_trace(
    trace_id: str,
    texts: list[str],
    scores: list[float | None] | None = None,
    clip_path: str = "",
    clip_sha: str = "a" * 64,
) -> dict[str, Any]:
    """A Trace JSON dict (schema 1) with the given steps, scores and clip spans."""
    scores = scores or [None] * len(texts)
    frame_times = [0.0, 0.5, 1.0, 1.5]
    return {
        "schema_version": 1,
        "id": trace_id,
        "source": "batch",
        "clip": {
            "sha256": clip_sha,
            "name": Path(clip_path).name if clip_path else "clip.mp4",
            "path": clip_path,
            "duration_s": 2.0,
            "fps": 8.0,
            "width": 160,
            "height": 96,
            "has_audio": True,
            "frame_times_s": frame_times,
        },
        "question": "What moves?",
        "options": ["the ball", "the square"],
        "reference_answer": "A",
        "prompt_kind": "reasoning",
        "prompt": "",
        "model": {"id": "batch-model"},
        "decoding": {},
        "scoring": {
            "perturbations": ["noise"],
            "frame_attention": {
                "spans": [[frame_times[k % 4], frame_times[k % 4] + 0.5] for k in range(len(texts))]
            },
        },
        "steps": [
            {
                "index": k,
                "text": text,
                "score": score,
                "top_t": score is not None and score == max(s or 0 for s in scores),
            }
            for k, (text, score) in enumerate(zip(texts, scores, strict=True))
        ],
        "alternatives": [],
        "answer": {"text": "The answer is A.", "choice": "A"},
        "timings": {},
    }


@pytest.fixture(scope="session")
def analysis(app, clip):
    """One analysis through the client; every streamed update kept (client, updates, trace id)."""
    client = app.client()
    job = client.submit(*analyze_args(handle_file(str(clip))), api_name="/analyze")
    updates = [tuple(u) for u in job]
    final = job.result()
    return client, updates, final[1]


# ---- the browser (Playwright driving Debian's headless chromium) --------------------------------

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 240_000  # an analysis on a busy 2-core machine, the model loaded on first use


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app):
    """A fresh tab on the app; fails the test if the page ever opens a dialog (an alert)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.set_default_timeout(30_000)
    tab.goto(app.url, wait_until="load")
    tab.wait_for_selector("#btn-analyze")
    yield tab
    context.close()
    assert dialogs == [], f"the page opened a dialog: {dialogs}"
