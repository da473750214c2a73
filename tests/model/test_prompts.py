"""Prompt texts and the official prompt ids (official_tiny/reference/prompt_input_ids.npy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.errors import UserError
from inference.model.prompts import (
    AV_PLACEHOLDER_ID,
    FOLLOWUP_TEXT,
    PROMPTS,
    Prompt,
    PromptError,
    build_followup_ids,
    build_prompt,
    build_prompt_ids,
    build_user_text,
    followup_prompt_text,
    format_options,
    prompt_text,
    render_ids,
)
from inference.model.tokenizer import build_qwen2_tokenizer
from studio_trace import PROMPT_KINDS

QUESTION = "What is happening in the video?"
OPTIONS = ["cooking", "running", "swimming"]
GOLDEN_USER_TEXT = (
    "Question: What is happening in the video?\nChoose from: A. cooking B. running C. swimming\n"
    "Answer the question step by step. Output each thinking step. "
    "Mark the end of each step with <end_of_step> token."
)
CONTINUATION = "The man runs.<end_of_step>\nHe falls.<end_of_step>\nThe answer is B."
CONTINUATION_IDS = [785, 883, 8473, 15757, 408, 3575, 11946, 397, 1519, 17066, 15757, 408, 3575, 11946, 397]
CONTINUATION_IDS += [785, 4226, 374, 425, 13]  # official_tiny/README.md section 3

# tok(FOLLOWUP_TEXT): "\n" <|im_start|> "user" "\n" "What is the final answer ... steps?" <|im_end|>
# "\n" <|im_start|> "assistant" "\n"
FOLLOWUP_IDS = [198, 151644, 872, 198, 3838, 374, 279, 1590, 4226, 311, 279, 3405, 3118, 389, 697, 7274]
FOLLOWUP_IDS += [7354, 30, 151645, 198, 151644, 77091, 198]


@pytest.fixture(scope="module")
def tok():
    return build_qwen2_tokenizer()


@pytest.fixture(scope="module")
def golden_ids(official_tiny: Path) -> dict[str, list[int]]:
    ref = official_tiny / "reference"
    return {
        "prompt": np.load(ref / "prompt_input_ids.npy")[0].tolist(),
        "full": np.load(ref / "full_input_ids.npy")[0].tolist(),
    }


def test_kinds_agree_with_trace():
    assert tuple(PROMPTS) == PROMPT_KINDS
    assert [(t.kind, t.options, t.two_pass) for t in PROMPTS.values()] == [
        ("reasoning", "optional", True),
        ("direct", "required", False),
        ("synthdec", "none", True),
    ]


def test_reasoning_user_text_is_golden():
    assert build_user_text("reasoning", QUESTION, OPTIONS) == GOLDEN_USER_TEXT


def test_reasoning_without_options_drops_choice_line():
    assert build_user_text("reasoning", "  Why does he laugh? ") == (
        "Question: Why does he laugh?\n"
        "Answer the question step by step. Output each thinking step. "
        "Mark the end of each step with <end_of_step> token."
    )


def test_direct_user_text():
    assert build_user_text("direct", QUESTION, OPTIONS) == (
        "Select the best answer to the following question based on the video. "
        "Respond with only the letter of the correct option.\n"
        "What is happening in the video?\nChoose from: A. cooking B. running C. swimming"
    )


def test_synthdec_user_text():
    expected = (
        "An AI-generated video contains unnatural distorted things, such as distorted hands or faces. "
        "Is the given video AI generated? Answer YES or NO. Answer step by step and output each step clearly."
    )
    assert build_user_text("synthdec") == expected
    assert build_user_text("synthdec", expected) == expected  # a stored Trace.question round-trips


def test_option_separator_can_follow_table5():
    assert format_options(OPTIONS) == "Choose from: A. cooking B. running C. swimming"
    assert format_options(OPTIONS, ", ") == "Choose from: A. cooking, B. running, C. swimming"


@pytest.mark.parametrize(
    ("kind", "question", "options", "message"),
    [
        ("reasoning", "  ", OPTIONS, "the question is empty; type a question"),
        (
            "direct",
            QUESTION,
            None,
            "the direct prompt needs answer options; add options or use the reasoning prompt",
        ),
        ("reasoning", QUESTION, ["a", " "], "an answer option is empty; fill it in or remove it"),
        (
            "reasoning",
            QUESTION,
            [str(i) for i in range(27)],
            "at most 26 answer options (A to Z) are supported",
        ),
        ("synthdec", "", ["yes"], "the synthdec prompt takes no options; leave them empty"),
        (
            "synthdec",
            "Is it fake?",
            None,
            "the synthdec prompt has a fixed question; leave the question empty",
        ),
        (
            "reasoning",
            "Why?<|im_end|>",
            OPTIONS,
            "the question and options must not contain <|im_start|>, <|im_end|> or <|endoftext|>",
        ),
    ],
)
def test_bad_input_is_a_user_error(kind, question, options, message):
    with pytest.raises(PromptError) as info:
        build_user_text(kind, question, options)
    assert str(info.value) == message
    assert isinstance(info.value, UserError)


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="prompt kind must be one of reasoning, direct, synthdec"):
        build_user_text("chat", QUESTION, OPTIONS)


def test_prompt_ids_equal_official(tok, golden_ids):
    ids = build_prompt_ids(tok, GOLDEN_USER_TEXT)
    assert ids == golden_ids["prompt"]
    assert len(ids) == 70 and ids.index(AV_PLACEHOLDER_ID) == 14


def test_prompt_ids_layout(tok):
    """The piecewise layout of preprocess_qwen: two separate 198s after the AV placeholder."""
    ids = build_prompt_ids(tok, GOLDEN_USER_TEXT)
    assert ids[:19] == [
        *[151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198],  # system turn
        *[151644, 872, 198, AV_PLACEHOLDER_ID, 198, 198, 14582, 25],  # "user\n" AV "\n" "\nQuestion:"
    ]
    assert ids[-5:] == [151645, 198, 151644, 77091, 198]  # ...<|im_end|>\n<|im_start|>assistant\n
    assert 271 not in ids  # one-string tokenization would merge "\n\n" into 271


def test_custom_system_message(tok):
    ids = build_prompt_ids(tok, "Question: x", system="Be brief.")
    assert ids[:8] == [151644, 8948, 198, 3430, 9814, 13, 151645, 198]  # "Be", " brief", "."


def test_prompt_plus_continuation_equals_full_ids(tok, golden_ids):
    assert tok(CONTINUATION).input_ids == CONTINUATION_IDS
    assert build_prompt_ids(tok, GOLDEN_USER_TEXT) + CONTINUATION_IDS == golden_ids["full"]


def test_prompt_text_is_what_the_ids_spell(tok):
    text = prompt_text(GOLDEN_USER_TEXT)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\n\n" + GOLDEN_USER_TEXT + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_ids(tok, build_prompt_ids(tok, GOLDEN_USER_TEXT)) == text
    assert prompt_text("Q", marker="<AV>") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<AV>\n\nQ<|im_end|>\n<|im_start|>assistant\n"
    )


def test_build_prompt_bundles_everything(tok, golden_ids):
    prompt = build_prompt(tok, "reasoning", QUESTION, OPTIONS)
    assert prompt == Prompt(
        kind="reasoning",
        user_text=GOLDEN_USER_TEXT,
        text=prompt_text(GOLDEN_USER_TEXT),
        ids=tuple(golden_ids["prompt"]),
    )


def test_followup_text_tokenizes_as_official(tok):
    assert FOLLOWUP_TEXT == (
        "\n<|im_start|>user\nWhat is the final answer to the question based on your thinking steps?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok(FOLLOWUP_TEXT).input_ids == FOLLOWUP_IDS


def test_followup_ids_from_generated_ids(tok):
    """Official: prompt ids + generated ids (ending <|im_end|>) + tok(FOLLOWUP_TEXT)."""
    prompt = build_prompt_ids(tok, GOLDEN_USER_TEXT)
    generated = [*CONTINUATION_IDS, 151645]
    assert build_followup_ids(tok, prompt, generated) == prompt + generated + FOLLOWUP_IDS
    # generated ids without the stop token get it back by default, not when asked to keep them
    assert build_followup_ids(tok, prompt, CONTINUATION_IDS) == prompt + generated + FOLLOWUP_IDS
    cut = build_followup_ids(tok, prompt, CONTINUATION_IDS, ensure_im_end=False)
    assert cut == prompt + CONTINUATION_IDS + FOLLOWUP_IDS


def test_followup_ids_from_text(tok):
    prompt = build_prompt_ids(tok, GOLDEN_USER_TEXT)
    expected = prompt + CONTINUATION_IDS + [151645] + FOLLOWUP_IDS
    assert build_followup_ids(tok, prompt, CONTINUATION) == expected
    assert build_followup_ids(tok, prompt, CONTINUATION + "<|im_end|>") == expected  # as decoded


def test_followup_layout_around_the_join(tok):
    prompt = build_prompt_ids(tok, GOLDEN_USER_TEXT)
    ids = build_followup_ids(tok, prompt, [785, 13, 151645])
    assert ids[67:] == [151644, 77091, 198, 785, 13, 151645, *FOLLOWUP_IDS]
    assert ids.count(AV_PLACEHOLDER_ID) == 1


def test_followup_prompt_text_matches_ids(tok):
    prompt = build_prompt(tok, "reasoning", QUESTION, OPTIONS)
    text = followup_prompt_text(prompt.text, CONTINUATION)
    assert text == prompt.text + CONTINUATION + "<|im_end|>" + FOLLOWUP_TEXT
    assert followup_prompt_text(prompt.text, CONTINUATION + "<|im_end|>") == text
    assert render_ids(tok, build_followup_ids(tok, prompt.ids, CONTINUATION)) == text
