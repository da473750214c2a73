"""Benchmark of a new user's first minute: a fresh clone, ``bash scripts/run.sh``, the page, a
ready model.

    python bench/first_run.py                       # clone HEAD, reuse this checkout's .venv
    python bench/first_run.py --venv NONE           # also let scripts/setup.sh install .venv
    python bench/first_run.py --app-only            # run.sh's last line only (no pip at all)

Clones this repository's HEAD (committed files only) into a scratch folder, with an empty
``STUDIO_CACHE`` there, so the tiny demo model is built from its recipe exactly as on a fresh
machine. By default the clone's ``.venv`` is a link to an existing one (installing torch is a
matter of the network, not of the project; ``scripts/setup.sh`` then only checks the pins).
Then runs ``bash scripts/run.sh`` and records, from its start:

- page: the first ``GET /`` that answers 200;
- ready: the server's log line "model ready" (the tiny model built and loaded);
- the build's own figure from the log, and the CPU seconds the app process used until ready
  (on a busy machine wall time stretches, CPU seconds much less).

Writes the numbers as JSON to bench/out/first_run.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "first_run.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its finished children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def clone(into: Path, venv: str) -> Path:
    target = into / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    if venv != "NONE":
        (target / ".venv").symlink_to(Path(venv).resolve())
    return target


def measure(checkout: Path, scratch: Path, timeout_s: float, app_only: bool) -> dict:
    port = free_port()
    env = {
        **os.environ,
        "STUDIO_CACHE": str(scratch / "cache"),
        "STUDIO_DB": str(scratch / "annotations.db"),
        "STUDIO_PORT": str(port),
        "GRADIO_SERVER_PORT": str(port),
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONUNBUFFERED": "1",
    }
    started = time.perf_counter()
    # run.sh = scripts/setup.sh (pip: create or check .venv), then .venv/bin/python app.py
    command = [".venv/bin/python", "app.py"] if app_only else ["bash", "scripts/run.sh"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(
        target=lambda: [
            lines.append((time.perf_counter() - started, line.rstrip())) for line in process.stdout
        ],
        daemon=True,
    )
    reader.start()
    url = f"http://127.0.0.1:{port}/"
    page_s = ready_s = cpu_s = None
    try:
        while time.perf_counter() - started < timeout_s and process.poll() is None:
            if page_s is None and page_answers(url):
                page_s = time.perf_counter() - started
            ready = next((t for t, line in list(lines) if "model ready" in line), None)
            if ready is not None and ready_s is None:
                ready_s, cpu_s = ready, cpu_seconds(process.pid)
            if page_s is not None and ready_s is not None:
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    log = [line for _, line in lines]
    if ready_s is None:
        print("\n".join(log[-30:]), file=sys.stderr)
        raise SystemExit(f"no ready model within {timeout_s:.0f} s")
    build_lines = [line for line in log if "tiny-checkpoint: step" in line]
    return {
        "page_s": round(page_s, 1) if page_s is not None else None,
        "ready_s": round(ready_s, 1),
        "app_cpu_s_until_ready": round(cpu_s, 1),
        "last_build_line": build_lines[-1] if build_lines else None,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--venv",
        default=str(REPO / ".venv"),
        help="an installed .venv to link into the clone, or NONE to let scripts/setup.sh create one",
    )
    parser.add_argument(
        "--app-only",
        action="store_true",
        help="start .venv/bin/python app.py as run.sh does, without its pip step (leaves a shared .venv alone)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a ready model")
    args = parser.parse_args()
    if args.venv != "NONE" and not (Path(args.venv) / "bin" / "python").exists():
        raise SystemExit(f"no virtual environment at {args.venv}: run bash scripts/setup.sh or pass --venv")
    scratch = Path(tempfile.mkdtemp(prefix="studio-first-run-"))
    try:
        checkout = clone(scratch, args.venv)
        result = measure(checkout, scratch, args.timeout, args.app_only)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.update(
        {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "venv": "linked" if args.venv != "NONE" else "installed by scripts/setup.sh",
            "command": "app.py (no pip step)" if args.app_only else "bash scripts/run.sh",
        }
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("| page (s) | ready model (s) | app CPU s until ready | load avg | cpus |")
    print("|---|---|---|---|---|")
    print(
        f"| {result['page_s']} | {result['ready_s']} | {result['app_cpu_s_until_ready']} | "
        f"{result['load_average_1min_at_end']} | {result['cpus']} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
