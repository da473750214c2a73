"""Labels: set, update with history, undo, ownership, blind mode, alternatives, preferences."""

from __future__ import annotations

import pytest

from annotation_db import (
    InvalidAlternativeError,
    InvalidAnnotatorError,
    InvalidLabelError,
    LabelOwnershipError,
    NothingToUndoError,
    UnknownAlternativeError,
    UnknownLabelError,
    UnknownStepError,
    UnknownTraceError,
)

T0 = "2025-01-01T00:00:00.000000+00:00"
T1 = "2025-01-01T00:01:00.000000+00:00"
T2 = "2025-01-01T00:02:00.000000+00:00"


@pytest.fixture
def traced(store, make_trace):
    store.add_trace(
        make_trace(
            "t1",
            ["The man runs.", "He is cooking.", "The answer is A."],
            alternatives=[{"step_index": 1, "text": "He keeps running."}],
        )
    )
    store.add_trace(make_trace("t2", ["Other."]))
    return store


def _label(
    label_id,
    step,
    verdict,
    *,
    annotator="alice",
    error_type=None,
    comment="",
    time_s=0.0,
    created=T0,
    updated=T0,
    kind="step",
    alternative_id=None,
    trace="t1",
):
    return {
        "id": label_id,
        "trace_id": trace,
        "step_index": step,
        "item_kind": kind,
        "alternative_id": alternative_id,
        "annotator": annotator,
        "verdict": verdict,
        "error_type": error_type,
        "comment": comment,
        "time_spent_s": time_s,
        "created_at": created,
        "updated_at": updated,
    }


def test_set_then_update_keeps_one_label_and_the_whole_history(traced, clock):
    first = traced.set_label(
        "alice", "t1", 1, "reject", error_type="visual_misperception", comment="no pan", time_spent_s=4.0
    )
    assert first == _label(1, 1, "reject", error_type="visual_misperception", comment="no pan", time_s=4.0)
    clock.set(T1)
    second = traced.set_label("alice", "t1", 1, "unsure", error_type="Reasoning/logic", time_spent_s=2.5)
    assert second == _label(1, 1, "unsure", error_type="reasoning_logic", time_s=6.5, updated=T1)
    assert traced.labels_for_trace("t1") == [second]
    assert traced.label_history("alice", "t1", 1) == [
        {
            "id": 1,
            "action": "set",
            "verdict": "reject",
            "error_type": "visual_misperception",
            "comment": "no pan",
            "time_spent_s": 4.0,
            "prev_event_id": None,
            "at": T0,
        },
        {
            "id": 2,
            "action": "set",
            "verdict": "unsure",
            "error_type": "reasoning_logic",
            "comment": "",
            "time_spent_s": 2.5,
            "prev_event_id": 1,
            "at": T1,
        },
    ]


def test_undo_walks_back_through_every_earlier_state(traced, clock):
    traced.set_label("alice", "t1", 0, "accept")
    clock.set(T1)
    traced.set_label("alice", "t1", 0, "reject", error_type="hallucination")
    clock.set(T2)
    traced.set_label("alice", "t1", 0, "unsure", comment="hmm")
    assert traced.undo_label("alice", "t1", 0) == _label(
        1, 0, "reject", error_type="hallucination", updated=T2
    )
    assert traced.undo_label("alice", "t1", 0) == _label(1, 0, "accept", updated=T2)
    assert traced.undo_label("alice", "t1", 0) is None  # back to unlabeled
    assert traced.labels_for_trace("t1") == []
    with pytest.raises(NothingToUndoError, match="no earlier label"):
        traced.undo_label("alice", "t1", 0)
    # A new label after undos stacks on the state it replaced.
    traced.set_label("alice", "t1", 0, "accept", comment="sure now")
    assert traced.undo_label("alice", "t1", 0) is None
    actions = [e["action"] for e in traced.label_history("alice", "t1", 0)]
    assert actions == ["set", "set", "set", "undo", "undo", "undo", "set", "undo"]


def test_undo_after_set_following_an_undo(traced):
    traced.set_label("alice", "t1", 0, "accept")
    traced.set_label("alice", "t1", 0, "reject")
    traced.undo_label("alice", "t1", 0)  # accept
    traced.set_label("alice", "t1", 0, "unsure")
    assert traced.undo_label("alice", "t1", 0)["verdict"] == "accept"
    assert traced.undo_label("alice", "t1", 0) is None


def test_clear_is_undoable(traced):
    traced.set_label("alice", "t1", 2, "reject", comment="wrong letter")
    traced.clear_label("alice", "t1", 2)
    assert traced.labels_for_trace("t1", "alice") == []
    restored = traced.undo_label("alice", "t1", 2)
    assert (restored["verdict"], restored["comment"]) == ("reject", "wrong letter")
    traced.clear_label("alice", "t1", 2)
    with pytest.raises(UnknownLabelError, match="no label on this item to clear"):
        traced.clear_label("alice", "t1", 2)


def test_nobody_changes_another_annotators_label(traced):
    alice = traced.set_label("alice", "t1", 0, "accept", comment="mine")
    bob = traced.set_label("bob", "t1", 0, "reject", error_type="other")
    # The same item by bob is bob's own label; alice's is untouched.
    assert traced.label(alice["id"]) == alice
    with pytest.raises(
        LabelOwnershipError, match=f"label {alice['id']} belongs to alice; bob can only change"
    ):
        traced.edit_label("bob", alice["id"], verdict="reject")
    with pytest.raises(LabelOwnershipError):
        traced.undo_label_by_id("bob", alice["id"])
    # bob's undo only ever touches bob's label.
    assert traced.undo_label("bob", "t1", 0) is None
    assert traced.labels_for_trace("t1") == [alice]
    with pytest.raises(NothingToUndoError):
        traced.undo_label("carol", "t1", 0)
    # The owner may edit and undo by id.
    edited = traced.edit_label("alice", alice["id"], verdict="reject", error_type="hallucination")
    assert (edited["verdict"], edited["error_type"], edited["comment"]) == ("reject", "hallucination", "mine")
    assert traced.edit_label("alice", alice["id"], verdict="accept")["error_type"] is None
    assert traced.undo_label_by_id("alice", alice["id"])["verdict"] == "reject"
    assert bob["annotator"] == "bob"


def test_blind_mode_shows_peers_only_where_you_labeled(traced):
    traced.set_label("bob", "t1", 0, "reject", error_type="other")
    traced.set_label("bob", "t1", 1, "accept")
    traced.set_label("carol", "t1", 1, "reject")
    assert traced.peer_labels("alice", "t1") == []
    traced.set_label("alice", "t1", 1, "accept")
    assert [
        (lab["step_index"], lab["annotator"], lab["verdict"]) for lab in traced.peer_labels("alice", "t1")
    ] == [
        (1, "bob", "accept"),
        (1, "carol", "reject"),
    ]


def test_labels_on_alternatives_are_separate_items(traced):
    alt = traced.get_trace("t1").alternative_ids[0]
    traced.set_label("alice", "t1", 1, "reject", error_type="visual_misperception")
    on_alt = traced.set_label("alice", "t1", 1, "accept", alternative_id=alt, time_spent_s=1.0)
    assert on_alt == _label(2, 1, "accept", kind="alternative", alternative_id=alt, time_s=1.0)
    assert [lab["verdict"] for lab in traced.labels_for_trace("t1", "alice")] == ["reject", "accept"]
    assert traced.undo_label("alice", "t1", 1, alternative_id=alt) is None
    assert [lab["verdict"] for lab in traced.labels_for_trace("t1", "alice")] == ["reject"]


def test_add_alternative_and_record_preference(traced, clock):
    alt = traced.add_alternative("alice", "t1", 1, "  He jogs on.  ")
    assert alt == {
        "id": 2,
        "trace_id": "t1",
        "step_index": 1,
        "text": "He jogs on.",
        "source": "human",
        "created_by": "alice",
    }
    assert traced.add_alternative("bob", "t1", 1, "He jogs on.")["id"] == 2  # same text, same alternative
    assert traced.record_preference("alice", "t1", 1, 2) == {
        "trace_id": "t1",
        "step_index": 1,
        "alternative_id": 2,
        "annotator": "alice",
        "chosen": "alternative",
    }
    clock.set(T1)
    traced.record_preference("alice", "t1", 1, 2, "original")
    traced.record_preference("bob", "t1", 1, 2, "alternative")
    assert traced.preferences_for_trace("t1") == [
        {
            "trace_id": "t1",
            "step_index": 1,
            "alternative_id": 2,
            "annotator": "alice",
            "chosen": "original",
            "updated_at": T1,
        },
        {
            "trace_id": "t1",
            "step_index": 1,
            "alternative_id": 2,
            "annotator": "bob",
            "chosen": "alternative",
            "updated_at": T1,
        },
    ]
    traced.record_preference("bob", "t1", 1, 2, None)
    assert [p["annotator"] for p in traced.preferences_for_trace("t1")] == ["alice"]
    events = traced.db.execute("SELECT annotator, chosen FROM preference_events ORDER BY id").fetchall()
    assert events == [("alice", "alternative"), ("alice", "original"), ("bob", "alternative"), ("bob", None)]
    with pytest.raises(UnknownAlternativeError):
        traced.record_preference("alice", "t1", 0, 2)  # alternative 2 is at step 1
    with pytest.raises(InvalidAlternativeError):
        traced.add_alternative("alice", "t1", 1, "   ")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"verdict": "maybe"},
            InvalidLabelError,
            "verdict must be one of accept, reject, unsure, not 'maybe'",
        ),
        ({"verdict": "reject", "error_type": "typo"}, InvalidLabelError, "error type must be one of"),
        (
            {"verdict": "accept", "error_type": "hallucination"},
            InvalidLabelError,
            "accepted step has no error type",
        ),
        (
            {"verdict": "accept", "time_spent_s": -1},
            InvalidLabelError,
            "time spent must be a number of seconds",
        ),
        ({"verdict": "accept", "time_spent_s": float("nan")}, InvalidLabelError, "time spent"),
        ({"verdict": "accept", "comment": "x" * 10_001}, InvalidLabelError, "at most 10000 characters"),
        ({"verdict": "accept", "annotator": "  "}, InvalidAnnotatorError, "annotator name is required"),
        (
            {"verdict": "accept", "step_index": 3},
            UnknownStepError,
            "trace 't1' has no step 3; its steps are 0 to 2",
        ),
        ({"verdict": "accept", "trace_id": "nope"}, UnknownTraceError, "no trace 'nope' is stored"),
        ({"verdict": "accept", "alternative_id": 99}, UnknownAlternativeError, "no alternative 99 at step 0"),
    ],
)
def test_bad_labels_are_refused_with_a_reason(traced, kwargs, error, message):
    args = {"annotator": "alice", "trace_id": "t1", "step_index": 0} | kwargs
    with pytest.raises(error, match=message):
        traced.set_label(
            args.pop("annotator"), args.pop("trace_id"), args.pop("step_index"), args.pop("verdict"), **args
        )
    assert traced.db["labels"].count == 0
    assert traced.db["label_events"].count == 0


def test_set_labels_is_all_or_nothing(traced):
    items = [{"trace_id": "t1", "step_index": i, "verdict": "accept"} for i in range(3)]
    items.append({"trace_id": "t1", "step_index": 7, "verdict": "accept"})
    with pytest.raises(UnknownStepError):
        traced.set_labels("alice", items)
    assert traced.db["labels"].count == 0
    assert [lab["step_index"] for lab in traced.set_labels("alice", items[:3])] == [0, 1, 2]


def test_annotator_names_are_trimmed(traced):
    assert traced.set_label(" alice ", "t1", 0, "accept")["annotator"] == "alice"
    assert traced.labels_for_trace("t1", "alice")[0]["annotator"] == "alice"


def test_expected_correctness_from_rollouts_is_kept(traced):
    """Rollouts' p(correct) on a step and on an alternative: stored, replaced by a later
    estimate, checked (the export's soft labels read it: tests/store/test_export.py)."""
    from annotation_db.errors import InvalidLabelError, UnknownAlternativeError

    store, trace_id = traced, "t1"
    alt = store.add_alternative("ann", trace_id, 1, "A better step.", source="model")
    store.set_expected_correctness(trace_id, 1, 0.25)
    store.set_expected_correctness(trace_id, 1, 0.5)
    store.set_expected_correctness(trace_id, 1, 1.0, alternative_id=alt["id"])
    stored = store.get_trace(trace_id)
    assert stored.trace.steps[1].expected_correctness == 0.5
    j = stored.alternative_ids.index(alt["id"])
    assert stored.trace.alternatives[j].expected_correctness == 1.0
    with pytest.raises(InvalidLabelError, match="between 0 and 1"):
        store.set_expected_correctness(trace_id, 1, 1.5)
    with pytest.raises(UnknownAlternativeError):
        store.set_expected_correctness(trace_id, 0, 0.5, alternative_id=alt["id"])  # not at step 0
