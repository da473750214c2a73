"""The trl-dpo export fed to TRL's DPOTrainer as it is: the tokens it trains on, and 2 steps on the CPU.

TRL's DPOTrainer appends the tokenizer's EOS (``<|im_end|>``) to every chosen and rejected text
of a standard (not conversational) dataset. The export therefore holds only completions that end
an answer; this test checks that every trained completion is the candidate's text followed by
exactly one ``<|im_end|>``, and that the prompt tokens are the model's own prompt with the prefix.
"""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from annotation_db import Store  # noqa: E402
from annotation_db.export import datasets_features  # noqa: E402
from annotation_db.tracejson import published_prompt as prompt_text  # noqa: E402

pytestmark = pytest.mark.slow

PROMPT = prompt_text("What does the cat do?", ["sleeps", "jumps"])[1]


def _trace(trace_id, texts, alternatives=()):
    return {
        "schema_version": 1,
        "id": trace_id,
        "question": "What does the cat do?",
        "options": ["sleeps", "jumps"],
        "reference_answer": "B",
        "prompt": PROMPT,
        "clip": {"sha256": "5e1f" * 16, "name": "cat.mp4", "path": "clips/cat.mp4"},
        "steps": [{"index": i, "text": t} for i, t in enumerate(texts)],
        "alternatives": list(alternatives),
    }


@pytest.fixture
def export_file(tmp_path):
    with Store.open(tmp_path / "a.db") as store:
        store.add_traces(
            [
                _trace(
                    "t1",
                    ["A cat sits on a sofa.", "It falls asleep.", "The answer is A."],
                    [
                        {"step_index": 1, "text": "It jumps onto the shelf."},
                        {"step_index": 2, "text": "The answer is B."},
                    ],
                ),
                _trace("t2", ["A cat sits on a sofa.", "It jumps onto the shelf.", "The answer is B."]),
            ]
        )
        store.set_label("alice", "t1", 0, "accept")
        for k, alt in ((1, 1), (2, 2)):  # the original step rejected, the alternative accepted
            store.set_label("alice", "t1", k, "reject")
            store.set_label("alice", "t1", k, "accept", alternative_id=alt)
        for k in range(3):
            store.set_label("alice", "t2", k, "accept")
        out = tmp_path / "trl.jsonl"
        assert store.export("trl-dpo", out)["records"] == 2  # the last-step pair and the full path
    return out


def test_dpo_trainer_trains_on_complete_answers(export_file, tmp_path):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl import DPOConfig, DPOTrainer

    from inference.model.tokenizer import build_qwen2_tokenizer

    tokenizer = copy.deepcopy(build_qwen2_tokenizer())
    assert tokenizer.eos_token == "<|im_end|>"
    dataset = datasets.load_dataset(
        "json",
        data_files=str(export_file),
        features=datasets_features("trl-dpo"),
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    args = DPOConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataset_num_proc=None,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # a model object, not a hub name: nothing is downloaded
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )

    decode = tokenizer.decode
    rows = trainer.train_dataset.to_list()
    # The step pair at the last step: the prefix is in the prompt, each side is one final step
    # and the EOS TRL appended, once.
    step = rows[0]
    assert decode(step["prompt_ids"]) == (
        PROMPT + "A cat sits on a sofa.<end_of_step>\nIt falls asleep.<end_of_step>\n"
    )
    assert decode(step["chosen_ids"]) == "The answer is B.<|im_end|>"
    assert decode(step["rejected_ids"]) == "The answer is A.<|im_end|>"
    full = rows[1]
    assert decode(full["prompt_ids"]) == PROMPT
    assert decode(full["chosen_ids"]) == (
        "A cat sits on a sofa.<end_of_step>\nIt jumps onto the shelf.<end_of_step>\nThe answer is B.<|im_end|>"
    )
    for row in rows:
        for side in ("chosen_ids", "rejected_ids"):
            assert row[side].count(tokenizer.eos_token_id) == 1 and row[side][-1] == tokenizer.eos_token_id

    result = trainer.train()
    assert result.global_step == 2
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)  # finite, not NaN
