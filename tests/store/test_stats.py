"""Agreement and calibration on hand-made cases, and the store's stats / queue / progress."""

from __future__ import annotations

import pytest

from annotation_db.stats import auroc, calibration, cohen_kappa, krippendorff_alpha


def test_cohen_kappa_by_hand():
    # 10 items: both accept 4, both reject 3, A accept / B reject 2, A reject / B accept 1.
    a = ["accept"] * 4 + ["reject"] * 3 + ["accept"] * 2 + ["reject"]
    b = ["accept"] * 4 + ["reject"] * 3 + ["reject"] * 2 + ["accept"]
    # p_o = 0.7; p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["accept"] * 3, ["accept"] * 3) is None  # no variation: undefined
    assert cohen_kappa([], []) is None


def test_krippendorff_alpha_by_hand():
    # Coincidences: o_aa = 2 + 1 = 3, o_rr = 2, o_ar = o_ra = 1 + 1 = 2; n_a = 5, n_r = 4, n = 9.
    # alpha = 1 - (n - 1) * (o_ar + o_ra) / (2 n_a n_r) = 1 - 8 * 4 / 40 = 0.2
    units = [["a", "a"], ["a", "r"], ["r", "r"], ["a", "a", "r"], ["a"]]
    assert krippendorff_alpha(units) == pytest.approx(0.2)
    assert krippendorff_alpha([["a", "a"], ["r", "r"]]) == pytest.approx(1.0)
    assert krippendorff_alpha([["a", "a"]]) is None


def test_krippendorff_alpha_matches_the_published_nominal_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four
    # observers, 12 units, nominal alpha = 0.743. Missing values left out.
    units = [
        [1, 1, 1],
        [2, 2, 3, 2],
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [2, 2, 2, 2],
        [1, 2, 3, 4],
        [4, 4, 4, 4],
        [1, 1, 2, 1],
        [2, 2, 2, 2],
        [5, 5, 5],
        [1, 1],
        [3],
    ]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)


def test_calibration_and_auroc_by_hand():
    # 20 steps, score = 1..20; the 5 highest and step 3 are rejected.
    scored = [(float(s), s > 15 or s == 3) for s in range(1, 21)]
    deciles = calibration(scored)
    assert [(d["decile"], d["steps"], d["min_score"], d["max_score"], d["rejects"]) for d in deciles] == [
        (1, 2, 1.0, 2.0, 0),
        (2, 2, 3.0, 4.0, 1),
        (3, 2, 5.0, 6.0, 0),
        (4, 2, 7.0, 8.0, 0),
        (5, 2, 9.0, 10.0, 0),
        (6, 2, 11.0, 12.0, 0),
        (7, 2, 13.0, 14.0, 0),
        (8, 2, 15.0, 16.0, 1),
        (9, 2, 17.0, 18.0, 2),
        (10, 2, 19.0, 20.0, 2),
    ]
    assert [d["reject_rate"] for d in deciles] == [0, 0.5, 0, 0, 0, 0, 0, 0.5, 1, 1]
    # Pairs (reject, accept) with the reject scoring higher: 5 top rejects beat all 14 accepts,
    # step 3 beats 2 accepts: (70 + 2) / (6 * 14).
    assert auroc(scored) == pytest.approx(72 / 84)
    assert auroc([(1.0, True), (1.0, False)]) == 0.5
    assert auroc([(1.0, True)]) is None
    assert [d["decile"] for d in calibration([(0.5, False), (0.1, True), (0.9, True)])] == [1, 4, 7]


def test_store_stats(store, make_trace):
    store.add_traces(
        [make_trace("t1", ["a", "b", "c", "d"], scores=[0.1, 0.4, 0.3, 0.9]), make_trace("t2", ["e"])]
    )
    verdicts = {
        "alice": ["accept", "reject", "accept", "reject"],
        "bob": ["accept", "reject", "reject", "reject"],
        "carol": ["accept", "unsure", None, None],
    }
    for name, row in verdicts.items():
        for k, verdict in enumerate(row):
            if verdict:
                error = "hallucination" if verdict == "reject" else None
                store.set_label(name, "t1", k, verdict, error_type=error, time_spent_s=2.0)
    store.set_label("alice", "t1", 3, "reject", error_type="other", time_spent_s=1.0)  # an update
    stats = store.stats()
    assert stats["labels"] == 10
    assert stats["verdicts"] == {"accept": 4, "reject": 5, "unsure": 1}
    assert stats["error_types"] == {
        "visual_misperception": 0,
        "audio_misperception": 0,
        "hallucination": 4,
        "reasoning_logic": 0,
        "other": 1,
    }
    assert stats["annotators"] == {
        "alice": {"labels": 4, "accept": 2, "reject": 2, "unsure": 0, "time_s": 9.0},
        "bob": {"labels": 4, "accept": 1, "reject": 3, "unsure": 0, "time_s": 8.0},
        "carol": {"labels": 2, "accept": 1, "reject": 0, "unsure": 1, "time_s": 4.0},
    }
    # alice/bob agree on 3 of 4: p_o = .75, p_e = (2*1 + 2*3) / 16 = .5 -> kappa .5
    # alice/carol, bob/carol: items 0 (accept, accept) and 1 (reject, unsure):
    # p_o = .5, p_e = .5 * .5 (accept only) = .25 -> kappa (.5 - .25) / .75 = 1/3
    assert stats["agreement"]["pairs"] == [
        {"annotators": ["alice", "bob"], "items": 4, "kappa": pytest.approx(0.5)},
        {"annotators": ["alice", "carol"], "items": 2, "kappa": pytest.approx(1 / 3)},
        {"annotators": ["bob", "carol"], "items": 2, "kappa": pytest.approx(1 / 3)},
    ]
    assert stats["agreement"]["items_multiply_labeled"] == 4
    assert stats["agreement"]["krippendorff_alpha"] == pytest.approx(
        krippendorff_alpha(
            [["accept"] * 3, ["reject", "reject", "unsure"], ["accept", "reject"], ["reject", "reject"]]
        )
    )
    # Majority verdicts: a accept (0.1), b reject (0.4), c tie (left out), d reject (0.9).
    calib = stats["calibration"]
    assert (calib["steps"], calib["auroc"]) == (3, 1.0)
    assert [(d["decile"], d["min_score"], d["reject_rate"]) for d in calib["deciles"]] == [
        (1, 0.1, 0.0),
        (4, 0.4, 1.0),
        (7, 0.9, 1.0),
    ]


def test_queue_orders_by_highest_step_score_with_progress(store, make_trace):
    store.add_traces(
        [
            make_trace("low", ["a", "b"], scores=[0.1, 0.2]),
            make_trace("unscored", ["c"]),
            make_trace("high", ["d", "e"], scores=[0.05, 0.8]),
        ]
    )
    store.set_label("alice", "high", 0, "accept", time_spent_s=3.0)
    store.set_label("alice", "low", 0, "accept")
    store.set_label("alice", "low", 1, "reject")
    store.set_label("bob", "high", 1, "reject")
    queue = store.queue("alice")
    assert [
        (q["trace_id"], q["max_score"], q["labeled_by_me"], q["n_steps"], q["n_annotators"]) for q in queue
    ] == [
        ("high", 0.8, 1, 2, 2),
        ("unscored", None, 0, 1, 0),
    ]
    assert [q["trace_id"] for q in store.queue("alice", unlabeled_only=False)] == ["high", "low", "unscored"]
    assert [q["trace_id"] for q in store.queue("alice", unlabeled_only=False, order="newest")] == [
        "high",
        "unscored",
        "low",
    ]
    assert [q["trace_id"] for q in store.queue("carol", order="fewest_annotators")] == [
        "unscored",
        "low",
        "high",
    ]
    assert [q["done_by_me"] for q in store.queue("alice", unlabeled_only=False, limit=2)] == [False, True]
    assert store.progress() == {
        "traces": 3,
        "steps": 5,
        "alternatives": 0,
        "labels": 4,
        "steps_labeled": 4,
        "annotators": {
            "alice": {"labels": 3, "steps_labeled": 3, "traces_done": 1, "time_s": 3.0},
            "bob": {"labels": 1, "steps_labeled": 1, "traces_done": 0, "time_s": 0.0},
        },
    }
    with pytest.raises(ValueError, match="order must be one of"):
        store.queue("alice", order="random")
