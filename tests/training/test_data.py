"""The store's real pdpo export -> token ids, the way the official trainer builds them."""

from __future__ import annotations

import json
import math

import pytest

from inference.model.prompts import build_prompt
from inference.reasoning.scoring import MARKER
from training.data import PairsFormatError, file_sha256, load_pairs, parse_prompt

STEPS_T1 = ["A red circle is on the left.", "It turns into a square.", "The answer is B."]
STEPS_T2 = ["A red circle is on the left.", "It moves to the right.", "The answer is A."]
ALTERNATIVE = "It moves to the right."


def a_trace(trace_id: str, clip: dict, prompt, texts: list[str], correctness=None) -> dict:
    from studio_trace import ClipInfo, Step, Trace

    correctness = correctness or [None] * len(texts)
    trace = Trace(
        id=trace_id,
        question=clip["question"],
        options=clip["options"],
        reference_answer="A",
        prompt_kind="reasoning",
        prompt=prompt.text,
        clip=ClipInfo(sha256=clip["sha256"], name="toy0.mp4", path=clip["path"]),
        steps=[
            Step(index=i, text=t, expected_correctness=c)
            for i, (t, c) in enumerate(zip(texts, correctness, strict=True))
        ],
        source="batch",
    )
    return trace.to_dict()


@pytest.fixture
def exported(tmp_path, toy_clips, tiny_model):
    """A real store: alice rejects t1 step 1 and accepts a model alternative (both with rollout
    correctness) and accepts every step of t2 and t1's other steps -> one step pair, one full
    path pair. Exported as JSONL and Parquet."""
    from annotation_db import Store

    clip = toy_clips[0]
    prompt = build_prompt(tiny_model.tokenizer, "reasoning", clip["question"], clip["options"])
    store = Store.open(tmp_path / "a.db")
    store.add_trace(a_trace("t1", clip, prompt, STEPS_T1, [1.0, 1 / 6, 0.0]))
    store.add_trace(a_trace("t2", clip, prompt, STEPS_T2))
    alt = store.add_alternative("alice", "t1", 1, ALTERNATIVE, source="model", expected_correctness=5 / 6)
    store.set_label("alice", "t1", 1, "reject", error_type="visual_misperception")
    store.set_label("alice", "t1", 1, "accept", alternative_id=alt["id"])
    for k in range(3):
        store.set_label("alice", "t2", k, "accept")
    out = {"jsonl": tmp_path / "pairs.jsonl", "parquet": tmp_path / "pairs.parquet"}
    for path in out.values():
        store.export("pdpo", path)
    return prompt, out


def test_store_export_becomes_official_token_ids(exported, tiny_model):
    tok = tiny_model.tokenizer
    prompt, files = exported
    pairs = load_pairs(files["jsonl"], tok)
    records = [json.loads(line) for line in files["jsonl"].read_text().splitlines()]
    assert [r["pair_type"] for r in records] == ["step", "full_path"]
    step, full = pairs.pairs
    assert step.prompt_ids == full.prompt_ids == prompt.ids  # rebuilt from the ChatML text
    assert step.context_ids == tuple(tok(STEPS_T1[0] + MARKER).input_ids)
    assert step.chosen_ids == tuple(tok(ALTERNATIVE + MARKER).input_ids)
    assert step.rejected_ids == tuple(tok(STEPS_T1[1] + MARKER).input_ids)
    assert (
        step.label
        == records[0]["soft_label"]
        == pytest.approx(1 / (1 + 2.718281828459045 ** -((5 / 6 - 1 / 6) / 0.2)))
    )
    assert full.context_ids == ()
    assert full.chosen_ids == tuple(tok(MARKER.join(STEPS_T2)).input_ids)
    assert full.rejected_ids == tuple(tok(MARKER.join(STEPS_T1)).input_ids)
    assert full.label == 1.0
    assert pairs.describe() == {
        "path": str(files["jsonl"]),
        "sha256": file_sha256(files["jsonl"]),
        "records": 2,
        "used": 2,
        "skipped": {},
        "rollout_conflicts": 0,
        "clips": 1,
        "by_type": {"step": 1, "full_path": 1},
    }
    parquet = load_pairs(files["parquet"], tok)
    assert parquet.pairs == pairs.pairs


def test_hard_labels_and_pair_type_filter(exported, tiny_model):
    _, files = exported
    pairs = load_pairs(files["jsonl"], tiny_model.tokenizer, labels="hard", pair_types=("step",))
    assert [p.label for p in pairs.pairs] == [1.0]
    assert pairs.skipped == {"pair_type full_path not selected": 1}


def test_prompt_text_round_trips_and_other_text_is_refused(tiny_model):
    prompt = build_prompt(tiny_model.tokenizer, "direct", "Which?", ["x", "y"])
    assert parse_prompt(prompt.text) == ("You are a helpful assistant.", prompt.user_text)
    with pytest.raises(ValueError, match="not a one-clip ChatML prompt"):
        parse_prompt("...<|im_start|>assistant\n")


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_bad_records_are_errors_that_name_the_record(exported, tiny_model, tmp_path):
    _, files = exported
    good = [json.loads(line) for line in files["jsonl"].read_text().splitlines()]
    tok = tiny_model.tokenizer
    cases = [
        ({**good[0], "prompt": "PROMPT\n"}, "record 2: the prompt is not a one-clip ChatML prompt"),
        ({k: v for k, v in good[0].items() if k != "video_sha256"}, "record 2: missing field"),
        ({**good[0], "chosen_steps": ["a", "b"]}, "record 2: a step pair has exactly one"),
        ({**good[0], "soft_label": 1.5}, "record 2: soft_label must be a number from 0 to 1"),
    ]
    for bad, message in cases:
        with pytest.raises(PairsFormatError, match=message):
            load_pairs(_write(tmp_path / "bad.jsonl", [good[0], bad]), tok)
    (tmp_path / "broken.jsonl").write_text('{"pair_type": "step"}\n{not json\n')
    with pytest.raises(PairsFormatError, match="broken.jsonl line 2: not JSON"):
        load_pairs(tmp_path / "broken.jsonl", tok)
    with pytest.raises(PairsFormatError, match="no such file"):
        load_pairs(tmp_path / "absent.jsonl", tok)


def test_identical_candidates_are_skipped_and_an_empty_set_is_an_error(exported, tiny_model, tmp_path):
    _, files = exported
    record = json.loads(files["jsonl"].read_text().splitlines()[0])
    same = {**record, "rejected_steps": record["chosen_steps"]}
    with pytest.raises(PairsFormatError, match="holds no usable pair"):
        load_pairs(_write(tmp_path / "same.jsonl", [same]), tiny_model.tokenizer)
    pairs = load_pairs(_write(tmp_path / "mixed.jsonl", [same, record]), tiny_model.tokenizer)
    assert [p.index for p in pairs.pairs] == [1]
    assert pairs.skipped == {"chosen and rejected are the same text": 1}


CORRECTION = "It glides to the right edge."


@pytest.fixture
def corrected(tmp_path, toy_clips, tiny_model):
    """alice rewrites t1 step 1 and prefers her correction, whose rollouts (1/6) favour the
    original (5/6); t2 is accepted throughout. Exported as pdpo JSONL."""
    from annotation_db import Store

    clip = toy_clips[0]
    prompt = build_prompt(tiny_model.tokenizer, "reasoning", clip["question"], clip["options"])
    with Store.open(tmp_path / "a.db") as store:
        store.add_trace(a_trace("t1", clip, prompt, STEPS_T1, [1.0, 5 / 6, 0.0]))
        store.add_trace(a_trace("t2", clip, prompt, STEPS_T2))
        alt = store.add_alternative("alice", "t1", 1, CORRECTION, expected_correctness=1 / 6)
        store.record_preference("alice", "t1", 1, alt["id"], "alternative")
        store.set_label("alice", "t1", 1, "reject", error_type="visual_misperception")
        store.set_label("alice", "t1", 1, "accept", alternative_id=alt["id"])
        for k in range(3):
            store.set_label("alice", "t2", k, "accept")
        for k in (0, 2):
            store.set_label("alice", "t1", k, "accept")
        store.export("pdpo", tmp_path / "pairs.jsonl")
    return tmp_path / "pairs.jsonl"


def _margin_gradient(pairs) -> list[float]:
    """d loss / d margin at margin 0 under the labels the trainer takes (``p.label`` of each
    pair, as ``PDPOTrainer.pair_losses``): negative pushes towards the export's chosen side."""
    import torch

    from training.loss import pdpo_losses

    margin = torch.zeros(len(pairs), requires_grad=True)
    zeros = torch.zeros(len(pairs))
    labels = torch.tensor([p.label for p in pairs])
    pdpo_losses(margin, zeros, zeros, zeros, labels, beta=1.0).loss.sum().backward()
    return margin.grad.tolist()


def test_a_preferred_correction_against_its_rollouts_keeps_the_humans_direction(
    corrected, tiny_model, tmp_path
):
    tok = tiny_model.tokenizer
    records = [json.loads(line) for line in corrected.read_text().splitlines()]
    # The pair keeps the human's direction; rollouts alone would say sigma((1/6 - 5/6) / 0.2) = 0.03.
    assert [
        (r["pair_type"], r["chosen_steps"], r["chosen_source"], r["soft_label"], r["rollout_conflict"])
        for r in records
    ] == [
        ("step", [CORRECTION], "human", 0.5, True),
        ("full_path", STEPS_T2, "original", 1.0, False),
    ]
    pairs = load_pairs(corrected, tok)
    assert [p.label for p in pairs.pairs] == [0.5, 1.0]
    assert pairs.rollout_conflicts == 1
    # The loss never pushes towards the original: no push for the conflict, the full path pulls.
    assert _margin_gradient(pairs.pairs) == [0.0, -0.5]
    # An export written before the rule (soft_label 0.03, no rollout_conflict field) trains the same.
    old = {k: v for k, v in records[0].items() if k != "rollout_conflict"}
    old["soft_label"] = 1 / (1 + math.exp(-((1 / 6 - 5 / 6) / 0.2)))
    older = load_pairs(_write(tmp_path / "old.jsonl", [old, records[1]]), tok)
    assert [p.label for p in older.pairs] == [0.5, 1.0] and older.rollout_conflicts == 1
    assert _margin_gradient(older.pairs) == [0.0, -0.5]
    # --drop-rollout-conflicts leaves such pairs out, from either export.
    for path in (corrected, tmp_path / "old.jsonl"):
        kept = load_pairs(path, tok, drop_rollout_conflicts=True)
        assert [p.pair_type for p in kept.pairs] == ["full_path"]
        assert kept.skipped == {"rollouts favour the rejected candidate (--drop-rollout-conflicts)": 1}
        assert kept.rollout_conflicts == 0
