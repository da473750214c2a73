"""``python -m annotation_db``: every command, user errors as one line + exit 2, and the docs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from annotation_db import Store
from annotation_db.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "README.md"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_label_undo_export_stats_queue(tmp_path, capsys, make_trace, write_jsonl):
    db = str(tmp_path / "a.db")
    traces = write_jsonl(tmp_path / "t.jsonl", [make_trace("t1", ["a", "b"], scores=[0.1, 0.7])])
    assert _run(capsys, "--db", db, "import", str(traces)) == (0, "imported 1 traces, 0 already stored\n", "")
    assert _run(capsys, "--db", db, "import", str(traces)) == (0, "imported 0 traces, 1 already stored\n", "")
    code, out, _ = _run(capsys, "--db", db, "queue", "--annotator", "alice")
    assert (code, out.split()[:3]) == (0, ["t1", "max_score", "0.7000"])
    code, out, _ = _run(
        capsys,
        "--db",
        db,
        "label",
        "--annotator",
        "alice",
        "--trace",
        "t1",
        "--step",
        "0",
        "--verdict",
        "accept",
        "--time",
        "2",
    )
    assert (code, json.loads(out)["verdict"], json.loads(out)["time_spent_s"]) == (0, "accept", 2.0)
    _run(
        capsys,
        "--db",
        db,
        "label",
        "--annotator",
        "alice",
        "--trace",
        "t1",
        "--step",
        "1",
        "--verdict",
        "reject",
        "--error-type",
        "hallucination",
    )
    _run(
        capsys,
        "--db",
        db,
        "label",
        "--annotator",
        "alice",
        "--trace",
        "t1",
        "--step",
        "1",
        "--verdict",
        "accept",
    )
    code, out, _ = _run(capsys, "--db", db, "undo", "--annotator", "alice", "--trace", "t1", "--step", "1")
    assert (code, json.loads(out)["verdict"], json.loads(out)["error_type"]) == (0, "reject", "hallucination")
    out_file = tmp_path / "sw.jsonl"
    assert _run(capsys, "--db", db, "export", "--format", "trl-stepwise", "--out", str(out_file)) == (
        0,
        f"wrote 1 trl-stepwise records to {out_file} (video_path relative to {tmp_path})\n",
        "",
    )
    assert json.loads(out_file.read_text())["labels"] == [True, False]
    code, out, _ = _run(capsys, "--db", db, "stats", "--json")
    assert (code, json.loads(out)["verdicts"]) == (0, {"accept": 1, "reject": 1, "unsure": 0})
    code, out, _ = _run(capsys, "--db", db, "stats")
    assert code == 0
    assert out.splitlines()[:4] == [
        "labels: 2",
        "verdicts: accept 1, reject 1, unsure 0",
        "error types: visual_misperception 0, audio_misperception 0, hallucination 1, reasoning_logic 0, other 0",
        "annotators:",
    ]
    code, out, _ = _run(capsys, "--db", db, "migrate")
    assert [line.split()[0] for line in out.splitlines()] == [
        "m001_initial",
        "m002_alternatives_and_preferences",
        "m003_guards_and_indexes",
        "m004_extra_fields",
        "m005_one_synthdec_question",
        "m006_readable_views",
        "m007_review_roles_and_adjudication",
    ]


def test_import_published(tmp_path, capsys):
    (tmp_path / "a.mp4").write_bytes(b"a")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        json.dumps({"file": "a.mp4", "question": "Why?", "options": None, "published_reasoning": ["x", "y"]})
        + "\n"
        + json.dumps({"file": "a.mp4", "question": None, "published_reasoning": None})
        + "\n"
    )
    assert _run(capsys, "--db", str(tmp_path / "a.db"), "import-published", str(manifest)) == (
        0,
        "imported 1 traces, 0 already stored, 1 entries without published reasoning\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["import", "missing.jsonl"],
            "error: cannot read missing.jsonl: No such file or directory; check the path\n",
        ),
        (
            ["label", "--annotator", "a", "--trace", "nope", "--step", "0", "--verdict", "accept"],
            "error: no trace 'nope' is stored; import it or pick one from the queue\n",
        ),
        (
            ["undo", "--annotator", "a", "--trace", "t1", "--step", "0"],
            "error: a has no earlier label on this item to go back to\n",
        ),
        (
            ["export", "--format", "pdpo", "--out", "x.csv"],
            "error: the output file must end in .jsonl or .parquet, not 'x.csv'\n",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, make_trace, argv, message):
    monkeypatch.chdir(tmp_path)
    with Store.open(tmp_path / "a.db") as store:
        store.add_trace(make_trace("t1", ["a"]))
    assert _run(capsys, "--db", str(tmp_path / "a.db"), *argv) == (2, "", message)


def test_bad_import_line_and_missing_db(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema_version": 1}\n')
    code, out, err = _run(capsys, "--db", str(tmp_path / "a.db"), "import", str(bad))
    assert (code, err) == (
        2,
        "error: bad.jsonl line 1: trace is missing the field 'id' (nothing was imported)\n",
    )
    monkeypatch.delenv("ANNOTATION_DB", raising=False)
    assert main(["stats"]) == 2
    assert capsys.readouterr().err == "error: no database given; pass --db PATH or set ANNOTATION_DB\n"


def test_python_dash_m_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "annotation_db", "--db", str(tmp_path / "a.db"), "stats", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, json.loads(result.stdout)["labels"], result.stderr) == (0, 0, "")


def test_every_command_is_documented():
    doc = DOC.read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"python -m annotation_db --db annotations.db {name}" in doc, name


def test_documented_minimal_records_are_what_the_export_writes(tmp_path):
    """The README's record per format is the first record exported for the case it describes."""
    doc = DOC.read_text()
    blocks = dict(re.findall(r"#### `([a-z-]+)`\n.*?```json\n(.*?)```", doc, flags=re.S))
    assert sorted(blocks) == ["pdpo", "step-dpo", "trl-dpo", "trl-stepwise"]

    def clock() -> datetime:
        return datetime.fromisoformat("2025-01-31T12:00:00+00:00")

    def trace(trace_id, texts, scores, correctness, alternatives=()):
        return {
            "schema_version": 1,
            "id": trace_id,
            "question": "What does the cat do?",
            "options": ["sleeps", "jumps"],
            "reference_answer": "B",
            "prompt": "...<|im_start|>assistant\n",
            "clip": {"sha256": "5e1f" * 16, "name": "cat.mp4", "path": "clips/cat.mp4"},
            "steps": [
                {"index": i, "text": t, "score": scores[i], "expected_correctness": correctness[i]}
                for i, t in enumerate(texts)
            ],
            "alternatives": list(alternatives),
        }

    with Store.open(tmp_path / "doc.db", clock=clock) as store:
        store.add_traces(
            [
                trace(
                    "t1",
                    ["A cat sits on a sofa.", "It falls asleep.", "The answer is A."],
                    [0.02, 0.31, 0.05],
                    [0.5, 0.0, None],
                    [{"step_index": 1, "text": "It jumps onto the shelf.", "expected_correctness": 0.5}],
                ),
                trace(
                    "t2",
                    ["A cat sits on a sofa.", "It jumps onto the shelf.", "The answer is B."],
                    [0.02, 0.04, 0.03],
                    [None] * 3,
                ),
            ]
        )
        store.set_label("alice", "t1", 0, "accept")
        store.set_label("alice", "t1", 1, "reject", error_type="visual_misperception")
        store.set_label("alice", "t1", 1, "accept", alternative_id=1)
        for k in range(3):
            store.set_label("alice", "t2", k, "accept")
        store.set_label("bob", "t1", 1, "reject", error_type="hallucination")
        store.record_preference("bob", "t1", 1, 1, "alternative")
        for fmt, block in blocks.items():
            assert store.export_records(fmt)[0] == json.loads(block), fmt
