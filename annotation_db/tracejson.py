"""What the store adds to Trace JSON: its identity hash, and published reasoning turned into Traces.

The Trace JSON schema (version 1), its validation and the prompt texts are defined once in
``studio_trace`` (standard library only, so ``annotation_db`` imports it without ``inference``).

Published reasoning (``../shared/clips/manifest.jsonl``: ``file``, ``question``, ``options``,
``reference_answer``, ``published_reasoning``) becomes a Trace with ``source = "imported"``,
no scores, and a prompt rendered as ``inference`` renders it (``studio_trace.prompt_text``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from studio_trace import (
    SCHEMA_VERSION,
    STEP_DELIMITER,
    STEP_SUFFIX,
    SYNTHDEC_QUESTION,
    TraceFormatError,
    prompt_text,
    user_text,
)

__all__ = [
    "STEP_DELIMITER",
    "TraceFormatError",
    "file_sha256",
    "identity_hash",
    "published_prompt",
    "published_trace",
    "render_steps",
]


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


def published_prompt(question: str, options: list[str] | None) -> tuple[str, str]:
    """(prompt_kind, exact ChatML prompt) for a published question, as inference renders it:
    the fixed SynthDec question keeps its kind, anything else is a reasoning prompt."""
    if not options and question.strip() == SYNTHDEC_QUESTION:
        return "synthdec", prompt_text(SYNTHDEC_QUESTION)
    return "reasoning", prompt_text(user_text("reasoning", question.strip(), options))


_ANSWER = re.compile(r"answer is\s*[:\-]?\s*\(?(YES|NO|[A-Z])\b")


def published_trace(entry: Any, manifest_dir: Path, now: str) -> dict[str, Any] | None:
    """A manifest entry as Trace JSON, or None when it has no published reasoning.

    Raises TraceFormatError for a malformed entry or a missing clip file. The trace id is derived
    from the clip's content hash, the question and the steps, so importing twice is one trace.
    """
    if not isinstance(entry, dict):
        raise TraceFormatError("a manifest entry must be a JSON object")
    steps = entry.get("published_reasoning")
    if steps is None:
        return None
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise TraceFormatError("published_reasoning must be a non-empty list of strings or null")
    name, question, options = entry.get("file"), entry.get("question"), entry.get("options")
    if not isinstance(name, str) or not name:
        raise TraceFormatError("the entry has no file name")
    if not isinstance(question, str) or not question:
        raise TraceFormatError("an entry with published reasoning needs a question")
    if options is not None and (
        not isinstance(options, list) or not all(isinstance(o, str) for o in options)
    ):
        raise TraceFormatError("options must be a list of strings or null")
    path = (manifest_dir / name).resolve()
    if not path.is_file():
        raise TraceFormatError(f"clip file {name!r} not found next to the manifest ({path})")
    sha = file_sha256(path)
    kind, prompt = published_prompt(question, options)
    # The id keeps hashing the manifest's text, so a trace imported before the question was
    # normalised keeps its id.
    ident = json.dumps([sha, question, options, steps], ensure_ascii=False)
    if kind == "synthdec":
        question = SYNTHDEC_QUESTION
    found = _ANSWER.findall(steps[-1])
    return {
        "schema_version": SCHEMA_VERSION,
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
