"""Load test of the running app: labeling clients and queued analyses at once, for a bounded time.

    .venv/bin/python bench/load.py                   # 20 labelers, 3 analysis clients, 120 s
    .venv/bin/python bench/load.py --seconds 30      # shorter (tests/hardening/test_load.py runs this scenario)

Starts ``python app.py`` (tiny model, ``--no-preload``) on a scratch database holding generated
traces, then drives it over HTTP as browsers would, all at once: ``--clients`` labeling sessions
and ``--analyses`` clients submitting analyses back to back (the scenario, and what it reports,
is ``testkit.load``'s).

Writes JSON to bench/out/load.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testkit.app_process import AppProcess  # noqa: E402
from testkit.load import load_traces, markdown, run_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--analyses", type=int, default=3, help="analysis clients (all but one wait)")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--pause", type=float, default=0.5, help="max seconds between a client's labels")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--checkpoint", default="tiny")
    args = parser.parse_args()

    from annotation_db import Store
    from examples.make_examples import ensure_examples

    tmp = Path(tempfile.mkdtemp(prefix="studio-load-"))
    db = tmp / "annotations.db"
    traces = load_traces(n_traces=8, n_steps=12)
    store = Store.open(db)
    store.add_traces(traces)
    store.close()
    clip = str(next(p for p in ensure_examples(tmp / "examples") if p.name == "red_ball_chirp.mp4"))
    app = AppProcess(
        ["--checkpoint", args.checkpoint, "--db", str(db), "--no-preload"], log_path=tmp / "server.log"
    )
    app.start()
    try:
        report = run_load(
            app.url, db, traces, clip, args.clients, args.analyses, args.seconds, args.pause,
            args.max_new_tokens, app.pid,
        )  # fmt: skip
    finally:
        app.stop()
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"Machine: {report['machine']}")
    return 0 if not report["n_lost"] and not report["labels"]["n_missing_or_different"] else 1


if __name__ == "__main__":
    sys.exit(main())
