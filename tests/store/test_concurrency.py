"""Concurrent writers (threads and processes) and a writer killed with SIGKILL lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from annotation_db import VERDICTS, Store
from annotation_db.migrations import migrations

WRITER = Path(__file__).with_name("writer.py")
N_STEPS = 6


def _spawn(db: Path, mode: str, annotator: str, n: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(db), mode, annotator, str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def db_with_trace(tmp_path, make_trace) -> Path:
    path = tmp_path / "shared.db"
    with Store.open(path) as store:
        store.add_trace(make_trace("t", [f"step {k}" for k in range(N_STEPS)]))
    return path


def _events(store: Store) -> dict[str, int]:
    rows = store.db.execute("SELECT comment, count(*) FROM label_events GROUP BY comment").fetchall()
    return dict(rows)


def test_eight_threads_labeling_the_same_steps(db_with_trace):
    rounds = 12
    errors: list[BaseException] = []
    acked: dict[str, list[str]] = {}
    start = threading.Barrier(8)
    with Store.open(db_with_trace) as store:

        def work(n: int) -> None:
            name = f"thread{n}"
            acked[name] = []
            try:
                start.wait()
                for r in range(rounds):
                    for k in range(N_STEPS):
                        comment = f"{name}-{r}-{k}"
                        store.set_label(name, "t", k, VERDICTS[(n + r + k) % 3], comment=comment)
                        acked[name].append(comment)
            except BaseException as exc:  # noqa: BLE001 - surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        events = _events(store)
        for name, comments in acked.items():
            assert len(comments) == rounds * N_STEPS
            assert all(events.get(c) == 1 for c in comments), name
            final = {lab["step_index"]: lab["comment"] for lab in store.labels_for_trace("t", name)}
            assert final == {k: f"{name}-{rounds - 1}-{k}" for k in range(N_STEPS)}
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_processes_labeling_the_same_steps(db_with_trace):
    procs = {name: _spawn(db_with_trace, "labels", name, 10) for name in ("procA", "procB")}
    outputs = {name: proc.communicate(timeout=120) for name, proc in procs.items()}
    for name, proc in procs.items():
        assert (proc.returncode, outputs[name][1]) == (0, ""), name
    with Store.open(db_with_trace) as store:
        events = _events(store)
        for name, (stdout, _) in outputs.items():
            acks = [line.split()[3] for line in stdout.splitlines() if line.startswith("ack ")]
            assert len(acks) == 10 * N_STEPS
            assert all(events.get(c) == 1 for c in acks)
            final = {lab["step_index"]: lab["comment"] for lab in store.labels_for_trace("t", name)}
            assert final == {k: f"{name}-9-{k}" for k in range(N_STEPS)}
            assert store.progress()["annotators"][name]["time_s"] == pytest.approx(0.5 * 10 * N_STEPS)


def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path):
    path = tmp_path / "fresh.db"
    procs = [_spawn(path, "open", f"p{i}", 0) for i in range(4)]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [(proc.returncode, out, err) for proc, (out, err) in zip(procs, results, strict=True)] == [
        (0, "ack\n", "")
    ] * 4
    with Store.open(path) as store:
        assert store.db["_sqlite_migrations"].count == len(migrations._migrations)  # each once


def _kill_after(proc: subprocess.Popen, acks: int) -> list[str]:
    """Read acks until ``acks`` arrived, SIGKILL the writer at once, return every ack line."""
    lines = []
    while len(lines) < acks:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        lines.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    # Read through the same buffered reader: communicate() would skip lines already buffered.
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    return lines + [line for line in rest.splitlines() if line.startswith("ack")]


def test_writer_killed_mid_batch_loses_no_acknowledged_label(db_with_trace):
    proc = _spawn(db_with_trace, "batches", "crashy", 0)
    acked = [int(line.split()[1]) for line in _kill_after(proc, 5)]
    with Store.open(db_with_trace) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []
        events = _events(store)
        # Every acknowledged batch is there in full; the interrupted one entirely or not at all.
        assert all(events.get(f"batch-{i}") == N_STEPS for i in acked)
        assert set(events.values()) == {N_STEPS}
        last = max(int(c.split("-")[1]) for c in events)
        assert last in (acked[-1], acked[-1] + 1)
        final = {lab["comment"] for lab in store.labels_for_trace("t", "crashy")}
        assert final == {f"batch-{last}"}
        # The store is fully usable after the crash.
        assert store.set_label("crashy", "t", 0, "accept")["verdict"] == "accept"


def test_importer_killed_mid_import_leaves_whole_files_only(tmp_path):
    path = tmp_path / "imports.db"
    Store.open(path).close()
    proc = _spawn(path, "imports", "imp", 0)
    acked = [int(line.split()[1]) for line in _kill_after(proc, 2)]
    with Store.open(path) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        traces = store.db["traces"].count
        assert traces % 200 == 0 and traces >= 200 * len(acked)
        assert store.db["steps"].count == traces


def test_a_writer_stuck_elsewhere_gives_a_busy_error_not_a_hang(db_with_trace):
    import fcntl

    from annotation_db import StoreBusyError, StoreConfig

    with Store.open(db_with_trace, StoreConfig(busy_timeout_s=0.3)) as store:
        fd = os.open(str(db_with_trace) + "-writer.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: as if another process wrote
            with pytest.raises(StoreBusyError, match="another process held the database for 0 s; try again"):
                store.set_label("alice", "t", 0, "accept")
        finally:
            os.close(fd)
        assert store.set_label("alice", "t", 0, "accept")["verdict"] == "accept"
        assert store.db["label_events"].count == 1
