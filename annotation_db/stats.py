"""Label statistics: counts, effort, inter-annotator agreement and score calibration.

- Counts per verdict and error type, over the current labels (steps and alternatives).
- Per annotator: labels, verdict counts, time spent (seconds, every recorded action, undone or
  not: the time was spent).
- Agreement on the verdict (accept / reject / unsure are three nominal categories):
  Cohen's kappa for every pair of annotators over the items both labeled, and Krippendorff's
  alpha (nominal) over all items with at least two labels. Undefined values (no variation) are
  None.
- Calibration: does the contrastive score find the bad steps? Original steps with a score and
  a majority verdict (accept / reject, unsure ignored, ties left out) are ranked by score and
  split into ten equal-count deciles (1 = lowest scores); each decile reports its reject rate.
  ``auroc`` is the probability that a rejected step scores higher than an accepted one.
- Over the resolved labels (``annotation_db.resolution``, under a ``ResolutionRule``):
  ``resolution`` (items per status), ``review`` (decided, sent back, to review),
  ``annotator_quality`` and ``error_analysis`` (see ``annotation_db.analysis`` for each figure).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from sqlite_utils import Database

from annotation_db.migrations import ERROR_TYPES, VERDICTS


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (None if chance agreement is 1)."""
    n = len(first)
    if n == 0 or n != len(second):
        return None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    count_a, count_b = Counter(first), Counter(second)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if expected == 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha, nominal metric; ``units`` holds each item's values (one per rater).

    Coincidences: a unit with m values adds 1/(m-1) for every ordered pair of its values;
    alpha = 1 - (n - 1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k. Units with one value are skipped.
    """
    coincidence: Counter[tuple[Hashable, Hashable]] = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            coincidence[values[i], values[j]] += 1.0 / (m - 1)
    totals: Counter[Hashable] = Counter()
    for (c, _), weight in coincidence.items():
        totals[c] += weight
    n = sum(totals.values())
    disagree = sum(w for (c, k), w in coincidence.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if n <= 1 or expected == 0:
        return None
    return 1.0 - (n - 1) * disagree / expected


def auroc(scored: Sequence[tuple[float, bool]]) -> float | None:
    """P(score of a positive > score of a negative), ties counting half; None without both."""
    ranked = sorted(scored, key=lambda item: item[0])
    n_pos = sum(1 for _, positive in ranked if positive)
    n_neg = len(ranked) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Mann-Whitney U from average ranks (ties share their mean rank).
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        rank_sum += mean_rank * sum(1 for k in range(i, j + 1) if ranked[k][1])
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def calibration(scored: Sequence[tuple[float, bool]], bins: int = 10) -> list[dict[str, Any]]:
    """Reject rate per equal-count score bin (``scored``: (score, rejected)), lowest scores first.
    Rank i of n goes to bin i * bins // n; empty bins (n < bins) are left out."""
    ranked = sorted(scored, key=lambda item: item[0])
    n = len(ranked)
    grouped: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for i, item in enumerate(ranked):
        grouped[i * bins // n].append(item)
    out = []
    for b in sorted(grouped):
        items = grouped[b]
        rejects = sum(1 for _, rejected in items if rejected)
        out.append(
            {
                "decile": b + 1,
                "steps": len(items),
                "min_score": items[0][0],
                "max_score": items[-1][0],
                "rejects": rejects,
                "reject_rate": rejects / len(items),
            }
        )
    return out


def compute(db: Database, rule: Any = None) -> dict[str, Any]:
    """All statistics of the store (keys: labels, verdicts, error_types, annotators,
    agreement {pairs, krippendorff_alpha, items_multiply_labeled}, calibration {steps, auroc,
    deciles}, and over the labels resolved by ``rule`` (a ``resolution.ResolutionRule``,
    default majority): resolution, review, annotator_quality, error_analysis; see
    ``annotation_db.analysis``)."""
    rows = db.execute("SELECT step_id, alternative_id, annotator, verdict, error_type FROM labels").fetchall()
    verdicts = {v: 0 for v in VERDICTS}
    error_types = {e: 0 for e in ERROR_TYPES}
    items: dict[tuple[int, int | None], dict[str, str]] = defaultdict(dict)
    for step_id, alternative_id, annotator, verdict, error_type in rows:
        verdicts[verdict] += 1
        if error_type is not None:
            error_types[error_type] += 1
        items[step_id, alternative_id][annotator] = verdict

    annotators: dict[str, dict[str, Any]] = {}
    per = db.execute(
        """SELECT a.name, count(l.id), coalesce(sum(l.verdict = 'accept'), 0),
                  coalesce(sum(l.verdict = 'reject'), 0), coalesce(sum(l.verdict = 'unsure'), 0),
                  (SELECT coalesce(sum(time_spent_s), 0) FROM label_events e WHERE e.annotator = a.name)
           FROM annotators a LEFT JOIN labels l ON l.annotator = a.name GROUP BY a.name ORDER BY a.name"""
    ).fetchall()
    for name, n, accept, reject, unsure, time_s in per:
        annotators[name] = {
            "labels": n,
            "accept": accept,
            "reject": reject,
            "unsure": unsure,
            "time_s": time_s,
        }

    pairs = []
    for a, b in itertools.combinations(sorted(annotators), 2):
        shared = [(v[a], v[b]) for v in items.values() if a in v and b in v]
        if shared:
            kappa = cohen_kappa([x for x, _ in shared], [y for _, y in shared])
            pairs.append({"annotators": [a, b], "items": len(shared), "kappa": kappa})
    multi = [list(v.values()) for v in items.values() if len(v) >= 2]

    scored_rows = db.execute(
        """SELECT s.score, sum(l.verdict = 'accept'), sum(l.verdict = 'reject')
           FROM labels l JOIN steps s ON s.id = l.step_id
           WHERE l.item_kind = 'step' AND l.verdict != 'unsure' AND s.score IS NOT NULL
           GROUP BY s.id"""
    ).fetchall()
    scored = [(score, rejects > accepts) for score, accepts, rejects in scored_rows if accepts != rejects]
    return {
        "labels": len(rows),
        "verdicts": verdicts,
        "error_types": error_types,
        "annotators": annotators,
        "agreement": {
            "pairs": pairs,
            "krippendorff_alpha": krippendorff_alpha(multi),
            "items_multiply_labeled": len(multi),
        },
        "calibration": {"steps": len(scored), "auroc": auroc(scored), "deciles": calibration(scored)},
        **resolved_figures(db, rule),
    }


def resolved_figures(db: Database, rule: Any = None) -> dict[str, Any]:
    """The figures over resolved labels: resolution, review, annotator_quality, error_analysis."""
    # Imported here: analysis uses this module's auroc.
    from annotation_db import analysis, review
    from annotation_db.resolution import ResolutionRule, read_items, resolve_items

    rule = rule or ResolutionRule()
    items = read_items(db)
    resolved = resolve_items(db, rule, items=items)
    labels = items[0]
    times: dict[str, list[float]] = defaultdict(list)
    for name, spent in db.execute("SELECT annotator, time_spent_s FROM labels WHERE time_spent_s > 0"):
        times[name].append(spent)
    roles = dict(db.execute("SELECT name, role FROM annotators").fetchall())
    statuses = Counter(r.status for r in resolved.values())
    reviews = dict(db.execute("SELECT status, count(*) FROM reviews GROUP BY status").fetchall())
    return {
        "resolution": {
            "rule": rule.to_dict(),
            "items": len(resolved),
            "verdicts": {v: sum(r.verdict == v for r in resolved.values()) for v in ("accept", "reject")},
            "by_status": {s: statuses.get(s, 0) for s in RESOLUTION_STATUSES},
        },
        "review": {
            "decided": reviews.get("decided", 0),
            "sent_back": reviews.get("sent_back", 0),
            "to_review": review.count_pending(db),
        },
        "annotator_quality": analysis.annotator_quality(labels, resolved, rule, times, roles),
        "error_analysis": analysis.error_analysis(analysis.read_steps(db), resolved),
    }


RESOLUTION_STATUSES = (
    "adjudicated",
    "sent_back",
    "aggregated",
    "unlabeled",
    "too_few_labels",
    "tie",
    "low_agreement",
)


# ---------------------------------------------------------------------- text summary


def _pct(figure: dict[str, Any]) -> str:
    """A rate figure as "12.5% [8.1, 18.7] (20/160)"; "n/a" over no items."""
    if not figure["n"]:
        return "n/a (0)"
    lo, hi = figure["ci"]
    return f"{100 * figure['rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] ({figure['k']}/{figure['n']})"


def format_resolved(stats: dict[str, Any]) -> list[str]:
    """The resolution, review, quality and error-analysis figures as short text lines."""
    res, rule = stats["resolution"], stats["resolution"]["rule"]
    lines = [
        f"resolution ({rule['method']}, at least {rule['min_labels']} votes and agreement "
        f"{rule['min_agreement']:.2f}): {res['items']} items, accept {res['verdicts']['accept']}, "
        f"reject {res['verdicts']['reject']}; "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in res["by_status"].items()),
        "review: decided {decided}, sent back {sent_back}, to review {to_review}".format(**stats["review"]),
        "annotator quality:",
    ]
    for name, q in stats["annotator_quality"].items():
        time = "n/a" if q["mean_time_per_item_s"] is None else f"{q['mean_time_per_item_s']:.1f} s"
        unsure = "n/a" if q["unsure_share"] is None else f"{100 * q['unsure_share']:.0f}%"
        lines.append(
            f"  {name} ({q['role']}): agrees with resolved {_pct(q['agreement_with_resolved'])}, "
            f"with others {_pct(q['agreement_with_others'])}; {time} per item, unsure {unsure}"
        )
    ea = stats["error_analysis"]
    lines.append(f"error analysis: {ea['rejected']} of {ea['steps']} resolved steps rejected")
    lines.append("  by error type: " + ", ".join(f"{k} {v}" for k, v in ea["by_error_type"].items()))
    for title, key in (("clip kind", "by_clip_kind"), ("position", "by_position")):
        for g in ea[key]:
            lines.append(f"  {title} {g['group']}: rejected {_pct(g)}")
    for p in ea["perturbations"]:
        lo, hi = p["ci"] if p["ci"] else (math.nan, math.nan)
        value = "n/a" if p["auroc"] is None else f"{p['auroc']:.3f} [{lo:.3f}, {hi:.3f}]"
        lines.append(
            f"  AUROC of {p['score']} for {p['error_type']}: {value} ({p['positives']} rejected, {p['negatives']} accepted)"
        )
    for version, f in ea["models"]["versions"].items():
        lines.append(
            f"  model {version}: accuracy {_pct(f['accuracy'])}, reject rate {_pct(f['reject_rate'])}"
        )
    for c in ea["models"]["comparisons"]:
        b, m = c["base_figures"], c["model_figures"]
        lines.append(
            f"  {c['base']} vs {c['model']} on {c['clips']} shared clips: accuracy {_pct(b['accuracy'])} -> "
            f"{_pct(m['accuracy'])}; reject rate {_pct(b['reject_rate'])} -> {_pct(m['reject_rate'])}"
        )
    return lines
