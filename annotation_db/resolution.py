"""The label that training sees: one resolved verdict per item, and how it was decided.

An item is an original step or an alternative. Its **resolved verdict**, in this order:

1. **A reviewer's decision** (``reviews``, status decided): final, whatever the annotators said.
2. **Sent back** by a reviewer (with a note): no verdict until a reviewer decides it, so a step
   a reviewer found unclear never reaches training on the annotators' first say.
3. **Aggregation of the annotators' labels** by ``ResolutionRule``. Unsure counts for nothing.
   ``majority`` (default): accept or reject, whichever has more votes; a tie decides nothing.
   ``dawid_skene``: the class with the higher posterior under the Dawid-Skene annotator model
   (below). Either way the item needs at least ``min_labels`` accept/reject votes and a
   ``confidence`` (majority: the winning share of votes; Dawid-Skene: the posterior) of at least
   ``min_agreement``; otherwise it has no verdict and ``status`` says why.

Each ``Resolution`` records how it was decided (``decided_by``, ``status``), the vote counts,
``agreement`` (votes for the resolved verdict / accept + reject votes; for a reviewer's decision
that is the annotators' agreement with the reviewer), and whether it was adjudicated.

**Dawid-Skene** (A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer
Error-Rates Using the EM Algorithm", Applied Statistics 28(1):20-28, 1979): each annotator has a
confusion matrix (P(says l | truth k)); EM alternates the items' class posteriors (E) and the
class priors and confusion matrices (M), starting from the vote shares. It earns its place when
annotators differ in skill and labels overlap: an accurate minority outvotes careless ones
(tests/store/test_resolution.py has such a case where it beats majority). With one label per
item it can only reproduce that label; keep ``majority`` then.

**Human decisions against rollouts** (``directed_soft_label``): every training pair comes from
a human decision (a verdict or a preference), so the human fixes the direction and the rollouts
only set the strength: soft_label = max(0.5, sigma((p(chosen) - p(rejected)) / mu)). Rollouts that
favour the rejected candidate weaken the pair to 0.5 (no preference) and never reverse it; such
a pair is flagged ``rollout_conflict``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlite_utils import Database

METHODS = ("majority", "dawid_skene")
CLASSES = ("accept", "reject")


@dataclass(frozen=True)
class ResolutionRule:
    """How annotators' labels combine when no reviewer decided."""

    method: str = "majority"  # the simplest rule anyone can check by hand; see the module doc
    min_labels: int = 1  # accept/reject votes an item needs; 1 keeps single-annotator projects usable
    min_agreement: float = 0.0  # confidence an item needs (0..1); 0 = any strict majority
    # EM settings (Dawid-Skene only). EM converges linearly (about 150 rounds to 1e-4 on 200
    # items of 5 annotators); 1e-4 on every posterior is far finer than the 0.5 threshold needs.
    max_iterations: int = 500
    tolerance: float = 1e-4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not isinstance(self.min_labels, int) or self.min_labels < 1:
            raise ValueError(f"min_labels must be an integer >= 1, not {self.min_labels!r}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be a fraction between 0 and 1, not {self.min_agreement!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "min_labels": self.min_labels, "min_agreement": self.min_agreement}


@dataclass(frozen=True)
class Resolution:
    """The resolved verdict of one item and how it was decided."""

    verdict: str | None  # accept | reject | None (no verdict: see status)
    error_type: str | None  # the reviewer's, else the commonest among the rejecting labels
    # adjudicated | sent_back | aggregated | unlabeled | too_few_labels | tie | low_agreement
    status: str
    decided_by: str | None  # "reviewer" | the rule's method | None
    adjudicated: bool
    reviewer: str | None
    n_annotators: int  # everyone with a current label, unsure included
    accept: int
    reject: int
    unsure: int
    agreement: float | None  # votes for the verdict / (accept + reject); None without votes
    confidence: float | None  # majority: winning share; Dawid-Skene: posterior of the verdict
    annotators: tuple[str, ...]  # sorted names of the accept/reject voters
    labeled_at: str  # newest label or review change behind it ("" when none)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy is most of the cost of a large review queue.
        return {**self.__dict__, "annotators": list(self.annotators)}


class ItemLabel(NamedTuple):
    annotator: str
    verdict: str
    error_type: str | None
    updated_at: str


class ItemReview(NamedTuple):
    status: str  # decided | sent_back
    verdict: str | None
    error_type: str | None
    reviewer: str
    updated_at: str


def plurality_error_type(labels: Iterable[ItemLabel]) -> str | None:
    """The commonest error type among rejecting labels; a tie or none gives None."""
    counts = Counter(lab.error_type for lab in labels if lab.verdict == "reject" and lab.error_type)
    ranked = counts.most_common()
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def resolve(
    labels: list[ItemLabel],
    review: ItemReview | None,
    rule: ResolutionRule,
    posterior_reject: float | None = None,
) -> Resolution:
    """One item's resolution (pure). ``posterior_reject`` is its Dawid-Skene P(reject) when the
    rule's method is dawid_skene (from ``dawid_skene``), else ignored."""
    accept = sum(lab.verdict == "accept" for lab in labels)
    reject = sum(lab.verdict == "reject" for lab in labels)
    unsure = len(labels) - accept - reject
    votes = accept + reject
    voters = tuple(sorted(lab.annotator for lab in labels if lab.verdict != "unsure"))
    stamps = [lab.updated_at for lab in labels] + ([review.updated_at] if review else [])
    base = {
        "n_annotators": len(labels),
        "accept": accept,
        "reject": reject,
        "unsure": unsure,
        "annotators": voters,
        "labeled_at": max(stamps, default=""),
    }

    def share(verdict: str | None) -> float | None:
        if not votes or verdict is None:
            return None
        return (accept if verdict == "accept" else reject) / votes

    if review is not None:
        decided = review.status == "decided"
        return Resolution(
            verdict=review.verdict if decided else None,
            error_type=review.error_type if decided else None,
            status="adjudicated" if decided else "sent_back",
            decided_by="reviewer" if decided else None,
            adjudicated=decided,
            reviewer=review.reviewer,
            agreement=share(review.verdict),
            confidence=1.0 if decided else None,
            **base,
        )
    verdict, confidence, status = aggregate(accept, reject, rule, posterior_reject)
    return Resolution(
        verdict=verdict,
        error_type=plurality_error_type(labels) if verdict == "reject" else None,
        status=status,
        decided_by=rule.method if verdict else None,
        adjudicated=False,
        reviewer=None,
        agreement=share(verdict) if verdict else (max(accept, reject) / votes if votes else None),
        confidence=confidence,
        **base,
    )


def aggregate(
    accept: int, reject: int, rule: ResolutionRule, posterior_reject: float | None
) -> tuple[str | None, float | None, str]:
    """(verdict, confidence, status) of the annotators' votes under ``rule``."""
    votes = accept + reject
    if votes == 0:
        return None, None, "unlabeled"
    if rule.method == "dawid_skene" and posterior_reject is not None:
        p = posterior_reject
        verdict = "reject" if p > 0.5 else "accept" if p < 0.5 else None
        confidence = max(p, 1.0 - p)
    else:
        verdict = "accept" if accept > reject else "reject" if reject > accept else None
        confidence = max(accept, reject) / votes
    if votes < rule.min_labels:
        return None, confidence, "too_few_labels"
    if verdict is None:
        return None, confidence, "tie"
    if confidence < rule.min_agreement:
        return None, confidence, "low_agreement"
    return verdict, confidence, "aggregated"


# ---------------------------------------------------------------------- Dawid-Skene (pure)


class DawidSkeneFit(NamedTuple):
    posteriors: dict[Hashable, dict[str, float]]  # item -> class -> probability
    priors: dict[str, float]  # class -> probability
    confusion: dict[str, dict[str, dict[str, float]]]  # annotator -> truth -> said -> probability
    iterations: int


def dawid_skene(
    items: Mapping[Hashable, Mapping[str, str]],
    classes: tuple[str, ...] = CLASSES,
    *,
    max_iterations: int = 500,
    tolerance: float = 1e-4,
    smoothing: float = 0.01,
) -> DawidSkeneFit:
    """Fit the Dawid-Skene model by EM. ``items``: item -> {annotator: class}. Items without a
    label are left out. ``smoothing`` is a pseudo-count added to every confusion cell and prior
    so that a class an annotator never used does not get probability 0 (which EM cannot leave).
    Starts from the vote shares (Dawid and Skene's own initialisation).

    Items with the same votes from the same annotators have the same posterior, so EM runs over
    the distinct vote patterns weighted by their counts: with a few annotators there are a few
    dozen patterns however many items, which keeps the pure-Python loops cheap."""
    pattern_of = {item: tuple(sorted(votes.items())) for item, votes in items.items() if votes}
    weight = Counter(pattern_of.values())
    annotators = sorted({a for pattern in weight for a, _ in pattern})
    post = {}
    for pattern in weight:
        said = Counter(v for _, v in pattern)
        post[pattern] = {k: said[k] / len(pattern) for k in classes}
    priors: dict[str, float] = {}
    confusion: dict[str, dict[str, dict[str, float]]] = {}
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        priors, confusion = _m_step(weight, post, classes, annotators, smoothing)
        logs = {
            a: {k: {s: math.log(p) for s, p in row.items()} for k, row in rows.items()}
            for a, rows in confusion.items()
        }
        log_priors = {k: math.log(p) for k, p in priors.items()}
        new_post = {pattern: _e_step(pattern, classes, log_priors, logs) for pattern in weight}
        change = max((abs(new_post[p][k] - post[p][k]) for p in weight for k in classes), default=0.0)
        post = new_post
        if change < tolerance:
            break
    posteriors = {item: dict(post[pattern]) for item, pattern in pattern_of.items()}
    return DawidSkeneFit(posteriors, priors, confusion, iterations)


def _m_step(weight, post, classes, annotators, smoothing):
    n = sum(weight.values())
    priors = {
        k: (sum(c * post[p][k] for p, c in weight.items()) + smoothing) / (n + smoothing * len(classes))
        for k in classes
    }
    counts = {a: {k: dict.fromkeys(classes, smoothing) for k in classes} for a in annotators}
    for pattern, c in weight.items():
        for annotator, said in pattern:
            for k in classes:
                counts[annotator][k][said] += c * post[pattern][k]
    confusion = {
        a: {k: {s: v / sum(row.values()) for s, v in row.items()} for k, row in rows.items()}
        for a, rows in counts.items()
    }
    return priors, confusion


def _e_step(pattern, classes, log_priors, log_confusion) -> dict[str, float]:
    # In log space: a long list of votes would underflow a product of probabilities.
    logs = {k: log_priors[k] + sum(log_confusion[a][k][said] for a, said in pattern) for k in classes}
    top = max(logs.values())
    weights = {k: math.exp(v - top) for k, v in logs.items()}
    norm = sum(weights.values())
    return {k: w / norm for k, w in weights.items()}


# ---------------------------------------------------------------------- rollouts vs humans (pure)


class SoftLabel(NamedTuple):
    value: float  # the pDPO target a for chosen over rejected, in [0.5, 1]
    rollout_value: float | None  # sigma((p(chosen) - p(rejected)) / mu) alone; None without rollouts
    conflict: bool  # the rollouts favour the rejected candidate


def directed_soft_label(
    p_chosen: float | None, p_rejected: float | None, mu: float, *, floor: float = 0.5
) -> SoftLabel:
    """The soft label of a pair a human (annotators or a reviewer) decided: the human fixes the
    direction, the rollouts' expected correctness p only the strength (module doc). Without
    rollouts on both candidates: 1.0, as a hard label."""
    if p_chosen is None or p_rejected is None:
        return SoftLabel(1.0, None, False)
    rollout = 1.0 / (1.0 + math.exp(-(p_chosen - p_rejected) / mu))
    return SoftLabel(max(floor, rollout), rollout, p_chosen < p_rejected)


# ---------------------------------------------------------------------- from the store


Key = tuple[int, int | None]  # (step_id, alternative_id): one item


def read_items(
    db: Database, annotators: Iterable[str] | None = None
) -> tuple[dict[Key, list[ItemLabel]], dict[Key, ItemReview]]:
    """Every item's current labels (only ``annotators``' if given) and review state."""
    where, args = "", []
    if annotators:
        names = list(annotators)
        where = f" WHERE annotator IN ({','.join('?' * len(names))})"
        args = names
    labels: dict[Key, list[ItemLabel]] = {}
    for step_id, alt_id, who, verdict, error_type, updated in db.execute(
        f"SELECT step_id, alternative_id, annotator, verdict, error_type, updated_at FROM labels{where} "
        "ORDER BY step_id, alternative_id, annotator",
        args,
    ).fetchall():
        labels.setdefault((step_id, alt_id), []).append(ItemLabel(who, verdict, error_type, updated))
    reviews = {
        (r[0], r[1]): ItemReview(*r[2:])
        for r in db.execute(
            "SELECT step_id, alternative_id, status, verdict, error_type, reviewer, updated_at FROM reviews"
        ).fetchall()
    }
    return labels, reviews


def resolve_items(
    db: Database,
    rule: ResolutionRule | None = None,
    annotators: Iterable[str] | None = None,
    *,
    items: tuple[dict[Key, list[ItemLabel]], dict[Key, ItemReview]] | None = None,
) -> dict[Key, Resolution]:
    """The resolution of every item with a label or a review, keyed by (step_id, alternative_id)
    (alternative_id None for the original step). ``annotators``: count only their labels (a
    reviewer's decision still counts). This is what every export should take its verdicts from:
    run it inside the export's read transaction. ``items``: ``read_items``' answer, when the
    caller has read it already."""
    rule = rule or ResolutionRule()
    labels, reviews = items if items is not None else read_items(db, annotators)
    posteriors: dict[Key, float] = {}
    if rule.method == "dawid_skene":
        fit = dawid_skene(
            {
                k: {lab.annotator: lab.verdict for lab in v if lab.verdict != "unsure"}
                for k, v in labels.items()
            },
            max_iterations=rule.max_iterations,
            tolerance=rule.tolerance,
        )
        posteriors = {k: p["reject"] for k, p in fit.posteriors.items()}
    keys = sorted(set(labels) | set(reviews), key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    return {k: resolve(labels.get(k, []), reviews.get(k), rule, posteriors.get(k)) for k in keys}


# ---------------------------------------------------------------------- for exports (pure)


def passes(
    resolution: Resolution,
    *,
    min_annotators: int = 0,
    min_agreement: float = 0.0,
    adjudicated: bool | None = None,
) -> bool:
    """Whether an export keeps an item's verdict. ``adjudicated``: True keeps only reviewers'
    decisions, False only aggregated verdicts, None both. ``min_annotators`` (accept/reject
    voters) and ``min_agreement`` apply to aggregated verdicts only: a reviewer's decision is
    final however the annotators split."""
    if resolution.verdict is None:
        return False
    if adjudicated is not None and resolution.adjudicated != adjudicated:
        return False
    if resolution.adjudicated:
        return True
    return len(resolution.annotators) >= min_annotators and (resolution.agreement or 0.0) >= min_agreement


def record_fields(resolution: Resolution) -> dict[str, Any]:
    """How a record's label was decided, as export columns: label_source (reviewer | majority |
    dawid_skene), adjudicated, n_annotators (accept/reject voters), agreement, confidence."""
    return {
        "label_source": resolution.decided_by,
        "adjudicated": resolution.adjudicated,
        "n_annotators": len(resolution.annotators),
        "agreement": resolution.agreement,
        "confidence": resolution.confidence,
    }


def vote_fields(resolution: Resolution) -> tuple[str | None, float, tuple[str, ...], str]:
    """(verdict, agreement, annotators, labeled_at): the fields of ``export.Vote``, so that an
    export builds its votes from resolutions with ``Vote(*vote_fields(r))``. A reviewer's
    decision counts as full agreement there (it is final), whatever the annotators said."""
    agreement = 1.0 if resolution.adjudicated else (resolution.agreement or 0.0)
    return resolution.verdict, agreement, resolution.annotators, resolution.labeled_at


def rollout_conflicts(
    db: Database, rule: ResolutionRule | None = None, trace_id: str | None = None
) -> list[dict[str, Any]]:
    """Human-decided pairs whose rollouts favour the rejected candidate (what the labeling page
    flags): at a step, an accepted candidate (original step or alternative, by resolved verdict)
    over a rejected one, or the majority preference between an alternative and the original,
    where both carry rollout ``expected_correctness`` and p(chosen) < p(rejected). Each:
    trace_id, step_index, chosen / rejected ({alternative_id, expected_correctness}; None is
    the original step), source ("labels" | "preference"), soft_label (``directed_soft_label``
    with mu = 0.2, the export default) and rollout_soft_label."""
    resolved = resolve_items(db, rule)
    where, args = "", []
    if trace_id is not None:
        where, args = " AND s.trace_id = ?", [trace_id]
    rows = db.execute(
        f"""SELECT s.id, s.trace_id, s.idx, NULL, s.expected_correctness FROM steps s
            JOIN traces t ON t.id = s.trace_id WHERE s.expected_correctness IS NOT NULL{where}
            UNION ALL
            SELECT s.id, s.trace_id, s.idx, a.id, a.expected_correctness FROM alternatives a
            JOIN steps s ON s.id = a.step_id WHERE a.expected_correctness IS NOT NULL{where}""",
        args * 2,
    ).fetchall()
    steps: dict[int, dict[str, Any]] = {}
    for step_id, tid, idx, alt_id, p in rows:
        step = steps.setdefault(step_id, {"trace_id": tid, "step_index": idx, "p": {}})
        step["p"][alt_id] = p
    prefs = db.execute(
        "SELECT step_id, alternative_id, sum(chosen = 'alternative'), sum(chosen = 'original') "
        "FROM preferences GROUP BY step_id, alternative_id"
    ).fetchall()
    found = []
    for step_id, step in steps.items():
        p = step["p"]
        verdict = {a: resolved[step_id, a].verdict for a in p if (step_id, a) in resolved}
        pairs = [
            (c, r, "labels")
            for c in p
            for r in p
            if verdict.get(c) == "accept" and verdict.get(r) == "reject"
        ]
        for s_id, alt_id, for_alt, for_orig in prefs:
            if s_id == step_id and alt_id in p and None in p and for_alt != for_orig:
                pairs.append(
                    (alt_id, None, "preference") if for_alt > for_orig else (None, alt_id, "preference")
                )
        for chosen, rejected, source in pairs:
            soft = directed_soft_label(p[chosen], p[rejected], 0.2)
            if soft.conflict:
                found.append(
                    {
                        "trace_id": step["trace_id"],
                        "step_index": step["step_index"],
                        "chosen": {"alternative_id": chosen, "expected_correctness": p[chosen]},
                        "rejected": {"alternative_id": rejected, "expected_correctness": p[rejected]},
                        "source": source,
                        "soft_label": soft.value,
                        "rollout_soft_label": soft.rollout_value,
                    }
                )

    def order(c: dict[str, Any]) -> tuple:
        alt = c["chosen"]["alternative_id"]
        return (c["trace_id"], c["step_index"], -1 if alt is None else alt, c["source"])

    return sorted(found, key=order)
