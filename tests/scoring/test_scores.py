"""The one-pass scorer equals the per-step official-way reference, and its scores behave."""

from __future__ import annotations

import pytest
import torch

from inference.reasoning.perturb import AVTensors, get_perturbation, perturb
from inference.reasoning.scoring import (
    ScoringSettings,
    build_tree_query,
    official_step_kls,
    perturbed_block,
    plan_steps,
    score_trace,
    step_kls,
    token_pieces,
)

# "He laughs!:)" tokenizes alone as "!", ":)" but before the marker as "!:", ")<": its tokens
# diverge from the trace's before the last one, so it needs its own branch of the tree.
STEPS = ["The man runs.", "He laughs!:)", "A dog, barking, appears in frame 3.", "The answer is B."]


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    assert [len(x) for x in a] == [len(x) for x in b]
    return max(abs(x - y) for xs, ys in zip(a, b, strict=True) for x, y in zip(xs, ys, strict=True))


@pytest.fixture(scope="module")
def noisy_block(official_loaded, golden_media, golden_encoded):
    _, noisy = golden_media
    return perturbed_block(
        official_loaded.model, golden_encoded.av_block, golden_encoded.layout, noisy, frozenset({"video"})
    )


def test_the_branch_case_is_really_a_branch(official_loaded):
    plan = plan_steps(official_loaded.tokenizer, STEPS)
    assert [len(s.own) for s in plan.steps] == [0, 1, 0, 0]  # "!" (trunk: "!:")
    unshared = plan_steps(official_loaded.tokenizer, STEPS, share_trunk=False)
    assert all(s.shared == 0 for s in unshared.steps)


@pytest.mark.parametrize("share_trunk", [True, False], ids=["trunk", "all-branches"])
def test_one_pass_equals_per_step_reference(
    official_loaded, golden_encoded, golden_prompt_ids, noisy_block, share_trunk
):
    model, tokenizer = official_loaded.model, official_loaded.tokenizer
    reference = official_step_kls(
        model, tokenizer, golden_prompt_ids, STEPS, golden_encoded.av_block, noisy_block
    )
    ours = step_kls(
        model,
        tokenizer,
        golden_prompt_ids,
        STEPS,
        golden_encoded.av_block,
        {"noise": noisy_block},
        ScoringSettings(share_trunk=share_trunk),
    )["noise"]
    assert _max_diff(ours, reference) < 1e-5
    assert min(min(k) for k in ours) > 1e-4  # a real signal, not zeros agreeing with zeros


def test_logits_only_at_step_tokens(official_loaded, golden_media, golden_encoded, make_trace):
    """lm_head never sees the prompt: its rows are exactly the steps' tokens, in chunks."""
    rows = []
    head = official_loaded.model.llm.get_output_embeddings()
    hook = head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape))
    clean, noisy = golden_media
    try:
        score_trace(
            official_loaded,
            clean,
            make_trace(STEPS),
            encoded=golden_encoded,
            perturbed={"noise": noisy},
            settings=ScoringSettings(logits_chunk=8),
        )
    finally:
        hook.remove()
    n_tokens = sum(len(official_loaded.tokenizer(t).input_ids) for t in STEPS)
    assert all(len(shape) == 2 and shape[0] <= 8 for shape in rows)
    assert sum(shape[0] for shape in rows) == 2 * n_tokens  # clean + perturbed rows


def test_no_noise_gives_zero_scores(official_loaded, golden_media, golden_encoded, make_trace):
    clean, _ = golden_media
    trace = score_trace(
        official_loaded, clean, make_trace(STEPS), perturbations=("none",), encoded=golden_encoded
    )
    assert [s.score for s in trace.steps] == [0.0, 0.0, 0.0, 0.0]
    assert all(set(s.token_kl) == {0.0} for s in trace.steps)


def test_seeded_scores_are_reproducible(official_loaded, golden_media, golden_encoded, make_trace):
    clean, _ = golden_media

    def scores(seed):
        trace = score_trace(official_loaded, clean, make_trace(STEPS[:2]), seed=seed, encoded=golden_encoded)
        return [s.token_kl for s in trace.steps]

    first, again, other = scores(7), scores(7), scores(8)
    assert first == again
    assert first != other


def test_every_perturbation_scores_with_kl_non_negative(
    official_loaded, golden_media, golden_encoded, make_trace
):
    clean, _ = golden_media
    names = ("noise", "mute", "shuffle")
    trace = score_trace(
        official_loaded, clean, make_trace(STEPS), perturbations=names, encoded=golden_encoded
    )
    assert trace.scoring["perturbations"] == list(names)
    for step in trace.steps:
        assert set(step.scores) == set(step.token_kls) == set(names)
        for name in names:
            kls = step.token_kls[name]
            assert len(kls) == len(step.kl_tokens) == len(official_loaded.tokenizer(step.text).input_ids)
            assert all(k >= 0 for k in kls)
            assert step.scores[name] == pytest.approx(sum(kls) / len(kls))
        assert step.score == step.scores["noise"]
        assert step.scores["mute"] > 0 and step.scores["shuffle"] > 0  # the tiny model hears and sees


def test_scores_equal_those_of_fully_reencoded_media(
    official_loaded, golden_media, golden_encoded, make_trace
):
    """Re-running only the changed encoder is exact: same as encoding the perturbed clip whole."""
    clean, _ = golden_media
    model = official_loaded.model
    for name in ("noise", "mute", "shuffle"):
        changed = perturb(name, clean, seed=3)
        spliced = perturbed_block(
            model, golden_encoded.av_block, golden_encoded.layout, changed, get_perturbation(name).changes
        )
        whole = model.encode_media(changed.pixel_values, changed.spectrogram, changed.real_time).av_block
        torch.testing.assert_close(spliced, whole, atol=1e-6, rtol=0)


def test_top_t_flags_the_highest_scores(official_loaded, golden_media, golden_encoded, make_trace):
    clean, noisy = golden_media
    trace = score_trace(
        official_loaded, clean, make_trace(STEPS), top_t=2, encoded=golden_encoded, perturbed={"noise": noisy}
    )
    ranked = sorted(range(len(STEPS)), key=lambda i: -trace.steps[i].score)
    assert [s.top_t for s in trace.steps] == [i in ranked[:2] for i in range(len(STEPS))]
    assert sum(s.top_t for s in trace.steps) == 2
    assert trace.scoring["top_t"] == 2


def test_scores_survive_the_json_round_trip(official_loaded, golden_media, golden_encoded, make_trace):
    from studio_trace import Trace

    clean, noisy = golden_media
    trace = score_trace(
        official_loaded, clean, make_trace(STEPS[:2]), encoded=golden_encoded, perturbed={"noise": noisy}
    )
    again = Trace.from_json(trace.to_json())
    assert again.steps == trace.steps
    assert again.scoring == trace.scoring


def test_tree_query_layout():
    """Root at position P-1, trunk after it, a branch restarting at its shared prefix."""
    from inference.reasoning.scoring import ScoringPlan, StepPlan

    plan = ScoringPlan(
        trunk=[10, 11, 12, 13],
        steps=[StepPlan(0, [10, 11], 0, 1, []), StepPlan(1, [20, 21, 22], 2, 2, [20, 21])],
    )
    query = build_tree_query(plan, prompt_len=100)
    assert query.ids == [10, 11, 12, 13, 20, 21]
    assert query.position_ids.tolist() == [[99, 100, 101, 102, 103, 102, 103]]
    assert query.rows == [[0, 1], [2, 5, 6]]
    allowed = query.allowed.int().tolist()
    assert allowed[5] == [1, 1, 1, 0, 0, 1, 0]  # root, trunk[:2], itself
    assert allowed[6] == [1, 1, 1, 0, 0, 1, 1]
    assert allowed[4] == [1, 1, 1, 1, 1, 0, 0]  # trunk rows are plain causal


def test_token_pieces_keep_split_characters_whole(official_loaded):
    tokenizer = official_loaded.tokenizer
    for text in ["The man runs.", "naïve café, 日本語 🙂 ok"]:
        ids = tokenizer(text).input_ids
        pieces = token_pieces(tokenizer, ids)
        assert len(pieces) == len(ids)
        assert "".join(pieces) == text


def test_unknown_perturbation_is_a_user_error(official_loaded, golden_media, make_trace):
    from inference.reasoning.perturb import UnknownPerturbationError

    clean, _ = golden_media
    with pytest.raises(UnknownPerturbationError, match="unknown perturbation 'blur'; choose from noise"):
        score_trace(official_loaded, clean, make_trace(STEPS), perturbations=("blur",))


def test_a_trace_whose_prompt_differs_is_refused(official_loaded, golden_media, make_trace):
    from inference.reasoning.scoring import ScoringError

    clean, _ = golden_media
    trace = make_trace(STEPS)
    trace.prompt = "<|im_start|>system\nsomething else<|im_end|>\n"
    with pytest.raises(ScoringError, match="prompt differs"):
        score_trace(official_loaded, clean, trace)


def test_clip_media_tensors_type():
    media = AVTensors(torch.zeros(2, 3, 4, 4), torch.zeros(1, 2, 3), 1.0)
    assert media._replace(real_time=2.0).real_time == 2.0


def test_the_generation_cache_can_stand_in_for_the_clean_prefill(
    official_loaded, golden_media, golden_encoded, golden_prompt_ids, make_trace
):
    """Handing over a Decoder's cache (prompt + generated tokens) gives the same scores."""
    from inference.reasoning.generate import Decoder

    clean, noisy = golden_media
    model = official_loaded.model
    decoder = Decoder(model)
    decoder.feed_embeds(model.embed_prompt(golden_prompt_ids, [golden_encoded.av_block]))
    decoder.feed_ids([785, 883, 8473])  # generation went on after the prompt
    kwargs = {"encoded": golden_encoded, "perturbed": {"noise": noisy}}
    shared = score_trace(official_loaded, clean, make_trace(STEPS), clean_cache=decoder.cache, **kwargs)
    alone = score_trace(official_loaded, clean, make_trace(STEPS), **kwargs)
    assert decoder.cache.get_seq_length() == len(golden_prompt_ids) - 1 + golden_encoded.av_block.shape[0] - 1
    for a, b in zip(shared.steps, alone.steps, strict=True):
        assert a.token_kl == pytest.approx(b.token_kl, abs=1e-6)
