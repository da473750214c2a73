"""Labels out as training data: pDPO pairs, TRL DPO, TRL stepwise supervision, Step-DPO.

``collect`` reads everything an export needs with a handful of set-based queries (one read
transaction); the record builders below are pure functions of that data; ``write``
(``annotation_db.export_files``, with the column types of every format) stores the records as
JSONL or Parquet (chosen by the output suffix), atomically (temp file + rename).

Rules (the README repeats them):

- **Items** are original steps and alternatives. Each item's verdict is its **resolved verdict**
  (``annotation_db.resolution.resolve_items``, in the same read transaction): a reviewer's
  decision if there is one (final); none while a reviewer has sent the item back; otherwise the
  annotators' labels combined by ``ExportOptions.resolution`` (``majority``, the default:
  accept or reject, whichever has more votes, a tie gives no verdict, an ``unsure`` counts for
  nothing; or ``dawid_skene``). **Agreement** = votes for the verdict / votes (accept +
  reject); a reviewer's decision counts as agreement 1.0 (it is final).
- **Filters** (``resolution.passes``): ``min_agreement`` and ``min_annotators`` (accept/reject
  voters) drop aggregated verdicts below them and never a reviewer's decision;
  ``adjudicated_only`` keeps only reviewers' decisions. A dropped verdict leaves the item
  without one. ``annotators`` counts only those annotators' labels and preferences (reviewers'
  decisions still count).
- **Preferences** (``record_preference``) combine by majority: alternative or original,
  whichever more annotators chose; a tie gives no preference. ``min_agreement`` and
  ``min_annotators`` apply to them too; ``adjudicated_only`` drops them (no reviewer decides a
  preference).
- **Step pairs** at step k of a trace (shared prefix: the trace's steps 0..k-1). Candidates are
  the original step k and the alternatives at k. (a) Each decided preference gives the chosen
  candidate over the other. (b) Every candidate with verdict accept is preferred over every
  candidate with verdict reject. The same (chosen, rejected) from both sources is one pair
  whose ``provenance`` lists both; its agreement is the lowest of those involved. Opposite
  pairs from different sources are both kept (filter them with ``min_agreement``).
- **How a record's label was decided** (every format): ``label_source`` (``reviewer`` when
  every verdict behind the record is a reviewer's decision, the rule's method when none is,
  ``mixed`` otherwise; preferences count as ``majority``), ``adjudicated`` (every verdict
  behind it a reviewer's), ``n_annotators`` (the accept/reject voters behind it) and
  ``agreement`` (the lowest); ``pdpo`` also ``confidence`` (the lowest: the winning share, the
  Dawid-Skene posterior, 1.0 for a reviewer).
- **soft_label** (``resolution.directed_soft_label``): every pair is a human decision, so the
  human fixes the direction and the rollouts only the strength: max(0.5, sigma((p(chosen) -
  p(rejected)) / mu)) where both candidates carry rollout ``expected_correctness`` p (the
  paper's soft a_k), else 1.0 (hard). Rollouts that favour the rejected candidate give 0.5 (no
  push either way), never less, and ``rollout_conflict`` true. ``mu`` defaults to 0.2, as
  ``inference.reasoning.alternatives.DEFAULT_MU`` (the paper gives no value): with N = 6
  rollouts p moves in steps of 1/6; one rollout of difference gives 0.70, all six 0.99.
- **Full-path pairs**: among traces of the same clip (content hash), question and prompt, a
  trace whose every step has verdict accept is preferred over a trace with a step whose verdict
  is reject. Agreement: the lowest over the accepted trace's steps and the rejected trace's
  first rejected step. They appear in ``pdpo`` (pair_type full_path) and ``trl-dpo``.
- **trl-dpo** holds only completions that end an answer (TRL appends EOS to each): full-path
  pairs and step pairs at a trace's last step. **step-dpo** holds step pairs whose earlier
  steps are all accepted, with the bare question as prompt (``trl_dpo_records``,
  ``step_dpo_records``).
- **Stepwise** (``trl-stepwise``): per trace, the steps from the first up to and including the
  first rejected one (PRM800K phase 2), stopping before a step without a verdict; labels True
  for accept, False for reject. Plus, for every alternative at step k with a verdict whose
  prefix 0..k-1 is all accepted, the prefix and the alternative.
- **since**: a record is kept when the newest label, review or preference behind it was
  written at or after ``since`` (all labels still count towards the verdicts).
- **Rendering** (TRL and Step-DPO strings): a step is ``text + "<end_of_step>\\n"`` (official
  llava_trainer.py:1292); a complete path (full-path pairs, ``full_chosen``) joins its steps
  with ``"<end_of_step>\\n"`` and ends without one, like the released training data
  (official_tiny/data/test_data.json). The prompt is the trace's exact ChatML prompt (ending in
  ``<|im_start|>assistant\\n``), so prompt + completion is the model's own text.
- **video_path** is relative to ``ExportOptions.video_root`` for clips under it, else as stored.
- Order: traces in import order, then step index, the original step before alternatives (by
  id); full-path pairs after step pairs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlite_utils import Database

from annotation_db.errors import ExportFormatError
from annotation_db.export_files import (  # noqa: F401  (the export API, as before)
    COLUMNS,
    FORMATS,
    SUFFIXES,
    check_format,
    check_out,
    datasets_features,
    export_write_error,
    parquet_schema,
    write,
)
from annotation_db.resolution import (
    METHODS,
    Resolution,
    ResolutionRule,
    directed_soft_label,
    passes,
    resolve_items,
    vote_fields,
)
from annotation_db.tracejson import render_steps
from studio_trace import STEP_DELIMITER, STEP_SUFFIX

DEFAULT_MU = 0.2  # soft-label temperature, = inference.reasoning.alternatives.DEFAULT_MU; see the module doc


@dataclass(frozen=True)
class ExportOptions:
    """Which labels count and how soft labels are computed."""

    annotators: tuple[str, ...] | None = None  # None: everyone's labels
    min_agreement: float = 0.0  # 0: every aggregated verdict counts
    min_annotators: int = 0  # accept/reject voters an aggregated verdict needs (0: any)
    adjudicated_only: bool = False  # True: only reviewers' decisions
    resolution: str = "majority"  # how annotators' labels combine (resolution.METHODS)
    since: str | None = None  # store timestamp text (see store.parse_since); None: all records
    mu: float = DEFAULT_MU
    # video_path is written relative to this folder for clips under it (None: as stored)
    video_root: str | None = None

    def __post_init__(self) -> None:
        if self.resolution not in METHODS:
            raise ExportFormatError(
                f"resolution must be one of {', '.join(METHODS)}, not {self.resolution!r}"
            )
        if (
            isinstance(self.min_annotators, bool)
            or not isinstance(self.min_annotators, int)
            or self.min_annotators < 0
        ):
            raise ExportFormatError(f"min_annotators is a count of 0 or more, not {self.min_annotators!r}")


# ---------------------------------------------------------------------- data read from the store


class Vote(NamedTuple):
    """Resolved verdict of one item (or combined preference) and how it was decided."""

    verdict: str | None  # accept | reject (preferences: alternative | original) | None = undecided
    agreement: float  # votes for the verdict / all votes; 1.0 for a reviewer's decision
    annotators: tuple[str, ...]  # sorted names of everyone who voted (unsure excluded)
    labeled_at: str  # newest update behind the vote
    source: str | None = None  # "reviewer" | "majority" | "dawid_skene" (None without a verdict)
    adjudicated: bool = False  # a reviewer's decision
    confidence: float | None = None  # winning share, Dawid-Skene posterior, or 1.0 (reviewer)


@dataclass(slots=True)
class Candidate:
    kind: str  # "original" | "model" | "human"
    alternative_id: int | None
    text: str
    score: float | None  # contrastive score (original steps only)
    expected_correctness: float | None
    vote: Vote | None

    @property
    def key(self) -> tuple[int, int]:
        return (0, 0) if self.alternative_id is None else (1, self.alternative_id)


@dataclass(slots=True)
class StepData:
    index: int
    original: Candidate
    alternatives: list[Candidate] = field(default_factory=list)
    preferences: dict[int, Vote] = field(default_factory=dict)  # alternative id -> vote


@dataclass(slots=True)
class TraceData:
    id: str
    clip_sha256: str
    video_path: str
    question: str
    options: list[str] | None
    prompt: str
    reference_answer: str | None
    prompt_kind: str
    steps: list[StepData] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the original step texts, in order


# Separates annotator names in group_concat: names never contain control characters
# (store._check_annotator), so splitting is safe and faster than JSON.
_SEP = "\x1f"


def _preference_vote(
    alternative: int, original: int, names: str, labeled_at: str, options: ExportOptions
) -> Vote:
    """The majority preference between an alternative and the original, after the filters."""
    agreement = max(alternative, original) / (alternative + original)
    annotators = tuple(sorted(names.split(_SEP))) if _SEP in names else (names,)
    dropped = (
        alternative == original
        or agreement < options.min_agreement
        or len(annotators) < options.min_annotators
        or options.adjudicated_only  # no reviewer decides a preference
    )
    verdict = None if dropped else "alternative" if alternative > original else "original"
    return Vote(verdict, agreement, annotators, labeled_at, "majority", False, agreement)


def _item_vote(resolution: Resolution, options: ExportOptions) -> Vote:
    """An item's resolved verdict as a Vote, None as the verdict where the filters drop it."""
    verdict, agreement, annotators, labeled_at = vote_fields(resolution)
    keep = passes(
        resolution,
        min_annotators=options.min_annotators,
        min_agreement=options.min_agreement,
        adjudicated=True if options.adjudicated_only else None,
    )
    return Vote(
        verdict if keep else None,
        agreement,
        annotators,
        labeled_at,
        resolution.decided_by,
        resolution.adjudicated,
        resolution.confidence,
    )


def collect(db: Database, options: ExportOptions) -> list[TraceData]:
    """Every trace that has a label, a reviewer's decision or a preference (in import order),
    with each item's resolved verdict. Run inside one read transaction."""
    who, args = "", []
    if options.annotators:
        who = f" AND annotator IN ({','.join('?' * len(options.annotators))})"
        args = list(options.annotators)
    resolved = resolve_items(db, ResolutionRule(options.resolution), options.annotators)
    votes = {key: _item_vote(r, options) for key, r in resolved.items()}
    decided = "SELECT step_id, alternative_id FROM reviews WHERE status = 'decided'"
    labeled = f"""SELECT step_id FROM labels WHERE verdict != 'unsure'{who}
                  UNION SELECT step_id FROM preferences WHERE 1{who}
                  UNION SELECT step_id FROM ({decided})"""
    trace_ids = f"SELECT DISTINCT trace_id FROM steps WHERE id IN ({labeled})"
    pref_votes = db.execute(
        f"""SELECT alternative_id, sum(chosen = 'alternative'), sum(chosen = 'original'),
                   group_concat(annotator, char(31)), max(updated_at)
            FROM preferences WHERE 1{who} GROUP BY alternative_id""",
        args,
    ).fetchall()
    traces = db.execute(
        f"""SELECT t.id, t.clip_sha256, c.path, t.question, t.options, t.prompt, t.reference_answer,
                   t.prompt_kind
            FROM traces t JOIN clips c ON c.sha256 = t.clip_sha256
            WHERE t.id IN ({trace_ids}) ORDER BY t.seq""",
        args * 2,
    ).fetchall()
    steps = db.execute(
        f"""SELECT id, trace_id, idx, text, score, expected_correctness FROM steps
            WHERE trace_id IN ({trace_ids}) ORDER BY trace_id, idx""",
        args * 2,
    ).fetchall()
    alternatives = db.execute(
        f"""SELECT id, step_id, text, source, expected_correctness FROM alternatives WHERE id IN (
                SELECT alternative_id FROM labels WHERE alternative_id IS NOT NULL AND verdict != 'unsure'{who}
                UNION SELECT alternative_id FROM preferences WHERE 1{who}
                UNION SELECT alternative_id FROM ({decided}) WHERE alternative_id IS NOT NULL) ORDER BY id""",
        args * 2,
    ).fetchall()

    prefs = {r[0]: _preference_vote(*r[1:], options) for r in pref_votes}
    by_id = {
        r[0]: TraceData(r[0], r[1], r[2], r[3], None if r[4] is None else json.loads(r[4]), r[5], r[6], r[7])
        for r in traces
    }
    step_by_id: dict[int, StepData] = {}
    for step_id, trace_id, idx, text, score, ec in steps:
        step = StepData(idx, Candidate("original", None, text, score, ec, votes.get((step_id, None))))
        trace = by_id[trace_id]
        trace.steps.append(step)
        trace.texts.append(text)
        step_by_id[step_id] = step
    for alt_id, step_id, text, source, ec in alternatives:
        step = step_by_id[step_id]
        step.alternatives.append(Candidate(source, alt_id, text, None, ec, votes.get((step_id, alt_id))))
        if alt_id in prefs:
            step.preferences[alt_id] = prefs[alt_id]
    return list(by_id.values())


# ---------------------------------------------------------------------- pairs (pure)


@dataclass(slots=True)
class Decision:
    """How the verdicts behind one record were decided, combined over all of them."""

    agreement: float = 1.0  # the lowest
    confidence: float = 1.0  # the lowest
    annotators: set[str] = field(default_factory=set)  # every voter
    labeled_at: str = ""  # the newest
    sources: set[str] = field(default_factory=set)  # Vote.source of each
    adjudicated: bool = True  # every one a reviewer's decision

    def add(self, votes: list[Vote]) -> None:
        for vote in votes:
            self.agreement = min(self.agreement, vote.agreement)
            confidence = vote.agreement if vote.confidence is None else vote.confidence
            self.confidence = min(self.confidence, confidence)
            self.annotators.update(vote.annotators)
            self.labeled_at = max(self.labeled_at, vote.labeled_at)
            self.sources.add(vote.source or "majority")
            self.adjudicated = self.adjudicated and vote.adjudicated

    @property
    def label_source(self) -> str:
        """reviewer, majority or dawid_skene when every verdict came that way, else mixed."""
        return next(iter(self.sources)) if len(self.sources) == 1 else "mixed"

    def fields(self) -> dict[str, Any]:
        """The how-decided columns every format carries."""
        return {
            "label_source": self.label_source,
            "adjudicated": self.adjudicated,
            "n_annotators": len(self.annotators),
            "agreement": self.agreement,
        }


@dataclass
class Pair:
    trace: TraceData
    step_index: int | None  # None: a full-path pair
    chosen: Candidate | TraceData
    rejected: Candidate | TraceData
    provenance: set[str] = field(default_factory=set)
    decision: Decision = field(default_factory=Decision)

    @property
    def labeled_at(self) -> str:
        return self.decision.labeled_at


def _merge(pair: Pair, provenance: str, votes: list[Vote]) -> None:
    pair.provenance.add(provenance)
    pair.decision.add(votes)


def _add_pair(
    found: dict[tuple[Any, Any], Pair],
    trace: TraceData,
    step_index: int,
    chosen: Candidate,
    rejected: Candidate,
    provenance: str,
    votes: list[Vote],
) -> None:
    key = (chosen.key, rejected.key)
    if key not in found:
        found[key] = Pair(trace, step_index, chosen, rejected)
    _merge(found[key], provenance, votes)


def step_pairs(trace: TraceData) -> list[Pair]:
    """Step pairs of one trace (rules (a) and (b) of the module doc), in export order."""
    pairs: list[Pair] = []
    for step in trace.steps:
        candidates = [step.original, *step.alternatives]
        found: dict[tuple[Any, Any], Pair] = {}
        accepted = [c for c in candidates if c.vote and c.vote.verdict == "accept"]
        rejected = [c for c in candidates if c.vote and c.vote.verdict == "reject"]
        for good in accepted:
            for bad in rejected:
                _add_pair(found, trace, step.index, good, bad, "labels", [good.vote, bad.vote])
        for alt in step.alternatives:
            vote = step.preferences.get(alt.alternative_id)
            if vote is None or vote.verdict is None:
                continue
            first, second = (alt, step.original) if vote.verdict == "alternative" else (step.original, alt)
            _add_pair(found, trace, step.index, first, second, "preference", [vote])
        pairs.extend(found[key] for key in sorted(found))
    return pairs


def full_path_pairs(traces: list[TraceData]) -> list[Pair]:
    """Fully accepted trace over a trace with a rejected step, same clip, question and prompt."""
    groups: dict[tuple[str, str, str], list[TraceData]] = {}
    for trace in traces:
        groups.setdefault((trace.clip_sha256, trace.question, trace.prompt), []).append(trace)
    pairs = []
    for group in groups.values():
        good = [t for t in group if t.steps and all(_verdict(s.original) == "accept" for s in t.steps)]
        bad = []
        for t in group:
            first = next((s for s in t.steps if _verdict(s.original) == "reject"), None)
            if first is not None:
                bad.append((t, first.original.vote))
        for g in good:
            for b, reject_vote in bad:
                pair = Pair(g, None, g, b)
                _merge(pair, "full_path", [s.original.vote for s in g.steps] + [reject_vote])
                pairs.append(pair)
    return pairs


def _verdict(candidate: Candidate) -> str | None:
    return None if candidate.vote is None else candidate.vote.verdict


def pair_soft_label(pair: Pair, mu: float) -> tuple[float, bool]:
    """(soft_label, rollout_conflict) of a pair (``resolution.directed_soft_label``); a
    full-path pair has no rollouts over whole paths: 1.0."""
    if pair.step_index is None:
        return 1.0, False
    soft = directed_soft_label(pair.chosen.expected_correctness, pair.rejected.expected_correctness, mu)
    return soft.value, soft.conflict


def render_path(texts: list[str]) -> str:
    """A complete path: steps joined by ``<end_of_step>\\n``, no delimiter after the last."""
    return (STEP_DELIMITER + "\n").join(texts)


# ---------------------------------------------------------------------- records (pure)


def relative_video_path(path: str, root: str | None) -> str:
    """``path`` relative to ``root`` (POSIX separators) when the clip lies under it, else as stored."""
    if not root or not path:
        return path
    clip, base = Path(path), Path(root)
    if not clip.is_absolute():
        return path  # already relative (to a root the importer chose)
    for clip_path, base_path in ((clip, base), (clip.resolve(), base.resolve())):  # symlinked folders too
        try:
            return clip_path.relative_to(base_path).as_posix()
        except ValueError:
            continue
    return path


def _video(trace: TraceData, options: ExportOptions) -> dict[str, Any]:
    return {
        "video_path": relative_video_path(trace.video_path, options.video_root),
        "video_sha256": trace.clip_sha256,
    }


def _texts(trace: TraceData, start: int = 0, stop: int | None = None) -> list[str]:
    return trace.texts[start:stop]


def _keep(pairs: list[Pair], options: ExportOptions) -> list[Pair]:
    return [p for p in pairs if options.since is None or p.labeled_at >= options.since]


def pdpo_records(traces: list[TraceData], options: ExportOptions) -> list[dict[str, Any]]:
    """pDPO pairs: step pairs and full-path pairs with video, prefix, scores and provenance."""
    pairs = [p for t in traces for p in step_pairs(t)] + full_path_pairs(traces)
    records = []
    for pair in _keep(pairs, options):
        trace, chosen, rejected = pair.trace, pair.chosen, pair.rejected
        step = pair.step_index is not None
        soft, conflict = pair_soft_label(pair, options.mu)
        decision = pair.decision
        records.append(
            {
                "pair_type": "step" if step else "full_path",
                **_video(trace, options),
                "question": trace.question,
                "options": trace.options,
                "prompt": trace.prompt,
                "step_index": pair.step_index,
                "prefix_steps": _texts(trace, 0, pair.step_index) if step else [],
                "chosen_steps": [chosen.text] if step else _texts(chosen),
                "rejected_steps": [rejected.text] if step else _texts(rejected),
                "chosen_trace_id": trace.id if step else chosen.id,
                "rejected_trace_id": trace.id if step else rejected.id,
                "chosen_source": chosen.kind if step else "original",
                "rejected_source": rejected.kind if step else "original",
                "chosen_alternative_id": chosen.alternative_id if step else None,
                "rejected_alternative_id": rejected.alternative_id if step else None,
                "chosen_score": chosen.score if step else None,
                "rejected_score": rejected.score if step else None,
                "chosen_expected_correctness": chosen.expected_correctness if step else None,
                "rejected_expected_correctness": rejected.expected_correctness if step else None,
                "soft_label": soft,
                "rollout_conflict": conflict,
                "provenance": sorted(pair.provenance),
                "annotators": sorted(decision.annotators),
                "n_annotators": len(decision.annotators),
                "agreement": decision.agreement,
                "confidence": decision.confidence,
                "label_source": decision.label_source,
                "adjudicated": decision.adjudicated,
                "labeled_at": decision.labeled_at,
            }
        )
    return records


def trl_dpo_records(traces: list[TraceData], options: ExportOptions) -> list[dict[str, Any]]:
    """TRL DPO, standard (not conversational): prompt, chosen, rejected (+ video columns).

    TRL's DPOTrainer appends the tokenizer's EOS (``<|im_end|>``) to every chosen and rejected
    text that does not already end with it, with no setting to stop it. So a completion here
    always ends an answer: full-path pairs, and step pairs at a trace's last step (the step
    ends the path, so it is written as a path ends: without ``<end_of_step>\n``). A step pair
    at an earlier step would be trained as "step, then end the answer": it is left out (the
    ``pdpo`` and ``step-dpo`` formats carry it)."""
    records = []
    for pair in _keep([p for t in traces for p in step_pairs(t)], options):
        trace = pair.trace
        if pair.step_index != len(trace.steps) - 1:
            continue
        records.append(
            {
                "prompt": trace.prompt + render_steps(_texts(trace, 0, pair.step_index)),
                "chosen": pair.chosen.text,
                "rejected": pair.rejected.text,
                **_video(trace, options),
                **pair.decision.fields(),
            }
        )
    for pair in _keep(full_path_pairs(traces), options):
        records.append(
            {
                "prompt": pair.trace.prompt,
                "chosen": render_path(_texts(pair.chosen)),
                "rejected": render_path(_texts(pair.rejected)),
                **_video(pair.trace, options),
                **pair.decision.fields(),
            }
        )
    return records


def bare_question(trace: TraceData) -> str:
    """The question as a person reads it: its text, and the options line where it has options
    (``Choose from: A. x B. y``, as in the model's prompt), without chat markup or instruction."""
    if not trace.options:
        return trace.question
    letters = " ".join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(trace.options))
    return f"{trace.question}\nChoose from: {letters}"


def step_dpo_records(traces: list[TraceData], options: ExportOptions) -> list[dict[str, Any]]:
    """Step-DPO (dvlab-research/Step-DPO ``train.py``): ``dataset``, ``prompt`` (the bare
    question: its training script wraps it in its own chat template), ``initial_reason_steps``
    (the steps before the pair's step, every one accepted), ``chosen`` / ``rejected`` (one
    step), ``full_chosen`` / ``full_rejected`` (the candidate and the rest of its path where
    the path is known: an original step; null for an alternative), ``answer`` (the reference).
    A pair whose earlier steps are not all accepted (one rejected, or without a verdict) is
    left out: Step-DPO learns the first wrong step after a correct prefix."""
    records = []
    for pair in _keep([p for t in traces for p in step_pairs(t)], options):
        trace, k = pair.trace, pair.step_index
        if any(_verdict(step.original) != "accept" for step in trace.steps[:k]):
            continue

        def full(candidate: Candidate, trace=trace, k=k) -> str | None:
            return render_path(_texts(trace, k)) if candidate.alternative_id is None else None

        records.append(
            {
                "dataset": trace.prompt_kind,
                "prompt": bare_question(trace),
                "initial_reason_steps": render_steps(_texts(trace, 0, k)),
                "chosen": render_steps([pair.chosen.text]),
                "rejected": render_steps([pair.rejected.text]),
                "full_chosen": full(pair.chosen),
                "full_rejected": full(pair.rejected),
                "answer": trace.reference_answer,
                **_video(trace, options),
                **pair.decision.fields(),
            }
        )
    return records


def trl_stepwise_records(traces: list[TraceData], options: ExportOptions) -> list[dict[str, Any]]:
    """TRL stepwise supervision: prompt, completions (step texts), labels (bools),
    step_separator (what joins the steps in the model's text) (+ video, how decided)."""
    records = []
    for trace in traces:
        completions: list[str] = []
        votes: list[Vote] = []
        for step in trace.steps:
            verdict = _verdict(step.original)
            if verdict is None:
                break
            completions.append(step.original.text)
            votes.append(step.original.vote)
            if verdict == "reject":
                break
        labels = [v.verdict == "accept" for v in votes]
        accepted_run = labels.index(False) if False in labels else len(labels)
        items = [(completions, votes)] if completions else []
        for step in trace.steps[: accepted_run + 1]:
            for alt in step.alternatives:
                if _verdict(alt) is not None:
                    k = step.index
                    items.append((completions[:k] + [alt.text], votes[:k] + [alt.vote]))
        for texts, item_votes in items:
            decision = Decision()
            decision.add(item_votes)
            if options.since is None or decision.labeled_at >= options.since:
                records.append(
                    {
                        "prompt": trace.prompt,
                        "completions": texts,
                        "labels": [v.verdict == "accept" for v in item_votes],
                        "step_separator": STEP_SUFFIX,
                        **_video(trace, options),
                        **decision.fields(),
                    }
                )
    return records


RECORD_BUILDERS: dict[str, Callable[[list[TraceData], ExportOptions], list[dict[str, Any]]]] = {
    "pdpo": pdpo_records,
    "trl-dpo": trl_dpo_records,
    "trl-stepwise": trl_stepwise_records,
    "step-dpo": step_dpo_records,
}

# Why an export can be empty although steps are labelled (the ExportEmptyError message).
EMPTY_HINTS = {
    "pdpo": "",
    "trl-dpo": " (trl-dpo holds full-path pairs and pairs at a trace's last step only, because TRL "
    "appends <|im_end|> to every completion; export pdpo or step-dpo for the other step pairs)",
    "trl-stepwise": "",
    "step-dpo": " (step-dpo holds step pairs whose earlier steps are all accepted)",
}
