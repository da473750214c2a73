"""Alternative steps, rollouts and the suggested pDPO preference."""

from __future__ import annotations

import math

import pytest

from inference.reasoning.alternatives import (
    AlternativeSettings,
    RolloutSettings,
    rollout_candidate,
    rollout_step,
    sample_alternatives,
    step_text_from_sample,
    suggest_preference,
)
from inference.reasoning.generate import Decoder, DecodingSettings, TokenPicker

STEPS = ["The man runs.", "He falls.", "The answer is B."]


def test_alternatives_are_sampled_from_the_official_prefix(
    official_loaded, golden_media, golden_encoded, make_trace
):
    """Each alternative is exactly what nucleus sampling with seed + i gives after
    prompt + tok("The man runs.<end_of_step>\\n") (the random tiny model never stops early)."""
    clean, _ = golden_media
    trace = make_trace(STEPS)
    settings = AlternativeSettings(n=2, seed=10, max_new_tokens=12)  # 12 tokens: sampling is slow on CPU
    alternatives = sample_alternatives(
        official_loaded, clean, trace, 1, settings=settings, encoded=golden_encoded
    )
    assert trace.alternatives == alternatives

    model, tokenizer = official_loaded.model, official_loaded.tokenizer
    from inference.model.prompts import build_prompt

    prompt = build_prompt(tokenizer, "reasoning", trace.question, trace.options)
    for i, alternative in enumerate(alternatives):
        decoder = Decoder(model)
        decoder.feed_embeds(model.embed_prompt(list(prompt.ids), [golden_encoded.av_block]))
        logits = decoder.feed_ids(tokenizer("The man runs.<end_of_step>\n").input_ids)
        picker = TokenPicker(DecodingSettings(do_sample=True, top_p=0.9, temperature=1.0, seed=10 + i))
        ids = list(decoder.generate(logits, picker, 12, stop_ids=[151645]))
        assert alternative.text == tokenizer.decode(ids).replace("<|im_end|>", "").strip()
        assert alternative.step_index == 1
        assert alternative.source == "model"
        assert {k: alternative.settings[k] for k in ("top_p", "temperature", "max_new_tokens", "seed")} == {
            "top_p": 0.9,
            "temperature": 1.0,
            "max_new_tokens": 12,
            "seed": 10 + i,
        }
        assert alternative.settings["stopped"] == "length"
        assert alternative.settings["tokens"] == 12
    assert alternatives[0].text != alternatives[1].text


def test_default_settings_are_the_papers():
    assert (AlternativeSettings().top_p, AlternativeSettings().max_new_tokens, AlternativeSettings().n) == (
        0.9,
        64,
        4,
    )
    assert (RolloutSettings().n, RolloutSettings().top_p, RolloutSettings().max_new_tokens) == (6, 0.9, 512)


def test_alternatives_stop_at_the_delimiter(scripted_loaded, golden_media, golden_encoded, make_trace):
    clean, _ = golden_media
    trace = make_trace(STEPS)
    alternatives = sample_alternatives(scripted_loaded, clean, trace, 2, n=3, encoded=golden_encoded)
    assert [(a.text, a.settings["stopped"], a.settings["tokens"]) for a in alternatives] == [
        ("He jumps.", "marker", 7)  # He, jumps, .<, end, _of, _step, >\n: nothing after the marker
    ] * 3


def test_alternatives_are_reproducible(official_loaded, golden_media, golden_encoded, make_trace):
    clean, _ = golden_media
    settings = AlternativeSettings(n=2, max_new_tokens=8, seed=3)
    first = sample_alternatives(
        official_loaded, clean, make_trace(STEPS), 0, settings=settings, encoded=golden_encoded
    )
    again = sample_alternatives(
        official_loaded, clean, make_trace(STEPS), 0, settings=settings, encoded=golden_encoded
    )
    assert [a.text for a in first] == [a.text for a in again]


def test_step_text_from_sample():
    assert step_text_from_sample(" He jumps.<end_of_step>\n") == ("He jumps.", "marker")
    assert step_text_from_sample("Done.<|im_end|>") == ("Done.", "im_end")
    assert step_text_from_sample("cut off") == ("cut off", "length")


def test_bad_step_index_is_a_user_error(official_loaded, golden_media, make_trace):
    from inference.reasoning.scoring import ScoringError

    clean, _ = golden_media
    with pytest.raises(ScoringError, match="step 3 does not exist; the trace has steps 0 to 2"):
        sample_alternatives(official_loaded, clean, make_trace(STEPS), 3)


ROLLOUT = RolloutSettings(n=3, max_new_tokens=8, answer_max_new_tokens=6)  # few tokens: CPU sampling is slow


def test_forced_answer_gives_full_or_zero_correctness(
    forced_b_loaded, golden_media, golden_encoded, make_trace
):
    clean, _ = golden_media
    trace = make_trace(STEPS)
    right = rollout_candidate(forced_b_loaded, clean, trace, 1, settings=ROLLOUT, encoded=golden_encoded)
    assert right.expected_correctness == 1.0
    assert right.reference == "B"
    first = right.rollouts[0]
    assert first.continuation == "He jumps.<end_of_step>\nHe"  # 8 tokens, cut at max_new_tokens
    assert (first.answer, first.choice, first.correct, first.stopped) == (
        "The answer is B.",
        "B",
        True,
        "length",
    )
    wrong = rollout_candidate(
        forced_b_loaded, clean, trace, 1, reference="c", settings=ROLLOUT, encoded=golden_encoded
    )
    assert wrong.expected_correctness == 0.0
    assert [r.choice for r in wrong.rollouts] == ["B"] * 3


def test_correctness_is_the_fraction_of_right_answers(
    scripted_loaded, golden_media, golden_encoded, make_trace
):
    """The scripted answer is a fair coin between B and C: the fraction must count the Bs."""
    clean, _ = golden_media
    settings = RolloutSettings(n=6, max_new_tokens=8, answer_max_new_tokens=6, answer_do_sample=True)
    result = rollout_candidate(
        scripted_loaded, clean, make_trace(STEPS), 0, settings=settings, encoded=golden_encoded
    )
    answers = [r.answer for r in result.rollouts]
    assert set(answers) == {"The answer is B.", "The answer is C."}  # both happen with these seeds
    assert [r.choice for r in result.rollouts] == [a[-2] for a in answers]
    assert result.expected_correctness == answers.count("The answer is B.") / 6
    assert [r.seed for r in result.rollouts] == [0, 1, 2, 3, 4, 5]


def test_rollout_step_compares_the_step_with_its_alternatives(
    forced_b_loaded, golden_media, golden_encoded, make_trace
):
    from studio_trace import Alternative

    clean, _ = golden_media
    trace = make_trace(STEPS)
    trace.alternatives = [Alternative(step_index=1, text="He sits.", source="human")]
    out = rollout_step(forced_b_loaded, clean, trace, 1, reference="B", alternatives=[0], settings=ROLLOUT)
    assert [r["candidate"] for r in out["results"]] == ["step", "alternative:0"]
    assert [r["text"] for r in out["results"]] == ["He falls.", "He sits."]
    assert trace.steps[1].expected_correctness == 1.0
    assert trace.alternatives[0].expected_correctness == 1.0
    assert out["preferences"] == [
        {"chosen_over": "alternative:0", "p_s": 1.0, "p_s_alt": 1.0, "hard": 0, "soft": 0.5, "mu": 0.2}
    ]


def test_suggest_preference_labels():
    pref = suggest_preference(5 / 6, 2 / 6, mu=0.2)
    assert pref.hard == 1
    assert pref.soft == pytest.approx(1 / (1 + math.exp(-2.5)))
    assert suggest_preference(0.5, 0.5).hard == 0  # the paper's 1[p(s) > p(s')]: a tie is 0
    assert suggest_preference(0.5, 0.5).soft == 0.5
    assert suggest_preference(0.0, 1.0, mu=0.1).hard == 0
    assert suggest_preference(0.0, 1.0, mu=0.1).soft == pytest.approx(1 / (1 + math.exp(10)))
    with pytest.raises(ValueError, match="mu must be positive"):
        suggest_preference(1.0, 0.0, mu=0)


def test_no_reference_is_a_user_error(official_loaded, golden_media, make_trace):
    from inference.reasoning.scoring import ScoringError

    clean, _ = golden_media
    trace = make_trace(STEPS, reference_answer=None)
    with pytest.raises(ScoringError, match="no reference answer"):
        rollout_candidate(official_loaded, clean, trace, 0, settings=ROLLOUT)
