"""One analysis pipeline (issue 13): the same clip and settings give the same Trace from the app's
services, ``python -m inference run`` and ``python -m inference batch`` (steps, answer, scores,
per-token KL, clip spans; ids, timings and where the clip lies aside). A SynthDec trace carries
the fixed SynthDec question from all three (issue 15), whatever question the caller typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.cli import main
from inference.model.prompts import SYNTHDEC

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 16
CASES = {
    "multiple-choice": {
        "prompt": "reasoning",
        "question": "Which shape moves?",
        "options": ["circle", "square"],
        "reference": "A",
    },
    # The app's question box may still hold an earlier question: a SynthDec prompt ignores it.
    "synthdec": {
        "prompt": "synthdec",
        "question": "",
        "app_question": "Which shape moves?",
        "reference": "NO",
    },
}
ASIDE = ("id", "created_at", "timings", "source")  # differ by run or by entry point, by design


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from examples.synth import write_clip

    path = tmp_path_factory.mktemp("pipeline") / "circle.mp4"
    write_clip(path, seconds=2.0, fps=8, size=(128, 96), shapes=("circle",))
    return path


def comparable(trace: dict) -> dict:
    """The trace without what may differ between entry points (module docstring)."""
    out = {k: v for k, v in trace.items() if k not in ASIDE}
    out["clip"] = {k: v for k, v in trace["clip"].items() if k != "path"}
    out["decoding"] = {k: v for k, v in trace["decoding"].items() if k != "sample_index"}
    return out


def from_app(case: dict, clip: Path, checkpoint: Path, tmp: Path) -> dict:
    from ui.config import AppConfig
    from ui.services import AnalysisRequest, Finished, Stored, Studio

    config = AppConfig(
        checkpoint=str(checkpoint),
        device="cpu",
        db=str(tmp / "app.db"),
        media_dir=str(tmp / "clips"),
        preload=False,
        torch_threads=0,  # leave torch's threads alone for the rest of the test session
    )
    studio = Studio(config)
    try:
        request = AnalysisRequest(
            video=str(clip),
            question=case.get("app_question", case["question"]),
            options=tuple(case.get("options", ())),
            prompt_kind=case["prompt"],
            reference_answer=case["reference"],
            max_new_tokens=MAX_NEW_TOKENS,
            perturbations=("noise", "mute"),
            top_t=1,
        )
        events = list(studio.analyze(request))
        (finished,) = [e.trace for e in events if isinstance(e, Finished)]
        (stored,) = [e.trace for e in events if isinstance(e, Stored)]
        trace = json.loads(finished.to_json())  # as run and batch write it (spans: lists)
        assert stored["scoring"] == trace["scoring"]  # the store keeps the spans where the trace has them
        return trace
    finally:
        studio.close()


def model_flags(checkpoint: Path) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--device", "cpu"]


def from_run(case: dict, clip: Path, checkpoint: Path, capsys) -> dict:
    args = ["run", "--video", str(clip), "--prompt", case["prompt"], "--reference", case["reference"]]
    if case["question"]:
        args += ["--question", case["question"]]
    if case.get("options"):
        args += ["--options", *case["options"]]
    args += ["--max-new-tokens", str(MAX_NEW_TOKENS), "--score", "--perturb", "noise,mute", "--top-t", "1"]
    capsys.readouterr()
    assert main([*args, "--json", *model_flags(checkpoint)]) == 0
    return json.loads(capsys.readouterr().out)


def from_batch(case: dict, clip: Path, checkpoint: Path, tmp: Path) -> dict:
    entry = {"video": str(clip), "prompt": case["prompt"], "reference_answer": case["reference"]}
    entry.update(question=case["question"] or None, options=case.get("options"))
    manifest = tmp / "manifest.jsonl"
    manifest.write_text(json.dumps(entry) + "\n", encoding="utf-8")
    out = tmp / "batch"
    args = ["batch", "--manifest", str(manifest), "--out", str(out), "--no-progress"]
    args += ["--max-new-tokens", str(MAX_NEW_TOKENS), "--score", "--perturb", "noise,mute", "--top-t", "1"]
    assert main([*args, *model_flags(checkpoint)]) == 0
    (line,) = (out / "traces.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(line)


@pytest.mark.parametrize("name", list(CASES))
def test_app_run_and_batch_make_the_same_trace(name, clip, tiny_checkpoint, tmp_path, capsys):
    case = CASES[name]
    app = from_app(case, clip, tiny_checkpoint, tmp_path)
    run = from_run(case, clip, tiny_checkpoint, capsys)
    batch = from_batch(case, clip, tiny_checkpoint, tmp_path)

    # What the comparison rests on is there: scored steps with per-token KL and clip spans.
    assert app["steps"] and app["answer"]["text"]
    assert all(set(step["token_kls"]) == {"noise", "mute"} for step in app["steps"])
    spans = app["scoring"]["frame_attention"]["spans"]
    assert len(spans) == len(app["steps"]) and all(span for span in spans)
    if case["prompt"] == "synthdec":
        assert (app["question"], run["question"], batch["question"]) == (SYNTHDEC.template,) * 3

    assert comparable(run) == comparable(app)
    assert comparable(batch) == comparable(app)
    assert (run["source"], batch["source"], app["source"]) == ("live", "batch", "live")


def test_no_clip_spans_leaves_them_out(clip, tiny_checkpoint, capsys):
    """``--no-clip-spans`` skips the attention pass; without --score the trace has no scoring."""
    args = ["run", "--video", str(clip), "--question", "What moves?", "--max-new-tokens", "8", "--json"]
    capsys.readouterr()
    assert main([*args, "--no-clip-spans", *model_flags(tiny_checkpoint)]) == 0
    assert json.loads(capsys.readouterr().out)["scoring"] is None
    assert main([*args, *model_flags(tiny_checkpoint)]) == 0
    scoring = json.loads(capsys.readouterr().out)["scoring"]
    assert list(scoring) == ["frame_attention"]
