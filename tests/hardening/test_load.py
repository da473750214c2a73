"""Load (issue 8): 20 labeling clients and queued analyses against ``python app.py`` at once for a
bounded time (``STUDIO_LOAD_SECONDS``, default 45): every request is answered, no label is lost,
and the analyses waiting for the model are told their place in the queue. The scenario is
``testkit.load``'s, which bench/load.py runs too (its figures, from longer runs, are in bench/RESULTS.md)."""

from __future__ import annotations

import os

import pytest

from testkit.load import load_traces, markdown, run_load

pytestmark = pytest.mark.slow


def test_twenty_labelers_and_queued_analyses(app_process, tiny_checkpoint, example_clips, tmp_path):
    from annotation_db import Store

    db = tmp_path / "annotations.db"
    traces = load_traces(n_traces=8, n_steps=12)
    store = Store.open(db)
    store.add_traces(traces)
    store.close()
    app = app_process("--checkpoint", str(tiny_checkpoint), "--no-preload", db=db)
    seconds = float(os.environ.get("STUDIO_LOAD_SECONDS", "45"))
    report = run_load(
        app.url,
        db,
        traces,
        str(example_clips["red_ball_chirp.mp4"]),
        clients=20,
        analyses=3,
        seconds=seconds,
        pause_s=0.5,
        max_new_tokens=32,
        server_pid=app.pid,
    )
    print(markdown(report))
    assert app.alive()
    assert report["hung_clients"] == [] and report["n_lost"] == 0, report["lost"]
    assert report["requests"] == report["answered"]
    assert report["n_errors"] == 0, report["errors"]
    for kind in ("accept", "reject", "unsure", "undo", "analyze"):
        assert report["answered"].get(kind, 0) > 0, kind
    labels = report["labels"]
    assert labels["integrity_check"] == "ok"
    assert labels["n_missing_or_different"] == 0, labels["missing_or_different"]
    assert labels["unexpected"] == []
    assert labels["found_in_force"] == labels["expected_in_force"] > 0
    # two analyses wait while one runs: each is told where it stands
    seen = {position for position, _ in report["queue_positions_seen"]}
    assert (1, 2) in seen, seen  # (rank, queue size): the page shows it as "queue: 2/2"
