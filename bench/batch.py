"""Batch throughput: clips per minute with 1 and 2 processes (the data-parallel scaling).

    python bench/batch.py [--clips 12] [--max-new-tokens 32] [--repeats 1] [--gpu]

CPU (always): the tiny checkpoint (built on first use), ``--clips`` generated 3 s clips, one
question each, greedy. Runs ``python -m inference batch`` (one process) and
``accelerate launch --config_file examples/accelerate/one_node_multi_gpu.yaml --num_processes 2``
(two CPU processes), each into a fresh folder, alternating when ``--repeats`` > 1. Reports
per run: wall time of the whole launch (interpreter and launcher start included), the
command's own wall time (summary.json), the slowest process's time in items (model loading
excluded), and clips per minute on both clocks; then the 2-process / 1-process ratios.

GPU (``--gpu``, only when CUDA is present): the same with ``--device cuda``, one process, and
one process per GPU when there are several.

Append the printed table to bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.app_process import free_port  # noqa: E402

CONFIG = REPO / "examples" / "accelerate" / "one_node_multi_gpu.yaml"


def make_manifest(folder: Path, n: int) -> Path:
    from examples.synth import write_clip

    rows = []
    shapes = (("circle",), ("square",), ("circle", "square"))
    for i in range(n):
        name = f"clip{i:02d}.mp4"
        write_clip(
            folder / name,
            seconds=3.0,
            fps=8,
            size=(160, 96),
            shapes=shapes[i % 3],
            audio=("tone", "chirp", "beeps")[i % 3],
        )
        rows.append({"file": name, "question": "Which shape moves?", "options": ["circle", "square", "both"]})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_once(
    manifest: Path,
    out: Path,
    processes: int,
    device: str,
    checkpoint: str,
    max_new_tokens: int,
    threads: int = 0,
) -> dict:
    args = [
        "-m",
        "inference",
        "batch",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--checkpoint",
        checkpoint,
        "--device",
        device,
        "--max-new-tokens",
        str(max_new_tokens),
        "--no-progress",
    ]
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        cmd = [accelerate, "launch", "--config_file", str(CONFIG), "--num_processes", str(processes)]
        cmd += ["--main_process_port", str(free_port()), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if threads:
        cmd += ["--torch-threads", str(threads)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    launch_s = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"batch run failed:\n{done.stderr[-4000:]}")
    summary = json.loads((out / "summary.json").read_text())
    items = summary["done_now"]
    in_items = max(r["work_s"] - r["load_s"] for r in summary["ranks"])
    return {
        "processes": processes,
        "threads": threads or ("torch default" if processes == 1 else "cores / processes"),
        "threads_asked": threads,
        "device": device,
        "items": items,
        "failed": summary["failed_now"],
        "launch_s": launch_s,
        "command_s": summary["wall_s"],
        "in_items_s": in_items,
        "per_min_launch": 60 * items / launch_s,
        "per_min_command": 60 * items / summary["wall_s"],
        "per_min_items": 60 * items / in_items,
        "tokens": summary["tokens"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="also on CUDA (one process per GPU)")
    parser.add_argument("--json", help="also write the runs as JSON here")
    args = parser.parse_args()

    os.environ.setdefault("STUDIO_CACHE", str(REPO / ".cache" / "studio"))
    from inference.tiny import default_tiny_checkpoint

    checkpoint = str(default_tiny_checkpoint(log=lambda m: print(m, file=sys.stderr)))
    # (device, processes, torch threads per process; 0 = default: torch's for one process, accelerate's
    # cores / processes for several). One thread per process is the fair baseline for the scaling.
    plans = [("cpu", 1, 0), ("cpu", 1, 1), ("cpu", 2, 0)]
    if args.gpu:
        import torch

        if torch.cuda.is_available():
            plans += [("cuda", 1)] + (
                [("cuda", torch.cuda.device_count())] if torch.cuda.device_count() > 1 else []
            )
        else:
            print("no CUDA device: GPU runs skipped", file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        manifest = make_manifest(Path(tmp), args.clips)
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", file=sys.stderr)
        for r in range(args.repeats):
            for device, processes, threads in plans:
                out = Path(tmp) / f"out-{device}-{processes}-{threads}-{r}"
                result = run_once(manifest, out, processes, device, checkpoint, args.max_new_tokens, threads)
                print(json.dumps(result), file=sys.stderr)
                runs.append(result)
        print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)

    print(f"{args.clips} clips of 3 s, tiny checkpoint, {args.max_new_tokens} new tokens max, greedy")
    print()
    print(
        "| device | processes | threads each | clips | launch wall s | command wall s | slowest process in items s "
        "| clips/min (launch) | clips/min (command) | clips/min (in items) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    medians = {}
    for plan in plans:
        mine = [r for r in runs if (r["device"], r["processes"], r["threads_asked"]) == plan]
        m = {
            k: statistics.median(r[k] for r in mine) for k in mine[0] if isinstance(mine[0][k], (int, float))
        }
        medians[plan] = m
        print(
            f"| {plan[0]} | {plan[1]} | {mine[0]['threads']} | {int(m['items'])} | {m['launch_s']:.1f} "
            f"| {m['command_s']:.1f} | {m['in_items_s']:.1f} | {m['per_min_launch']:.1f} "
            f"| {m['per_min_command']:.1f} | {m['per_min_items']:.1f} |"
        )
    for device in dict.fromkeys(d for d, _, _ in plans):
        many_count = max(p for d, p, _ in plans if d == device)
        if many_count == 1:
            continue
        # Baseline: one process with one thread where measured (what each of the N processes has).
        one = medians.get((device, 1, 1)) or medians[(device, 1, 0)]
        many = medians[(device, many_count, 0)]
        print()
        print(
            f"{device} scaling {many_count} processes / 1: "
            f"{many['per_min_launch'] / one['per_min_launch']:.2f}x (launch), "
            f"{many['per_min_command'] / one['per_min_command']:.2f}x (command), "
            f"{many['per_min_items'] / one['per_min_items']:.2f}x (in items)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
