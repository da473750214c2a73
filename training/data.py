"""The store's pDPO export -> token ids of each pair, the way the official trainer builds them.

One record of ``annotation_db`` ``export --format pdpo`` (README.md, "The annotation store") is a step pair
(``prefix_steps``, one ``chosen_steps`` / ``rejected_steps`` step each) or a full-path pair
(empty prefix, whole paths). Tokens of one pair::

    prompt ids (official, -200 where the AV block goes) | context | chosen     (scored)
                                                         | context | rejected   (scored)

- **prompt**: the record's ``prompt`` is the trace's exact ChatML text with ``<image>`` for the
  clip; it is parsed back into system and user text and rebuilt with
  ``inference.model.prompts.build_prompt_ids`` (the official ids are NOT a tokenization of that
  string: see inference/model/prompts.py), and the rebuilt text must equal the record's.
- **context**: ``tok(prev_text(prefix_steps))``, every earlier step followed by
  ``"<end_of_step>\\n"`` and tokenized as one string (``inference.reasoning.scoring.prev_text``; official
  ``do_rollout``, llava_trainer.py:1271).
- **step pair**: the candidate is ``tok(step + "<end_of_step>\\n")``, tokenized on its own: the
  official trainer's step string (llava_trainer.py:1292) and the export's TRL rendering. The
  export does not say whether a step was the trace's last, so every step carries the marker.
- **full path**: ``tok(steps joined by "<end_of_step>\\n")``, no marker after the last step, as
  the released training data and the export's ``render_path``.

``log pi(s | ...)`` is the sum of the log-probabilities of the candidate's tokens.

**Labels** (``--labels soft``): a = the record's ``soft_label``, at least 0.5. Every pdpo pair
is a human decision (annotators' or a reviewer's), which fixes the direction; rollouts only set
the strength (``annotation_db.resolution.directed_soft_label``). Exports written before that
rule hold soft labels below 0.5 where the rollouts favour the rejected candidate; they are
raised to 0.5 here, so such a pair never trains against the human. Such a pair is a **rollout
conflict** (the record's ``rollout_conflict``; in older exports, a soft label below 0.5);
``drop_rollout_conflicts`` leaves them out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.errors import UserError
from inference.model.prompts import build_prompt_ids
from inference.reasoning.scoring import MARKER, prev_text
from studio_trace import AV_PLACEHOLDER_TEXT, IM_END, IM_START, prompt_text

# The lowest soft label of a human-decided pair: no push either way (module doc, "Labels").
HUMAN_LABEL_FLOOR = 0.5
REQUIRED_FIELDS = ("pair_type", "video_sha256", "prompt", "prefix_steps", "chosen_steps", "rejected_steps")

_PROMPT = re.compile(
    rf"^{re.escape(IM_START)}system\n(?P<system>.*?){re.escape(IM_END)}\n"
    rf"{re.escape(IM_START)}user\n{re.escape(AV_PLACEHOLDER_TEXT)}\n\n(?P<user>.*){re.escape(IM_END)}\n"
    rf"{re.escape(IM_START)}assistant\n$",
    re.DOTALL,
)


class PairsFormatError(UserError):
    """The pairs file is not a pDPO export that can be trained on."""


@dataclass(frozen=True)
class PairExample:
    """One preference pair as token ids. ``label`` is a in the pDPO loss (1 = chosen preferred)."""

    index: int  # position in the file (0-based record number), the pair's identity in logs
    pair_type: str  # "step" | "full_path"
    video_sha256: str
    video_path: str
    prompt_ids: tuple[int, ...]  # official ids with one -200
    context_ids: tuple[int, ...]  # tok(prev_text(prefix)); empty for full paths and step 0
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    label: float


@dataclass
class PairSet:
    """The pairs of one file and what was left out (and why)."""

    path: str
    sha256: str  # of the file's bytes: saved with the adapter
    records: int
    pairs: list[PairExample] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    rollout_conflicts: int = 0  # used pairs whose rollouts favour the rejected candidate

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "records": self.records,
            "used": len(self.pairs),
            "skipped": dict(self.skipped),
            "rollout_conflicts": self.rollout_conflicts,
            "clips": len({p.video_sha256 for p in self.pairs}),
            "by_type": {t: sum(p.pair_type == t for p in self.pairs) for t in ("step", "full_path")},
        }


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a pdpo export, ``.jsonl`` (one JSON object a line) or ``.parquet``."""
    path = Path(path)
    if not path.is_file():
        raise PairsFormatError(
            f"{path}: no such file; export pairs with python -m annotation_db export --format pdpo"
        )
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # any pyarrow failure means the same to the user
            raise PairsFormatError(f"{path} is not a readable Parquet file ({type(exc).__name__})") from exc
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PairsFormatError(f"{path.name} line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise PairsFormatError(f"{path.name} line {number}: not a JSON object")
            records.append(record)
    return records


def parse_prompt(text: str) -> tuple[str, str]:
    """(system, user text) of an exact prompt as ``inference.model.prompts.prompt_text`` writes it."""
    match = _PROMPT.match(text or "")
    if match is None or prompt_text(match["user"], system=match["system"]) != text:
        raise ValueError("the prompt is not a one-clip ChatML prompt ending with <|im_start|>assistant")
    return match["system"], match["user"]


def _tok(tokenizer, text: str) -> tuple[int, ...]:
    return tuple(tokenizer(text).input_ids) if text else ()


def _check(record: dict[str, Any]) -> None:
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if record["pair_type"] not in ("step", "full_path"):
        raise ValueError(f"pair_type must be step or full_path, not {record['pair_type']!r}")
    for key in ("prefix_steps", "chosen_steps", "rejected_steps"):
        value = record[key]
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise ValueError(f"{key} must be a list of step texts")
    if not record["chosen_steps"] or not record["rejected_steps"]:
        raise ValueError("chosen_steps and rejected_steps must not be empty")
    if record["pair_type"] == "step" and (
        len(record["chosen_steps"]) != 1 or len(record["rejected_steps"]) != 1
    ):
        raise ValueError("a step pair has exactly one chosen and one rejected step")
    label = record.get("soft_label")
    if label is not None and not (isinstance(label, int | float) and 0.0 <= label <= 1.0):
        raise ValueError("soft_label must be a number from 0 to 1")
    if record.get("rollout_conflict") not in (None, True, False):
        raise ValueError("rollout_conflict must be true or false")


def rollout_conflict(record: dict[str, Any]) -> bool:
    """Whether the pair's rollouts favour its rejected candidate: the record's
    ``rollout_conflict``, or (an export from before that field) a soft label below 0.5."""
    flag = record.get("rollout_conflict")
    if flag is not None:
        return bool(flag)
    soft = record.get("soft_label")
    return soft is not None and soft < HUMAN_LABEL_FLOOR


def candidate_text(pair_type: str, steps: Sequence[str]) -> str:
    """The scored text of one candidate (module docstring)."""
    if pair_type == "step":
        return steps[0] + MARKER
    return MARKER.join(steps)


def encode_pair(
    tokenizer, record: dict[str, Any], index: int, labels: str = "soft", prompt_cache: dict | None = None
) -> PairExample:
    """One export record -> token ids. Raises ValueError with a one-line reason."""
    _check(record)
    prompt_cache = {} if prompt_cache is None else prompt_cache
    prompt = record["prompt"]
    if prompt not in prompt_cache:
        system, user = parse_prompt(prompt)
        prompt_cache[prompt] = tuple(build_prompt_ids(tokenizer, user, system=system))
    kind = record["pair_type"]
    prefix = list(record["prefix_steps"]) if kind == "step" else []
    soft = record.get("soft_label")
    label = max(HUMAN_LABEL_FLOOR, float(1.0 if soft is None else soft)) if labels == "soft" else 1.0
    return PairExample(
        index=index,
        pair_type=kind,
        video_sha256=str(record["video_sha256"]),
        video_path=str(record.get("video_path") or ""),
        prompt_ids=prompt_cache[prompt],
        context_ids=_tok(tokenizer, prev_text(prefix, len(prefix))),
        chosen_ids=_tok(tokenizer, candidate_text(kind, record["chosen_steps"])),
        rejected_ids=_tok(tokenizer, candidate_text(kind, record["rejected_steps"])),
        label=label,
    )


def load_pairs(
    path: str | Path,
    tokenizer,
    labels: str = "soft",
    pair_types: Iterable[str] = ("step", "full_path"),
    *,
    drop_rollout_conflicts: bool = False,
) -> PairSet:
    """Read and tokenize a pdpo export. A malformed record is an error naming it; pairs of an
    unwanted type, with identical candidates (no preference to learn) or, with
    ``drop_rollout_conflicts``, whose rollouts favour the rejected candidate are counted as
    skipped."""
    path = Path(path)
    records = read_records(path)
    wanted = set(pair_types)
    out = PairSet(path=str(path), sha256=file_sha256(path), records=len(records))
    prompt_cache: dict[str, tuple[int, ...]] = {}
    for index, record in enumerate(records):
        try:
            pair = encode_pair(tokenizer, record, index, labels, prompt_cache)
        except ValueError as exc:
            raise PairsFormatError(f"{path.name} record {index + 1}: {exc}") from exc
        reason = None
        conflict = rollout_conflict(record)
        if pair.pair_type not in wanted:
            reason = f"pair_type {pair.pair_type} not selected"
        elif conflict and drop_rollout_conflicts:
            reason = "rollouts favour the rejected candidate (--drop-rollout-conflicts)"
        elif not pair.chosen_ids or not pair.rejected_ids:
            reason = "a candidate has no text"
        elif pair.chosen_ids == pair.rejected_ids:
            reason = "chosen and rejected are the same text"
        if reason:
            out.skipped[reason] = out.skipped.get(reason, 0) + 1
        else:
            out.pairs.append(pair)
            out.rollout_conflicts += conflict
    if not out.pairs:
        raise PairsFormatError(
            f"{path.name} holds no usable pair ({out.records} records, skipped {out.skipped})"
        )
    return out
