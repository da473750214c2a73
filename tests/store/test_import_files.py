"""``import`` of what the tools write: a pretty Trace JSON file (``inference run --out``), a folder
of trace files, a batch output folder; one SynthDec question whatever the entry point."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from annotation_db import ImportFormatError, Store
from annotation_db.cli import main
from annotation_db.tracejson import published_prompt as prompt_text
from studio_trace import SYNTHDEC_QUESTION


def _run_out_file(path: Path, trace_id: str, question: str = "", kind: str = "synthdec") -> Path:
    """A Trace JSON file exactly as ``python -m inference run --out`` writes it."""
    from studio_trace import ClipInfo, Step, Trace

    trace = Trace(
        id=trace_id,
        question=question,
        prompt_kind=kind,
        prompt=prompt_text(SYNTHDEC_QUESTION, None)[1],
        clip=ClipInfo(sha256="f" * 64, name="synth.mp4", path="/data/clips/synth.mp4"),
        steps=[Step(index=0, text="Hands look odd."), Step(index=1, text="The answer is YES.")],
    )
    path.write_text(trace.to_json(indent=2) + "\n", encoding="utf-8")  # inference/cli/run.py
    return path


def test_a_pretty_trace_json_file_imports_as_it_is(tmp_path, capsys):
    out = _run_out_file(tmp_path / "run.json", "live-1")
    assert out.read_text().startswith("{\n  ")  # pretty-printed, over many lines
    db = str(tmp_path / "a.db")
    assert main(["--db", db, "import", str(out)]) == 0
    assert capsys.readouterr().out == "imported 1 traces, 0 already stored\n"
    assert main(["--db", db, "import", str(out)]) == 0  # idempotent as JSONL is
    assert capsys.readouterr().out == "imported 0 traces, 1 already stored\n"
    with Store.open(db) as store:
        # run without --question stored ""; the store keeps the one SynthDec question
        assert store.get_trace("live-1").trace.question == SYNTHDEC_QUESTION


def test_a_broken_pretty_file_names_its_line(tmp_path, store):
    out = _run_out_file(tmp_path / "run.json", "live-1")
    lines = out.read_text().splitlines()
    lines[3] = lines[3].rstrip(",")  # a missing comma on line 4
    out.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportFormatError, match=r"^run\.json line 5: not JSON \(Expecting ',' delimiter"):
        store.import_traces(out)
    assert store.stats()["labels"] == 0 and store.queue("alice") == []


def test_a_folder_of_trace_files(tmp_path, store, make_trace, write_jsonl):
    folder = tmp_path / "traces"
    folder.mkdir()
    _run_out_file(folder / "b.json", "live-b")
    write_jsonl(folder / "a.jsonl", [make_trace("j1", ["x"]), make_trace("j2", ["y"])])
    (folder / "notes.txt").write_text("not a trace")
    (folder / "one-line.json").write_text(json.dumps(make_trace("j3", ["z"])) + "\n")
    assert store.import_traces(folder) == {"added": 4, "skipped": 0}
    assert [t["trace_id"] for t in store.queue("alice", order="oldest")] == ["j1", "j2", "live-b", "j3"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImportFormatError, match=r"holds no \.json or \.jsonl files"):
        store.import_traces(empty)


def test_a_batch_output_folder_imports_its_traces(tmp_path, store, make_trace, write_jsonl):
    """``inference batch --out`` leaves run.json, summary.json, failures.jsonl beside traces.jsonl."""
    out = tmp_path / "runs" / "b1"
    (out / "shards").mkdir(parents=True)
    write_jsonl(out / "traces.jsonl", [make_trace("batch-1", ["x"])])
    write_jsonl(out / "shards" / "traces-rank0.jsonl", [make_trace("batch-1", ["x"])])
    (out / "run.json").write_text(json.dumps({"run_id": "r1", "settings": {}}))
    (out / "summary.json").write_text(json.dumps({"finished": 1}))
    write_jsonl(out / "failures.jsonl", [{"id": "item-2", "clip": "x.mp4", "reason": "unreadable"}])
    assert store.import_traces(out) == {"added": 1, "skipped": 0}


def test_every_entry_point_stores_the_one_synthdec_question(tmp_path, store, make_trace):
    """App/run (""), batch (the fixed text) and import-published (the manifest's text) give
    one question, so their traces of one clip pair as full paths."""
    (tmp_path / "synth.mp4").write_bytes(b"fake synth clip")
    entry = {
        "file": "synth.mp4",
        "question": SYNTHDEC_QUESTION + "  ",  # a manifest's text need not be byte-identical
        "options": None,
        "reference_answer": "YES",
        "published_reasoning": ["Hands look odd.", "The answer is YES."],
    }
    (tmp_path / "manifest.jsonl").write_text(json.dumps(entry) + "\n")
    store.import_published(tmp_path / "manifest.jsonl")
    [published] = store.queue("alice")
    clip = store.get_trace(published["trace_id"]).to_dict()["clip"]
    prompt = prompt_text(SYNTHDEC_QUESTION, None)[1]

    def synthdec(trace_id: str, question: str, texts: list[str]) -> dict:
        trace = make_trace(trace_id, texts, question=question, options=[], prompt=prompt)
        return {**trace, "options": None, "prompt_kind": "synthdec", "clip": clip}

    store.add_traces([synthdec("live", "", ["Smooth motion.", "The answer is NO."])])
    questions = store.db.execute("SELECT DISTINCT question FROM traces").fetchall()
    assert questions == [(SYNTHDEC_QUESTION,)]
    for k in range(2):
        store.set_label("alice", published["trace_id"], k, "accept")
    store.set_label("alice", "live", 1, "reject")
    [pair] = store.export_records("pdpo")
    assert (pair["pair_type"], pair["chosen_trace_id"], pair["rejected_trace_id"], pair["question"]) == (
        "full_path",
        published["trace_id"],
        "live",
        SYNTHDEC_QUESTION,
    )


def test_the_migration_gives_old_synthdec_rows_the_question(tmp_path, make_trace, write_jsonl):
    """A database written before m005 (question "" for app/run traces) is normalised, and the
    same file imported again is recognised as stored."""
    from sqlite_utils import Database

    from annotation_db.migrations import migrations

    db_path = tmp_path / "old.db"
    trace = {
        **make_trace("old-live", ["a"], options=[], alternatives=[{"step_index": 0, "text": "a2"}]),
        "question": "",
        "options": None,
        "prompt_kind": "synthdec",
    }
    traces_file = write_jsonl(tmp_path / "old.jsonl", [trace])
    with Store.open(db_path) as store:
        store.import_traces(traces_file)
        store.add_alternative("alice", "old-live", 0, "a3")  # added later: not part of the identity
    # Undo m005 and m006 by hand: the row as an old version stored it.
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("UPDATE traces SET question = '' WHERE id = 'old-live'")
        from annotation_db.tracejson import identity_hash

        old_identity = identity_hash(trace)  # what the old version stored
        raw.execute("UPDATE traces SET identity_sha256 = ? WHERE id = 'old-live'", [old_identity])
        raw.execute("DROP VIEW labels_in_context")
        raw.execute("DROP VIEW preferences_in_context")
        raw.execute(
            "DELETE FROM _sqlite_migrations WHERE name IN ('m005_one_synthdec_question', 'm006_readable_views')"
        )
    raw.close()
    assert migrations.pending(Database(db_path))  # the old file has work to do
    with Store.open(db_path) as store:
        assert store.get_trace("old-live").trace.question == SYNTHDEC_QUESTION
        assert store.import_traces(traces_file) == {"added": 0, "skipped": 1}
