"""Error analysis and annotator quality on a seeded synthetic labeling history whose answers
are known by construction, plus the interval formulas on hand-computed cases.

The history: 20 clips (10 "standup", 10 "lecture", tagged), each answered by the base model and
by the adapter "pdpo-v1"; one more clip only the adapter answered (kind from its clip JSON).
Traces have 8 steps (the extra one 10). Base traces carry one visual misperception in their
first half and one audio misperception in their second half; adapter traces an audio one on
even clips only. Scores per step: an accepted step draws noise, mute and shuffle from the same
ten values 0.1 .. 1.0 (cycled, so each value equally often); an audio error draws mute from
those values + 0.45, a visual error noise (and the contrastive ``score``) likewise; every other
score from the plain values. So mute separates the audio errors with AUROC 0.85 (85 of the 100
value pairs) and the visual ones with exactly 0.5; noise the reverse; shuffle nothing.
"""

from __future__ import annotations

import random

import pytest

from annotation_db.analysis import hanley_mcneil, position_bucket, wilson

VALUES = [(k + 1) / 10 for k in range(10)]
SEED = 7


def _clip(i: int) -> str:
    return f"{i:064x}"


def _history(store, make_trace):
    """Build the history; returns (truth: {(trace_id, idx): (verdict, error_type)}, carol's flips)."""
    rng = random.Random(SEED)
    cycles = {"accept": 0, "visual_misperception": 0, "audio_misperception": 0}
    traces, truth = [], {}

    def next_value(group: str) -> float:
        value = VALUES[cycles[group] % 10]
        cycles[group] += 1
        return value

    def make(trace_id, clip, adapter, n_steps, errors, correct, clip_kind=None):
        trace = make_trace(trace_id, [f"{trace_id} step {i}" for i in range(n_steps)], clip_sha=_clip(clip))
        trace["model"]["adapter"] = adapter
        trace["reference_answer"] = "A"
        trace["answer"] = {"text": "...", "choice": "A" if correct else "C"}
        if clip_kind:
            trace["clip"]["kind"] = clip_kind
        for step in trace["steps"]:
            kind = errors.get(step["index"], "accept")
            base = next_value(kind)
            noise = base + 0.45 if kind == "visual_misperception" else base
            mute = base + 0.45 if kind == "audio_misperception" else base
            step["scores"] = {"noise": noise, "mute": mute, "shuffle": base}
            step["score"] = noise
            truth[trace_id, step["index"]] = ("accept", None) if kind == "accept" else ("reject", kind)
        traces.append(trace)

    for c in range(20):
        make(
            f"base-{c}",
            c,
            None,
            8,
            {rng.randrange(4): "visual_misperception", 4 + rng.randrange(4): "audio_misperception"},
            correct=c % 2 == 0,
        )
        make(
            f"pdpo-{c}",
            c,
            "pdpo-v1",
            8,
            {4 + rng.randrange(4): "audio_misperception"} if c % 2 == 0 else {},
            correct=c % 5 != 0,
        )
    make("pdpo-extra", 20, "pdpo-v1", 10, {}, correct=True, clip_kind="synthetic")
    store.add_traces(traces)
    for c in range(20):
        store.set_clip_kind(_clip(c), "standup" if c < 10 else "lecture")

    flips = set()
    labels = {"alice": [], "bob": [], "carol": []}
    for n, ((trace_id, idx), (verdict, error_type)) in enumerate(sorted(truth.items())):
        item = {"trace_id": trace_id, "step_index": idx, "verdict": verdict, "error_type": error_type}
        labels["alice"].append(item | {"time_spent_s": 2.0})
        labels["bob"].append(item | {"time_spent_s": 3.0 if n % 2 else 5.0})
        if rng.random() < 0.1:
            flips.add((trace_id, idx))
            flipped = "reject" if verdict == "accept" else "accept"
            item = item | {"verdict": flipped, "error_type": "other" if flipped == "reject" else None}
        labels["carol"].append(item)
    for name, items in labels.items():
        store.set_labels(name, items)
    store.set_labels(
        "dave",
        [
            {"trace_id": "pdpo-extra", "step_index": i, "verdict": "unsure" if i % 2 else "accept"}
            for i in range(10)
        ],
    )
    store.sync_roles([("rita", "reviewer")])
    store.adjudicate("rita", "pdpo-extra", 0, "accept")
    return truth, flips


@pytest.fixture
def history(store, make_trace):
    truth, flips = _history(store, make_trace)
    return store, truth, flips


def test_rejected_steps_by_error_type_clip_kind_and_position(history):
    store, truth, _ = history
    analysis = store.stats()["error_analysis"]
    assert (analysis["steps"], analysis["rejected"]) == (len(truth), 50)
    assert analysis["by_error_type"] == {
        "visual_misperception": 20,
        "audio_misperception": 30,
        "hallucination": 0,
        "reasoning_logic": 0,
        "other": 0,
        "unspecified": 0,
    }
    kinds = {g["group"]: (g["k"], g["n"], g["error_types"]) for g in analysis["by_clip_kind"]}
    per_kind = {"visual_misperception": 10, "audio_misperception": 15}
    assert kinds == {"lecture": (25, 160, per_kind), "standup": (25, 160, per_kind), "synthetic": (0, 10, {})}
    # Visual errors sit in the first half of each trace, audio ones in the second.
    positions = {g["group"]: (g["k"], g["error_types"]) for g in analysis["by_position"]}
    assert list(positions) == ["0-25%", "25-50%", "50-75%", "75-100%"]
    assert sum(positions[b][0] for b in ("0-25%", "25-50%")) == 20
    assert sum(positions[b][0] for b in ("50-75%", "75-100%")) == 30
    assert all(set(positions[b][1]) == {"visual_misperception"} for b in ("0-25%", "25-50%"))
    assert all(set(positions[b][1]) == {"audio_misperception"} for b in ("50-75%", "75-100%"))
    lo, hi = analysis["by_clip_kind"][0]["ci"]
    assert lo < 25 / 160 < hi


def test_which_perturbation_finds_which_error(history):
    store, _, _ = history
    entries = {(e["score"], e["error_type"]): e for e in store.stats()["error_analysis"]["perturbations"]}
    expected = {
        ("mute", "audio_misperception"): 0.85,
        ("mute", "visual_misperception"): 0.5,
        ("mute", "any"): (30 * 0.85 + 20 * 0.5) / 50,
        ("noise", "audio_misperception"): 0.5,
        ("noise", "visual_misperception"): 0.85,
        ("noise", "any"): (30 * 0.5 + 20 * 0.85) / 50,
        ("shuffle", "audio_misperception"): 0.5,
        ("shuffle", "visual_misperception"): 0.5,
        ("shuffle", "any"): 0.5,
    }
    expected |= {("score", t): v for (name, t), v in expected.items() if name == "noise"}
    assert {k: pytest.approx(e["auroc"], abs=1e-12) for k, e in entries.items()} == expected
    mute_audio, noise_audio = entries["mute", "audio_misperception"], entries["noise", "audio_misperception"]
    assert (mute_audio["positives"], mute_audio["negatives"]) == (30, 280)
    # Muting finds the audio misperceptions beyond chance; noise does not.
    assert mute_audio["ci"][0] > 0.5
    assert noise_audio["ci"][0] < 0.5 < noise_audio["ci"][1]
    assert mute_audio["ci"] == pytest.approx(list(hanley_mcneil(0.85, 30, 280)))


def test_model_comparison_on_the_clips_both_answered(history):
    store, _, _ = history
    models = store.stats()["error_analysis"]["models"]
    figures = {
        v: (f["traces"], f["accuracy"]["k"], f["accuracy"]["n"], f["reject_rate"]["k"], f["reject_rate"]["n"])
        for v, f in models["versions"].items()
    }
    assert figures == {"base": (20, 10, 20, 40, 160), "pdpo-v1": (21, 17, 21, 10, 170)}
    [comparison] = models["comparisons"]
    assert (comparison["base"], comparison["model"], comparison["clips"]) == ("base", "pdpo-v1", 20)
    base, adapter = comparison["base_figures"], comparison["model_figures"]
    assert (base["traces"], base["accuracy"]["k"], base["reject_rate"]["k"], base["reject_rate"]["n"]) == (
        20,
        10,
        40,
        160,
    )
    assert (adapter["traces"], adapter["accuracy"]["k"], adapter["accuracy"]["n"]) == (20, 16, 20)
    assert (adapter["reject_rate"]["k"], adapter["reject_rate"]["n"]) == (10, 160)
    assert adapter["accuracy"]["ci"] == pytest.approx(list(wilson(16, 20)))


def test_annotator_quality(history):
    store, truth, flips = history
    stats = store.stats()
    quality = stats["annotator_quality"]
    n, f = len(truth), len(flips)
    assert 0 < f < n
    carol = quality["carol"]
    assert (carol["agreement_with_resolved"]["k"], carol["agreement_with_resolved"]["n"]) == (n - f, n)
    # With alice and bob on every step, and with dave on his 10 (5 accepts, 5 unsures).
    with_dave = sum(("pdpo-extra", i) not in flips for i in range(0, 10, 2))
    others = carol["agreement_with_others"]
    assert (others["k"], others["n"]) == (2 * (n - f) + with_dave, 2 * n + 10)
    # alice is judged only where bob and carol agree (a tie of the others gives no reference).
    alice = quality["alice"]
    assert (alice["agreement_with_resolved"]["k"], alice["agreement_with_resolved"]["n"]) == (n - f, n - f)
    assert alice["agreement_by_annotator"]["bob"]["rate"] == 1.0
    assert (alice["mean_time_per_item_s"], quality["bob"]["mean_time_per_item_s"]) == (2.0, 4.0)
    assert (quality["dave"]["unsure_share"], quality["dave"]["labels"]) == (0.5, 10)
    assert quality["dave"]["agreement_with_resolved"]["rate"] == 1.0
    assert (quality["rita"]["role"], quality["rita"]["labels"], quality["alice"]["role"]) == (
        "reviewer",
        0,
        "annotator",
    )
    assert stats["resolution"]["by_status"] == {
        "adjudicated": 1,
        "sent_back": 0,
        "aggregated": n - 1,
        "unlabeled": 0,
        "too_few_labels": 0,
        "tie": 0,
        "low_agreement": 0,
    }
    # On the review queue: carol's flips and dave's unsures, less the step rita decided.
    disputed = (flips | {("pdpo-extra", i) for i in range(1, 10, 2)}) - {("pdpo-extra", 0)}
    assert stats["review"] == {"decided": 1, "sent_back": 0, "to_review": len(disputed)}
    assert len(store.review_queue("rita")) == len(disputed)  # the SQL count and the queue agree


def test_intervals_by_hand():
    # Wilson 95% for 8 of 10: 0.4902 .. 0.9433 (Newcombe 1998, table I).
    lo, hi = wilson(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson(0, 0) is None
    # Hanley-McNeil, A = 0.8 with 50 + 50 cases: Q1 = 2/3, Q2 = 1.28 / 1.8;
    # SE^2 = (0.16 + 49 (Q1 - 0.64) + 49 (Q2 - 0.64)) / 2500 = 0.0019804, SE = 0.044502.
    lo, hi = hanley_mcneil(0.8, 50, 50)
    assert (lo, hi) == pytest.approx((0.8 - 1.959964 * 0.044502, 0.8 + 1.959964 * 0.044502), abs=1e-5)
    assert position_bucket(0, 8) == "0-25%" and position_bucket(7, 8) == "75-100%"
    assert [position_bucket(i, 10) for i in range(10)] == ["0-25%"] * 2 + ["25-50%"] * 3 + ["50-75%"] * 2 + [
        "75-100%"
    ] * 3


def test_clip_kinds_from_a_manifest(store, make_trace, tmp_path):
    from annotation_db.tracejson import file_sha256

    clip = tmp_path / "one.mp4"
    clip.write_bytes(b"not really a video")
    store.add_trace(make_trace("t1", ["a"], clip_sha=file_sha256(clip)))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        '{"file": "one.mp4", "kind": "StandUp"}\n{"file": "missing.mp4", "kind": "x"}\n{"file": "one.mp4"}\n',
        encoding="utf-8",
    )
    # The third line has no kind: the first line's tag stands.
    assert store.tag_clip_kinds(manifest) == {"tagged": 1, "not_stored": 0}
    store.set_label("alice", "t1", 0, "reject", error_type="other")
    assert [g["group"] for g in store.stats()["error_analysis"]["by_clip_kind"]] == ["StandUp"]
    store.set_clip_kind(file_sha256(clip), None)
    assert [g["group"] for g in store.stats()["error_analysis"]["by_clip_kind"]] == ["unknown"]
