"""Exports travel: ``video_path`` is relative to the export's video root, and the trainer finds
the clip under the folder given as ``--video-root`` after the whole folder has moved."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def test_an_exported_pair_finds_its_clip_under_the_moved_root(tiny_model, toy_clips, tmp_path):
    from annotation_db import Store
    from training.features import FeatureCache
    from training.pdpo import add_arguments

    project = tmp_path / "project"
    media = project / "clips"
    media.mkdir(parents=True)
    clip = toy_clips[0]
    shutil.copy(clip["path"], media / "toy.mp4")
    trace = {
        "schema_version": 1,
        "id": "t",
        "question": clip["question"],
        "options": clip["options"],
        "prompt": "PROMPT\n",
        "clip": {"sha256": clip["sha256"], "name": "toy.mp4", "path": str(media / "toy.mp4")},
        "steps": [{"index": 0, "text": "A circle."}],
        "alternatives": [{"step_index": 0, "text": "A sound."}],
    }
    with Store.open(project / "annotations.db") as store:
        store.add_trace(trace)
        store.set_label("alice", "t", 0, "accept")
        store.set_label("alice", "t", 0, "reject", alternative_id=1)
        result = store.export("pdpo", project / "pairs.jsonl")  # root: the database's folder
    assert result["video_root"] == str(project.resolve())
    [record] = [json.loads(line) for line in (project / "pairs.jsonl").read_text().splitlines()]
    assert record["video_path"] == "clips/toy.mp4"

    moved = tmp_path / "elsewhere" / "project"
    shutil.move(str(project), moved)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--pairs", str(moved / "pairs.jsonl"), "--out", "x", "--video-root", str(moved)]
    )
    cache = FeatureCache(tiny_model.model, video_roots=[Path(r) for r in args.video_root])  # as pdpo.run does
    block = cache.get(record["video_sha256"], record["video_path"])  # decodes and checks the sha256
    assert block.ndim == 2 and cache.stats["encoded"] == 1
