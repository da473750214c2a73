"""The review queue, reviewers' decisions and send-backs, their history and undo."""

from __future__ import annotations

import sqlite3

import pytest

from annotation_db.errors import (
    InvalidReviewError,
    NothingToUndoError,
    PermissionDeniedError,
    UnknownStepError,
)
from annotation_db.review import sampled

T1 = "2025-01-01T00:00:00.000000+00:00"
T2 = "2025-01-02T00:00:00.000000+00:00"
T3 = "2025-01-03T00:00:00.000000+00:00"


@pytest.fixture
def team(store, make_trace):
    """Trace t1 with four steps labeled by alice and bob; rita and ravi review, ada is admin.
    Step 0: both accept. Step 1: accept / reject. Step 2: both reject, different error types.
    Step 3: alice unsure, bob accept."""
    store.add_trace(make_trace("t1", ["a", "b", "c", "d"]))
    store.sync_roles(
        [("alice", "annotator"), ("bob", "annotator"), ("rita", "reviewer"), ("ravi", "reviewer")]
    )
    store.sync_roles([("ada", "admin")])
    store.set_label("alice", "t1", 0, "accept", time_spent_s=3.0)
    store.set_label("bob", "t1", 0, "accept")
    store.set_label("alice", "t1", 1, "accept", comment="looks right")
    store.set_label("bob", "t1", 1, "reject", error_type="visual_misperception", comment="no dog")
    store.set_label("alice", "t1", 2, "reject", error_type="hallucination")
    store.set_label("bob", "t1", 2, "reject", error_type="reasoning_logic")
    store.set_label("alice", "t1", 3, "unsure")
    store.set_label("bob", "t1", 3, "accept")
    return store


def _queue(store, **kwargs):
    items = store.review_queue("rita", **kwargs)
    if not kwargs:  # the statistics' count agrees with the queue
        assert store.stats()["review"]["to_review"] == len(items)
    return [(q["step_index"], q["reasons"]) for q in items]


def test_queue_lists_disagreements_with_every_label_side_by_side(team):
    assert _queue(team) == [(1, ["verdict"]), (2, ["error_type"]), (3, ["verdict"])]
    first = team.review_queue("rita")[0]
    assert first["labels"] == [
        {
            "annotator": "alice",
            "verdict": "accept",
            "error_type": None,
            "comment": "looks right",
            "time_spent_s": 0.0,
            "updated_at": T1,
        },
        {
            "annotator": "bob",
            "verdict": "reject",
            "error_type": "visual_misperception",
            "comment": "no dog",
            "time_spent_s": 0.0,
            "updated_at": T1,
        },
    ]
    assert (first["trace_id"], first["alternative_id"], first["item_kind"], first["review"]) == (
        "t1",
        None,
        "step",
        None,
    )
    assert first["resolution"]["status"] == "tie"
    assert _queue(team, limit=1) == [(1, ["verdict"])]


def test_an_item_nobody_could_decide_is_reviewed(team):
    team.set_label("alice", "t1", 0, "unsure")
    team.set_label("bob", "t1", 0, "unsure")
    assert _queue(team)[0] == (0, ["unsure"])


def test_sampling_is_deterministic_and_adds_agreed_items(team):
    step0 = team.db.execute("SELECT id FROM steps WHERE trace_id = 't1' AND idx = 0").fetchone()[0]
    seed = next(s for s in range(100) if sampled(s, step0, None, 0.5))
    assert _queue(team, sample_rate=0.5, seed=seed)[0] == (0, ["sampled"])
    assert _queue(team, sample_rate=1.0) == [
        (0, ["sampled"]),
        (1, ["verdict"]),
        (2, ["error_type"]),
        (3, ["verdict"]),
    ]
    with pytest.raises(InvalidReviewError, match="sample_rate is a fraction"):
        team.review_queue("rita", sample_rate=2)


def test_decide_undo_and_history(team, clock):
    clock.set(T2)
    view = team.adjudicate(
        "rita", "t1", 1, "reject", error_type="visual_misperception", note="the frame is empty"
    )
    assert view["review"] == {
        "status": "decided",
        "verdict": "reject",
        "error_type": "visual_misperception",
        "note": "the frame is empty",
        "reviewer": "rita",
        "updated_at": T2,
    }
    resolution = view["resolution"]
    assert (
        resolution["verdict"],
        resolution["decided_by"],
        resolution["adjudicated"],
        resolution["agreement"],
    ) == (
        "reject",
        "reviewer",
        True,
        0.5,
    )
    assert _queue(team) == [(2, ["error_type"]), (3, ["verdict"])]  # decided: off the queue
    assert [s for s, _ in _queue(team, include_reviewed=True)] == [1, 2, 3]

    clock.set(T3)
    team.adjudicate("rita", "t1", 1, "accept")  # she changes her mind
    # Another reviewer may not take back rita's decision (but may decide anew).
    with pytest.raises(PermissionDeniedError, match="the last review change of this item is rita's"):
        team.undo_review("ravi", "t1", 1)
    view = team.undo_review("rita", "t1", 1)
    assert (view["review"]["verdict"], view["review"]["reviewer"]) == ("reject", "rita")
    view = team.undo_review("rita", "t1", 1)
    assert view["review"] is None and view["resolution"]["status"] == "tie"
    with pytest.raises(NothingToUndoError):
        team.undo_review("rita", "t1", 1)
    assert [
        (e["action"], e["status"], e["verdict"], e["reviewer"], e["decided_by"]) for e in view["history"]
    ] == [
        ("decide", "decided", "reject", "rita", "rita"),
        ("decide", "decided", "accept", "rita", "rita"),
        ("undo", "decided", "reject", "rita", "rita"),
        ("undo", None, None, "rita", "rita"),
    ]
    with pytest.raises(sqlite3.IntegrityError, match="review history is append-only"):
        team.db.execute("UPDATE review_events SET verdict = 'accept'")


def test_undo_restores_another_reviewers_decision_only_for_them_or_an_admin(team):
    team.adjudicate("rita", "t1", 1, "reject")
    team.adjudicate("ravi", "t1", 1, "accept")  # ravi overrides; the history keeps both
    view = team.undo_review("ravi", "t1", 1)
    assert view["review"]["reviewer"] == "rita"
    with pytest.raises(PermissionDeniedError):
        team.undo_review("ravi", "t1", 1)  # that decision is rita's
    view = team.undo_review("ada", "t1", 1)  # an admin may
    assert view["review"] is None


def test_send_back_shows_the_note_and_returns_when_relabeled(team, clock):
    clock.set(T2)
    view = team.send_back("rita", "t1", 1, "  Is there a dog at 0:03? ")
    assert view["review"]["status"] == "sent_back" and view["review"]["note"] == "Is there a dog at 0:03?"
    assert view["resolution"]["verdict"] is None and view["resolution"]["status"] == "sent_back"
    assert team.sent_back_notes("t1") == [
        {
            "step_index": 1,
            "alternative_id": None,
            "note": "Is there a dog at 0:03?",
            "reviewer": "rita",
            "updated_at": T2,
        }
    ]
    assert 1 not in [s for s, _ in _queue(team)]
    clock.set(T3)
    team.set_label("bob", "t1", 1, "accept")  # bob looked again
    assert _queue(team)[0] == (1, ["returned"])
    with pytest.raises(InvalidReviewError, match="needs a note"):
        team.send_back("rita", "t1", 2, "  ")


def test_clear_and_bad_decisions(team):
    with pytest.raises(InvalidReviewError, match="no review to clear"):
        team.clear_review("rita", "t1", 1)
    team.adjudicate("rita", "t1", 1, "reject")
    assert team.clear_review("rita", "t1", 1)["review"] is None
    assert team.undo_review("rita", "t1", 1)["review"]["verdict"] == "reject"
    with pytest.raises(InvalidReviewError, match="a final verdict is accept or reject"):
        team.adjudicate("rita", "t1", 1, "unsure")
    with pytest.raises(InvalidReviewError, match="an accepted step has no error type"):
        team.adjudicate("rita", "t1", 1, "accept", error_type="other")
    with pytest.raises(InvalidReviewError, match="error type must be one of"):
        team.adjudicate("rita", "t1", 1, "reject", error_type="typo")
    with pytest.raises(UnknownStepError):
        team.adjudicate("rita", "t1", 9, "reject")


def test_alternatives_are_reviewed_as_their_own_items(team):
    alt = team.add_alternative("alice", "t1", 1, "The bowl is empty.")
    team.set_label("alice", "t1", 1, "accept", alternative_id=alt["id"])
    team.set_label("bob", "t1", 1, "reject", alternative_id=alt["id"], error_type="other")
    assert [(q["step_index"], q["alternative_id"]) for q in team.review_queue("rita")][:2] == [
        (1, None),
        (1, alt["id"]),
    ]
    view = team.adjudicate("rita", "t1", 1, "accept", alternative_id=alt["id"])
    assert (view["item_kind"], view["alternative_text"], view["review"]["verdict"]) == (
        "alternative",
        "The bowl is empty.",
        "accept",
    )
    assert team.review_item("rita", "t1", 1)["review"] is None  # the original step is untouched
