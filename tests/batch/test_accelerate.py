"""``accelerate launch`` with two CPU processes and the tiny checkpoint: every item exactly
once, bad items recorded with their reasons, a resume after one process is killed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from inference.batch.items import read_manifest
from tests.batch.conftest import GOOD, SAMPLES, batch_args, child_env, launch, launch_command

pytestmark = pytest.mark.slow


def item_ids(manifest: Path, run_dir: Path) -> list[str]:
    """The ids the run's settings give the manifest's items (run.json keeps the settings)."""
    from inference.batch.items import BatchSettings, plan_items

    stored = json.loads((run_dir / "run.json").read_text())["settings"]
    stored["sources"] = tuple(stored["sources"])
    stored["perturb"] = tuple(stored["perturb"])
    settings = BatchSettings(**stored)
    items, _ = plan_items(read_manifest(manifest), SAMPLES, settings.fingerprint())
    return [item.item_id for item in items]


def shard_lines(out: Path, pattern: str) -> list[bytes]:
    lines = []
    for path in sorted((out / "shards").glob(pattern)):
        data = path.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{path.name} ends inside a line"
        lines += data.splitlines()
    return lines


def test_two_processes_make_every_item_exactly_once(two_process_run):
    run = two_process_run
    assert run.returncode == 0, run.stderr[-3000:]
    traces = [json.loads(line) for line in shard_lines(run.out, "traces-rank*.jsonl")]
    failures = [json.loads(line) for line in shard_lines(run.out, "failures-rank*.jsonl")]
    ids = item_ids(run.manifest, run.out)
    good, bad = ids[: GOOD * SAMPLES], ids[GOOD * SAMPLES :]
    # Both processes worked, and between them made each good item once.
    assert sorted(t["id"] for t in traces) == sorted("batch-" + i for i in good)
    assert {t["id"] for t in run.lines("traces-rank0.jsonl")} and {
        t["id"] for t in run.lines("traces-rank1.jsonl")
    }
    assert sorted(f["item_id"] for f in failures) == sorted(bad)
    # The merged file holds the same traces in manifest order, and is what the store imports.
    merged = [json.loads(line) for line in (run.out / "traces.jsonl").read_text().splitlines()]
    assert [t["id"] for t in merged] == ["batch-" + i for i in good]
    assert {t["source"] for t in merged} == {"batch"}
    assert [
        (t["decoding"]["sample_index"], t["decoding"]["do_sample"], t["decoding"]["seed"]) for t in merged
    ] == [
        (0, False, 0),
        (1, True, 1),
    ] * GOOD
    assert [Path(t["clip"]["path"]).name for t in merged] == [
        n for n in ("circle.mp4", "square.mp4", "silent.mp4") for _ in range(SAMPLES)
    ]
    summary = json.loads((run.out / "summary.json").read_text())
    assert {
        k: summary[k]
        for k in (
            "processes",
            "items",
            "done_now",
            "already_done",
            "failed_now",
            "finished",
            "failed",
            "missing",
        )
    } == {
        "processes": 2,
        "items": 10,
        "done_now": 6,
        "already_done": 0,
        "failed_now": 4,
        "finished": 6,
        "failed": 4,
        "missing": 0,
    }
    assert summary["tokens"] == sum(len(t["decoding"]["generated_ids"]) for t in merged)
    assert "finished 6 / 10, failed 4, missing 0" in run.stdout


def test_bad_items_are_failures_with_reasons(two_process_run):
    failures = [
        json.loads(line) for line in (two_process_run.out / "failures.jsonl").read_text().splitlines()
    ]
    assert [(f["line"], f["sample"], f["error"], f["reason"]) for f in failures] == [
        (4, 0, "MediaNotFoundError", "missing.mp4: no such file; check the path and try again"),
        (4, 1, "MediaNotFoundError", "missing.mp4: no such file; check the path and try again"),
        (
            5,
            0,
            "NotMediaError",
            "garbage.mp4 is not a video file that can be read; upload a video such as MP4, MOV, MKV or WEBM",
        ),
        (
            5,
            1,
            "NotMediaError",
            "garbage.mp4 is not a video file that can be read; upload a video such as MP4, MOV, MKV or WEBM",
        ),
    ]


def rank_process(launcher: subprocess.Popen, rank: int) -> psutil.Process | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            env = child.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get("RANK") == str(rank) and "inference" in child.cmdline():
            return child
    return None


def test_resume_after_a_process_is_killed(manifest, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = batch_args(manifest, out, tiny_checkpoint, "--no-progress")
    launcher = subprocess.Popen(
        launch_command(2, args),
        cwd=Path(__file__).resolve().parents[2],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    shard = out / "shards" / "traces-rank1.jsonl"
    try:
        deadline = time.monotonic() + 240
        while not (shard.exists() and shard.read_bytes().count(b"\n") >= 1):
            assert launcher.poll() is None, launcher.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no item finished in time"
            time.sleep(0.2)
        victim = rank_process(launcher, 1)
        assert victim is not None
        victim.kill()  # SIGKILL: no cleanup; torchrun then stops process 0 too
        assert launcher.wait(timeout=120) != 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    before = [json.loads(line) for line in shard_lines(out, "traces-rank*.jsonl")]
    shards_before = {p.name: p.read_bytes() for p in (out / "shards").glob("traces-rank*.jsonl")}
    assert not (out / "summary.json").exists()  # the first run never finished
    ids = item_ids(manifest, out)
    assert len(before) < GOOD * SAMPLES

    done = launch(2, args)
    assert done.returncode == 0, done.stderr[-3000:]
    after = [json.loads(line) for line in shard_lines(out, "traces-rank*.jsonl")]
    for name, data in shards_before.items():  # nothing finished was redone or rewritten
        assert (out / "shards" / name).read_bytes().startswith(data)
    assert sorted(t["id"] for t in after) == sorted("batch-" + i for i in ids[: GOOD * SAMPLES])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["already_done"], summary["done_now"], summary["finished"], summary["missing"]) == (
        len(before),
        GOOD * SAMPLES - len(before),
        GOOD * SAMPLES,
        0,
    )
