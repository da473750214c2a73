"""The prompt texts of video-SALMONN-o1 and the ChatML strings made from them (text only).

One definition of every string a Trace's ``prompt`` is made of: the special-token texts, the
audio-visual placeholder, the system prompt, the three prompt kinds (paper Table 5) and the
follow-up question of the second pass. ``inference.model.prompts`` builds the official token ids
from these texts (and checks questions and options); ``annotation_db`` renders the prompt of
published reasoning with them; ``training`` parses exported prompts back with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Qwen2's special tokens, as text (their ids live in inference.model.tokenizer).
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TEXTS = (ENDOFTEXT, IM_START, IM_END)

STEP_DELIMITER = "<end_of_step>"
# How a step is written in a training string and in a scoring context: its text, the delimiter,
# a newline (official llava_trainer.py:1292, 1336: ``step + "<end_of_step>\n"``).
STEP_SUFFIX = STEP_DELIMITER + "\n"

AV_PLACEHOLDER_TEXT = "<image>"  # official DEFAULT_IMAGE_TOKEN: how a prompt text shows the AV block
DEFAULT_SYSTEM = "You are a helpful assistant."  # preprocess_qwen's default system message

# Options are joined by a space: "Choose from: A. cooking B. running C. swimming", as in the
# golden sample (official_tiny/data/test_data.json). The paper's Table 5 as transcribed in our
# reference sheet shows "A. {a}, B. {b}": the released data is not available to settle it, and
# the golden sample is what the reference ids were computed from.
OPTION_SEPARATOR = " "

FOLLOWUP_QUESTION = "What is the final answer to the question based on your thinking steps?"
# Tokenized on its own and appended after the reasoning ids (official inference.py:403).
FOLLOWUP_TEXT = f"\n{IM_START}user\n{FOLLOWUP_QUESTION}{IM_END}\n{IM_START}assistant\n"


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt kind: its user text (after the AV placeholder) and how it is answered."""

    kind: str
    # str.format template; {question} is the user's question, {choices} the option line
    # ("Choose from: A. x B. y", empty when a kind allows no options).
    template: str
    options: str  # "required" | "optional" | "none"
    # True: the answer is reasoned in steps and a second pass asks for the final answer.
    two_pass: bool


REASONING = PromptTemplate(
    kind="reasoning",
    template=(
        "Question: {question}\n{choices}"
        "Answer the question step by step. Output each thinking step. "
        f"Mark the end of each step with {STEP_DELIMITER} token."
    ),
    # Our addition: without options the "Choose from" line is left out (open questions in the
    # app); the paper only evaluates multiple choice.
    options="optional",
    two_pass=True,
)
DIRECT = PromptTemplate(
    kind="direct",
    template=(
        "Select the best answer to the following question based on the video. "
        "Respond with only the letter of the correct option.\n{question}\n{choices}"
    ),
    options="required",  # the instruction asks for a letter
    two_pass=False,
)
# Paper Table 5. A commented-out variant in llava_trainer.py:1734 says "AI generated video ...
# distorted hands, faces or color"; the paper's wording is used.
SYNTHDEC = PromptTemplate(
    kind="synthdec",
    template=(
        "An AI-generated video contains unnatural distorted things, such as distorted hands or faces. "
        "Is the given video AI generated? Answer YES or NO. Answer step by step and output each step clearly."
    ),
    options="none",  # fixed yes/no question
    two_pass=True,
)
SYNTHDEC_QUESTION = SYNTHDEC.template
# Keyed in the order of PROMPT_KINDS.
PROMPTS: dict[str, PromptTemplate] = {t.kind: t for t in (REASONING, DIRECT, SYNTHDEC)}
PROMPT_KINDS = tuple(PROMPTS)


def format_options(options: Sequence[str], separator: str = OPTION_SEPARATOR) -> str:
    """``["cooking", "running"]`` -> ``"Choose from: A. cooking B. running"``."""
    return "Choose from: " + separator.join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(options))


def user_text(
    kind: str, question: str, options: Sequence[str] | None, *, option_separator: str = OPTION_SEPARATOR
) -> str:
    """The user turn of prompt ``kind`` (after ``<image>\\n``) for a question and its options,
    formatted without checks (``inference.model.prompts.build_user_text`` checks them first)."""
    template = PROMPTS[kind]
    if template.options == "none":
        return template.template
    choices = format_options(options, option_separator) if options else ""
    if kind == "reasoning" and choices:
        choices += "\n"  # the option line has its own line before the instruction
    return template.template.format(question=question, choices=choices)


def prompt_text(user: str, *, system: str = DEFAULT_SYSTEM, marker: str = AV_PLACEHOLDER_TEXT) -> str:
    """The ChatML string the official prompt ids spell, ``marker`` standing for the AV block.

    Note the blank line after the marker: the ids hold "\\n" [AV] "\\n" "\\n" (see
    ``inference.model.prompts``).
    """
    return (
        f"{IM_START}system\n{system}{IM_END}\n"
        f"{IM_START}user\n{marker}\n\n{user}{IM_END}\n"
        f"{IM_START}assistant\n"
    )


def followup_prompt_text(prompt: str, reasoning: str, *, ensure_im_end: bool = True) -> str:
    """The ChatML text of the second pass (``prompt`` from :func:`prompt_text`)."""
    if ensure_im_end and not reasoning.endswith(IM_END):
        reasoning += IM_END
    return prompt + reasoning + FOLLOWUP_TEXT
