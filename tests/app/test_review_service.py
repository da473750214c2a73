"""The Review tab's and the analysis charts' Gradio-free parts: who may review, moving along
the queue, the rollout-conflict badge, and every bar's step list counting what its bar says
(on the seeded synthetic history of tests/store/test_analysis.py)."""

from __future__ import annotations

import pytest

from annotation_db import PermissionDeniedError, Store
from tests.store.conftest import _make_trace
from tests.store.test_analysis import _history
from ui import analysis_figures as figures
from ui import review_service as rs


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "annotations.db") as s:
        yield s


def test_only_a_signed_in_reviewer_or_admin_may_review(store):
    store.set_role("rita", "reviewer")
    store.set_role("ada", "admin")
    assert rs.check_reviewer(store, "rita", True) == "rita"
    assert rs.check_reviewer(store, "ada", True) == "ada"
    with pytest.raises(PermissionDeniedError, match="^alice is an annotator; only reviewers and admins"):
        rs.check_reviewer(store, "alice", True)
    # Without a login a typed name proves nothing: a stored reviewer's name reviews nothing.
    for login in ("rita", None):
        with pytest.raises(PermissionDeniedError, match="without a login everyone is an annotator$"):
            rs.check_reviewer(store, login, False)
    assert rs.role_of(store, "rita", False) == "annotator"


def _item(trace_id, k, reasons=("verdict",)):
    return {"trace_id": trace_id, "step_index": k, "alternative_id": None, "reasons": list(reasons)}


def test_moving_along_the_queue():
    items = [_item("a", 0), _item("a", 3), _item("b", 1)]
    key = rs.ItemKey
    assert rs.neighbour(items, key("a", 3), 1) == key("b", 1)
    assert rs.neighbour(items, key("a", 3), -1) == key("a", 0)
    assert rs.neighbour(items, key("b", 1), 1) is None
    assert rs.neighbour(items, key("z", 0), 1) == key("a", 0)  # not on the queue: the first
    assert rs.neighbour([], None, 1) is None
    # after deciding a:3 (it left the pending queue) the next waiting one follows it, not the first
    pending = [items[0], items[2]]
    assert rs.after(items, pending, key("a", 3)) == key("b", 1)
    assert rs.after(items, [items[0]], key("a", 3)) == key("a", 0)  # nothing later: back to the start
    assert rs.after(items, [], key("a", 3)) is None


def test_item_shows_its_context_escaped():
    item = {
        "trace_id": "t",
        "step_index": 1,
        "alternative_id": None,
        "step_text": "<script>x</script>",
        "alternative_text": None,
        "labels": [
            {
                "annotator": "al",
                "verdict": "reject",
                "error_type": "other",
                "comment": "<i>",
                "time_spent_s": 4.0,
            }
        ],
        "review": None,
        "history": [],
        "resolution": {"verdict": "reject", "status": "aggregated"},
    }
    html = rs.item_html(item, {"question": "Q<", "options": [], "steps": [{"text": "first"}, {"text": "x"}]})
    assert "&lt;script&gt;" in html and "<script>" not in html and "Q&lt;" in html
    assert "Step 1 (previous):</b> first" in html and "&lt;i&gt;" in html


def test_a_step_whose_rollouts_disagree_gets_a_badge(store):
    store.add_trace(_make_trace("t1", ["a", "b"], correctness=[0.9, 0.3]))
    alt = store.add_alternative("alice", "t1", 1, "y")
    store.set_expected_correctness("t1", 1, 0.8, alternative_id=alt["id"])
    store.set_label("alice", "t1", 1, "accept")
    store.set_label("alice", "t1", 1, "reject", alternative_id=alt["id"], error_type="other")
    conflicts = store.rollout_conflicts("t1")
    assert rs.conflict_badge(conflicts, 0) == ""
    assert "people chose the original (rollouts 0.30 vs 0.80)" in rs.conflict_badge(conflicts, 1)


def test_every_bar_lists_the_steps_it_counts(store):
    _history(store, _make_trace)
    analysis = store.stats()["error_analysis"]
    steps = store.analysis_steps()
    assert len(steps) == analysis["steps"]
    for t, count in analysis["by_error_type"].items():
        assert len(figures.bar_steps(steps, f"error_type|{t}")) == count
    for chart, key in (("clip_kind", "by_clip_kind"), ("position", "by_position")):
        for group in analysis[key]:
            listed = figures.bar_steps(steps, f"{chart}|{group['group']}")
            assert (sum(s["verdict"] == "reject" for s in listed), len(listed)) == (group["k"], group["n"])
    for version, fig in analysis["models"]["versions"].items():
        listed = figures.bar_steps(steps, f"model|{version}")
        assert sum(s["verdict"] == "reject" for s in listed) == fig["reject_rate"]["k"]
    for entry in analysis["perturbations"]:
        listed = figures.bar_steps(steps, f"perturbation|{entry['score']}:{entry['error_type']}")
        assert len(listed) == entry["positives"]
        values = [s["scores"][entry["score"]] for s in listed]
        assert values == sorted(values, reverse=True)
    rows = figures.bar_rows(steps, "perturbation|mute:audio_misperception")
    assert rows[0][:4] == [rows[0][0], rows[0][1], "reject", "audio misperception"] and rows[0][7] >= 1.0
    with pytest.raises(ValueError, match="unknown chart"):
        figures.bar_steps(steps, "pie|x")


def test_trace_flags_list_conflicts_and_notes_in_step_order():
    conflict = {
        "step_index": 2,
        "chosen": {"alternative_id": 7, "expected_correctness": 0.2},
        "rejected": {"alternative_id": None, "expected_correctness": 0.5},
        "soft_label": 0.5,
    }
    notes = [
        {"step_index": 2, "alternative_id": None, "note": "a & b", "reviewer": "rita"},
        {"step_index": 0, "alternative_id": 3, "note": "why?", "reviewer": "ada"},
    ]
    html = rs.trace_flags_html([conflict], notes)
    assert html.index('data-step="0"') < html.index('data-step="2"')
    assert "sent back (alternative 3) by ada: why?" in html
    assert "people chose alternative 7 (rollouts 0.20 vs 0.50)" in html and "rita: a &amp; b" in html
    assert rs.trace_flags_html([], []) == ""
