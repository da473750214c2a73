"""Benchmark of the Gradio app with the tiny model: time to the first step, label round trips.

    .venv/bin/python bench/app.py              # the figures in bench/RESULTS.md
    .venv/bin/python bench/app.py --quick      # fewer labels and repeats, a smoke run

Starts ``python app.py`` (tiny model, scratch database) in its own process and drives it over
HTTP from this one, as browsers would:

1. time to the first step: from the Analyze request to the first streamed update that holds a
   step, through gradio_client (the example clip "red_ball_chirp.mp4", 7 s, 14 frames), the
   first run loading the model (the server starts with --no-preload: cold) and then warm; and,
   where Debian's chromium is
   installed, in a real page: from the click on Analyze to the first step drawn;
2. label round trip: N clients (20 by default), each a browser-like session (``QueueClient``)
   with its own annotator name, label random steps of a 40-step trace (each answer carries what
   the page redraws: the step list, the next step's alternatives, the score chart), pausing a
   random 0 to 2 s between labels (a fast annotator: 1 label/s) or not at all (back to back,
   a stress test). Each with the server idle
   and while analyses run back to back in the GPU queue (only labels that started and ended
   during an analysis count). A round trip is one ``accept``/``reject``/``unsure`` event, from
   the request to its answer. p50 / p95 / p99 / max in ms.

Writes the numbers as JSON to bench/out/app.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testkit.app_api import QueueClient, analyze_args  # noqa: E402
from testkit.app_process import free_port  # noqa: E402
from testkit.load import OPTIONS, QUESTION, summary  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


def label_trace(n_steps: int) -> dict:
    rng = random.Random(0)
    return {
        "schema_version": 1,
        "id": "bench-label",
        "source": "batch",
        "clip": {"sha256": "d" * 64, "name": "bench.mp4", "path": "", "frame_times_s": [0.0, 0.5]},
        "question": "What happens?",
        "options": ["a", "b"],
        "prompt_kind": "reasoning",
        "prompt": "",
        "model": {"id": "bench"},
        "decoding": {},
        "steps": [
            {
                "index": k,
                "text": "".join(pieces),
                "score": rng.random(),
                "token_kl": [rng.random() for _ in pieces],
                "kl_tokens": pieces,  # shaded on the page, as a scored live trace
                "top_t": False,
            }
            for k in range(n_steps)
            for pieces in [
                re.findall(r"\s*\S+", f"Step {k}: the ball moves a little further to the right of the frame.")
            ]
        ],
        "answer": {"text": "The answer is A.", "choice": "A"},
    }


def start_server(tmp: Path, checkpoint: str, port: int) -> subprocess.Popen:
    log = open(tmp / "server.log", "w")  # noqa: SIM115 (open for the process's lifetime)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "app.py"),
            "--checkpoint",
            checkpoint,
            "--db",
            str(tmp / "annotations.db"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--no-preload",  # the first analysis loads the model: the cold figure
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited; see {tmp / 'server.log'}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("the app did not answer within 180 s")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def page_analyze_args(clip: str, perturbations=("noise",)):
    """The example clip with its question, as the page sends it: 512 new tokens, attention on."""
    from gradio_client import handle_file

    return analyze_args(
        handle_file(clip), QUESTION, OPTIONS, "A", max_new_tokens=512, top_t=3,
        perturbations=list(perturbations), attention=True,
    )  # fmt: skip


STREAM = 11  # /analyze's output holding the Analyze tab's stream of steps


def first_step_via_client(url: str, clip: str) -> dict:
    """Seconds from submitting Analyze to the first update holding a step, and to the end."""
    c = client(url)
    started = time.perf_counter()
    job = c.submit(*page_analyze_args(clip), api_name="/analyze")
    first = None
    for update in job:
        if first is None and '<div class="step">' in update[STREAM]:
            first = time.perf_counter() - started
    job.result()
    return {
        "first_step_s": round(first, 3) if first else None,
        "done_s": round(time.perf_counter() - started, 3),
    }


def first_step_in_browser(url: str, clip: str, repeats: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url, wait_until="load")
            page.wait_for_selector("#btn-analyze")
            page.set_input_files("#upload input[type=file]", clip)
            page.wait_for_selector("#upload video")
            page.fill("#question textarea", QUESTION)
            page.fill("#options textarea", OPTIONS)
            started = time.perf_counter()
            page.click("#btn-analyze")
            page.wait_for_selector("#stream .step:not(.pending)", timeout=180_000)
            out.append(round(time.perf_counter() - started, 3))
            page.wait_for_selector("#label-status:has-text('Done in')", timeout=180_000)
            page.close()
        browser.close()
    return out


def label_load(
    url: str,
    n_clients: int,
    labels_per_client: int,
    n_steps: int,
    busy: threading.Event | None,
    pause_s: float,
):
    """Round trips (ms) of label events from n_clients concurrent sessions; after each label a
    session waits a random 0 to 2 x ``pause_s`` (0: back to back). With ``busy``, only the labels that
    started and ended while an analysis ran are counted."""
    clients = [QueueClient(url) for _ in range(n_clients)]
    results: list[float] = []
    skipped = [0]
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_clients)

    def run(i: int) -> None:
        rng = random.Random(i)
        c = clients[i]
        barrier.wait()
        for _ in range(labels_per_client):
            k = rng.randrange(n_steps)
            verdict = rng.choice(["accept", "reject", "unsure"])
            error = "" if verdict == "accept" else "hallucination"
            during = busy is None or busy.is_set()
            t0 = time.perf_counter()
            try:
                # the page's inputs: name, trace, step, error type, comment, blind, and the two
                # session states (when the step was shown, the page's desk: None = no page)
                c.call(verdict, [f"annotator-{i}", "bench-label", k, error, "", True, None, None])
            except Exception as exc:  # counted and reported: a failed label is a finding
                with lock:
                    errors.append(str(exc)[:200])
                continue
            ms = (time.perf_counter() - t0) * 1000
            during = during and (busy is None or busy.is_set())
            with lock:
                if during:
                    results.append(ms)
                else:
                    skipped[0] += 1
            if pause_s:
                time.sleep(rng.uniform(0, 2 * pause_s))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    if errors:
        print(f"{len(errors)} label calls failed, e.g. {errors[0]}", file=sys.stderr)
    return results, time.perf_counter() - started, skipped[0]


def analyses_in_background(url: str, clip: str, stop: threading.Event, busy: threading.Event, log: list):
    c = client(url)
    while not stop.is_set():
        busy.set()
        t0 = time.perf_counter()
        c.predict(*page_analyze_args(clip, perturbations=("noise", "mute", "shuffle")), api_name="/analyze")
        log.append(round(time.perf_counter() - t0, 2))
    busy.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--labels", type=int, default=25, help="labels per client and phase")
    parser.add_argument("--repeats", type=int, default=3, help="warm first-step measurements")
    parser.add_argument(
        "--pauses",
        type=float,
        nargs="+",
        default=[1.0, 0.0],
        help="mean seconds between one client's labels, one run each (1 = a fast annotator, 0 = back to back)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "app.json"))
    args = parser.parse_args()
    if args.quick:
        args.clients, args.labels, args.repeats = 5, 5, 1

    from annotation_db import Store
    from examples.make_examples import ensure_examples
    from inference.tiny import default_tiny_checkpoint

    checkpoint = str(default_tiny_checkpoint(log=lambda m: print(m, file=sys.stderr)))
    clip = str(next(p for p in ensure_examples() if p.name == "red_ball_chirp.mp4"))
    n_steps = 40
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        tmp_path = Path(tmp)
        with Store.open(tmp_path / "annotations.db") as store:
            store.add_trace(label_trace(n_steps))
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        t0 = time.perf_counter()
        server = start_server(tmp_path, checkpoint, port)
        results["server_start_s"] = round(time.perf_counter() - t0, 2)
        try:
            results["first_step_cold"] = first_step_via_client(url, clip)
            results["first_step_warm"] = [first_step_via_client(url, clip) for _ in range(args.repeats)]
            if CHROMIUM.exists():
                results["first_step_browser_s"] = first_step_in_browser(url, clip, args.repeats)

            for pause in args.pauses:
                load = os.getloadavg()[0]
                cpu0 = process_cpu_s(server.pid)
                ms, wall, _ = label_load(url, args.clients, args.labels, n_steps, None, pause)
                results[f"labels_idle_pause_{pause:g}s"] = {
                    **summary(ms),
                    "labels_per_s": round(len(ms) / wall, 1),
                    "server_cpu_ms_per_label": round((process_cpu_s(server.pid) - cpu0) * 1000 / len(ms), 1),
                    "load_average": round(load, 1),
                }

                stop, busy, analyses = threading.Event(), threading.Event(), []
                worker = threading.Thread(
                    target=analyses_in_background, args=(url, clip, stop, busy, analyses)
                )
                worker.start()
                busy.wait(60)
                time.sleep(1.0)  # the first analysis is past its upload
                load = os.getloadavg()[0]
                ms, wall, skipped = label_load(url, args.clients, args.labels, n_steps, busy, pause)
                stop.set()
                worker.join()
                results[f"labels_during_analysis_pause_{pause:g}s"] = {
                    **summary(ms),
                    "labels_per_s": round(len(ms) / wall, 1),
                    "outside_analysis": skipped,
                    "analyses_s": analyses,
                    "load_average": round(load, 1),
                }
        finally:
            server.terminate()
            server.wait(30)
    results["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    print()
    print(markdown(results, args))
    return 0


def markdown(r: dict, args) -> str:
    warm = [x["first_step_s"] for x in r["first_step_warm"] if x["first_step_s"] is not None]
    lines = [
        "| measure | value |",
        "| --- | --- |",
        f"| first step, first analysis (model loaded on this click), client | {r['first_step_cold']['first_step_s']} s |",
        f"| first step, warm, client (median of {len(warm)}) | {statistics.median(warm):.2f} s |"
        if warm
        else "",
        f"| whole analysis, warm, client (median) | {statistics.median(x['done_s'] for x in r['first_step_warm']):.2f} s |",
    ]
    if r.get("first_step_browser_s"):
        lines.append(f"| first step on screen, browser, click to step (median of {len(r['first_step_browser_s'])}) "
                     f"| {statistics.median(r['first_step_browser_s']):.2f} s |")  # fmt: skip
    lines += [
        "",
        f"| label round trip, {args.clients} clients | labels | p50 ms | p95 ms | p99 ms | max ms | labels/s | load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for pause in args.pauses:
        for name, key in (("server idle", "labels_idle"), ("analyses running", "labels_during_analysis")):
            s = r[f"{key}_pause_{pause:g}s"]
            lines.append(
                f"| {name}, {'back to back' if pause == 0 else f'{pause:g} s mean pause'} | {s['n']} | {s['p50_ms']} "
                f"| {s['p95_ms']} | {s['p99_ms']} | {s['max_ms']} | {s['labels_per_s']} | {s['load_average']} |"
            )
    cpu = [r[f"labels_idle_pause_{p:g}s"]["server_cpu_ms_per_label"] for p in args.pauses]
    lines += ["", f"Server CPU per label (idle phases): {', '.join(f'{c} ms' for c in cpu)}."]
    return "\n".join(line for line in lines if line != "")


if __name__ == "__main__":
    sys.exit(main())
