"""Take README's screenshots from the running app in Chromium: a streamed analysis, the labeling
view and the dashboard, at 1280x720, written as small palette PNGs to docs/screenshots/.

    python scripts/screenshots.py [--out docs/screenshots] [--checkpoint tiny]

It serves the app on a free port with a fresh database in a temporary folder (the tiny demo
model unless --checkpoint says otherwise), analyses the first example clip, labels a few steps
under two names so the dashboard has numbers, and photographs each view. Needs Playwright and
/usr/bin/chromium (as the browser tests do).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 720}
TIMEOUT_MS = 300_000  # the first analysis loads (or builds) the demo model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(folder: Path, checkpoint: str):
    from ui.config import AppConfig
    from ui.layout import build_app, launch_kwargs
    from ui.services import Studio

    config = replace(
        AppConfig(),
        db=str(folder / "annotations.db"),
        media_dir=str(folder / "clips"),
        port=free_port(),
        checkpoint=checkpoint,
        preload=False,
    )
    studio = Studio(config)
    demo = build_app(config, studio)
    demo.launch(**{**launch_kwargs(config, studio), "prevent_thread_lock": True, "quiet": True})
    return f"http://127.0.0.1:{config.port}/", studio, demo


def save_small(png: bytes, path: Path) -> None:
    """A screenshot as a 256-colour PNG (UI screenshots lose nothing visible; ~4x smaller)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path} ({path.stat().st_size // 1024} KiB)")


def label_for_the_dashboard(studio, trace_id: str) -> None:
    """Labels by two annotators on the analysed trace (the dashboard's counts and agreement)."""
    steps = studio.store.get_trace(trace_id).trace.steps
    for k, _ in enumerate(steps):
        studio.store.set_label(
            "ana",
            trace_id,
            k,
            "reject" if k % 3 == 1 else "accept",
            error_type="hallucination" if k % 3 == 1 else None,
        )
        studio.store.set_label(
            "ben",
            trace_id,
            k,
            "reject" if k % 2 == 1 else "accept",
            error_type="reasoning_logic" if k % 2 == 1 else None,
        )


def take(out: Path, checkpoint: str) -> None:
    from playwright.sync_api import sync_playwright

    from examples.make_examples import QUESTIONS, ensure_examples

    out.mkdir(parents=True, exist_ok=True)
    clip = ensure_examples()[0]
    import json

    example = json.loads(Path(QUESTIONS).read_text(encoding="utf-8"))[0]
    with tempfile.TemporaryDirectory() as tmp:
        url, studio, demo = serve(Path(tmp), checkpoint)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
                )
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url, wait_until="load")
                page.locator("#annotator textarea, #annotator input").first.fill("ana")
                page.keyboard.press("Enter")
                page.set_input_files("#upload input[type=file]", str(clip))
                page.fill("#question textarea", example["question"])
                page.fill("#options textarea", "\n".join(example["options"]))
                page.fill("#reference textarea, #reference input", example["reference_answer"])
                page.click("#btn-analyze")
                page.wait_for_selector("#stream .step:not(.pending) >> nth=1")
                page.evaluate("window.scrollTo(0, 0)")
                save_small(page.screenshot(), out / "analysis.png")
                page.wait_for_selector("#label-status:has-text('Done in')")
                trace_id = page.locator("#trace-id textarea, #trace-id input").first.input_value()
                page.locator("#shortcut-help").click()
                for key in ("a", "r", "k", "3"):
                    page.keyboard.press(key)
                    page.wait_for_timeout(600)
                page.evaluate("window.scrollTo(0, 0)")
                save_small(page.screenshot(), out / "labeling.png")
                label_for_the_dashboard(studio, trace_id)
                page.get_by_role("tab", name="Dashboard").click()
                page.wait_for_selector("#calibration-plot .js-plotly-plot")
                page.wait_for_timeout(800)
                save_small(page.screenshot(full_page=True), out / "dashboard.png")
                browser.close()
        finally:
            demo.close()
            studio.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshots", help="folder for the PNGs")
    parser.add_argument("--checkpoint", default="tiny", help="model the app serves (default: the tiny demo)")
    args = parser.parse_args(argv)
    take(Path(args.out), args.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
