"""``python -m inference alternatives`` and ``rollouts`` on a Trace JSON of the golden clip."""

from __future__ import annotations

import json

import pytest

from inference.cli import main
from studio_trace import ClipInfo, Step, Trace


@pytest.fixture
def model_flags(official_tiny):
    stand_ins = official_tiny / "hub_stand_ins"
    return [
        "--checkpoint",
        str(official_tiny / "checkpoint"),
        "--vision-source",
        str(stand_ins / "google" / "siglip-so400m-patch14-384"),
        "--whisper-source",
        str(stand_ins / "whisper-large-v3"),
        "--qformer-source",
        str(stand_ins / "bert-base-uncased"),
        "--device",
        "cpu",
        "--quantization",
        "none",
    ]


@pytest.fixture
def trace_file(official_tiny, tmp_path):
    trace = Trace(
        question="What is happening in the video?",
        options=["cooking", "running", "swimming"],
        clip=ClipInfo(sha256="not-hashed", path=str(official_tiny / "data" / "clip.mp4")),
        reference_answer="B",
        steps=[Step(0, "The man runs."), Step(1, "He falls."), Step(2, "The answer is B.")],
    )
    path = tmp_path / "trace.json"
    path.write_text(trace.to_json())
    return path


def test_alternatives_command_prints_json_and_writes_the_trace(trace_file, model_flags, tmp_path, capsys):
    out_path = tmp_path / "with_alternatives.json"
    argv = ["alternatives", "--trace", str(trace_file), "--step", "1", "-n", "2", "--max-new-tokens", "3"]
    assert main(argv + ["--seed", "4", "--out", str(out_path)] + model_flags) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["step_index"], printed["step_text"]) == (1, "He falls.")
    assert [(a["step_index"], a["source"], a["settings"]["seed"]) for a in printed["alternatives"]] == [
        (1, "model", 4),
        (1, "model", 5),
    ]
    assert [a["settings"]["tokens"] for a in printed["alternatives"]] == [3, 3]
    written = Trace.from_json(out_path.read_text())
    assert [a.text for a in written.alternatives] == [a["text"] for a in printed["alternatives"]]


def test_rollouts_command_compares_step_and_rewrite(trace_file, model_flags, tmp_path, capsys):
    out_path = tmp_path / "rolled.json"
    argv = ["rollouts", "--trace", str(trace_file), "--step", "1", "-n", "2", "--text", "He sits."]
    argv += [
        "--max-new-tokens",
        "2",
        "--answer-max-new-tokens",
        "2",
        "--reference",
        "C",
        "--out",
        str(out_path),
    ]
    assert main(argv + model_flags) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["reference"] == "C"
    assert [(r["candidate"], r["text"], len(r["rollouts"])) for r in printed["results"]] == [
        ("step", "He falls.", 2),
        ("alternative:0", "He sits.", 2),
    ]
    for result in printed["results"]:
        right = [r["choice"] == "C" for r in result["rollouts"]]
        assert result["expected_correctness"] == sum(right) / 2
    p_s, p_alt = (r["expected_correctness"] for r in printed["results"])
    assert printed["preferences"][0]["chosen_over"] == "alternative:0"
    assert (printed["preferences"][0]["p_s"], printed["preferences"][0]["p_s_alt"]) == (p_s, p_alt)
    written = Trace.from_json(out_path.read_text())
    assert written.steps[1].expected_correctness == p_s
    assert [(a.text, a.source, a.expected_correctness) for a in written.alternatives] == [
        ("He sits.", "human", p_alt)
    ]


def test_missing_trace_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["alternatives", "--trace", str(tmp_path / "nope.json"), "--step", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read ") and err.count("\n") == 1


def test_trace_without_clip_path_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "t.json"
    path.write_text(Trace(question="q", clip=ClipInfo(sha256="x"), steps=[Step(0, "a")]).to_json())
    assert main(["rollouts", "--trace", str(path), "--step", "0", "--reference", "A"]) == 2
    assert (
        capsys.readouterr().err
        == "error: the trace does not say where its clip is (no clip.path); pass --video\n"
    )


def test_not_a_trace_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "t.json"
    path.write_text('{"schema_version": 1}')
    assert main(["alternatives", "--trace", str(path), "--step", "0"]) == 2
    assert "is not a Trace JSON file" in capsys.readouterr().err


def test_clip_that_is_not_the_traces_is_refused(official_tiny, tmp_path, capsys):
    path = tmp_path / "t.json"
    clip = ClipInfo(sha256="0" * 64, path=str(official_tiny / "data" / "clip.mp4"))
    path.write_text(Trace(question="q", clip=clip, steps=[Step(0, "a")], reference_answer="A").to_json())
    assert main(["rollouts", "--trace", str(path), "--step", "0"]) == 2
    assert "is not the clip this trace was made from" in capsys.readouterr().err
