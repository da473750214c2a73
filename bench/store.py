"""Benchmark of the annotation store: label write latency, import and export throughput.

    .venv/bin/python bench/store.py            # the figures in bench/RESULTS.md
    .venv/bin/python bench/store.py --quick    # smaller sizes, a smoke run

Measures, on a scratch directory:
1. import of 10,000 Traces (8 steps with scores and per-token KL, one alternative each) from
   JSONL, and the same file again (idempotent: everything skipped);
2. label write latency (one ``set_label`` call = one committed transaction) with 1 writer and
   with 8 concurrent writers, as 8 threads sharing one Store (a web server) and as 8 processes,
   for synchronous=NORMAL (the default) and FULL, writing back to back (a stress test: 8
   processes on 2 cores are CPU-bound) and with a random pause of 10 ms on average between a
   writer's labels (still ~100 labels/s per writer, far above a person); p50 / p99 / max in ms;
3. export of 100,000 labelled steps (10,000 traces x 10 steps, plus a labelled alternative and
   a preference per trace) to every format, JSONL and Parquet.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_db import FORMATS, VERDICTS, Store, StoreConfig  # noqa: E402

CLIP = "ab" * 32


def trace(i: int, n_steps: int, rng: random.Random) -> dict:
    steps = [
        {
            "index": k,
            "text": f"Step {k} of trace {i}: the person in the video does thing number {rng.randint(0, 999)}.",
            "token_start": 20 * k,
            "token_end": 20 * k + 19,
            "score": rng.random(),
            "token_kl": [round(rng.random(), 4) for _ in range(19)],
            "top_t": False,
            "scores": {},
            "token_kls": {},
            "expected_correctness": None,
        }
        for k in range(n_steps)
    ]
    return {
        "schema_version": 1,
        "id": f"trace-{i:06d}",
        "source": "batch",
        "clip": {
            "sha256": f"{i // 10:064x}",
            "name": f"clip{i // 10}.mp4",
            "path": f"/clips/clip{i // 10}.mp4",
        },
        "question": f"What happens in clip {i // 10}?",
        "options": ["a", "b", "c"],
        "reference_answer": "B",
        "prompt_kind": "reasoning",
        "prompt": f"<|im_start|>user\n<image>\n\nQuestion: What happens in clip {i // 10}?<|im_end|>\n",
        "steps": steps,
        "alternatives": [
            {"step_index": 1, "text": f"Alternative for trace {i}.", "expected_correctness": 0.5}
        ],
        "answer": {"text": "The answer is B.", "choice": "B"},
        "created_at": "2025-01-01T00:00:00+00:00",
    }


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"n": len(ordered), "p50": q[49] * 1e3, "p99": q[98] * 1e3, "max": ordered[-1] * 1e3}


def bench_import(work: Path, n: int) -> list[str]:
    rng = random.Random(0)
    path = work / "traces.jsonl"
    with open(path, "w") as handle:
        for i in range(n):
            handle.write(json.dumps(trace(i, 8, rng)) + "\n")
    size_mb = path.stat().st_size / 1e6
    rows = []
    with Store.open(work / "import.db") as store:
        for what in ("import (new)", "import again (all skipped)"):
            start, cpu = time.perf_counter(), time.process_time()
            result = store.import_traces(path)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            rows.append(
                f"| {what} | {n:,} traces ({size_mb:.0f} MB JSONL) | {elapsed:.2f} s | {cpu:.2f} s | "
                f"{n / elapsed:,.0f} traces/s | added {result['added']}, skipped {result['skipped']} |"
            )
    return rows


# ---------------------------------------------------------------------- label latency


def _write_labels(
    store: Store, name: str, n: int, n_traces: int, seed: int, think_s: float = 0.0
) -> list[float]:
    """``n`` labels by ``name``; between two writes a pause uniform in [0, 2 * think_s]."""
    rng = random.Random(seed)
    latencies = []
    for _ in range(n):
        if think_s:
            time.sleep(rng.uniform(0, 2 * think_s))
        t, k = rng.randrange(n_traces), rng.randrange(4)
        verdict = rng.choice(VERDICTS)
        start = time.perf_counter()
        store.set_label(name, f"trace-{t:06d}", k, verdict, comment="bench", time_spent_s=1.0)
        latencies.append(time.perf_counter() - start)
    return latencies


def _process_writer(
    db: str, synchronous: str, name: str, n: int, n_traces: int, think_s: float, barrier, queue
) -> None:
    with Store.open(db, StoreConfig(synchronous=synchronous)) as store:
        barrier.wait()
        queue.put(_write_labels(store, name, n, n_traces, sum(map(ord, name)), think_s))


def bench_latency(work: Path, n_per_writer: int, synchronous: str, think_s: float) -> list[str]:
    db = work / f"latency-{synchronous}-{think_s}.db"
    n_traces = 200
    rng = random.Random(1)
    with Store.open(db) as store:
        store.add_traces([trace(i, 4, rng) for i in range(n_traces)])
    config = StoreConfig(synchronous=synchronous)
    rows = []

    with Store.open(db, config) as store:
        one = percentiles(_write_labels(store, "solo", n_per_writer * 2, n_traces, 7, think_s))
    rows.append(("1 writer", one))

    with Store.open(db, config) as store:
        results: list[list[float]] = [[] for _ in range(8)]
        barrier = threading.Barrier(8)

        def run(i: int) -> None:
            store.db.execute("SELECT 1")  # open this thread's connection before the clock starts
            barrier.wait()
            results[i] = _write_labels(store, f"thread{i}", n_per_writer, n_traces, i, think_s)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    rows.append(("8 threads, one Store", percentiles([x for r in results for x in r])))

    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(8), ctx.Queue()
    procs = [
        ctx.Process(
            target=_process_writer,
            args=(str(db), synchronous, f"proc{i}", n_per_writer, n_traces, think_s, barrier, queue),
        )
        for i in range(8)
    ]
    for p in procs:
        p.start()
    gathered = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    rows.append(("8 processes", percentiles([x for r in gathered for x in r])))
    pace = "none (back to back)" if not think_s else f"{think_s * 1e3:.0f} ms mean"
    return [
        f"| {synchronous} | {pace} | {what} | {r['n']:,} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.1f} |"
        for what, r in rows
    ]


# ---------------------------------------------------------------------- export


def bench_export(work: Path, n_traces: int) -> tuple[list[str], str]:
    rng = random.Random(2)
    db = work / "export.db"
    setup = time.perf_counter()
    with Store.open(db) as store:
        store.add_traces([trace(i, 10, rng) for i in range(n_traces)])
        for start in range(0, n_traces, 100):
            items = []
            for i in range(start, min(start + 100, n_traces)):
                tid = f"trace-{i:06d}"
                for k in range(10):
                    verdict = "reject" if (k == 1 and i % 2 == 0) or rng.random() < 0.05 else "accept"
                    items.append({"trace_id": tid, "step_index": k, "verdict": verdict})
                items.append({"trace_id": tid, "step_index": 1, "alternative_id": i + 1, "verdict": "accept"})
            store.set_labels("alice", items)
        for i in range(0, n_traces, 4):
            store.record_preference("bob", f"trace-{i:06d}", 1, i + 1, "alternative")
        labelled = store.db.execute("SELECT count(*) FROM labels WHERE item_kind = 'step'").fetchone()[0]
    setup_s = time.perf_counter() - setup
    rows = []
    with Store.open(db) as store:
        for fmt in FORMATS:
            for suffix in (".jsonl", ".parquet"):
                out = work / f"export-{fmt}{suffix}"
                start, cpu = time.perf_counter(), time.process_time()
                result = store.export(fmt, out)
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                rows.append(
                    f"| {fmt} | {suffix} | {result['records']:,} | {elapsed:.2f} s | {cpu:.2f} s | "
                    f"{out.stat().st_size / 1e6:.1f} MB |"
                )
    note = (
        f"{labelled:,} labelled steps in {n_traces:,} traces (+{n_traces:,} labelled alternatives, "
        f"{len(range(0, n_traces, 4)):,} preferences); labelling them with `set_labels` in batches of "
        f"1,010 plus the import took {setup_s:.1f} s"
    )
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    n_import, n_latency, n_export = (500, 50, 500) if args.quick else (10_000, 250, 10_000)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        work = Path(tmp)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"machine: {platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} CPUs, "
            f"load average {load:.1f} at start, Python {platform.python_version()}, "
            f"SQLite {__import__('sqlite3').sqlite_version}\n"
        )
        print("| step | size | wall time | CPU time | rate | result |\n| --- | --- | --- | --- | --- | --- |")
        print("\n".join(bench_import(work, n_import)), flush=True)
        print(
            "\n| synchronous | pause between writes | writers | writes | p50 ms | p99 ms | max ms |\n"
            "| --- | --- | --- | --- | --- | --- | --- |"
        )
        for sync in ("NORMAL", "FULL"):
            for think_s in (0.0, 0.01):
                print("\n".join(bench_latency(work, n_latency, sync, think_s)), flush=True)
        rows, note = bench_export(work, n_export)
        print(f"\nexport: {note}\n")
        print(
            "| format | file | records | wall time | CPU time | size |\n| --- | --- | --- | --- | --- | --- |"
        )
        print("\n".join(rows))


if __name__ == "__main__":
    main()
