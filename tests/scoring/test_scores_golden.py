"""The contrastive step scores equal the official ``contrast_probs`` values on the official tiny
checkpoint with its fixed noisy video (shared/reference/official_tiny README section 3: KL rtol 1e-3)."""

from __future__ import annotations

import pytest

from inference.reasoning.scoring import official_loop_texts, plan_steps, score_trace, step_kls

STEPS = ["The man runs.", "He falls.", "The answer is B."]


@pytest.fixture(scope="module")
def scored(official_loaded, golden_media, golden_encoded, make_trace):
    clean, noisy = golden_media
    trace = make_trace(STEPS)
    return score_trace(official_loaded, clean, trace, encoded=golden_encoded, perturbed={"noise": noisy})


def test_official_tokenization_convention(official_loaded, reference):
    plan = plan_steps(official_loaded.tokenizer, STEPS)
    for step, ref in zip(plan.steps, reference["contrast_per_step_3steps"], strict=True):
        assert step.targets == ref["current_tokens"]
        assert step.prefix_len == len(ref["prev_tokens"])
        assert plan.trunk[: step.prefix_len] == ref["prev_tokens"]
    assert plan.branch_tokens == 0  # only the final "." differs from ".<": no branch needed


def test_step_scores_equal_official(scored, reference):
    refs = reference["contrast_per_step_3steps"]
    assert [s.scores["noise"] for s in scored.steps] == pytest.approx([r["kl_mean"] for r in refs], rel=1e-3)
    assert [s.score for s in scored.steps] == [s.scores["noise"] for s in scored.steps]
    # the figures, to the printed digits
    assert [round(s.score, 5) for s in scored.steps] == [0.02071, 0.01423, 0.01851]


def test_per_token_kls_equal_official(scored, reference):
    for step, ref in zip(scored.steps, reference["contrast_per_step_3steps"], strict=True):
        assert step.token_kl == pytest.approx(ref["kl_per_token"], rel=1e-3, abs=1e-6)
        assert step.token_kls == {"noise": step.token_kl}


def test_step_token_texts_join_to_the_step(scored):
    assert [s.kl_tokens for s in scored.steps] == [
        ["The", " man", " runs", "."],
        ["He", " falls", "."],
        ["The", " answer", " is", " B", "."],
    ]


def test_trace_records_the_settings(scored):
    assert scored.scoring["perturbations"] == ["noise"]
    assert scored.scoring["primary"] == "noise"
    assert scored.scoring["top_t"] == 3
    assert scored.scoring["noise_t"] == 100
    assert scored.scoring["precomputed"] == ["noise"]
    assert scored.scoring["convention"].startswith("official")
    assert scored.timings["score_s"] > 0
    assert [s.top_t for s in scored.steps] == [True, True, True]  # T = 3 of 3 steps


def test_official_loop_filter_reproduced(
    official_loaded, golden_media, golden_encoded, golden_prompt_ids, reference
):
    """The official selection loop drops steps of <= 2 words ("He falls."), also from the
    context of later steps; reproducing that filter gives its two values."""
    _, noisy = golden_media
    from inference.reasoning.perturb import get_perturbation
    from inference.reasoning.scoring import perturbed_block

    kept = official_loop_texts(STEPS)
    assert kept == ["The man runs.", "The answer is B."]
    block = perturbed_block(
        official_loaded.model,
        golden_encoded.av_block,
        golden_encoded.layout,
        noisy,
        get_perturbation("noise").changes,
    )
    kls = step_kls(
        official_loaded.model,
        official_loaded.tokenizer,
        golden_prompt_ids,
        kept,
        golden_encoded.av_block,
        {"noise": block},
    )["noise"]
    means = [sum(k) / len(k) for k in kls]
    expected = [r["kl_mean"] for r in reference["contrast_prediction_step_loop"]]
    assert means == pytest.approx(expected, rel=1e-3)
