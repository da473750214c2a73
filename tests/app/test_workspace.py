"""The labeling workspace's rules without Gradio (``ui.workspace``): which trace a page may label,
input limits, position, next trace, progress and timings that add up."""

from __future__ import annotations

import re

import pytest

from ui import workspace
from ui.services import AppError
from ui.workspace import WrongTraceError


def test_a_page_labels_only_the_trace_it_shows():
    assert workspace.check_shown("t1", " t1 ") == "t1"
    with pytest.raises(WrongTraceError, match="this page shows trace t1, not t0: nothing was saved"):
        workspace.check_shown("t1", "t0")
    # an analysis runs or failed, or a new clip was chosen: the page shows no trace
    with pytest.raises(WrongTraceError, match="this page shows no trace now"):
        workspace.check_shown("", "t0")
    # a program (no page) names the trace itself
    assert workspace.check_shown(None, "t0") == "t0"
    with pytest.raises(AppError, match="no trace is open"):
        workspace.check_shown(None, "")
    assert workspace.shown_trace(None) is None
    assert workspace.shown_trace(workspace.new_desk("t9")) == "t9"


def test_question_options_and_reference_are_checked_with_one_line_each():
    assert workspace.check_question("reasoning", " Why? ", "A. left\nB) right", "b") == (
        "Why?",
        ("left", "right"),
        "B",
    )
    assert workspace.check_question("synthdec", "", "", "yes") == ("", (), "YES")
    assert workspace.check_question("reasoning", "Why?", "", "") == ("Why?", (), None)
    cases = [
        (("reasoning", "x" * 1001, "", ""), "the question has 1,001 characters; keep it under 1,000"),
        (("reasoning", "Q", "\n".join("o" * 11), ""), "11 options given; at most 10"),
        (("reasoning", "Q", "ok\n" + "o" * 301, ""), "option B is longer than 300 characters"),
        (("reasoning", "Q", "l\nr", "C"), "the reference answer is one option letter: A, B"),
        (("reasoning", "Q", "l\nr", "left"), "the reference answer is one option letter: A, B"),
        (("synthdec", "", "", "A"), "the SynthDec reference answer is YES or NO"),
        (("reasoning", "Q", "", "B"), "a reference answer needs options"),
    ]
    for args, message in cases:
        with pytest.raises(AppError, match=re.escape(message)):
            workspace.check_question(*args)
    with pytest.raises(AppError, match="the comment has 10,001 characters"):
        workspace.check_comment("c" * 10_001)
    with pytest.raises(AppError, match="the correction is empty"):
        workspace.check_correction("  ")
    with pytest.raises(AppError, match="the correction has 2,001 characters"):
        workspace.check_correction("c" * 2001)


def queue_item(trace_id: str, labeled: int, steps: int = 3) -> dict:
    return {"trace_id": trace_id, "labeled_by_me": labeled, "n_steps": steps}


def test_position_and_next_unlabeled_trace_follow_the_queue_order():
    items = [queue_item("a", 3), queue_item("b", 0), queue_item("c", 1), queue_item("d", 3)]
    assert workspace.queue_place(items, "c") == "trace 3 of 4 in your queue"
    assert workspace.queue_place(items, "zz") == "not in your queue (4 traces)"
    assert workspace.position_line(2, 9, "trace 4 of 120 in your queue") == (
        "step 3 of 9 \u00b7 trace 4 of 120 in your queue"
    )
    assert workspace.next_unlabeled(items, "b") == "c"
    assert workspace.next_unlabeled(items, "c") == "b"  # wraps round to the start
    assert workspace.next_unlabeled(items, None) == "b"
    assert workspace.next_unlabeled([queue_item("a", 3)], "a") is None


def test_a_note_is_saved_only_when_the_person_changed_it():
    desk = workspace.with_loaded(workspace.new_desk("t"), 2, ("", "first"))
    assert workspace.changed_note(desk, 2, "", "first") is None
    assert workspace.changed_note(desk, 2, "hallucination", "first") == ("hallucination", "first")
    assert workspace.changed_note(desk, 1, "other", "x") is None  # not the step the page loaded
    assert workspace.changed_note(None, 2, "other", "x") is None  # a program: no note to keep
    drafted = workspace.with_draft(desk, 3, ("other", "typed"))
    assert workspace.note_for(drafted, 3, None) == ("other", "typed")
    assert workspace.note_for(drafted, 3, {"error_type": None, "comment": "mine"}) == ("", "mine")
    assert workspace.with_draft(drafted, 3, None)["drafts"] == {}


def test_progress_moves_through_the_phases():
    fractions = [
        workspace.progress_fraction(phase, within)
        for phase, within in [("decode", 0), ("load", 0), ("encode", 0), ("generate", 0), ("generate", 0.5)]
        + [("answer", 0), ("score", 0), ("attention", 0), ("store", 0), ("store", 1)]
    ]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert len(set(fractions)) == len(fractions)
    assert workspace.progress_fraction("unknown") is None


def test_timings_add_up_to_the_total():
    clock = workspace.PhaseClock(100.0)
    for phase, at in [("decode", 100.0), ("load", 101.1), ("encode", 104.0), ("generate", 104.5)]:
        clock.enter(phase, at)
    clock.enter("display", 105.0)
    clock.enter("generate", 105.25)
    clock.enter("score", 106.0)
    clock.enter("store", 109.8)
    clock.stop(109.9)
    seconds = clock.seconds
    assert seconds["generate"] == pytest.approx(1.25)
    text = workspace.done_text(clock.total(113.6), seconds)
    assert text == (
        "Done in 13.6 s (decode 1.1, model wait 2.9, encode 0.5, generate 1.2, display 0.2, "
        "score 3.8, save 0.1, other 3.7)"
    )
    parts = [float(x) for x in re.findall(r" (\d+\.\d)(?=[,)])", text)]
    assert sum(parts) == pytest.approx(13.6, abs=0.05 * len(parts))


def test_sampled_alternatives_are_counted():
    assert workspace.sampled_message(3, [5, 5, 2], {2}, 0) == (
        "Sampled 3: 1 new alternative for step 1, 2 repeated one already shown"
    )
    assert workspace.sampled_message(3, [7, 8], set(), 1) == (
        "Sampled 3: 2 new alternatives for step 2, 1 came out empty"
    )
