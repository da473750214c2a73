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
import math
import re
import uuid
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from studio_trace.chatml import PROMPT_KINDS

SCHEMA_VERSION = 1

SOURCES = ("live", "batch", "imported")
ALTERNATIVE_SOURCES = ("model", "human")


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
        """The Trace of a JSON dict (validated); fields this version does not know are dropped."""
        validate_trace_dict(data)
        data = dict(data)
        data["clip"] = _known(ClipInfo, data["clip"])
        data["steps"] = [_known(Step, s) for s in data.get("steps", [])]
        data["alternatives"] = [_known(Alternative, a) for a in data.get("alternatives", [])]
        data["answer"] = _known(Answer, data.get("answer") or {})
        return _known(cls, data)

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


def _known(cls: type, data: dict[str, Any]) -> Any:
    # The JSON form grows within a version: a newer writer's extra fields are not an error.
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def validate_trace_dict(data: Any) -> None:
    """Raise TraceFormatError with a one-line reason unless ``data`` is a Trace's JSON form
    with well-typed fields (what the store checks before it writes a trace).

    Fields this version does not know are allowed (the JSON grows within a version).
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
    if not isinstance(data["id"], str) or not data["id"]:
        raise TraceFormatError("trace id must be a non-empty string")
    if not isinstance(data["question"], str):
        raise TraceFormatError("trace question must be a string")
    clip = data["clip"]
    if not isinstance(clip, dict) or not isinstance(clip.get("sha256"), str) or not clip["sha256"]:
        raise TraceFormatError("trace clip must be an object with a sha256")
    options = data.get("options")
    if options is not None and (
        not isinstance(options, list) or not all(isinstance(o, str) for o in options)
    ):
        raise TraceFormatError("trace options must be a list of strings or null")
    if data.get("prompt_kind", "reasoning") not in PROMPT_KINDS:
        raise TraceFormatError(f"prompt_kind must be one of {', '.join(PROMPT_KINDS)}")
    if data.get("source", "live") not in SOURCES:
        raise TraceFormatError(f"source must be one of {', '.join(SOURCES)}")
    if not isinstance(data.get("prompt", ""), str):
        raise TraceFormatError("trace prompt must be a string")
    if not isinstance(data["steps"], list):
        raise TraceFormatError("trace steps must be a list")
    for i, step in enumerate(data["steps"]):
        _check_step(i, step)
    alternatives = data.get("alternatives", [])
    if not isinstance(alternatives, list):
        raise TraceFormatError("trace alternatives must be a list")
    for j, alt in enumerate(alternatives):
        _check_alternative(j, alt, len(data["steps"]))


def _check_step(i: int, step: Any) -> None:
    if not isinstance(step, dict) or not isinstance(step.get("text"), str):
        raise TraceFormatError(f"step {i} must be an object with a text")
    if step.get("index") != i:
        raise TraceFormatError(f"step {i} has index {step.get('index')!r}; expected {i}")
    _check_optional_number(step.get("score"), f"step {i} score")
    _check_optional_number(step.get("expected_correctness"), f"step {i} expected_correctness")
    kl = step.get("token_kl")
    if kl is not None and not _is_number_list(kl):
        raise TraceFormatError(f"step {i} token_kl must be a list of finite numbers or null")


def _check_alternative(j: int, alt: Any, n_steps: int) -> None:
    if not isinstance(alt, dict) or not isinstance(alt.get("text"), str):
        raise TraceFormatError(f"alternative {j} must be an object with a text")
    k = alt.get("step_index")
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < n_steps:
        raise TraceFormatError(f"alternative {j} step_index {k!r} is not a step of this trace")
    if alt.get("source", "model") not in ALTERNATIVE_SOURCES:
        raise TraceFormatError(f"alternative {j} source must be one of {', '.join(ALTERNATIVE_SOURCES)}")
    _check_optional_number(alt.get("expected_correctness"), f"alternative {j} expected_correctness")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_number_list(values: Any) -> bool:
    # Per-token lists are long (one number per generated token): let array() check the types
    # in C; a non-finite value makes the sum non-finite.
    if not isinstance(values, list):
        return False
    try:
        return math.isfinite(sum(array("d", values)))
    except (TypeError, OverflowError):
        return False


def _check_optional_number(value: Any, what: str) -> None:
    if value is not None and not _is_number(value):
        raise TraceFormatError(f"{what} must be a finite number or null")


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
