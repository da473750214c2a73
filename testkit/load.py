"""The load scenario: labeling clients and queued analyses against a running app at once, for a
bounded time. ``bench/load.py`` runs it for its figures (bench/RESULTS.md) and
tests/hardening/test_load.py for its assertions.

- ``clients`` labeling sessions (``QueueClient``: one browser tab each, its own annotator name)
  label random steps of the stored traces with accept / reject / unsure, now and then undo,
  pausing 0 to ``pause_s`` s between requests; the state each answered request leaves (the
  verdict set, or what the undo went back to) is recorded as acknowledged;
- ``analyses`` clients (gradio_client, as a program or the page uses it) each submit analyses of
  an example clip back to back, so that all but one wait in the GPU queue; while waiting they
  record the queue position the server reports (the page shows it as "queue: 2/3").

When the time is up the labelers stop and the analyses in flight are awaited. Reported: every
request and whether it was answered (a result, or an error message) or lost (no answer: a
transport failure or a timeout), round trips per kind (p50 / p95 / max), the errors, the queue
positions seen, the server's peak memory, and for labels: how many were acknowledged and whether
the database holds, for every (annotator, trace, step), exactly the last acknowledged state.
"""

from __future__ import annotations

import random
import re
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from testkit.app_api import QueueClient, analyze_args
from testkit.app_process import peak_rss_mb

# the example clip "red_ball_chirp.mp4" (examples/make_examples.py) and its question
QUESTION = "Which way does the red ball move, and how does the sound change?"
OPTIONS = "Left to right, while the tone rises in pitch\nRight to left, while the tone rises in pitch"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(ms: list[float]) -> dict:
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
    }


VERDICTS = ("accept", "reject", "unsure")
UNDONE = re.compile(r"Undone on step (\d+): now (\w+)")


def load_traces(n_traces: int, n_steps: int) -> list[dict]:
    """Stored traces to label: ``n_traces`` of ``n_steps`` scored steps each."""
    rng = random.Random(0)
    return [
        {
            "schema_version": 1,
            "id": f"load-{t}",
            "source": "batch",
            "clip": {"sha256": f"{t:064x}", "name": f"load-{t}.mp4", "path": "", "frame_times_s": [0.0, 0.5]},
            "question": "What happens?",
            "options": ["a", "b"],
            "prompt_kind": "reasoning",
            "prompt": "",
            "model": {"id": "load"},
            "decoding": {},
            "steps": [
                {"index": k, "text": f"Trace {t}, step {k}: the ball moves on.", "score": rng.random()}
                for k in range(n_steps)
            ],
            "answer": {"text": "The answer is A.", "choice": "A"},
        }
        for t in range(n_traces)
    ]


@dataclass
class Tally:
    """What every client sent and got, shared by the client threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: Counter = field(default_factory=Counter)  # kind -> requests sent
    answered: Counter = field(default_factory=Counter)  # kind -> a result or an error message
    lost: list = field(default_factory=list)  # (kind, why): no answer
    errors: list = field(default_factory=list)  # (kind, message): answered with an error
    ms: dict = field(default_factory=dict)  # kind -> round trips
    acknowledged: dict = field(default_factory=dict)  # (annotator, trace, step) -> verdict | None
    n_acknowledged: int = 0
    queue_positions: list = field(default_factory=list)  # (rank, queue size) seen while waiting

    def record(self, kind: str, started: float, error: str | None = None, lost: str | None = None):
        with self.lock:
            self.sent[kind] += 1
            if lost is not None:
                self.lost.append((kind, lost[:300]))
                return
            self.answered[kind] += 1
            self.ms.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
            if error is not None:
                self.errors.append((kind, error[:300]))


def labeler(url: str, i: int, traces: list[dict], stop: threading.Event, pause_s: float, tally: Tally):
    """One annotator's browser tab labeling until ``stop``."""
    rng = random.Random(1000 + i)
    annotator = f"annotator-{i:02d}"
    client = QueueClient(url)
    mine: dict[tuple[str, int], str | None] = {}  # what this tab last saw acknowledged
    try:
        while not stop.is_set():
            trace = rng.choice(traces)
            k = rng.randrange(len(trace["steps"]))
            labeled_here = mine.get((trace["id"], k)) is not None  # else undo has nothing to go back to
            kind = "undo" if labeled_here and rng.random() < 0.15 else rng.choice(VERDICTS)
            error_type = "" if kind in ("accept", "undo") else "hallucination"
            # as the page sends them; the last value is the page's session state (None: no page)
            data = (
                [annotator, trace["id"], k, True, None]
                if kind == "undo"
                else [annotator, trace["id"], k, error_type, f"load {i}", True, None, None]
            )
            started = time.perf_counter()
            try:
                output = client.call(kind, data)
            except RuntimeError as exc:  # the server answered with an error message
                tally.record(kind, started, error=str(exc))
                continue
            except Exception as exc:  # no answer: a transport failure or a timeout
                tally.record(kind, started, lost=f"{type(exc).__name__}: {exc}")
                continue
            tally.record(kind, started)
            if kind == "undo":
                found = next((UNDONE.search(str(x)) for x in output if UNDONE.search(str(x))), None)
                if found is None:
                    tally.record("undo-parse", started, error=f"no undo message in {str(output)[:200]}")
                    continue
                target, state = int(found.group(1)) - 1, found.group(2)
                acknowledged = (trace["id"], target), None if state == "unlabeled" else state
            else:
                acknowledged = (trace["id"], k), kind
            mine[acknowledged[0]] = acknowledged[1]
            with tally.lock:
                tally.acknowledged[(annotator, *acknowledged[0])] = acknowledged[1]
                tally.n_acknowledged += 1
            if pause_s:
                time.sleep(rng.uniform(0, pause_s))
    finally:
        client.close()


def analyst(url: str, clip: str, stop: threading.Event, max_new_tokens: int, tally: Tally):
    """Submits analyses back to back until ``stop``; records the queue positions it is shown."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    while not stop.is_set():
        args = analyze_args(
            handle_file(clip), QUESTION, OPTIONS, "A", max_new_tokens=max_new_tokens, top_t=3,
            perturbations=["noise"], attention=False,
        )  # fmt: skip
        started = time.perf_counter()
        job = client.submit(*args, api_name="/analyze")
        while not job.done():
            status = job.status()
            waiting = getattr(status.code, "name", "") == "IN_QUEUE"
            if waiting and status.rank is not None and status.rank >= 0 and status.queue_size:
                with tally.lock:
                    tally.queue_positions.append((status.rank, status.queue_size))
            time.sleep(0.05)
        try:
            job.result(timeout=600)
        except Exception as exc:  # gradio_client raises AppError for a message from the app
            answered = type(exc).__name__ == "AppError"
            if answered:
                tally.record("analyze", started, error=str(exc))
            else:
                tally.record("analyze", started, lost=f"{type(exc).__name__}: {exc}")
            continue
        tally.record("analyze", started)


def stored_labels(db: Path) -> dict[tuple[str, str, int], str]:
    """(annotator, trace, step) -> the verdict in force, read straight from the database file."""
    from annotation_db import Store

    store = Store.open(db)
    try:
        out = {}
        for item in store.queue("\u2014", unlabeled_only=False):
            for label in store.labels_for_trace(item["trace_id"]):
                if label["alternative_id"] is None and label["verdict"] is not None:
                    out[(label["annotator"], item["trace_id"], label["step_index"])] = label["verdict"]
        return out
    finally:
        store.close()


def check_labels(tally: Tally, db: Path) -> dict:
    """Every acknowledged state is the stored one; nothing stored that was never acknowledged."""
    found = stored_labels(db)
    expected = {key: verdict for key, verdict in tally.acknowledged.items() if verdict is not None}
    missing = [key for key, verdict in expected.items() if found.get(key) != verdict]
    unexpected = [key for key in found if key not in expected]
    with sqlite3.connect(db) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return {
        "acknowledged": tally.n_acknowledged,
        "expected_in_force": len(expected),
        "found_in_force": len(found),
        "missing_or_different": [list(k) for k in missing[:20]],
        "n_missing_or_different": len(missing),
        "unexpected": [list(k) for k in unexpected[:20]],
        "integrity_check": integrity,
    }


def run_load(
    url: str,
    db: Path,
    traces: list[dict],
    clip: str,
    clients: int = 20,
    analyses: int = 3,
    seconds: float = 120.0,
    pause_s: float = 0.5,
    max_new_tokens: int = 64,
    server_pid: int | None = None,
) -> dict:
    """The scenario against a running app whose database ``db`` already holds ``traces``."""
    tally = Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(target=labeler, args=(url, i, traces, stop, pause_s, tally), name=f"labeler-{i}")
        for i in range(clients)
    ] + [
        threading.Thread(target=analyst, args=(url, clip, stop, max_new_tokens, tally), name=f"analyst-{j}")
        for j in range(analyses)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=900)
    hung = [t.name for t in threads if t.is_alive()]
    elapsed = time.perf_counter() - started
    report = {
        "clients": clients,
        "analysis_clients": analyses,
        "seconds": round(elapsed, 1),
        "requests": dict(tally.sent),
        "answered": dict(tally.answered),
        "lost": tally.lost[:20],
        "n_lost": len(tally.lost),
        "hung_clients": hung,
        "errors": Counter(f"{kind}: {message}" for kind, message in tally.errors).most_common(10),
        "n_errors": len(tally.errors),
        "round_trip": {kind: summary(ms) for kind, ms in sorted(tally.ms.items())},
        "labels_per_s": round(sum(tally.answered[v] for v in (*VERDICTS, "undo")) / elapsed, 1),
        "queue_positions_seen": sorted(Counter(tally.queue_positions).items())[:20],
        "labels": check_labels(tally, db),
    }
    if server_pid is not None:
        report["server_peak_rss_mb"] = round(peak_rss_mb(server_pid), 1)
    return report


def markdown(r: dict) -> str:
    lines = [
        f"{r['clients']} labeling clients + {r['analysis_clients']} analysis clients for {r['seconds']} s; "
        f"{r['labels_per_s']} labels/s; server peak RSS {r.get('server_peak_rss_mb', '?')} MB",
        "",
        "| kind | requests | answered | p50 ms | p95 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, s in r["round_trip"].items():
        lines.append(
            f"| {kind} | {r['requests'].get(kind, 0)} | {r['answered'].get(kind, 0)} | {s['p50_ms']} | "
            f"{s['p95_ms']} | {s['max_ms']} |"
        )
    labels = r["labels"]
    lines += [
        "",
        f"Lost (no answer): {r['n_lost']}; errors: {r['n_errors']}; hung clients: {len(r['hung_clients'])}.",
        f"Labels acknowledged: {labels['acknowledged']}; in force expected {labels['expected_in_force']}, "
        f"found {labels['found_in_force']}, missing or different {labels['n_missing_or_different']}, "
        f"unexpected {len(labels['unexpected'])}; integrity_check {labels['integrity_check']}.",
        f"Queue positions shown to waiting analyses (rank, queue size: times seen): {r['queue_positions_seen']}",
    ]
    return "\n".join(lines)
