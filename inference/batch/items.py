"""Batch work items: the manifest's entries, the settings that shape a trace, item ids.

An item is one manifest entry and one sample index. Its id hashes the entry's canonical JSON,
the sample index and the settings fingerprint, so the same item always gets the same Trace id
(``batch-<item id>``) and a rerun, or a re-import into the store, finds it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inference.errors import UserError

TRACE_ID_PREFIX = "batch-"
ITEM_ID_HEX = 32  # 128 bits of sha256: no collision in any realistic manifest, short in the UI


class BatchError(UserError):
    """The manifest, the output folder or the flags cannot make a batch run."""


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line, checked and resolved. ``raw`` is the line's JSON as written: its
    canonical form is what identifies the entry (so moving the manifest keeps the ids)."""

    line: int  # 1-based line number in the manifest
    raw: dict[str, Any]
    video: Path  # absolute
    audio: Path | None
    question: str
    options: list[str] | None
    prompt_kind: str
    reference_answer: str | None
    # Why no prompt can be made (e.g. no question, as in a manifest that only lists clips):
    # each of the entry's items then fails with this reason and the others go on.
    problem: str | None = None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def parse_entry(raw: Any, line: int, base: Path, default_prompt: str) -> ManifestEntry:
    """Check one manifest entry (format of ``../shared/clips/manifest.jsonl``: ``file`` relative
    to the manifest's folder, or ``video`` relative or absolute; ``question``; ``options`` list or
    null; ``reference_answer``; optional ``prompt`` reasoning|direct|synthdec and ``audio``).

    With no ``prompt``, an entry whose question is the SynthDec text and has no options is a
    SynthDec entry (as ``annotation_db import-published`` reads the same manifest); any other
    takes ``default_prompt``. A malformed entry is an error; an entry no prompt can be made
    from (no question, options a prompt kind cannot take) carries the reason in ``problem``.
    The files are not opened here: a missing clip is an item failure.
    """
    from inference.model.prompts import SYNTHDEC, PromptError, build_user_text
    from studio_trace import PROMPT_KINDS

    where = f"manifest line {line}"
    if not isinstance(raw, dict):
        raise BatchError(f"{where}: an entry must be a JSON object")
    name = raw.get("video", raw.get("file"))
    if not isinstance(name, str) or not name.strip():
        raise BatchError(f'{where}: give the clip as "file" (relative to the manifest) or "video" (a path)')
    question = raw.get("question") or ""  # null: a clip listed without a question
    options = raw.get("options")
    if not isinstance(question, str):
        raise BatchError(f"{where}: question must be a string or null")
    if options is not None and (
        not isinstance(options, list) or not all(isinstance(o, str) for o in options)
    ):
        raise BatchError(f"{where}: options must be a list of strings or null")
    kind = raw.get("prompt")
    if kind is None:
        kind = "synthdec" if not options and question.strip() == SYNTHDEC.template else default_prompt
    if kind not in PROMPT_KINDS:
        raise BatchError(f"{where}: prompt must be one of {', '.join(PROMPT_KINDS)}, not {kind!r}")
    if kind == "synthdec" and not question.strip():
        question = SYNTHDEC.template  # what the model is asked, so the store shows it
    problem = None
    try:
        build_user_text(kind, question, options)
    except PromptError as exc:
        problem = f"{where}: {exc}"
    if not question.strip():  # a clip listed without a question (as in ../shared/clips)
        problem = f'{where}: no question; add one, or "prompt": "synthdec" for the SynthDec yes/no question'

    reference = raw.get("reference_answer")
    if reference is not None and not isinstance(reference, str):
        raise BatchError(f"{where}: reference_answer must be a string or null")
    audio = raw.get("audio")
    if audio is not None and not isinstance(audio, str):
        raise BatchError(f"{where}: audio must be a path or null")
    return ManifestEntry(
        line=line,
        raw=raw,
        video=(base / name).absolute(),
        audio=(base / audio).absolute() if audio else None,
        question=question,
        options=list(options) if options else None,
        prompt_kind=kind,
        reference_answer=reference,
        problem=problem,
    )


def read_manifest(path: str | Path, default_prompt: str = "reasoning") -> list[ManifestEntry]:
    """Every entry of a JSONL manifest (blank lines skipped). A malformed line is an error
    naming it, raised before any model is loaded."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchError(f"{path}: no such manifest; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"{path}: cannot read the manifest ({exc})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BatchError(f"manifest line {number}: not JSON ({exc.msg} at column {exc.colno})") from None
        entries.append(parse_entry(raw, number, path.parent.absolute(), default_prompt))
    if not entries:
        raise BatchError(f"{path}: the manifest has no entries")
    return entries


# --------------------------------------------------------------------------- work items


@dataclass(frozen=True)
class BatchSettings:
    """What shapes a trace besides its entry and sample index: part of every item id, and a
    resume into the same folder must pass the same values. Device, progress bars, limits and
    the number of samples are not here: they never change a finished trace."""

    checkpoint: str  # as resolved (the tiny demo model's folder when none is given)
    revision: str | None = None
    quantization: str = "auto"
    adapter: str | None = None
    sources: tuple[str | None, ...] = (None, None, None)  # vision, whisper, qformer overrides
    max_new_tokens: int = 512  # DecodingSettings' default (the official max_tokens)
    sample: bool = False  # sample 0 greedy (official inference); True: every sample samples
    temperature: float = 1.0
    top_p: float = 0.9  # official top_p; matters only when sampling
    seed: int = 0  # sample k draws with seed + k
    score: bool = False
    perturb: tuple[str, ...] = ("noise",)  # the paper's contrastive perturbation
    top_t: int = 3
    clip_spans: bool = True  # each step's clip span, as the app computes it (--no-clip-spans: off)

    def fingerprint(self) -> str:
        return hashlib.sha256(canonical_json(asdict(self)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WorkItem:
    index: int  # position in the plan: entries in manifest order, samples within
    entry: ManifestEntry
    sample: int
    item_id: str

    @property
    def trace_id(self) -> str:
        return TRACE_ID_PREFIX + self.item_id


def item_id(raw: dict[str, Any], sample: int, fingerprint: str) -> str:
    blob = canonical_json({"entry": raw, "sample": sample, "settings": fingerprint})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:ITEM_ID_HEX]


def plan_items(
    entries: Sequence[ManifestEntry], samples: int, fingerprint: str
) -> tuple[list[WorkItem], int]:
    """(items, number of duplicates dropped): a manifest line repeated word for word is one
    entry (same id), made once."""
    items: list[WorkItem] = []
    seen: set[str] = set()
    duplicates = 0
    for entry in entries:
        for sample in range(samples):
            key = item_id(entry.raw, sample, fingerprint)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            items.append(WorkItem(len(items), entry, sample, key))
    return items, duplicates


def shard(pending: Sequence[int], rank: int, world: int) -> list[int]:
    """Process ``rank``'s share: every ``world``-th pending item. Consecutive samples of one
    entry stay consecutive within a share, so a process decodes a clip once for them."""
    return list(pending[rank::world])
