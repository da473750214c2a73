"""Exports take each item's resolved verdict: a reviewer's decision wins, a sent-back item has
none; every record says how its label was decided, and the export filters by that."""

from __future__ import annotations

import json

import pytest

from annotation_db import ExportFormatError, ExportOptions
from annotation_db.cli import main
from annotation_db.export import datasets_features

T0 = "2025-01-01T00:00:00.000000+00:00"
T1 = "2025-01-01T00:01:00.000000+00:00"
T1_TEXTS = ["a0", "a1", "a2"]
T2_TEXTS = ["a0", "b1", "b2"]
FIX = "a2 fixed"


@pytest.fixture
def reviewed(store, clock, make_trace):
    """t1 and t2 on one clip and question. alice and bob accept every step of t1 and reject the
    alternative at its last step; alice alone accepts t2. rita (reviewer) overrules both at t1's
    last step: the original is rejected, the alternative accepted."""
    store.add_traces(
        [
            make_trace("t1", T1_TEXTS, alternatives=[{"step_index": 2, "text": FIX}]),
            make_trace("t2", T2_TEXTS),
        ]
    )
    store.sync_roles([("alice", "annotator"), ("bob", "annotator"), ("rita", "reviewer")])
    clock.set(T0)
    for name in ("alice", "bob"):
        for k in range(3):
            store.set_label(name, "t1", k, "accept")
        store.set_label(name, "t1", 2, "reject", alternative_id=1)
    for k in range(3):
        store.set_label("alice", "t2", k, "accept")
    clock.set(T1)
    store.adjudicate("rita", "t1", 2, "reject", error_type="reasoning_logic", note="wrong answer")
    store.adjudicate("rita", "t1", 2, "accept", alternative_id=1)
    return store


def how(source, adjudicated, n_annotators, agreement):
    return {
        "label_source": source,
        "adjudicated": adjudicated,
        "n_annotators": n_annotators,
        "agreement": agreement,
    }


def _pdpo(store, options=None):
    return [
        (
            r["pair_type"],
            r["chosen_steps"][-1],
            r["rejected_steps"][-1],
            r["confidence"],
            how(r["label_source"], r["adjudicated"], r["n_annotators"], r["agreement"]),
        )
        for r in store.export_records("pdpo", options)
    ]


def _stepwise(store, options=None):
    return [
        (r["completions"], r["labels"], {k: r[k] for k in how(0, 0, 0, 0)})
        for r in store.export_records("trl-stepwise", options)
    ]


def test_without_reviews_the_annotators_majority_decides(reviewed):
    reviewed.clear_review("rita", "t1", 2)
    reviewed.clear_review("rita", "t1", 2, alternative_id=1)
    agreed = how("majority", False, 2, 1.0)
    assert _pdpo(reviewed) == [("step", "a2", FIX, 1.0, agreed)]
    assert _stepwise(reviewed) == [
        (T1_TEXTS, [True, True, True], agreed),
        (["a0", "a1", FIX], [True, True, False], agreed),
        (T2_TEXTS, [True, True, True], how("majority", False, 1, 1.0)),
    ]


def test_a_reviewers_decision_overrides_the_annotators_in_every_format(reviewed):
    decided = how("reviewer", True, 2, 1.0)  # alice and bob voted; the decision is final
    mixed = how("mixed", False, 2, 1.0)  # t2's majority steps and t1's decided step
    assert _pdpo(reviewed) == [
        ("step", FIX, "a2", 1.0, decided),
        ("full_path", "b2", "a2", 1.0, mixed),
    ]
    assert reviewed.export_records("trl-dpo") == [
        {
            "prompt": "PROMPT\na0<end_of_step>\na1<end_of_step>\n",
            "chosen": FIX,
            "rejected": "a2",
            "video_path": "/clips/clip.mp4",
            "video_sha256": "c" * 64,
            **decided,
        },
        {
            "prompt": "PROMPT\n",
            "chosen": "a0<end_of_step>\nb1<end_of_step>\nb2",
            "rejected": "a0<end_of_step>\na1<end_of_step>\na2",
            "video_path": "/clips/clip.mp4",
            "video_sha256": "c" * 64,
            **mixed,
        },
    ]
    assert [
        (r["chosen"], r["rejected"], {k: r[k] for k in decided}) for r in reviewed.export_records("step-dpo")
    ] == [(FIX + "<end_of_step>\n", "a2<end_of_step>\n", decided)]
    assert _stepwise(reviewed) == [
        (T1_TEXTS, [True, True, False], how("mixed", False, 2, 1.0)),
        (["a0", "a1", FIX], [True, True, True], how("mixed", False, 2, 1.0)),
        (T2_TEXTS, [True, True, True], how("majority", False, 1, 1.0)),
    ]
    # The record's labeled_at is the review's time: a --since after the labels keeps it.
    since = ExportOptions(since="2025-01-01T00:00:30.000000+00:00")
    assert [r["chosen_steps"] for r in reviewed.export_records("pdpo", since)] == [[FIX], ["a0", "b1", "b2"]]


def test_a_sent_back_item_has_no_verdict_until_a_reviewer_decides(reviewed):
    reviewed.send_back("rita", "t1", 2, "Which answer does the clip support?")
    # t1's last step has no verdict: no pair at it, no full path (t1 is neither all accepted nor
    # rejected anywhere), and the stepwise record of t1 stops before it.
    assert reviewed.export_records("pdpo") == []
    assert _stepwise(reviewed)[0] == (["a0", "a1"], [True, True], how("majority", False, 2, 1.0))
    reviewed.adjudicate("rita", "t1", 2, "reject")
    assert [p[:3] for p in _pdpo(reviewed)] == [("step", FIX, "a2"), ("full_path", "b2", "a2")]


def test_adjudicated_only_keeps_reviewers_decisions(reviewed, tmp_path):
    options = ExportOptions(adjudicated_only=True)
    assert _pdpo(reviewed, options) == [("step", FIX, "a2", 1.0, how("reviewer", True, 2, 1.0))]
    # No step of t1 before the decided one has a reviewer's verdict: stepwise has nothing.
    assert reviewed.export_records("trl-stepwise", options) == []
    # A preference is no reviewer's decision: it is dropped too.
    reviewed.record_preference("alice", "t1", 2, 1, "original")
    assert len(reviewed.export_records("pdpo")) == 3
    assert _pdpo(reviewed, options) == [("step", FIX, "a2", 1.0, how("reviewer", True, 2, 1.0))]
    out = tmp_path / "adjudicated.jsonl"
    assert reviewed.export("pdpo", out, adjudicated_only=True)["records"] == 1


def test_min_annotators_drops_thinly_labeled_verdicts_never_a_reviewers(reviewed):
    # t2 has alice's labels alone: with 2 required it has no verdicts, so no full-path pair.
    assert [p[:3] for p in _pdpo(reviewed, ExportOptions(min_annotators=2))] == [("step", FIX, "a2")]
    assert [r[0] for r in _stepwise(reviewed, ExportOptions(min_annotators=2))] == [
        T1_TEXTS,
        ["a0", "a1", FIX],
    ]
    # With 3 required, t1's first steps (alice and bob) drop too; the decided items stay.
    assert [p[:3] for p in _pdpo(reviewed, ExportOptions(min_annotators=3))] == [("step", FIX, "a2")]
    assert reviewed.export_records("trl-stepwise", ExportOptions(min_annotators=3)) == []


def test_min_annotators_applies_to_preferences(store, make_trace):
    store.add_trace(make_trace("t", ["a", "b"], alternatives=[{"step_index": 1, "text": "b2"}]))
    store.record_preference("alice", "t", 1, 1, "alternative")
    assert [r["chosen_steps"] for r in store.export_records("pdpo")] == [["b2"]]
    assert store.export_records("pdpo", ExportOptions(min_annotators=2)) == []
    store.record_preference("bob", "t", 1, 1, "alternative")
    [record] = store.export_records("pdpo", ExportOptions(min_annotators=2))
    assert (record["label_source"], record["adjudicated"], record["n_annotators"]) == ("majority", False, 2)


def test_dawid_skene_resolution_names_itself(reviewed):
    reviewed.clear_review("rita", "t1", 2)
    reviewed.clear_review("rita", "t1", 2, alternative_id=1)
    [pair] = reviewed.export_records("pdpo", ExportOptions(resolution="dawid_skene"))
    assert (pair["chosen_steps"], pair["rejected_steps"], pair["label_source"]) == (
        ["a2"],
        [FIX],
        "dawid_skene",
    )
    # confidence is the Dawid-Skene posterior (the lower of the pair's two verdicts), not the
    # vote share (1.0 here) that agreement still reports.
    assert (0.99 < pair["confidence"] < 1.0, pair["agreement"]) == (True, 1.0)


def test_bad_filters_are_user_errors(reviewed, tmp_path):
    with pytest.raises(ExportFormatError, match=r"^min_annotators is a count of 0 or more, not -1$"):
        reviewed.export("pdpo", tmp_path / "x.jsonl", min_annotators=-1)
    with pytest.raises(
        ExportFormatError, match=r"^resolution must be one of majority, dawid_skene, not 'em'$"
    ):
        reviewed.export("pdpo", tmp_path / "x.jsonl", resolution="em")
    with pytest.raises(ExportFormatError, match=r"^min_annotators is a count of 0 or more, not 1.5$"):
        ExportOptions(min_annotators=1.5)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("annotations.db")] == []


def test_cli_filters(reviewed, tmp_path, capsys):
    reviewed.close()
    out = tmp_path / "pairs.jsonl"
    db = str(reviewed.path)
    argv = ["--db", db, "export", "--format", "pdpo", "--out", str(out)]
    assert main([*argv, "--adjudicated-only", "--min-annotators", "3", "--resolution", "dawid-skene"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 1 pdpo records to {out}")
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (record["chosen_steps"], record["label_source"], record["adjudicated"]) == (
        [FIX],
        "reviewer",
        True,
    )
    assert main([*argv, "--min-annotators", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 1 pdpo records to {out}")


@pytest.mark.parametrize("fmt", ["pdpo", "trl-dpo", "trl-stepwise", "step-dpo"])
def test_jsonl_and_parquet_load_with_the_same_types(reviewed, fmt, tmp_path):
    datasets = pytest.importorskip("datasets")
    reviewed.record_preference("bob", "t1", 2, 1, "original")  # a conflicting preference, too
    cache = str(tmp_path / "hf-cache")
    records = reviewed.export_records(fmt)
    jsonl, parquet = tmp_path / f"{fmt}.jsonl", tmp_path / f"{fmt}.parquet"
    reviewed.export(fmt, jsonl)
    reviewed.export(fmt, parquet)
    features = datasets_features(fmt)
    as_json = datasets.load_dataset(
        "json", data_files=str(jsonl), features=features, split="train", cache_dir=cache
    )
    loaded = datasets.load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=cache)
    assert as_json.to_list() == loaded.to_list() == records
    assert as_json.features == loaded.features == features
    assert {"label_source", "adjudicated", "n_annotators", "agreement"} <= set(features)
