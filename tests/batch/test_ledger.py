"""The output folder as a ledger, without a model: exactly once, unfinished lines cut, failures
recorded and retried, the lock and the settings check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inference.batch.items import BatchError, BatchSettings, plan_items, read_manifest, shard
from inference.batch.ledger import Ledger, LedgerWatcher, append_line, plan_run, summarize
from inference.batch.run import RankReport, work_through
from inference.errors import MediaNotFoundError
from studio_trace import ClipInfo, Step, Trace
from tests.batch.conftest import write_manifest

SETTINGS = BatchSettings(checkpoint="tiny", max_new_tokens=8)


@pytest.fixture
def items(tmp_path):
    rows = [{"file": f"clip{i}.mp4", "question": "Q?", "options": ["x", "y"]} for i in range(4)]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    return plan_items(read_manifest(manifest), 2, SETTINGS.fingerprint())[0]


def fake_trace(item, unreadable: str | None = "clip3.mp4") -> Trace:
    """What the worker returns for an item, without a model (``unreadable`` cannot be read)."""
    if item.entry.video.name == unreadable:
        raise MediaNotFoundError(unreadable)
    return Trace(
        question=item.entry.question,
        clip=ClipInfo(sha256="ab" * 32, name=item.entry.video.name, path=str(item.entry.video)),
        options=item.entry.options,
        steps=[Step(0, f"step of {item.item_id}")],
        decoding={"generated_ids": [1, 2, 3]},
        source="batch",
        id=item.trace_id,
    )


def run_rank(ledger, items, pending, rank, world, run_id="r1", make=fake_trace):
    mine = [items[i] for i in shard(pending, rank, world)]
    return work_through(mine, make, ledger, RankReport(run_id, rank, len(mine)), log=lambda m: None)


def complete_lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def test_ranks_write_disjoint_shards_and_failures_go_on(tmp_path, items):
    ledger = Ledger(tmp_path / "out")
    plan = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    assert plan["pending"] == list(range(8))
    reports = [run_rank(ledger, items, plan["pending"], r, 3) for r in range(3)]
    ledger.unlock()
    assert [(r.done, r.failed, r.tokens) for r in reports] == [(2, 1, 6), (2, 1, 6), (2, 0, 6)]
    found = ledger.scan()
    assert sorted(found.done) == sorted(i.item_id for i in items[:6])
    assert sorted(found.failures) == sorted(i.item_id for i in items[6:])
    assert (
        found.failures[items[6].item_id]["reason"] == "clip3.mp4: no such file; check the path and try again"
    )
    assert (found.duplicates, found.unreadable) == (0, 0)


def test_a_line_cut_by_a_kill_is_removed_and_its_item_redone(tmp_path, items):
    ledger = Ledger(tmp_path / "out")
    plan = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    run_rank(ledger, items, plan["pending"][:2], 0, 1)
    ledger.unlock()
    shard_path = ledger.trace_shard(0)
    whole = shard_path.read_bytes()
    # Process 1 died inside the write of item 2: half its line is in its shard.
    half = (json.dumps(fake_trace(items[2]).to_dict()) + "\n").encode()[:100]
    ledger.trace_shard(1).write_bytes(half)
    plan = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    assert (plan["repaired_bytes"], plan["done_before"], plan["pending"]) == (100, 2, list(range(2, 8)))
    assert ledger.trace_shard(1).read_bytes() == b"" and shard_path.read_bytes() == whole
    for rank in range(2):
        run_rank(ledger, items, plan["pending"], rank, 2, run_id="r2")
    ledger.unlock()
    ids = [t["id"] for p in ledger.trace_shards() for t in complete_lines(p)]
    assert sorted(ids) == sorted(i.trace_id for i in items[:6])


def test_an_item_interrupted_before_its_write_leaves_nothing(tmp_path, items):
    ledger = Ledger(tmp_path / "out")
    plan = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")

    def dies_at_item_1(item):
        if item.index == 1:
            raise KeyboardInterrupt  # not an item failure: the process stops here
        return fake_trace(item)

    with pytest.raises(KeyboardInterrupt):
        run_rank(ledger, items, plan["pending"], 0, 1, make=dies_at_item_1)
    ledger.unlock()
    assert [t["id"] for t in complete_lines(ledger.trace_shard(0))] == [items[0].trace_id]
    assert ledger.failure_shard(0).read_bytes() == b""
    assert plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")["pending"] == list(range(1, 8))


def test_failures_are_retried_unless_told_not_to(tmp_path, items):
    ledger = Ledger(tmp_path / "out")
    plan = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    run_rank(ledger, items, plan["pending"], 0, 1)
    ledger.unlock()
    again = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    ledger.unlock()
    assert (again["pending"], again["done_before"], again["not_retried"]) == ([6, 7], 6, 0)
    skip = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl", retry_failures=False)
    assert (skip["pending"], skip["done_before"], skip["not_retried"]) == ([], 6, 2)
    ledger.unlock()


def test_summary_merges_in_manifest_order_and_lists_current_failures(tmp_path, items):
    ledger = Ledger(tmp_path / "out")
    plan = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    reports = [run_rank(ledger, items, plan["pending"], r, 2) for r in range(2)]
    ledger.unlock()
    # The clip appears: a rerun makes its items, and they are no longer failures.
    plan = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    assert plan["pending"] == [6, 7]
    reports = [
        run_rank(
            ledger, items, plan["pending"], 0, 1, run_id=plan["run_id"], make=lambda i: fake_trace(i, None)
        )
    ]
    summary = summarize(ledger, items, plan, [r.__dict__ for r in reports], 0, 2.0)
    ledger.unlock()
    merged = [json.loads(line) for line in (ledger.out / "traces.jsonl").read_text().splitlines()]
    assert [t["id"] for t in merged] == [i.trace_id for i in items]
    assert (ledger.out / "failures.jsonl").read_text() == ""
    assert {
        k: summary[k]
        for k in ("items", "done_now", "already_done", "failed_now", "finished", "failed", "missing")
    } == {
        "items": 8,
        "done_now": 2,
        "already_done": 6,
        "failed_now": 0,
        "finished": 8,
        "failed": 0,
        "missing": 0,
    }
    assert json.loads((ledger.out / "summary.json").read_text()) == summary


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, items):
    first = Ledger(tmp_path / "out")
    plan_run(first, SETTINGS, items, tmp_path / "m.jsonl")
    with pytest.raises(
        BatchError,
        match=r"another batch run is writing to .*out; wait for it to finish or pass another --out",
    ):
        plan_run(Ledger(tmp_path / "out"), SETTINGS, items, tmp_path / "m.jsonl")
    first.unlock()
    plan_run(Ledger(tmp_path / "out"), SETTINGS, items, tmp_path / "m.jsonl")


def test_a_resume_with_other_settings_is_refused(tmp_path, items):
    ledger = Ledger(tmp_path / "out")
    plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    ledger.unlock()
    other = BatchSettings(checkpoint="tiny", max_new_tokens=16, score=True)
    with pytest.raises(BatchError) as caught:
        plan_run(ledger, other, items, tmp_path / "m.jsonl")
    assert str(caught.value) == (
        f"{tmp_path / 'out'} holds a batch run with other settings (max_new_tokens 8 -> 16, score False -> True); "
        "pass the same flags to resume it, or another --out"
    )


def test_the_watcher_counts_only_lines_appended_after_it_started(tmp_path, items):
    ledger = Ledger(tmp_path / "out")
    plan = plan_run(ledger, SETTINGS, items, tmp_path / "m.jsonl")
    run_rank(ledger, items, plan["pending"][:3], 0, 1)
    watcher = LedgerWatcher(ledger)
    assert watcher.poll() == 0
    fd = os.open(ledger.trace_shard(5), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    append_line(fd, {"id": "batch-x"})
    os.write(fd, b'{"id": "batch-half')  # unfinished: not counted
    os.close(fd)
    run_rank(ledger, items, plan["pending"][6:], 0, 1)  # two failures
    assert watcher.poll() == 3
    ledger.unlock()


def test_an_unreadable_run_file_is_an_error(tmp_path, items):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.json").write_text("{half")
    with pytest.raises(BatchError) as caught:
        plan_run(Ledger(tmp_path / "out"), SETTINGS, items, tmp_path / "m.jsonl")
    assert (
        str(caught.value)
        == f"{tmp_path / 'out' / 'run.json'} cannot be read as a batch run's settings; pass another --out"
    )
