"""Error analysis and annotator quality over the resolved labels (``annotation_db.resolution``).

The questions, and the figures that answer them (``stats --json`` keys):

- Which kind of error does the model make? ``error_analysis.by_error_type``: resolved rejected
  original steps per error type (the reviewer's, else the plurality of the rejecting labels; none
  or a tie is ``unspecified``).
- On which clips? ``by_clip_kind``: reject rate per clip kind. A clip's kind is its tag
  (``Store.set_clip_kind`` / ``tag_clip_kinds`` from a manifest's ``kind``), else a ``kind``
  field of the clip or the trace JSON, else ``unknown``.
- Where in the reasoning? ``by_position``: reject rate per quarter of the trace, a step's place
  being the centre of its slot, (index + 0.5) / steps.
- Does a perturbation's score find the errors? ``perturbations``: for each score (the stored
  contrastive ``score`` and each entry of the step's ``scores``: noise, mute, shuffle) and each
  error type (and ``any``), the AUROC of the score for separating the resolved rejected steps of
  that type from the resolved accepted steps, with a 95% interval (Hanley and McNeil, "The
  meaning and use of the area under a ROC curve", Radiology 143:29-36, 1982) and the counts.
  The interval comes from a closed-form standard error (no resampling, so the same data always
  gives the same figure); at an AUROC of exactly 0 or 1 it collapses to a point, so read it with
  the counts.
- Did training help? ``models``: per model version (``model.adapter``, ``base`` when none),
  answer accuracy (answer choice = reference answer) and reject rate of the resolved steps, each
  with a 95% Wilson interval; ``comparisons`` restrict base and each adapter to the (clip,
  question) pairs both answered.
- Who labels well? ``annotator_quality``: per annotator, agreement with the resolved verdicts
  (leave-one-out: a reviewer's decision, else the others' majority under the rule, so nobody
  agrees with themself), raw agreement with each other annotator on shared items, time per item,
  share of unsure.

Rates over no items are None, as are AUROCs without both classes.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from annotation_db.errors import UnknownTraceError
from annotation_db.migrations import ERROR_TYPES
from annotation_db.resolution import ItemLabel, Resolution, ResolutionRule, aggregate
from annotation_db.stats import auroc
from annotation_db.tracejson import file_sha256

Z95 = 1.959963984540054  # the two-sided 95% normal quantile
POSITION_BUCKETS = ("0-25%", "25-50%", "50-75%", "75-100%")
BASE = "base"  # the model version of traces without an adapter


# ---------------------------------------------------------------------- intervals (pure)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (None for n = 0)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def hanley_mcneil(area: float, n_pos: int, n_neg: int, z: float = Z95) -> tuple[float, float]:
    """95% interval of an AUROC from its standard error (Hanley and McNeil 1982, eq. 2)."""
    q1, q2 = area / (2 - area), 2 * area * area / (1 + area)
    var = (area * (1 - area) + (n_pos - 1) * (q1 - area * area) + (n_neg - 1) * (q2 - area * area)) / (
        n_pos * n_neg
    )
    half = z * math.sqrt(max(var, 0.0))
    return (max(0.0, area - half), min(1.0, area + half))


def rate(successes: int, n: int) -> dict[str, Any]:
    """{n, k, rate, ci} for k of n."""
    interval = wilson(successes, n)
    return {
        "n": n,
        "k": successes,
        "rate": successes / n if n else None,
        "ci": list(interval) if interval else None,
    }


def auroc_entry(scored: Sequence[tuple[float, bool]]) -> dict[str, Any]:
    """{auroc, ci, positives, negatives} of (score, positive) pairs."""
    n_pos = sum(1 for _, positive in scored if positive)
    n_neg = len(scored) - n_pos
    area = auroc(scored)
    ci = None if area is None else list(hanley_mcneil(area, n_pos, n_neg))
    return {"auroc": area, "ci": ci, "positives": n_pos, "negatives": n_neg}


def position_bucket(index: int, n_steps: int) -> str:
    """The quarter of the trace that step ``index`` of ``n_steps`` falls in (by its centre)."""
    return POSITION_BUCKETS[min(int((index + 0.5) / n_steps * 4), 3)]


# ---------------------------------------------------------------------- clip kinds


def manifest_kinds(manifest: Path) -> dict[str, str]:
    """Clip content hash -> kind for the manifest entries with a ``kind`` and a file present."""
    out = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        name, kind = entry.get("file"), entry.get("kind")
        path = manifest.parent / str(name)
        if isinstance(name, str) and isinstance(kind, str) and kind.strip() and path.is_file():
            out[file_sha256(path)] = kind.strip()
    return out


def write_clip_kind(db: Database, sha: str, kind: str | None, now: str, *, missing_ok: bool = False) -> bool:
    """Tag clip ``sha`` with ``kind`` (None: untag). False when the clip is not stored and
    ``missing_ok``; UnknownTraceError otherwise."""
    if db.execute("SELECT 1 FROM clips WHERE sha256 = ?", [sha]).fetchone() is None:
        if missing_ok:
            return False
        raise UnknownTraceError(f"no clip {sha[:12]}... is stored; import a trace of it first")
    if kind is None or not str(kind).strip():
        db.execute("DELETE FROM clip_kinds WHERE clip_sha256 = ?", [sha])
    else:
        db.execute(
            "INSERT INTO clip_kinds (clip_sha256, kind, set_at) VALUES (?, ?, ?) "
            "ON CONFLICT (clip_sha256) DO UPDATE SET kind = excluded.kind, set_at = excluded.set_at",
            [sha, str(kind).strip(), now],
        )
    return True


# ---------------------------------------------------------------------- steps as read for analysis


@dataclass(frozen=True)
class StepFacts:
    step_id: int
    trace_id: str
    index: int
    n_steps: int
    scores: dict[str, float]  # "score" (the stored contrastive score) and every perturbation
    kind: str
    version: str
    unit: tuple[str, str]  # (clip hash, question): what "the same clip answered" means
    correct: bool | None  # answer choice == reference answer; None without a reference


def read_steps(db: Database) -> list[StepFacts]:
    rows = db.execute(
        """WITH n AS (SELECT trace_id, count(*) AS n FROM steps GROUP BY trace_id)
           SELECT s.id, s.trace_id, s.idx, n.n, s.score, s.scores, t.model, t.answer_choice,
                  t.reference_answer, t.clip_sha256, t.question, c.extra, t.extra, k.kind
           FROM steps s JOIN n ON n.trace_id = s.trace_id JOIN traces t ON t.id = s.trace_id
           JOIN clips c ON c.sha256 = t.clip_sha256 LEFT JOIN clip_kinds k ON k.clip_sha256 = t.clip_sha256
           ORDER BY t.seq, s.idx"""
    ).fetchall()
    out = []
    for sid, tid, idx, n, score, scores, model, choice, ref, clip, question, cx, tx, tag in rows:
        values = {k: float(v) for k, v in json.loads(scores).items() if isinstance(v, int | float)}
        if score is not None:
            values["score"] = float(score)
        kind = tag or json.loads(cx).get("kind") or json.loads(tx).get("kind") or "unknown"
        adapter = json.loads(model).get("adapter")
        correct = (
            None if ref is None else (choice is not None and choice.strip().upper() == ref.strip().upper())
        )
        out.append(
            StepFacts(sid, tid, idx, n, values, str(kind), str(adapter or BASE), (clip, question), correct)
        )
    return out


# ---------------------------------------------------------------------- error analysis (pure)


def _error_type(resolution: Resolution) -> str:
    return resolution.error_type or "unspecified"


def _rate_groups(
    pairs: list[tuple[str, Resolution]], order: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Reject rate and error types per group of (group, resolution) with a verdict."""
    grouped: dict[str, list[Resolution]] = defaultdict(list)
    for group, resolution in pairs:
        grouped[group].append(resolution)
    names = [g for g in order if g in grouped] if order else sorted(grouped)
    out = []
    for name in names:
        items = grouped[name]
        rejected = [r for r in items if r.verdict == "reject"]
        out.append(
            {
                "group": name,
                **rate(len(rejected), len(items)),
                "error_types": dict(sorted(Counter(_error_type(r) for r in rejected).items())),
            }
        )
    return out


def error_analysis(
    steps: list[StepFacts], resolved: dict[tuple[int, int | None], Resolution]
) -> dict[str, Any]:
    """The error-analysis figures (module doc) from the steps and their resolutions."""
    decided = [(s, resolved[s.step_id, None]) for s in steps if (s.step_id, None) in resolved]
    decided = [(s, r) for s, r in decided if r.verdict is not None]
    rejected = [(s, r) for s, r in decided if r.verdict == "reject"]
    by_type = Counter(_error_type(r) for _, r in rejected)
    names = sorted({name for s, _ in decided for name in s.scores})
    typed = [(s.scores, r.verdict == "reject", _error_type(r)) for s, r in decided]
    perturbations = []
    for name in names:
        for target in ("any", *ERROR_TYPES, "unspecified"):
            scored = [
                (scores[name], rejected)
                for scores, rejected, kind in typed
                if name in scores and (not rejected or target in ("any", kind))
            ]
            if any(positive for _, positive in scored):
                perturbations.append({"score": name, "error_type": target, **auroc_entry(scored)})
    return {
        "steps": len(decided),
        "rejected": len(rejected),
        "by_error_type": {t: by_type.get(t, 0) for t in (*ERROR_TYPES, "unspecified")},
        "by_clip_kind": _rate_groups([(s.kind, r) for s, r in decided]),
        "by_position": _rate_groups(
            [(position_bucket(s.index, s.n_steps), r) for s, r in decided], POSITION_BUCKETS
        ),
        "perturbations": perturbations,
        "models": model_comparison(steps, resolved),
    }


def _version_figures(steps: list[StepFacts], resolved: dict) -> dict[str, Any]:
    traces = {s.trace_id: s for s in steps}
    answered = [s.correct for s in traces.values() if s.correct is not None]
    verdicts = [resolved[s.step_id, None].verdict for s in steps if (s.step_id, None) in resolved]
    verdicts = [v for v in verdicts if v is not None]
    return {
        "traces": len(traces),
        "accuracy": rate(sum(answered), len(answered)),
        "reject_rate": rate(verdicts.count("reject"), len(verdicts)),
    }


def model_comparison(steps: list[StepFacts], resolved: dict) -> dict[str, Any]:
    """Per model version, and base against each adapter on the clips both answered."""
    by_version: dict[str, list[StepFacts]] = defaultdict(list)
    for s in steps:
        by_version[s.version].append(s)
    versions = sorted(by_version, key=lambda v: (v != BASE, v))
    comparisons = []
    if BASE in by_version:
        base_units = {s.unit for s in by_version[BASE]}
        for version in versions[1:]:
            common = base_units & {s.unit for s in by_version[version]}
            comparisons.append(
                {
                    "base": BASE,
                    "model": version,
                    "clips": len(common),
                    "base_figures": _version_figures(
                        [s for s in by_version[BASE] if s.unit in common], resolved
                    ),
                    "model_figures": _version_figures(
                        [s for s in by_version[version] if s.unit in common], resolved
                    ),
                }
            )
    return {
        "versions": {v: _version_figures(by_version[v], resolved) for v in versions},
        "comparisons": comparisons,
    }


# ---------------------------------------------------------------------- annotator quality (pure)


def annotator_quality(
    labels: dict[tuple[int, int | None], list[ItemLabel]],
    resolved: dict[tuple[int, int | None], Resolution],
    rule: ResolutionRule,
    times: dict[str, list[float]],
    roles: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """Per annotator: role, labels, unsure share, time per item, agreement with the resolved
    verdicts (leave-one-out, module doc) and with the other annotators. ``times``: each
    annotator's seconds per labeled item (labels with a recorded time)."""
    majority = ResolutionRule("majority", rule.min_labels, rule.min_agreement)
    stats: dict[str, dict[str, Any]] = {
        name: {
            "labels": 0,
            "unsure": 0,
            "resolved": [0, 0],
            "others": [0, 0],
            "pairs": defaultdict(lambda: [0, 0]),
        }
        for name in sorted(roles)
    }
    for key, item in labels.items():
        resolution = resolved.get(key)
        for lab in item:
            s = stats[lab.annotator]
            s["labels"] += 1
            s["unsure"] += lab.verdict == "unsure"
            reference = _reference(lab, item, resolution, majority)
            if reference is not None and lab.verdict != "unsure":
                s["resolved"][0] += lab.verdict == reference
                s["resolved"][1] += 1
            for other in item:
                if other.annotator != lab.annotator:
                    s["others"][0] += lab.verdict == other.verdict
                    s["others"][1] += 1
                    s["pairs"][other.annotator][0] += lab.verdict == other.verdict
                    s["pairs"][other.annotator][1] += 1
    out = {}
    for name, s in stats.items():
        spent = times.get(name, [])
        out[name] = {
            "role": roles[name],
            "labels": s["labels"],
            "unsure_share": s["unsure"] / s["labels"] if s["labels"] else None,
            "timed_labels": len(spent),
            "mean_time_per_item_s": statistics.fmean(spent) if spent else None,
            "median_time_per_item_s": statistics.median(spent) if spent else None,
            "agreement_with_resolved": rate(*s["resolved"]),
            "agreement_with_others": rate(*s["others"]),
            "agreement_by_annotator": {o: rate(*c) for o, c in sorted(s["pairs"].items())},
        }
    return out


def _reference(
    lab: ItemLabel, item: list[ItemLabel], resolution: Resolution | None, majority: ResolutionRule
):
    """The verdict ``lab`` is judged against: a reviewer's decision (unless by the annotator
    themself), else the majority of the other annotators (``majority``: the rule's thresholds)."""
    if resolution is not None and resolution.adjudicated and resolution.reviewer != lab.annotator:
        return resolution.verdict
    if resolution is not None and resolution.status == "sent_back":
        return None
    others = [o for o in item if o.annotator != lab.annotator]
    accept = sum(o.verdict == "accept" for o in others)
    reject = sum(o.verdict == "reject" for o in others)
    verdict, _, _ = aggregate(accept, reject, majority, None)
    return verdict
