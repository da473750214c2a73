"""Fixtures for pDPO training: short generated clips and a toy preference set in the store's
pdpo export format (README.md, "The annotation store"), written as JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# The toy preference: a step that says what is SEEN is preferred over one that says what is
# HEARD, whatever the object. Train and held-out pairs use different objects, so a held-out
# success means the adapter learned the pattern, not the strings.
TRAIN_OBJECTS = ["red circle", "blue square", "green ball", "yellow box", "white dot", "black line"]
HELD_OUT_OBJECTS = ["orange star", "purple ring", "grey cube"]
PREFIX_STEPS = [[], ["The clip is short."], ["The clip is short.", "Something moves."]]


def step_record(clip: dict, prompt: str, obj: str, prefix: list[str], soft_label: float = 1.0) -> dict:
    """A step pair exactly as annotation_db's pdpo export writes it."""
    return {
        "pair_type": "step",
        "video_path": clip["path"],
        "video_sha256": clip["sha256"],
        "question": clip["question"],
        "options": clip["options"],
        "prompt": prompt,
        "step_index": len(prefix),
        "prefix_steps": list(prefix),
        "chosen_steps": [f"I see a {obj} in the frame."],
        "rejected_steps": [f"I hear a {obj} in the audio."],
        "chosen_trace_id": "t",
        "rejected_trace_id": "t",
        "chosen_source": "human",
        "rejected_source": "original",
        "chosen_alternative_id": 1,
        "rejected_alternative_id": None,
        "chosen_score": None,
        "rejected_score": 0.3,
        "chosen_expected_correctness": None,
        "rejected_expected_correctness": None,
        "soft_label": soft_label,
        "provenance": ["labels"],
        "annotators": ["alice"],
        "n_annotators": 1,
        "agreement": 1.0,
        "labeled_at": "2026-01-01T00:00:00.000000+00:00",
    }


def full_path_record(clip: dict, prompt: str, obj: str) -> dict:
    record = step_record(clip, prompt, obj, [])
    record.update(
        pair_type="full_path",
        step_index=None,
        chosen_steps=[f"I see a {obj} in the frame.", "The answer is A."],
        rejected_steps=[f"I hear a {obj} in the audio.", "The answer is A."],
        chosen_source="original",
        chosen_alternative_id=None,
        chosen_score=None,
        rejected_score=None,
        provenance=["full_path"],
    )
    return record


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread for these tests: on the shared 2-core VM two threads oversubscribed
    by other processes make the tiny model's small matmuls ~10x slower (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_tiny(tiny_checkpoint):
    """A tiny model of the test's own (training adds adapters to it in place)."""
    from inference.model.loading import LoadSettings, load_model

    return load_model(LoadSettings(checkpoint=str(tiny_checkpoint), device="cpu", quantization="none"))


@pytest.fixture(scope="session")
def toy_clips(tmp_path_factory) -> list[dict]:
    """Three 2 s clips (4 frames at 2 fps, ~900 LLM tokens each) with a question each."""
    from examples.synth import write_clip
    from training.data import file_sha256

    out = tmp_path_factory.mktemp("toy_clips")
    clips = []
    for i, (shapes, audio) in enumerate(
        [(("circle",), "tone"), (("square",), None), (("circle", "square"), "tone")]
    ):
        path = write_clip(out / f"toy{i}.mp4", seconds=2.0, fps=10, shapes=shapes, audio=audio, number=False)
        clips.append(
            {
                "path": str(path),
                "sha256": file_sha256(path),
                "question": f"What is in clip {i}?",
                "options": ["a shape", "nothing"],
            }
        )
    return clips


def _prompt(tokenizer, clip: dict) -> str:
    from inference.model.prompts import build_prompt

    return build_prompt(tokenizer, "reasoning", clip["question"], clip["options"]).text


@pytest.fixture(scope="session")
def toy_pairs(tmp_path_factory, toy_clips, tiny_model) -> dict[str, Path]:
    """{"train": JSONL, "held_out": JSONL}: step pairs over every prefix and clip, plus a few
    full-path pairs in train. 18 + 3 train records, 9 held-out."""
    tokenizer = tiny_model.tokenizer
    out = tmp_path_factory.mktemp("toy_pairs")
    train, held_out = [], []
    for k, obj in enumerate(TRAIN_OBJECTS):
        clip = toy_clips[k % len(toy_clips)]
        for prefix in PREFIX_STEPS:
            train.append(step_record(clip, _prompt(tokenizer, clip), obj, prefix))
    for k, obj in enumerate(TRAIN_OBJECTS[:3]):
        clip = toy_clips[k]
        train.append(full_path_record(clip, _prompt(tokenizer, clip), obj))
    for k, obj in enumerate(HELD_OUT_OBJECTS):
        for j, prefix in enumerate(PREFIX_STEPS):
            clip = toy_clips[(k + j) % len(toy_clips)]
            held_out.append(step_record(clip, _prompt(tokenizer, clip), obj, prefix))
    paths = {}
    for name, records in (("train", train), ("held_out", held_out)):
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        paths[name] = path
    return paths
