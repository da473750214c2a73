"""The Trace: one model answer to one question about one clip, step by step.

This is the single object that crosses every boundary of the project: inference produces it
(live or in batch), ``annotation_db`` stores its JSON form, the UI shows it and the exports turn
it into training data. It is pure Python (no torch) so every layer can import it cheaply, and
its JSON form carries ``schema_version`` so stored traces stay readable as the format evolves.

JSON form (``Trace.to_dict()``), version 1::

    {"schema_version": 1, "id": "...", "source": "live|batch|imported",
     "clip": {"sha256": ..., "name": ..., "path": ..., "duration_s": ..., "fps": ...,
              "width": ..., "height": ..., "has_audio": ..., "frame_times_s": [...]},
     "question": ..., "options": [...] | null, "reference_answer": ... | null,
     "prompt_kind": "reasoning|direct|synthdec", "prompt": "<exact ChatML text>",
     "model": {"id": ..., "revision": ..., "quantization": ..., "adapter": ...},
     "decoding": {"do_sample": ..., "temperature": ..., "top_p": ..., "max_new_tokens": ...,
                  "seed": ...},
     "scoring": {...} | null,
     "steps": [{"index": 0, "text": ..., "token_start": ..., "token_end": ...,
                "score": ..., "token_kl": [...], "top_t": ..., "scores": {...},
                "expected_correctness": ..., "kl_tokens": [...]}, ...],
     "alternatives": [{"step_index": ..., "text": ..., "source": "model|human",
                       "settings": {...}, "expected_correctness": ...}, ...],
     "answer": {"text": ..., "choice": "B" | "YES" | null},
     "timings": {"decode_s": ..., "encode_s": ..., "generate_s": ..., "score_s": ...},
     "created_at": "ISO-8601 UTC"}
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1

STEP_DELIMITER = "<end_of_step>"
PROMPT_KINDS = ("reasoning", "direct", "synthdec")
SOURCES = ("live", "batch", "imported")


class TraceFormatError(ValueError):
    """A Trace's JSON form is malformed or of an unknown schema version."""


@dataclass
class ClipInfo:
    """What the media pipeline learned about a clip (its sha256 is its identity)."""

    sha256: str
    name: str = ""
    path: str = ""
    duration_s: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    has_audio: bool = False
    frame_times_s: list[float] = field(default_factory=list)


@dataclass
class Step:
    """One reasoning step. ``token_start``/``token_end`` index the generated token ids
    (end exclusive, delimiter excluded); ``token_kl`` is the per-token KL behind ``score``."""

    index: int
    text: str
    token_start: int | None = None
    token_end: int | None = None
    score: float | None = None  # the paper's contrastive score (diffusion noise on the video)
    token_kl: list[float] | None = None
    top_t: bool = False
    scores: dict[str, float] = field(default_factory=dict)  # per perturbation name
    token_kls: dict[str, list[float]] = field(default_factory=dict)
    expected_correctness: float | None = None  # fraction of rollouts that were right
    kl_tokens: list[str] | None = None  # text of each token behind token_kl (joins to the step text)


@dataclass
class Alternative:
    """A candidate that could replace step ``step_index``: a model sample or a human rewrite."""

    step_index: int
    text: str
    source: str = "model"  # "model" | "human"
    settings: dict[str, Any] = field(default_factory=dict)
    expected_correctness: float | None = None


@dataclass
class Answer:
    text: str = ""
    choice: str | None = None  # option letter, or "YES"/"NO" for SynthDec


@dataclass
class Trace:
    question: str
    clip: ClipInfo
    options: list[str] | None = None
    reference_answer: str | None = None
    prompt_kind: str = "reasoning"
    prompt: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    decoding: dict[str, Any] = field(default_factory=dict)
    scoring: dict[str, Any] | None = None
    steps: list[Step] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    answer: Answer = field(default_factory=Answer)
    timings: dict[str, float] = field(default_factory=dict)
    source: str = "live"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        validate_trace_dict(data)
        data = dict(data)
        data["clip"] = ClipInfo(**data["clip"])
        data["steps"] = [Step(**s) for s in data.get("steps", [])]
        data["alternatives"] = [Alternative(**a) for a in data.get("alternatives", [])]
        data["answer"] = Answer(**(data.get("answer") or {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> Trace:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceFormatError(f"not JSON: {exc.msg} at column {exc.colno}") from exc
        return cls.from_dict(data)

    def top_steps(self, t: int) -> list[int]:
        """Indices of the ``t`` steps with the highest contrastive score (ties: earlier first)."""
        scored = [s for s in self.steps if s.score is not None]
        ranked = sorted(scored, key=lambda s: (-s.score, s.index))
        return sorted(s.index for s in ranked[:t])


def validate_trace_dict(data: Any) -> None:
    """Raise TraceFormatError with a one-line reason unless ``data`` is a Trace's JSON form.

    Kept free of any import beyond the standard library so that ``annotation_db`` can use the
    same rules on plain dicts.
    """
    if not isinstance(data, dict):
        raise TraceFormatError("a trace must be a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise TraceFormatError(
            f"unknown trace schema_version {version!r}; this tool reads version {SCHEMA_VERSION}"
        )
    for key in ("id", "question", "clip", "steps"):
        if key not in data:
            raise TraceFormatError(f"trace is missing the field {key!r}")
    if not isinstance(data["clip"], dict) or not data["clip"].get("sha256"):
        raise TraceFormatError("trace clip must be an object with a sha256")
    if not isinstance(data["steps"], list):
        raise TraceFormatError("trace steps must be a list")
    for i, step in enumerate(data["steps"]):
        if not isinstance(step, dict) or not isinstance(step.get("text"), str):
            raise TraceFormatError(f"step {i} must be an object with a text")
        if step.get("index") != i:
            raise TraceFormatError(f"step {i} has index {step.get('index')!r}; expected {i}")
    if data.get("prompt_kind", "reasoning") not in PROMPT_KINDS:
        raise TraceFormatError(f"prompt_kind must be one of {', '.join(PROMPT_KINDS)}")
    if data.get("source", "live") not in SOURCES:
        raise TraceFormatError(f"source must be one of {', '.join(SOURCES)}")


def split_steps(text: str) -> list[str]:
    """Split reasoning text at ``<end_of_step>``; empty pieces (e.g. after the last marker)
    are dropped and surrounding whitespace is stripped."""
    return [piece.strip() for piece in text.split(STEP_DELIMITER) if piece.strip()]


_LETTER_PATTERNS = (
    re.compile(r"answer is\s*[:\-]?\s*\(?([A-Z])\b"),
    re.compile(r"^\s*\(?([A-Z])[\.\):,]?(?:\s|$)"),
    re.compile(r"\b([A-Z])\.\s"),
)


def extract_choice(text: str, options: list[str] | None, prompt_kind: str = "reasoning") -> str | None:
    """The option letter (or YES/NO for SynthDec) that an answer text commits to, else None."""
    if prompt_kind == "synthdec" or not options:
        found = re.findall(r"\b(YES|NO)\b", text.upper())
        return found[-1] if found else None
    letters = {chr(ord("A") + i) for i in range(len(options))}
    for pattern in _LETTER_PATTERNS:
        for match in pattern.finditer(text):
            if match.group(1) in letters:
                return match.group(1)
    # Last resort: the answer quotes exactly one option's text (as a whole phrase).
    lowered = text.lower()
    hits = [
        chr(ord("A") + i)
        for i, opt in enumerate(options)
        if opt.strip() and re.search(rf"(?<!\w){re.escape(opt.strip().lower())}(?!\w)", lowered)
    ]
    return hits[0] if len(hits) == 1 else None
