"""The label-only workflow end to end: batch output -> ``python -m annotation_db import`` ->
the app in ``--label-only`` mode lists the traces in its queue -> labels -> export."""

from __future__ import annotations

import json
from pathlib import Path

from annotation_db.cli import main as store_main
from tests.batch.conftest import GOOD, SAMPLES


def test_batch_traces_are_imported_queued_labeled_and_exported(two_process_run, tmp_path, capsys):
    from ui.config import parse_config
    from ui.services import Studio

    db = tmp_path / "annotations.db"
    traces = two_process_run.out / "traces.jsonl"
    assert store_main(["--db", str(db), "import", str(traces)]) == 0
    assert store_main(["--db", str(db), "import", str(traces)]) == 0  # idempotent
    assert capsys.readouterr().out.splitlines() == [
        f"imported {GOOD * SAMPLES} traces, 0 already stored",
        f"imported 0 traces, {GOOD * SAMPLES} already stored",
    ]

    # What `python app.py --label-only --db DB` serves, without the web server.
    config = parse_config(
        ["--label-only", "--db", str(db), "--media-dir", str(tmp_path / "clips")], environ={}
    )
    assert config.label_only
    studio = Studio(config)
    try:
        assert studio.models is None
        batch = [json.loads(line) for line in traces.read_text().splitlines()]
        queue = studio.queue(None)
        assert sorted(item["trace_id"] for item in queue) == sorted(t["id"] for t in batch)
        assert {item["source"] for item in queue} == {"batch"}

        # Two samples of the first question: alice accepts every step of the greedy one and
        # rejects the first step of the sampled one.
        greedy, sampled = batch[0], batch[1]
        assert greedy["steps"] and sampled["steps"]
        view = studio.view(greedy["id"], "alice")
        assert view.video == greedy["clip"]["path"]  # the page can play the batch's clip
        for step in greedy["steps"]:
            studio.label("alice", greedy["id"], step["index"], "accept")
        studio.label("alice", sampled["id"], 0, "reject", error_type="visual_misperception")
        done_by_alice = {greedy["id"]} | ({sampled["id"]} if len(sampled["steps"]) == 1 else set())
        left = studio.queue("alice")  # what alice has still to label
        assert sorted(item["trace_id"] for item in left) == sorted(
            t["id"] for t in batch if t["id"] not in done_by_alice
        )

        exported = studio.export("pdpo")
        records = [
            json.loads(line) for line in Path(exported["path"]).read_text(encoding="utf-8").splitlines()
        ]
        full_path = [r for r in records if r["pair_type"] == "full_path"]
        assert [(r["chosen_trace_id"], r["rejected_trace_id"]) for r in full_path] == [
            (greedy["id"], sampled["id"])
        ]
    finally:
        studio.close()

    # The same labels come out of the store's command line.
    out = tmp_path / "stepwise.jsonl"
    assert store_main(["--db", str(db), "export", "--format", "trl-stepwise", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
