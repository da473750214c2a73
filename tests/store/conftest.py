"""Fixtures for the annotation store: a fresh Store with a settable clock, hand-made traces."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from annotation_db import Store

CLIP_SHA = "c" * 64
T0 = "2025-01-01T00:00:00.000000+00:00"


class Clock:
    """A clock the test sets; every reading returns the time last set."""

    def __init__(self, when: str = T0) -> None:
        self.now = datetime.fromisoformat(when)

    def set(self, when: str) -> None:
        self.now = datetime.fromisoformat(when)

    def __call__(self) -> datetime:
        return self.now


def _make_trace(
    trace_id: str,
    texts: list[str],
    *,
    scores: list[float | None] | None = None,
    correctness: list[float | None] | None = None,
    alternatives: list[dict[str, Any]] | None = None,
    clip_sha: str = CLIP_SHA,
    question: str = "What does the man do?",
    options: list[str] | None = None,
    prompt: str = "PROMPT\n",
    reference_answer: str | None = "B",
) -> dict[str, Any]:
    """A Trace JSON dict (schema version 1) with the given step texts."""
    scores = scores or [None] * len(texts)
    correctness = correctness or [None] * len(texts)
    return {
        "schema_version": 1,
        "id": trace_id,
        "source": "batch",
        "clip": {
            "sha256": clip_sha,
            "name": "clip.mp4",
            "path": "/clips/clip.mp4",
            "duration_s": 6.5,
            "fps": 24.0,
            "width": 320,
            "height": 240,
            "has_audio": True,
            "frame_times_s": [0.0, 0.5],
        },
        "question": question,
        "options": ["cooking", "running"] if options is None else options,
        "reference_answer": reference_answer,
        "prompt_kind": "reasoning",
        "prompt": prompt,
        "model": {"id": "tiny", "revision": "r1", "quantization": "none", "adapter": None},
        "decoding": {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 64, "seed": 0},
        "scoring": {"perturbation": "diffusion", "t": 100},
        "steps": [
            {
                "index": i,
                "text": text,
                "token_start": 4 * i,
                "token_end": 4 * i + 3,
                "score": scores[i],
                "token_kl": [0.5, 0.25, 0.125] if scores[i] is not None else None,
                "top_t": False,
                "scores": {},
                "token_kls": {},
                "expected_correctness": correctness[i],
            }
            for i, text in enumerate(texts)
        ],
        "alternatives": alternatives or [],
        "answer": {"text": texts[-1] if texts else "", "choice": "B"},
        "timings": {"generate_s": 1.5},
        "created_at": "2025-01-01T00:00:00+00:00",
    }


def _write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def make_trace():
    """``make_trace(trace_id, texts, scores=..., correctness=..., alternatives=..., ...)``."""
    return _make_trace


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, records) -> path``: one JSON per line."""
    return _write_jsonl


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    with Store.open(tmp_path / "annotations.db", clock=clock) as s:
        yield s
