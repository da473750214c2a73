"""Reruns of a finished batch (plain ``python``, one process): nothing finished is made again,
failures are retried or left, other settings are refused, more samples add only the new ones."""

from __future__ import annotations

import json

import pytest

from inference.cli import main
from tests.batch.conftest import GOOD, SAMPLES, batch_args


def summary_of(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def counts(summary: dict) -> dict:
    keys = ("items", "done_now", "already_done", "failed_now", "not_retried", "finished", "failed", "missing")
    return {k: summary[k] for k in keys}


def shard_bytes(out) -> dict:
    return {p.name: p.read_bytes() for p in (out / "shards").glob("traces-rank*.jsonl")}


def test_a_rerun_makes_nothing_again_and_loads_no_model_for_bad_clips(two_process_run, run_copy, capsys):
    before = shard_bytes(run_copy)
    assert (
        main(batch_args(two_process_run.manifest, run_copy, two_process_run.checkpoint, "--no-progress")) == 0
    )
    summary = summary_of(run_copy)
    assert counts(summary) == {
        "items": 10,
        "done_now": 0,
        "already_done": 6,
        "failed_now": 4,  # the missing and the garbage clip, tried again
        "not_retried": 0,
        "finished": 6,
        "failed": 4,
        "missing": 0,
    }
    assert [(r["rank"], r["assigned"], r["load_s"]) for r in summary["ranks"]] == [(0, 4, 0.0)]
    assert shard_bytes(run_copy) == before
    assert (run_copy / "traces.jsonl").read_bytes() == (two_process_run.out / "traces.jsonl").read_bytes()
    assert "made now 0, already done 6, failed now 4" in capsys.readouterr().out


def test_no_retry_failures_leaves_them_failed(two_process_run, run_copy):
    args = batch_args(two_process_run.manifest, run_copy, two_process_run.checkpoint, "--no-progress")
    assert main([*args, "--no-retry-failures"]) == 0
    summary = summary_of(run_copy)
    assert (
        summary["failed_now"],
        summary["not_retried"],
        summary["failed"],
        summary["ranks"][0]["assigned"],
    ) == (
        0,
        4,
        4,
        0,
    )
    assert [f["line"] for f in summary["failures"]] == [4, 4, 5, 5]


def test_a_resume_with_other_settings_is_refused(two_process_run, run_copy, capsys):
    args = batch_args(two_process_run.manifest, run_copy, two_process_run.checkpoint, "--no-progress")
    args[args.index("--max-new-tokens") + 1] = "9"
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {run_copy} holds a batch run with other settings (max_new_tokens 8 -> 9); "
        "pass the same flags to resume it, or another --out"
    )


@pytest.mark.slow
def test_more_samples_make_only_the_new_ones(two_process_run, run_copy):
    args = batch_args(two_process_run.manifest, run_copy, two_process_run.checkpoint, "--no-progress")
    args[args.index("--samples-per-question") + 1] = str(SAMPLES + 1)
    assert main([*args, "--no-retry-failures"]) == 0
    summary = summary_of(run_copy)
    assert counts(summary) == {
        "items": 15,
        "done_now": GOOD,
        "already_done": GOOD * SAMPLES,
        "failed_now": 2,  # the new samples of the two bad clips
        "not_retried": 4,
        "finished": GOOD * (SAMPLES + 1),
        "failed": 6,
        "missing": 0,
    }
    merged = [json.loads(line) for line in (run_copy / "traces.jsonl").read_text().splitlines()]
    old = [json.loads(line) for line in (two_process_run.out / "traces.jsonl").read_text().splitlines()]
    assert [t for t in merged if t["decoding"]["sample_index"] < SAMPLES] == old
    assert [(t["clip"]["name"], t["decoding"]["sample_index"], t["decoding"]["seed"]) for t in merged] == [
        (name, k, k) for name in ("circle.mp4", "square.mp4", "silent.mp4") for k in range(SAMPLES + 1)
    ]
