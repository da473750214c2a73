"""The prompts of video-SALMONN-o1 and the exact token ids the official code builds from them.

Three prompt kinds (paper Table 5; names as in ``studio_trace.PROMPT_KINDS``):

- ``reasoning``: multiple choice, answered in steps that end with ``<end_of_step>``, then a
  second pass asks for the final answer (below);
- ``direct``: multiple choice, the model answers with a letter at once;
- ``synthdec``: a fixed question (is this video AI-generated? YES/NO), answered step by step.

The ids are NOT a tokenization of one ChatML string. The official ``preprocess_qwen``
(``llava/dataset/preprocess_utils.py:226-247``, template ``qwen_1_5``) tokenizes each piece on
its own and joins the lists; for the user turn ``"<image>\\n{text}"`` it builds::

    tok("<|im_start|>user") + [198] + [-200] + [198] + tok("\\n{text}") + [<|im_end|>] + [198]

so after the audio-visual placeholder (-200) come two separate "\\n" tokens (198, 198) where one
string would give 271 ("\\n\\n"). The test dataset blanks the assistant turn and cuts its last
two ids (``av_test_dataset.py:313``), so the prompt ends with ``<|im_start|>assistant\\n``.

Second pass (``inference.py:403-427``, the same in ``llava_trainer.py:1631-1739``): the
generated ids of the first pass (only the new tokens, ending with ``<|im_end|>`` when the model
stopped by itself) are appended to the prompt ids, then ``tok(FOLLOWUP_TEXT)``, and the model
decodes again::

    prompt ids ... <|im_start|>assistant\\n | reasoning ids ... <|im_end|>
    | \\n <|im_start|>user\\nWhat is the final answer ... steps?<|im_end|>\\n<|im_start|>assistant\\n
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference.errors import UserError
from inference.model.layout import AV_PLACEHOLDER_ID
from studio_trace.chatml import (
    AV_PLACEHOLDER_TEXT,
    DEFAULT_SYSTEM,
    FOLLOWUP_TEXT,
    IM_END,
    IM_START,
    OPTION_SEPARATOR,
    PROMPTS,
    SPECIAL_TEXTS,
    SYNTHDEC,
    PromptTemplate,
    followup_prompt_text,
    format_options,
    prompt_text,
    user_text,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The texts (special tokens, system prompt, the three prompt kinds, the follow-up question) are
# defined once in studio_trace.chatml; they are re-exported here beside the ids built from them.
__all__ = [
    "AV_PLACEHOLDER_ID",
    "AV_PLACEHOLDER_TEXT",
    "DEFAULT_SYSTEM",
    "FOLLOWUP_TEXT",
    "PROMPTS",
    "Prompt",
    "PromptError",
    "PromptTemplate",
    "SYNTHDEC",
    "build_followup_ids",
    "build_prompt",
    "build_prompt_ids",
    "build_user_text",
    "followup_prompt_text",
    "format_options",
    "prompt_text",
    "render_ids",
]


class PromptError(UserError):
    """A question or its options cannot make a prompt of the chosen kind."""


@dataclass(frozen=True)
class Prompt:
    """Everything the generator and the Trace need from one prompt."""

    kind: str
    user_text: str  # the user turn after "<image>\n"
    text: str  # exact ChatML string, AV placeholder shown as AV_PLACEHOLDER_TEXT (Trace.prompt)
    ids: tuple[int, ...]  # official ids, AV_PLACEHOLDER_ID at the AV position


def trace_question(kind: str, question: str = "") -> str:
    """The question a Trace of prompt ``kind`` carries: a fixed question's text (synthdec's,
    whatever the caller passed: empty or the same text), else the question as asked. Every
    entry point stores the same question for the same prompt, so their traces pair up."""
    template = PROMPTS.get(kind)
    return template.template if template is not None and template.options == "none" else question


def build_user_text(
    kind: str,
    question: str = "",
    options: Sequence[str] | None = None,
    *,
    option_separator: str = OPTION_SEPARATOR,
) -> str:
    """The user turn of prompt ``kind`` (without the ``<image>\\n`` prefix).

    ``synthdec`` has a fixed question: pass ``question`` empty (or equal to the fixed text)
    and no options. Raises PromptError for a missing question, missing or too many options.
    """
    if kind not in PROMPTS:
        raise ValueError(f"prompt kind must be one of {', '.join(PROMPTS)}, not {kind!r}")
    template = PROMPTS[kind]
    question = (question or "").strip()
    options = [str(o).strip() for o in (options or [])]
    for text in (question, *options):
        if any(s in text for s in SPECIAL_TEXTS):
            raise PromptError(
                "the question and options must not contain <|im_start|>, <|im_end|> or <|endoftext|>"
            )
    if template.options == "none":
        if options:
            raise PromptError(f"the {kind} prompt takes no options; leave them empty")
        if question and question != template.template:
            raise PromptError(f"the {kind} prompt has a fixed question; leave the question empty")
        return template.template
    if not question:
        raise PromptError("the question is empty; type a question")
    if any(not o for o in options):
        raise PromptError("an answer option is empty; fill it in or remove it")
    if len(options) > 26:
        raise PromptError("at most 26 answer options (A to Z) are supported")
    if template.options == "required" and not options:
        raise PromptError(f"the {kind} prompt needs answer options; add options or use the reasoning prompt")
    return user_text(kind, question, options, option_separator=option_separator)


def _tok(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    # ``tokenizer(text).input_ids`` exactly as the official code calls it; Qwen2 adds no BOS/EOS.
    return list(tokenizer(text).input_ids)


def build_prompt_ids(
    tokenizer: PreTrainedTokenizerBase, user_text: str, *, system: str = DEFAULT_SYSTEM
) -> list[int]:
    """Official prompt ids for one audio-visual user turn, ending with ``<|im_start|>assistant\\n``.

    For the golden question: 70 ids, AV_PLACEHOLDER_ID at index 14
    (official_tiny/reference/prompt_input_ids.npy).
    """
    im_start, im_end = tokenizer.convert_tokens_to_ids([IM_START, IM_END])
    nl = _tok(tokenizer, "\n")  # [198]
    system_ids = [im_start] + _tok(tokenizer, "system") + nl + _tok(tokenizer, system) + [im_end] + nl
    user_ids = (
        _tok(tokenizer, f"{IM_START}user")
        + nl
        + [AV_PLACEHOLDER_ID]
        + nl
        + _tok(tokenizer, "\n" + user_text)  # the "\n" after "<image>" in the official value
        + [im_end]
        + nl
    )
    assistant_ids = _tok(tokenizer, f"{IM_START}assistant") + nl  # blank turn, last 2 ids cut
    return system_ids + user_ids + assistant_ids


def render_ids(
    tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], *, marker: str = AV_PLACEHOLDER_TEXT
) -> str:
    """Decode ids to text, special tokens kept and each AV_PLACEHOLDER_ID shown as ``marker``."""
    pieces: list[str] = []
    run: list[int] = []
    for i in ids:
        if i == AV_PLACEHOLDER_ID:
            pieces.append(tokenizer.decode(run) + marker)
            run = []
        else:
            run.append(int(i))
    pieces.append(tokenizer.decode(run))
    return "".join(pieces)


def build_prompt(
    tokenizer: PreTrainedTokenizerBase,
    kind: str,
    question: str = "",
    options: Sequence[str] | None = None,
    *,
    system: str = DEFAULT_SYSTEM,
) -> Prompt:
    """User text, ChatML text and official ids of one prompt, in one call."""
    user_text = build_user_text(kind, question, options)
    return Prompt(
        kind=kind,
        user_text=user_text,
        text=prompt_text(user_text, system=system),
        ids=tuple(build_prompt_ids(tokenizer, user_text, system=system)),
    )


def build_followup_ids(
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[int],
    reasoning: Sequence[int] | str,
    *,
    ensure_im_end: bool = True,
) -> list[int]:
    """Ids of the official second pass: prompt + reasoning + the final-answer user turn.

    ``reasoning`` is the first pass's generated ids (used as they are, as the official code
    does) or its text (tokenized on its own with special tokens recognised, as the official
    rollout paths do: ``llava_trainer.py:1693,1707``; retokenized text can differ from the ids
    the model sampled, so pass ids when you have them). With ``ensure_im_end`` an
    ``<|im_end|>`` is appended when the reasoning does not end with one: that is what the
    official ids hold whenever the model stopped by itself; pass False to reproduce a
    first pass cut at max_new_tokens, where the official code appends nothing.
    """
    reasoning_ids = _tok(tokenizer, reasoning) if isinstance(reasoning, str) else [int(i) for i in reasoning]
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    if ensure_im_end and (not reasoning_ids or reasoning_ids[-1] != im_end):
        reasoning_ids.append(im_end)
    return [int(i) for i in prompt_ids] + reasoning_ids + _tok(tokenizer, FOLLOWUP_TEXT)
