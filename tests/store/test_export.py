"""Round trip import -> label -> export for every format, against golden records."""

from __future__ import annotations

import json
import math

import pytest

from annotation_db import ExportFormatError, ExportOptions
from annotation_db.export import datasets_features
from annotation_db.store import parse_since

T0 = "2025-01-01T00:00:00.000000+00:00"
T1 = "2025-01-01T00:01:00.000000+00:00"
T2 = "2025-01-01T00:02:00.000000+00:00"
SHA = "c" * 64
VIDEO = {"video_path": "/clips/clip.mp4", "video_sha256": SHA}


def decided(n_annotators, agreement, source="majority", adjudicated=False):
    """The how-decided columns of a trl-dpo, trl-stepwise or step-dpo record."""
    return {
        "label_source": source,
        "adjudicated": adjudicated,
        "n_annotators": n_annotators,
        "agreement": agreement,
    }


T1_TEXTS = ["The man runs.", "He is cooking.", "The answer is A."]
T2_TEXTS = ["The man runs.", "He falls.", "The answer is B."]


@pytest.fixture
def labeled(store, clock, make_trace):
    """Two traces of one clip and question, three annotators (see the golden records)."""
    store.add_traces(
        [
            make_trace(
                "t1",
                T1_TEXTS,
                scores=[0.1, 0.9, 0.3],
                correctness=[0.5, 0.0, None],
                alternatives=[{"step_index": 1, "text": "He keeps running.", "expected_correctness": 0.5}],
            ),
            make_trace("t2", T2_TEXTS, scores=[0.1, 0.2, 0.1]),
        ]
    )
    alt = store.get_trace("t1").alternative_ids[0]
    clock.set(T0)
    store.set_label("alice", "t1", 0, "accept")
    store.set_label("alice", "t1", 1, "reject", error_type="visual_misperception")
    store.set_label("alice", "t1", 1, "accept", alternative_id=alt)
    store.set_label("alice", "t1", 2, "reject", error_type="reasoning_logic")
    for k in range(3):
        store.set_label("alice", "t2", k, "accept")
    clock.set(T1)
    store.set_label("bob", "t1", 0, "accept")
    store.set_label("bob", "t1", 1, "reject", error_type="visual_misperception")
    store.set_label("bob", "t1", 2, "unsure")  # counts for nothing
    for k in range(3):
        store.set_label("bob", "t2", k, "accept")
    store.record_preference("bob", "t1", 1, alt, "alternative")
    clock.set(T2)
    store.set_label("carol", "t1", 1, "accept")  # dissent: step 1 is rejected 2 to 1
    return store


SOFT = 1.0 / (1.0 + math.exp(-(0.5 - 0.0) / 0.2))  # mu = 0.2 by default

GOLDEN = {
    "pdpo": [
        {
            "pair_type": "step",
            **VIDEO,
            "question": "What does the man do?",
            "options": ["cooking", "running"],
            "prompt": "PROMPT\n",
            "step_index": 1,
            "prefix_steps": ["The man runs."],
            "chosen_steps": ["He keeps running."],
            "rejected_steps": ["He is cooking."],
            "chosen_trace_id": "t1",
            "rejected_trace_id": "t1",
            "chosen_source": "model",
            "rejected_source": "original",
            "chosen_alternative_id": 1,
            "rejected_alternative_id": None,
            "chosen_score": None,
            "rejected_score": 0.9,
            "chosen_expected_correctness": 0.5,
            "rejected_expected_correctness": 0.0,
            "soft_label": SOFT,
            "rollout_conflict": False,
            "provenance": ["labels", "preference"],
            "annotators": ["alice", "bob", "carol"],
            "n_annotators": 3,
            "agreement": 2 / 3,
            "confidence": 2 / 3,
            "label_source": "majority",
            "adjudicated": False,
            "labeled_at": T2,
        },
        {
            "pair_type": "full_path",
            **VIDEO,
            "question": "What does the man do?",
            "options": ["cooking", "running"],
            "prompt": "PROMPT\n",
            "step_index": None,
            "prefix_steps": [],
            "chosen_steps": T2_TEXTS,
            "rejected_steps": T1_TEXTS,
            "chosen_trace_id": "t2",
            "rejected_trace_id": "t1",
            "chosen_source": "original",
            "rejected_source": "original",
            "chosen_alternative_id": None,
            "rejected_alternative_id": None,
            "chosen_score": None,
            "rejected_score": None,
            "chosen_expected_correctness": None,
            "rejected_expected_correctness": None,
            "soft_label": 1.0,
            "rollout_conflict": False,
            "provenance": ["full_path"],
            "annotators": ["alice", "bob", "carol"],
            "n_annotators": 3,
            "agreement": 2 / 3,
            "confidence": 2 / 3,
            "label_source": "majority",
            "adjudicated": False,
            "labeled_at": T2,
        },
    ],
    # TRL appends <|im_end|> to every completion: the mid-trace step pair is left out (only
    # pairs at a trace's last step and full paths are written; see test_trl_dpo.py).
    "trl-dpo": [
        {
            "prompt": "PROMPT\n",
            "chosen": "The man runs.<end_of_step>\nHe falls.<end_of_step>\nThe answer is B.",
            "rejected": "The man runs.<end_of_step>\nHe is cooking.<end_of_step>\nThe answer is A.",
            **VIDEO,
            **decided(3, 2 / 3),
        },
    ],
    "trl-stepwise": [
        {
            "prompt": "PROMPT\n",
            "completions": ["The man runs.", "He is cooking."],
            "labels": [True, False],
            "step_separator": "<end_of_step>\n",
            **VIDEO,
            **decided(3, 2 / 3),
        },
        {
            "prompt": "PROMPT\n",
            "completions": ["The man runs.", "He keeps running."],
            "labels": [True, True],
            "step_separator": "<end_of_step>\n",
            **VIDEO,
            **decided(2, 1.0),
        },
        {
            "prompt": "PROMPT\n",
            "completions": T2_TEXTS,
            "labels": [True, True, True],
            "step_separator": "<end_of_step>\n",
            **VIDEO,
            **decided(2, 1.0),
        },
    ],
    "step-dpo": [
        {
            "dataset": "reasoning",
            "prompt": "What does the man do?\nChoose from: A. cooking B. running",
            "initial_reason_steps": "The man runs.<end_of_step>\n",
            "chosen": "He keeps running.<end_of_step>\n",
            "rejected": "He is cooking.<end_of_step>\n",
            "full_chosen": None,
            "full_rejected": "He is cooking.<end_of_step>\nThe answer is A.",
            "answer": "B",
            **VIDEO,
            **decided(3, 2 / 3),
        }
    ],
}


@pytest.mark.parametrize("fmt", list(GOLDEN))
def test_golden_records(labeled, fmt):
    assert labeled.export_records(fmt) == GOLDEN[fmt]


@pytest.mark.parametrize("fmt", list(GOLDEN))
def test_exports_load_with_datasets(labeled, fmt, tmp_path):
    datasets = pytest.importorskip("datasets")
    cache = str(tmp_path / "hf-cache")
    out = tmp_path / f"{fmt}.jsonl"
    assert labeled.export(fmt, out) == {
        "format": fmt,
        "path": str(out),
        "records": len(GOLDEN[fmt]),
        "video_root": str(tmp_path.resolve()),  # the database's folder (/clips/clip.mp4 is outside it)
    }
    assert [json.loads(line) for line in out.read_text().splitlines()] == GOLDEN[fmt]
    features = datasets_features(fmt)
    as_json = datasets.load_dataset(
        "json", data_files=str(out), features=features, split="train", cache_dir=cache
    )
    assert as_json.to_list() == GOLDEN[fmt]
    parquet = tmp_path / f"{fmt}.parquet"
    labeled.export(fmt, parquet)
    loaded = datasets.load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=cache)
    assert loaded.to_list() == GOLDEN[fmt]
    assert list(loaded.features) == list(GOLDEN[fmt][0])  # column order as documented
    assert as_json.features == loaded.features == features  # same types in both files


def _pairs(records):
    return [
        (
            r["pair_type"],
            r["chosen_steps"][-1],
            r["provenance"],
            r["annotators"],
            r["agreement"],
            r["labeled_at"],
        )
        for r in records
    ]


def test_annotator_filter_counts_only_their_labels(labeled):
    records = labeled.export_records("pdpo", ExportOptions(annotators=("alice",)))
    assert _pairs(records) == [
        ("step", "He keeps running.", ["labels"], ["alice"], 1.0, T0),
        ("full_path", "The answer is B.", ["full_path"], ["alice"], 1.0, T0),
    ]
    assert labeled.export_records("pdpo", ExportOptions(annotators=("carol",))) == []


def test_min_agreement_drops_contested_verdicts(labeled):
    options = ExportOptions(min_agreement=0.9)
    # Step 1 (2 of 3) has no verdict now: only bob's preference pairs there; t1 is still a
    # rejected path through step 2 (alice; bob's unsure does not count).
    assert _pairs(labeled.export_records("pdpo", options)) == [
        ("step", "He keeps running.", ["preference"], ["bob"], 1.0, T1),
        ("full_path", "The answer is B.", ["full_path"], ["alice", "bob"], 1.0, T1),
    ]
    assert labeled.export_records("trl-stepwise", options) == [
        {
            "prompt": "PROMPT\n",
            "completions": ["The man runs."],
            "labels": [True],
            "step_separator": "<end_of_step>\n",
            **VIDEO,
            **decided(2, 1.0),
        },
        GOLDEN["trl-stepwise"][1],
        GOLDEN["trl-stepwise"][2],
    ]


def test_since_keeps_records_with_a_newer_label(labeled):
    assert labeled.export_records(
        "trl-stepwise", ExportOptions(since=parse_since("2025-01-01T00:01:30"))
    ) == [GOLDEN["trl-stepwise"][0]]
    assert labeled.export_records("pdpo", ExportOptions(since=parse_since("2025-01-01T00:02:01+00:00"))) == []
    assert len(labeled.export_records("pdpo", ExportOptions(since=parse_since("2025-01-01")))) == 2


def test_ties_and_unsure_give_no_verdict(store, make_trace):
    store.add_trace(make_trace("t", ["a", "b"], alternatives=[{"step_index": 0, "text": "a2"}]))
    store.set_label("alice", "t", 0, "accept")
    store.set_label("bob", "t", 0, "reject")
    store.set_label("carol", "t", 0, "unsure")
    store.set_label("alice", "t", 0, "reject", alternative_id=1)
    assert store.export_records("pdpo") == []
    # Step 0 is undecided (a tie): the trace says nothing; the alternative at 0 needs no prefix.
    assert store.export_records("trl-stepwise") == [
        {
            "prompt": "PROMPT\n",
            "completions": ["a2"],
            "labels": [False],
            "step_separator": "<end_of_step>\n",
            **VIDEO,
            **decided(1, 1.0),
        }
    ]
    store.set_label("carol", "t", 0, "accept")  # now 2 to 1
    assert [
        (r["chosen_steps"], r["rejected_steps"], r["agreement"]) for r in store.export_records("pdpo")
    ] == [(["a"], ["a2"], 2 / 3)]


def test_preference_for_the_original_and_soft_labels(store, make_trace):
    store.add_trace(
        make_trace(
            "t",
            ["a", "b"],
            correctness=[0.5, 0.25],
            alternatives=[{"step_index": 1, "text": "b2", "expected_correctness": 0.75}],
        )
    )
    store.record_preference("alice", "t", 1, 1, "original")
    store.record_preference("bob", "t", 1, 1, "original")
    store.record_preference("carol", "t", 1, 1, "alternative")
    [record] = store.export_records("pdpo", ExportOptions(mu=0.25))
    assert (record["chosen_steps"], record["rejected_steps"], record["agreement"]) == (["b"], ["b2"], 2 / 3)
    # The humans prefer the original although its rollouts are worse (sigma((0.25 - 0.75) / 0.25)
    # = 0.12 alone): the humans fix the direction, so the pair pushes neither way, and says why.
    assert (record["soft_label"], record["rollout_conflict"]) == (0.5, True)
    store.set_expected_correctness("t", 1, 0.0, alternative_id=1)  # now the rollouts agree
    [record] = store.export_records("pdpo", ExportOptions(mu=0.25))
    assert (record["soft_label"], record["rollout_conflict"]) == (1 / (1 + math.exp(-1.0)), False)


def test_full_path_pairs_need_the_same_clip_question_and_prompt(store, make_trace):
    store.add_traces(
        [
            make_trace("good", ["a"]),
            make_trace("other-question", ["b"], question="Why?"),
            make_trace("other-clip", ["c"], clip_sha="d" * 64),
            make_trace("bad", ["d", "e"]),
        ]
    )
    for trace_id in ("good",):
        store.set_label("alice", trace_id, 0, "accept")
    for trace_id in ("other-question", "other-clip", "bad"):
        store.set_label("alice", trace_id, 0, "reject")
    pairs = store.export_records("pdpo")
    assert [(p["chosen_trace_id"], p["rejected_trace_id"]) for p in pairs] == [("good", "bad")]
    # A trace that is accepted only in part is not a full path.
    store.set_label("alice", "bad", 0, "accept")
    assert store.export_records("pdpo") == []


def test_bad_export_requests_are_user_errors(labeled, tmp_path):
    with pytest.raises(ExportFormatError, match="export format must be one of pdpo, trl-dpo"):
        labeled.export("orpo", tmp_path / "x.jsonl")
    with pytest.raises(ExportFormatError, match="must end in .jsonl or .parquet"):
        labeled.export("pdpo", tmp_path / "x.csv")
    with pytest.raises(ExportFormatError, match="min_agreement is a fraction"):
        labeled.export("pdpo", tmp_path / "x.jsonl", min_agreement=2)
    with pytest.raises(ExportFormatError, match="since must be an ISO date"):
        labeled.export("pdpo", tmp_path / "x.jsonl", since="yesterday")
    # No output file (not even a temp file) was left behind.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("annotations.db")] == []


def test_default_mu_is_the_one_inference_suggests():
    alternatives = pytest.importorskip("inference.reasoning.alternatives")
    from annotation_db import DEFAULT_MU

    assert DEFAULT_MU == alternatives.DEFAULT_MU
