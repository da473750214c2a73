"""Feed the trl-stepwise export to TRL's PRMTrainer (TRL <= 1.13; 1.14 removed it) for 2 steps.

The dev requirements pin a newer TRL (for DPOTrainer), so this check runs in an environment of
its own, e.g. one that sees the project's packages and has trl 1.13 on top:

    python -m venv --without-pip /tmp/trl113
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/trl113/lib/python3.11/site-packages/zz.pth
    .venv/bin/python -m pip --python /tmp/trl113/bin/python install --no-deps trl==1.13.0
    /tmp/trl113/bin/python scripts/check_trl_prm.py

It prints the text up to each labelled token with its label, and the losses of the 2 steps;
it exits 1 if a label does not sit on a step's ``<end_of_step>\\n``.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main() -> int:
    import datasets
    from transformers import Qwen2Config, Qwen2ForTokenClassification
    from trl.experimental.prm import PRMConfig, PRMTrainer

    from annotation_db import Store
    from annotation_db.export import datasets_features
    from annotation_db.tracejson import published_prompt as prompt_text
    from inference.model.tokenizer import build_qwen2_tokenizer

    prompt = prompt_text("What does the cat do?", ["sleeps", "jumps"])[1]

    def trace(trace_id: str, texts: list[str]) -> dict:
        return {
            "schema_version": 1,
            "id": trace_id,
            "question": "What does the cat do?",
            "options": ["sleeps", "jumps"],
            "prompt": prompt,
            "clip": {"sha256": "5e1f" * 16, "path": "clips/cat.mp4"},
            "steps": [{"index": k, "text": t} for k, t in enumerate(texts)],
        }

    work = Path(tempfile.mkdtemp(prefix="trl-prm-check-"))
    with Store.open(work / "a.db") as store:
        store.add_traces(
            [
                trace("t1", ["A cat sits.", "It sleeps.", "The answer is A."]),
                trace("t2", ["A cat sits.", "It jumps.", "The answer is B."]),
            ]
        )
        store.set_label("alice", "t1", 0, "accept")
        store.set_label("alice", "t1", 1, "reject")
        for k in range(3):
            store.set_label("alice", "t2", k, "accept")
        store.export("trl-stepwise", work / "stepwise.jsonl")
    tokenizer = copy.deepcopy(build_qwen2_tokenizer())
    dataset = datasets.load_dataset(
        "json",
        data_files=str(work / "stepwise.jsonl"),
        features=datasets_features("trl-stepwise"),
        split="train",
        cache_dir=str(work / "hf"),
    )
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
    )
    args = PRMConfig(
        output_dir=str(work / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        step_separator=dataset[0]["step_separator"],  # "<end_of_step>\n", carried by the record
    )
    trainer = PRMTrainer(
        model=Qwen2ForTokenClassification(config),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    labelled = [
        (tokenizer.decode(row["input_ids"][: i + 1]), label)
        for i, label in enumerate(row["labels"])
        if label != -100
    ]
    for text, label in labelled:
        print(f"{label}  ...{text[-40:]!r}")
    result = trainer.train()
    print("steps", result.global_step, [e["loss"] for e in trainer.state.log_history if "loss" in e])
    ok = [label for _, label in labelled] == [1, 0] and all(
        t.endswith("<end_of_step>\n") for t, _ in labelled
    )
    return 0 if ok and result.global_step == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
