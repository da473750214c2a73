"""The label training sees: reviewer over aggregation, the majority rule's thresholds,
Dawid-Skene where annotators differ in skill, and the human-directed soft label."""

from __future__ import annotations

import math
import random

import pytest

from annotation_db.resolution import (
    ItemLabel,
    ItemReview,
    Resolution,
    ResolutionRule,
    dawid_skene,
    directed_soft_label,
    passes,
    record_fields,
    resolve,
    vote_fields,
)

T1 = "2025-01-01T00:00:00.000000+00:00"
T2 = "2025-01-02T00:00:00.000000+00:00"


def _labels(*votes: tuple[str, str, str | None]) -> list[ItemLabel]:
    return [ItemLabel(name, verdict, error_type, T1) for name, verdict, error_type in votes]


def test_majority_with_its_error_type_and_counts():
    labels = _labels(
        ("a", "reject", "hallucination"),
        ("b", "reject", "hallucination"),
        ("c", "accept", None),
        ("d", "unsure", None),
    )
    assert resolve(labels, None, ResolutionRule()) == Resolution(
        verdict="reject",
        error_type="hallucination",
        status="aggregated",
        decided_by="majority",
        adjudicated=False,
        reviewer=None,
        n_annotators=4,
        accept=1,
        reject=2,
        unsure=1,
        agreement=2 / 3,
        confidence=2 / 3,
        annotators=("a", "b", "c"),
        labeled_at=T1,
    )


@pytest.mark.parametrize(
    ("votes", "rule", "status", "verdict"),
    [
        ([("a", "accept", None)], ResolutionRule(min_labels=2), "too_few_labels", None),
        ([("a", "accept", None), ("b", "reject", "other")], ResolutionRule(), "tie", None),
        (
            [("a", "accept", None), ("b", "accept", None), ("c", "reject", None)],
            ResolutionRule(min_agreement=0.7),
            "low_agreement",
            None,
        ),
        (
            [("a", "accept", None), ("b", "accept", None), ("c", "reject", None)],
            ResolutionRule(min_agreement=0.6),
            "aggregated",
            "accept",
        ),
        ([("a", "unsure", None)], ResolutionRule(), "unlabeled", None),
    ],
)
def test_majority_thresholds(votes, rule, status, verdict):
    resolution = resolve(_labels(*votes), None, rule)
    assert (resolution.status, resolution.verdict) == (status, verdict)


def test_a_reviewer_decides_over_the_annotators_and_a_send_back_holds_the_item():
    labels = _labels(("a", "accept", None), ("b", "accept", None), ("c", "reject", "other"))
    decided = resolve(
        labels, ItemReview("decided", "reject", "visual_misperception", "rita", T2), ResolutionRule()
    )
    assert (decided.verdict, decided.error_type, decided.status, decided.decided_by, decided.adjudicated) == (
        "reject",
        "visual_misperception",
        "adjudicated",
        "reviewer",
        True,
    )
    assert (decided.agreement, decided.reviewer, decided.labeled_at) == (1 / 3, "rita", T2)
    held = resolve(labels, ItemReview("sent_back", None, None, "rita", T2), ResolutionRule())
    assert (held.verdict, held.status, held.adjudicated) == (None, "sent_back", False)


def test_error_type_is_the_plurality_of_the_rejecting_labels():
    tie = _labels(("a", "reject", "hallucination"), ("b", "reject", "other"))
    assert resolve(tie, None, ResolutionRule()).error_type is None


def _simulate(seed: int, n: int = 200):
    """Two careful annotators (95% right) and three careless ones (60%), all label every item;
    30% of the items are truly reject."""
    rng = random.Random(seed)
    truth, items = {}, {}
    for i in range(n):
        truth[i] = "reject" if rng.random() < 0.3 else "accept"
        flip = {"accept": "reject", "reject": "accept"}
        items[i] = {
            name: truth[i] if rng.random() < accuracy else flip[truth[i]]
            for name, accuracy in (("e1", 0.95), ("e2", 0.95), ("n1", 0.6), ("n2", 0.6), ("n3", 0.6))
        }
    return truth, items


def test_dawid_skene_beats_majority_when_skills_differ():
    truth, items = _simulate(seed=0)
    fit = dawid_skene(items)
    majority = {
        i: "reject" if sum(v == "reject" for v in votes.values()) >= 3 else "accept"
        for i, votes in items.items()
    }
    ds = {i: "reject" if p["reject"] > 0.5 else "accept" for i, p in fit.posteriors.items()}
    right = (sum(majority[i] == truth[i] for i in truth), sum(ds[i] == truth[i] for i in truth))
    assert right == (187, 197)
    # It learned who is careful: P(says reject | truly reject), from the data alone.
    assert fit.confusion["e1"]["reject"]["reject"] > 0.95 > 0.7 > fit.confusion["n2"]["reject"]["reject"]
    assert fit.priors["reject"] == pytest.approx(sum(t == "reject" for t in truth.values()) / 200, abs=0.03)
    assert fit.iterations < 500  # converged


def test_dawid_skene_rule_resolves_from_the_posterior():
    labels = _labels(("a", "accept", None), ("b", "reject", "other"))
    resolution = resolve(labels, None, ResolutionRule(method="dawid_skene"), posterior_reject=0.9)
    assert (resolution.verdict, resolution.decided_by, resolution.agreement) == ("reject", "dawid_skene", 0.5)
    assert resolution.confidence == pytest.approx(0.9)
    low = resolve(
        labels, None, ResolutionRule(method="dawid_skene", min_agreement=0.95), posterior_reject=0.9
    )
    assert (low.verdict, low.status) == (None, "low_agreement")


def test_rule_checks_its_settings():
    with pytest.raises(ValueError, match="method must be one of majority, dawid_skene"):
        ResolutionRule(method="vote")
    with pytest.raises(ValueError, match="min_labels"):
        ResolutionRule(min_labels=0)
    with pytest.raises(ValueError, match="min_agreement"):
        ResolutionRule(min_agreement=1.5)


def test_the_human_fixes_the_direction_and_rollouts_only_the_strength():
    sigma = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    agree = directed_soft_label(5 / 6, 3 / 6, 0.2)
    assert agree == (pytest.approx(sigma((2 / 6) / 0.2)), pytest.approx(sigma((2 / 6) / 0.2)), False)
    # A correction its author preferred while the rollouts favour the original: 0.5, not 0.30.
    conflict = directed_soft_label(0.5, 0.75, 0.2)
    assert conflict.value == 0.5 and conflict.conflict is True
    assert conflict.rollout_value == pytest.approx(sigma((0.5 - 0.75) / 0.2))
    assert directed_soft_label(None, 0.5, 0.2) == (1.0, None, False)
    assert directed_soft_label(0.5, 0.5, 0.2) == (0.5, 0.5, False)


def test_store_resolved_labels(store, make_trace):
    store.add_traces([make_trace("t1", ["a", "b"]), make_trace("t2", ["c"])])
    store.sync_roles([("rita", "reviewer")])
    store.set_label("bob", "t2", 0, "accept")
    store.set_label("alice", "t1", 1, "reject", error_type="other")
    store.set_label("bob", "t1", 1, "accept")
    alt = store.add_alternative("alice", "t1", 1, "better")
    store.set_label("alice", "t1", 1, "accept", alternative_id=alt["id"])
    store.adjudicate("rita", "t1", 1, "reject", error_type="hallucination")
    rows = store.resolved_labels()
    assert [
        (r["trace_id"], r["step_index"], r["alternative_id"], r["verdict"], r["status"]) for r in rows
    ] == [
        ("t1", 1, None, "reject", "adjudicated"),
        ("t1", 1, alt["id"], "accept", "aggregated"),
        ("t2", 0, None, "accept", "aggregated"),
    ]
    assert rows[0] | {"labeled_at": None} == {
        "trace_id": "t1",
        "step_index": 1,
        "alternative_id": None,
        "verdict": "reject",
        "error_type": "hallucination",
        "status": "adjudicated",
        "decided_by": "reviewer",
        "adjudicated": True,
        "reviewer": "rita",
        "n_annotators": 2,
        "accept": 1,
        "reject": 1,
        "unsure": 0,
        "agreement": 0.5,
        "confidence": 1.0,
        "annotators": ["alice", "bob"],
        "labeled_at": None,
    }
    only_bob = store.resolved_labels(ResolutionRule(min_labels=1), annotators=["bob"])
    assert [(r["step_index"], r["alternative_id"], r["verdict"]) for r in only_bob] == [
        (1, None, "reject"),  # the reviewer's decision still counts
        (0, None, "accept"),
    ]


def test_export_filters_and_record_fields():
    labels = _labels(("a", "accept", None), ("b", "accept", None), ("c", "reject", "other"))
    aggregated = resolve(labels, None, ResolutionRule())
    decided = resolve(labels, ItemReview("decided", "reject", None, "rita", T2), ResolutionRule())
    held = resolve(labels, ItemReview("sent_back", None, None, "rita", T2), ResolutionRule())
    assert [passes(r) for r in (aggregated, decided, held)] == [True, True, False]
    assert [passes(r, min_agreement=0.7) for r in (aggregated, decided)] == [False, True]
    assert [passes(r, min_annotators=4) for r in (aggregated, decided)] == [False, True]
    assert [passes(r, adjudicated=True) for r in (aggregated, decided)] == [False, True]
    assert [passes(r, adjudicated=False) for r in (aggregated, decided)] == [True, False]
    assert record_fields(aggregated) == {
        "label_source": "majority",
        "adjudicated": False,
        "n_annotators": 3,
        "agreement": 2 / 3,
        "confidence": 2 / 3,
    }
    assert record_fields(decided) == {
        "label_source": "reviewer",
        "adjudicated": True,
        "n_annotators": 3,
        "agreement": 1 / 3,
        "confidence": 1.0,
    }
    assert vote_fields(aggregated) == ("accept", 2 / 3, ("a", "b", "c"), T1)
    assert vote_fields(decided) == ("reject", 1.0, ("a", "b", "c"), T2)
    assert vote_fields(held) == (None, 0.0, ("a", "b", "c"), T2)


def test_rollout_conflicts_are_listed_for_the_page(store, make_trace):
    # Step 1: the original (rollouts 0.3) accepted, a model alternative (0.8) rejected: conflict.
    # Step 2: alice prefers her rewrite (0.2) over the original (0.5): conflict.
    # Step 0: accepted original (0.9) over a rejected alternative (0.1): agrees.
    store.add_trace(make_trace("t1", ["a", "b", "c"], correctness=[0.9, 0.3, 0.5]))
    alts = [store.add_alternative("alice", "t1", k, text) for k, text in ((0, "x"), (1, "y"), (2, "z"))]
    for alt, p in zip(alts, (0.1, 0.8, 0.2), strict=True):
        store.set_expected_correctness("t1", alt["step_index"], p, alternative_id=alt["id"])
    for k in (0, 1):
        store.set_label("alice", "t1", k, "accept")
        store.set_label("alice", "t1", k, "reject", alternative_id=alts[k]["id"], error_type="other")
    store.record_preference("alice", "t1", 2, alts[2]["id"], "alternative")
    conflicts = store.rollout_conflicts("t1")
    assert conflicts == [
        {
            "trace_id": "t1",
            "step_index": 1,
            "chosen": {"alternative_id": None, "expected_correctness": 0.3},
            "rejected": {"alternative_id": alts[1]["id"], "expected_correctness": 0.8},
            "source": "labels",
            "soft_label": 0.5,
            "rollout_soft_label": pytest.approx(1 / (1 + math.exp(0.5 / 0.2))),
        },
        {
            "trace_id": "t1",
            "step_index": 2,
            "chosen": {"alternative_id": alts[2]["id"], "expected_correctness": 0.2},
            "rejected": {"alternative_id": None, "expected_correctness": 0.5},
            "source": "preference",
            "soft_label": 0.5,
            "rollout_soft_label": pytest.approx(1 / (1 + math.exp(0.3 / 0.2))),
        },
    ]
    assert store.rollout_conflicts() == conflicts
