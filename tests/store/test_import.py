"""Importing Traces (JSONL) and published reasoning: idempotent, all or nothing, lossless."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from annotation_db import ImportFormatError, Store, TraceConflictError
from annotation_db.tracejson import file_sha256, published_prompt
from studio_trace import SYNTHDEC_QUESTION, Alternative, ClipInfo, Step, Trace, TraceFormatError

REPO = Path(__file__).resolve().parents[2]


def _counts(store):
    return {t: store.db[t].count for t in ("clips", "traces", "steps", "alternatives")}


def test_import_is_lossless(store, make_trace, write_jsonl, tmp_path):
    trace = make_trace(
        "t1",
        ["The man runs.", "He falls."],
        scores=[0.25, 1.5],
        correctness=[0.5, None],
        alternatives=[
            {
                "step_index": 1,
                "text": "He sits.",
                "source": "model",
                "settings": {"top_p": 0.9},
                "expected_correctness": 0.75,
            }
        ],
    )
    # Fields this version does not know (the Trace JSON grows within a version) come back too.
    trace["steps"][0]["kl_tokens"] = ["The", " man", " runs."]
    trace["alternatives"][0]["note"] = "sampled at t=1"
    trace["clip"]["codec"] = "h264"
    trace["batch"] = {"shard": 3}
    trace["steps"][1]["scores"] = {"audio_muted": 0.5}
    trace["steps"][1]["token_kls"] = {"audio_muted": [0.1, 0.2]}
    trace["steps"][1]["top_t"] = True
    assert store.import_traces(write_jsonl(tmp_path / "t.jsonl", [trace])) == {"added": 1, "skipped": 0}
    got = store.get_trace("t1")
    # The Trace and the store's row ids of its steps and alternatives; the JSON is what was
    # imported, fields this version does not know included.
    assert (got.step_ids, got.alternative_ids, got.alternative_authors) == ((1, 2), (1,), (None,))
    assert got.to_dict() == trace
    assert got.trace == Trace.from_dict(trace)
    assert got.trace.steps[0].kl_tokens == ["The", " man", " runs."]


def test_same_trace_twice_is_one_trace(store, make_trace, write_jsonl, tmp_path):
    traces = [make_trace("t1", ["a", "b"]), make_trace("t2", ["c"])]
    path = write_jsonl(tmp_path / "t.jsonl", traces)
    assert store.import_traces(path) == {"added": 2, "skipped": 0}
    # Re-serialised differently and re-scored: still the same trace (identity = texts).
    traces[0]["steps"][0]["score"] = 9.0
    path2 = tmp_path / "t2.jsonl"
    path2.write_text("\n\n".join(json.dumps(t, indent=None, sort_keys=True) for t in traces) + "\n")
    assert store.import_traces(path2) == {"added": 0, "skipped": 2}
    assert _counts(store) == {"clips": 1, "traces": 2, "steps": 3, "alternatives": 0}
    assert store.get_trace("t1").trace.steps[0].score is None  # the stored copy is kept
    # The same id twice in one file is one trace too.
    assert store.add_traces([make_trace("t3", ["x"]), make_trace("t3", ["x"])]) == {"added": 1, "skipped": 1}


def test_a_malformed_line_imports_nothing_and_names_the_line(store, make_trace, write_jsonl, tmp_path):
    good = [make_trace(f"t{i}", ["a", "b"]) for i in range(4)]
    bad = make_trace("bad", ["a", "b"])
    bad["steps"][1]["index"] = 5
    path = write_jsonl(tmp_path / "batch.jsonl", [good[0], good[1], bad, good[2]])
    with pytest.raises(ImportFormatError, match=r"^batch\.jsonl line 3: step 1 has index 5; expected 1"):
        store.import_traces(path)
    assert _counts(store) == {"clips": 0, "traces": 0, "steps": 0, "alternatives": 0}

    path.write_text(json.dumps(good[0]) + "\n{not json\n")
    with pytest.raises(ImportFormatError, match=r"^batch\.jsonl line 2: not JSON"):
        store.import_traces(path)
    wrong_version = dict(good[3], schema_version=99)
    with pytest.raises(ImportFormatError, match="line 1: unknown trace schema_version 99"):
        store.import_traces(write_jsonl(path, [wrong_version]))
    assert _counts(store)["traces"] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("clip"), "missing the field 'clip'"),
        (lambda t: t["clip"].pop("sha256"), "clip must be an object with a sha256"),
        (lambda t: t["steps"][0].update(text=3), "step 0 must be an object with a text"),
        (lambda t: t["steps"][0].update(score="high"), "step 0 score must be a finite number"),
        (
            lambda t: t["steps"][0].update(token_kl=[1, "x"]),
            "step 0 token_kl must be a list of finite numbers",
        ),
        (
            lambda t: t["steps"][0].update(token_kl=[0.5, float("nan")]),
            "step 0 token_kl must be a list of finite",
        ),
        (lambda t: t.update(alternatives=[{"step_index": 7, "text": "x"}]), "alternative 0 step_index 7"),
        (lambda t: t.update(prompt_kind="poem"), "prompt_kind must be one of"),
        (lambda t: t.update(options="A or B"), "options must be a list of strings"),
    ],
)
def test_malformed_traces_are_rejected_with_a_reason(store, make_trace, change, message):
    trace = make_trace("t1", ["a", "b"])
    change(trace)
    with pytest.raises(ImportFormatError, match=message):
        store.add_trace(trace)
    # One validation: the Trace itself refuses the same dict for the same reason.
    with pytest.raises(TraceFormatError, match=message):
        Trace.from_dict(trace)


def test_same_id_with_other_content_is_a_conflict(store, make_trace, write_jsonl, tmp_path):
    store.add_trace(make_trace("t1", ["a", "b"]))
    path = write_jsonl(tmp_path / "x.jsonl", [make_trace("t9", ["z"]), make_trace("t1", ["a", "different"])])
    with pytest.raises(
        TraceConflictError, match=r"x\.jsonl line 2: trace 't1' is already stored with other content"
    ):
        store.import_traces(path)
    assert _counts(store)["traces"] == 1


def test_clip_facts_are_filled_in_not_overwritten(store, make_trace):
    first = make_trace("t1", ["a"])
    first["clip"].update(name="", path="", duration_s=0.0)
    store.add_trace(first)
    second = make_trace("t2", ["b"])
    second["clip"].update(name="later.mp4", path="/later.mp4", duration_s=9.0)
    store.add_trace(second)
    clip = store.get_trace("t1").to_dict()["clip"]
    assert (clip["name"], clip["path"], clip["duration_s"], clip["fps"]) == (
        "later.mp4",
        "/later.mp4",
        9.0,
        24.0,
    )


def test_trace_from_inference_is_accepted(store):
    """The Trace dataclass of studio_trace/trace.py is the schema; its JSON must import as is."""

    trace = Trace(
        question="q",
        clip=ClipInfo(sha256="f" * 64, name="c.mp4"),
        steps=[Step(index=0, text="One.", score=0.5, token_kl=[0.5]), Step(index=1, text="Two.")],
        alternatives=[Alternative(step_index=1, text="Deux.")],
    )
    assert store.add_trace(json.loads(trace.to_json())) == {"added": 1, "skipped": 0}
    got = store.get_trace(trace.id)
    assert got.to_dict() == trace.to_dict()
    assert got.trace == trace
    # A Trace object is taken as it is, too.
    again = Trace(question="q", clip=ClipInfo(sha256="e" * 64), steps=[Step(index=0, text="Un.")])
    assert store.add_trace(again) == {"added": 1, "skipped": 0}
    assert store.get_trace(again.id).trace == again


def test_annotation_db_never_imports_inference_torch_or_gradio():
    code = (
        "import sys, annotation_db, annotation_db.cli, annotation_db.export, annotation_db.stats;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'inference', 'torch', 'gradio'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _manifest(tmp_path: Path) -> Path:
    (tmp_path / "a.mp4").write_bytes(b"fake video a")
    (tmp_path / "b.mp4").write_bytes(b"fake video b")
    entries = [
        {
            "file": "a.mp4",
            "question": "Why?",
            "options": ["x", "y"],
            "reference_answer": "B",
            "published_reasoning": ["Step one.", "The answer is B"],
        },
        {
            "file": "b.mp4",
            "question": SYNTHDEC_QUESTION,
            "options": None,
            "reference_answer": "YES",
            "published_reasoning": ["Hands look odd.", "So the answer is YES."],
        },
        {
            "file": "b.mp4",
            "question": None,
            "options": None,
            "reference_answer": None,
            "published_reasoning": None,
        },
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def test_import_published_reasoning(store, tmp_path):
    manifest = _manifest(tmp_path)
    assert store.import_published(manifest) == {"added": 2, "skipped": 0, "without_reasoning": 1}
    assert store.import_published(manifest) == {"added": 0, "skipped": 2, "without_reasoning": 1}
    queue = store.queue("alice", order="oldest")
    assert [(q["clip_name"], q["n_steps"], q["max_score"], q["source"]) for q in queue] == [
        ("a.mp4", 2, None, "imported"),
        ("b.mp4", 2, None, "imported"),
    ]
    first = store.get_trace(queue[0]["trace_id"]).to_dict()
    assert first["clip"]["sha256"] == file_sha256(tmp_path / "a.mp4")
    assert first["clip"]["path"] == str((tmp_path / "a.mp4").resolve())
    assert [s["text"] for s in first["steps"]] == ["Step one.", "The answer is B"]
    assert first["answer"] == {"text": "The answer is B", "choice": "B"}
    assert first["prompt_kind"] == "reasoning"
    assert first["prompt"] == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n\n"
        "Question: Why?\nChoose from: A. x B. y\nAnswer the question step by step. Output each thinking step. "
        "Mark the end of each step with <end_of_step> token.<|im_end|>\n<|im_start|>assistant\n"
    )
    second = store.get_trace(queue[1]["trace_id"]).to_dict()
    assert (second["prompt_kind"], second["answer"]["choice"]) == ("synthdec", "YES")


def test_import_published_with_a_missing_clip_imports_nothing(store, tmp_path):
    manifest = _manifest(tmp_path)
    (tmp_path / "b.mp4").unlink()
    with pytest.raises(ImportFormatError, match=r"manifest\.jsonl line 2: clip file 'b.mp4' not found"):
        store.import_published(manifest)
    assert store.db["traces"].count == 0


def test_published_prompts_match_inference_prompts():
    prompts = pytest.importorskip("inference.model.prompts")
    for question, options in [("Why?", ["x", "y", "z"]), ("What happens?", None), (SYNTHDEC_QUESTION, None)]:
        kind, text = published_prompt(question, options)
        user = prompts.build_user_text(kind, "" if kind == "synthdec" else question, options)
        assert text == prompts.prompt_text(user)


def test_import_the_real_published_reasoning(tmp_path, shared_clips):
    with Store.open(tmp_path / "a.db") as store:
        result = store.import_published(shared_clips / "manifest.jsonl")
        assert result == {"added": 3, "skipped": 0, "without_reasoning": 3}
        queue = store.queue("alice", order="oldest")
        assert [(q["clip_name"], q["n_steps"], q["prompt_kind"]) for q in queue] == [
            ("standup_1.mp4", 5, "reasoning"),
            ("synth_1.mp4", 8, "synthdec"),
            ("synth_2.mp4", 5, "synthdec"),
        ]
        standup = store.get_trace(queue[0]["trace_id"]).to_dict()
        assert (standup["reference_answer"], standup["answer"]["choice"]) == ("B", "B")
        assert standup["clip"]["sha256"] == file_sha256(shared_clips / "standup_1.mp4")
