"""Trace JSON (plain dicts) as the store reads it, and published reasoning turned into Traces.

The Trace JSON schema is defined in ``studio_trace/trace.py`` (``Trace.to_dict()``, version 1);
that module is the single source of truth. ``annotation_db`` never imports ``inference``
(DESIGN.md: the store takes plain dicts), so this module duplicates only what the store must
check before it writes: the schema version and the types of the fields it stores. A test
(tests/store/test_tracejson.py) checks that ``studio_trace.Trace(...).to_dict()`` passes
and that the version constant agrees.

Published reasoning (``../shared/clips/manifest.jsonl``: ``file``, ``question``, ``options``,
``reference_answer``, ``published_reasoning``) becomes a Trace with ``source = "imported"``,
no scores, and a prompt rendered like ``inference.model.prompts.prompt_text`` renders it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from array import array
from pathlib import Path
from typing import Any

# Must equal studio_trace.SCHEMA_VERSION (checked by a test): the Trace JSON version this
# store reads.
TRACE_SCHEMA_VERSION = 1
PROMPT_KINDS = ("reasoning", "direct", "synthdec")  # studio_trace.PROMPT_KINDS
SOURCES = ("live", "batch", "imported")  # studio_trace.SOURCES
ALTERNATIVE_SOURCES = ("model", "human")  # studio_trace.Alternative.source

STEP_DELIMITER = "<end_of_step>"  # studio_trace.STEP_DELIMITER
# How a step is written in a training string: its text, the delimiter, a newline. This is the
# official trainer's convention (llava_trainer.py:1292, 1336: ``step + "<end_of_step>\n"``).
STEP_SUFFIX = STEP_DELIMITER + "\n"

# The prompts as inference.model.prompts renders them (paper Table 5, options joined by a space as in
# official_tiny/data/test_data.json). Duplicated for published reasoning only, which carries no
# prompt; a test compares with inference.model.prompts where that module is present.
SYSTEM = "You are a helpful assistant."
SYNTHDEC_QUESTION = (
    "An AI-generated video contains unnatural distorted things, such as distorted hands or faces. "
    "Is the given video AI generated? Answer YES or NO. Answer step by step and output each step clearly."
)
REASONING_INSTRUCTION = (
    "Answer the question step by step. Output each thinking step. "
    f"Mark the end of each step with {STEP_DELIMITER} token."
)


class TraceFieldError(ValueError):
    """One-line reason why a dict is not a storable Trace (the importer adds the line)."""


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
        raise TraceFieldError(f"{what} must be a finite number or null")


def check_trace(data: Any) -> None:
    """Raise TraceFieldError unless ``data`` is a Trace JSON dict the store can keep."""
    if not isinstance(data, dict):
        raise TraceFieldError("a trace must be a JSON object")
    version = data.get("schema_version")
    if version != TRACE_SCHEMA_VERSION:
        raise TraceFieldError(
            f"unknown trace schema_version {version!r}; this store reads version {TRACE_SCHEMA_VERSION}"
        )
    for key in ("id", "question", "clip", "steps"):
        if key not in data:
            raise TraceFieldError(f"trace is missing the field {key!r}")
    if not isinstance(data["id"], str) or not data["id"]:
        raise TraceFieldError("trace id must be a non-empty string")
    if not isinstance(data["question"], str):
        raise TraceFieldError("trace question must be a string")
    clip = data["clip"]
    if not isinstance(clip, dict) or not isinstance(clip.get("sha256"), str) or not clip["sha256"]:
        raise TraceFieldError("trace clip must be an object with a sha256")
    options = data.get("options")
    if options is not None and (
        not isinstance(options, list) or not all(isinstance(o, str) for o in options)
    ):
        raise TraceFieldError("trace options must be a list of strings or null")
    if data.get("prompt_kind", "reasoning") not in PROMPT_KINDS:
        raise TraceFieldError(f"prompt_kind must be one of {', '.join(PROMPT_KINDS)}")
    if data.get("source", "live") not in SOURCES:
        raise TraceFieldError(f"source must be one of {', '.join(SOURCES)}")
    if not isinstance(data.get("prompt", ""), str):
        raise TraceFieldError("trace prompt must be a string")
    steps = data["steps"]
    if not isinstance(steps, list):
        raise TraceFieldError("trace steps must be a list")
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("text"), str):
            raise TraceFieldError(f"step {i} must be an object with a text")
        if step.get("index") != i:
            raise TraceFieldError(f"step {i} has index {step.get('index')!r}; expected {i}")
        _check_optional_number(step.get("score"), f"step {i} score")
        _check_optional_number(step.get("expected_correctness"), f"step {i} expected_correctness")
        kl = step.get("token_kl")
        if kl is not None and not _is_number_list(kl):
            raise TraceFieldError(f"step {i} token_kl must be a list of finite numbers or null")
    alternatives = data.get("alternatives", [])
    if not isinstance(alternatives, list):
        raise TraceFieldError("trace alternatives must be a list")
    for j, alt in enumerate(alternatives):
        if not isinstance(alt, dict) or not isinstance(alt.get("text"), str):
            raise TraceFieldError(f"alternative {j} must be an object with a text")
        k = alt.get("step_index")
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(steps):
            raise TraceFieldError(f"alternative {j} step_index {k!r} is not a step of this trace")
        if alt.get("source", "model") not in ALTERNATIVE_SOURCES:
            raise TraceFieldError(f"alternative {j} source must be one of {', '.join(ALTERNATIVE_SOURCES)}")
        _check_optional_number(alt.get("expected_correctness"), f"alternative {j} expected_correctness")


def normalise_trace(data: dict[str, Any]) -> dict[str, Any]:
    """The trace as the store keeps it: a ``synthdec`` trace carries the fixed SynthDec question
    (whatever its entry point stored: ``""`` from ``run`` without ``--question`` and from the
    app, the manifest's text from ``import-published``), so traces of one clip and prompt have
    one question and pair with each other. Returns ``data`` itself when nothing changes."""
    if data.get("prompt_kind") == "synthdec" and data["question"] != SYNTHDEC_QUESTION:
        return {**data, "question": SYNTHDEC_QUESTION}
    return data


def identity_hash(data: dict[str, Any]) -> str:
    """sha256 of what makes a trace the same trace: clip, question, options, prompt, the step
    texts and the alternative texts. Scores, timings and created_at are left out, so importing
    the same trace twice (even re-serialised) is recognised as one trace."""
    key = {
        "clip": data["clip"]["sha256"],
        "question": data["question"],
        "options": data.get("options"),
        "prompt": data.get("prompt", ""),
        "steps": [s["text"] for s in data["steps"]],
        "alternatives": [[a["step_index"], a["text"]] for a in data.get("alternatives", [])],
    }
    blob = json.dumps(key, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def render_steps(texts: list[str]) -> str:
    """Step texts as one training string: every step followed by ``<end_of_step>\\n``."""
    return "".join(text + STEP_SUFFIX for text in texts)


def prompt_text(question: str, options: list[str] | None) -> tuple[str, str]:
    """(prompt_kind, exact ChatML prompt) for a published question, as inference renders it.

    ``<image>`` stands for the audio-visual block; a blank line follows it because the official
    ids hold "\\n" [AV] "\\n" "\\n" (see inference/model/prompts.py).
    """
    if not options and question.strip() == SYNTHDEC_QUESTION:
        kind, user = "synthdec", SYNTHDEC_QUESTION
    else:
        choices = ""
        if options:
            choices = (
                "Choose from: " + " ".join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(options)) + "\n"
            )
        kind, user = "reasoning", f"Question: {question.strip()}\n{choices}{REASONING_INSTRUCTION}"
    text = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n<image>\n\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    return kind, text


_ANSWER = re.compile(r"answer is\s*[:\-]?\s*\(?(YES|NO|[A-Z])\b")


def published_trace(entry: Any, manifest_dir: Path, now: str) -> dict[str, Any] | None:
    """A manifest entry as Trace JSON, or None when it has no published reasoning.

    Raises TraceFieldError for a malformed entry or a missing clip file. The trace id is derived
    from the clip's content hash, the question and the steps, so importing twice is one trace.
    """
    if not isinstance(entry, dict):
        raise TraceFieldError("a manifest entry must be a JSON object")
    steps = entry.get("published_reasoning")
    if steps is None:
        return None
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise TraceFieldError("published_reasoning must be a non-empty list of strings or null")
    name, question, options = entry.get("file"), entry.get("question"), entry.get("options")
    if not isinstance(name, str) or not name:
        raise TraceFieldError("the entry has no file name")
    if not isinstance(question, str) or not question:
        raise TraceFieldError("an entry with published reasoning needs a question")
    if options is not None and (
        not isinstance(options, list) or not all(isinstance(o, str) for o in options)
    ):
        raise TraceFieldError("options must be a list of strings or null")
    path = (manifest_dir / name).resolve()
    if not path.is_file():
        raise TraceFieldError(f"clip file {name!r} not found next to the manifest ({path})")
    sha = file_sha256(path)
    kind, prompt = prompt_text(question, options)
    # The id keeps hashing the manifest's text, so a trace imported before the question was
    # normalised keeps its id.
    ident = json.dumps([sha, question, options, steps], ensure_ascii=False)
    if kind == "synthdec":
        question = SYNTHDEC_QUESTION
    found = _ANSWER.findall(steps[-1])
    return {
        "schema_version": TRACE_SCHEMA_VERSION,
        "id": "published-" + hashlib.sha256(ident.encode("utf-8")).hexdigest()[:16],
        "source": "imported",
        # Media facts stay unknown (0): the store does not decode media; a live run fills them.
        "clip": {"sha256": sha, "name": name, "path": str(path)},
        "question": question,
        "options": options,
        "reference_answer": entry.get("reference_answer"),
        "prompt_kind": kind,
        "prompt": prompt,
        "model": {"id": "video-SALMONN-o1 (reasoning published by its authors)"},
        "decoding": {},
        "scoring": None,
        "steps": [{"index": i, "text": text} for i, text in enumerate(steps)],
        "alternatives": [],
        "answer": {"text": steps[-1], "choice": found[-1] if found else None},
        "timings": {},
        "created_at": now,
    }


def file_sha256(path: Path) -> str:
    """Content hash of a file (the identity of a clip), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
