"""A batch with SynthDec and direct-answer entries, scored: the prompt kind comes from the
entry, the contrastive scores from --score / --perturb."""

from __future__ import annotations

import json

import pytest

from inference.cli import main
from inference.model.prompts import SYNTHDEC
from tests.batch.conftest import write_manifest

pytestmark = pytest.mark.slow


def test_prompt_kinds_and_scores(clip_dir, tiny_checkpoint, tmp_path):
    rows = [
        {
            "video": str(clip_dir / "circle.mp4"),
            "question": SYNTHDEC.template,
            "options": None,
            "reference_answer": "NO",
        },
        {
            "video": str(clip_dir / "square.mp4"),
            "question": "Which shape moves?",
            "options": ["circle", "square"],
            "prompt": "direct",
        },
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "out"
    args = ["batch", "--manifest", str(manifest), "--out", str(out), "--max-new-tokens", "8"]
    args += ["--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--no-progress"]
    assert main([*args, "--score", "--perturb", "noise,mute", "--top-t", "1"]) == 0
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert [(t["prompt_kind"], t["question"], t["reference_answer"]) for t in traces] == [
        ("synthdec", SYNTHDEC.template, "NO"),
        ("direct", "Which shape moves?", None),
    ]
    assert "Respond with only the letter of the correct option." in traces[1]["prompt"]
    for trace in traces:
        assert trace["scoring"]["perturbations"] == ["noise", "mute"]
        assert trace["steps"]
        assert all(set(step["scores"]) == {"noise", "mute"} for step in trace["steps"])
        assert all(step["score"] == step["scores"]["noise"] for step in trace["steps"])
        assert sum(step["top_t"] for step in trace["steps"]) == 1
        assert trace["timings"]["score_s"] > 0
