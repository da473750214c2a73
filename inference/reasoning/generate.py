"""Reasoning about a clip, streamed one step at a time, as the official two-pass decode does it.

Pass 1 decodes the reasoning from the prompt until ``<|im_end|>`` (greedy by default, as
``inference.py:423``); every time the decoded text gains an ``<end_of_step>`` a Step is yielded.
Pass 2 appends the reasoning and the user turn "What is the final answer to the question based
on your thinking steps?" and decodes the answer (``inference.py:403-426``). The prompt's
key/value cache from pass 1 is reused by pass 2, so the 11k-token clip is encoded once.

Logits are computed only at the last position of each forward (``logits_to_keep=1``), never as
a float32 [sequence x vocabulary] tensor over the prompt, which costs ~6.9 GB for a 30 s clip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from inference.model.prompts import PROMPTS, build_prompt, followup_prompt_text, trace_question
from studio_trace import IM_END as IM_END_TEXT
from studio_trace import STEP_DELIMITER, Answer, ClipInfo, Step, Trace, extract_choice


@dataclass(frozen=True)
class DecodingSettings:
    max_new_tokens: int = 512  # official prediction_generate(max_tokens=512)
    answer_max_new_tokens: int = 64  # the second pass only states the answer
    do_sample: bool = False  # official inference is greedy (do_sample=False, num_beams=1)
    temperature: float = 1.0
    top_p: float = 0.9  # official passes top_p=0.9; it only matters when sampling
    seed: int = 0
    repetition_penalty: float = 1.0  # taken from the checkpoint's generation_config when set


class TokenPicker:
    """Greedy or nucleus sampling on one row of logits, with its own seeded generator so a
    trace is reproducible whatever else runs in the process."""

    def __init__(self, settings: DecodingSettings, device: torch.device | str = "cpu") -> None:
        self.settings = settings
        self.generator = torch.Generator(device="cpu").manual_seed(settings.seed)

    def __call__(self, logits: torch.Tensor, history: Sequence[int] = ()) -> int:
        logits = logits.float().cpu()
        s = self.settings
        if s.repetition_penalty != 1.0 and history:
            seen = torch.tensor(sorted(set(history)), dtype=torch.long)
            picked = logits[seen]
            logits[seen] = torch.where(
                picked > 0, picked / s.repetition_penalty, picked * s.repetition_penalty
            )
        if not s.do_sample:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / max(s.temperature, 1e-5), dim=-1)
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        keep = cumulative - sorted_probs < s.top_p  # always keeps the most likely token
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=self.generator)
        return int(order[choice])


class Decoder:
    """One sequence on the LLM: feed embeddings or ids, keep the cache, read last logits."""

    def __init__(self, model) -> None:
        from transformers import DynamicCache

        self.model = model
        self.llm = model.llm
        self.cache = DynamicCache()
        self.length = 0

    @torch.no_grad()
    def feed_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        """(1,T,D) -> logits (V,) at the last position."""
        out = self.llm(inputs_embeds=embeds, cache=self.cache, use_cache=True, logits_to_keep=1)
        self.length += embeds.shape[1]
        return out.logits[0, -1]

    def feed_ids(self, ids: Sequence[int]) -> torch.Tensor:
        return self.feed_embeds(self.model.embed_ids(list(ids)).unsqueeze(0))

    def fork(self) -> Decoder:
        """An independent copy (the cache tensors are cloned), e.g. one per alternative."""
        import copy

        twin = Decoder.__new__(Decoder)
        twin.model, twin.llm, twin.length = self.model, self.llm, self.length
        twin.cache = copy.deepcopy(self.cache)
        return twin

    def generate(
        self,
        first_logits: torch.Tensor,
        picker: TokenPicker,
        max_new_tokens: int,
        stop_ids: Sequence[int],
        stop_text: str | None = None,
        tokenizer=None,
    ) -> Iterator[int]:
        """Yield new token ids; the stop id (or the token completing ``stop_text``) is the last
        one yielded. The last token is NOT fed back, so the cache ends one token short."""
        logits, history, text_tail = first_logits, [], ""
        for _ in range(max_new_tokens):
            token = picker(logits, history)
            history.append(token)
            yield token
            if token in stop_ids:
                return
            if stop_text is not None:
                text_tail = (text_tail + tokenizer.decode([token]))[-4 * len(stop_text) :]
                if stop_text in text_tail:
                    return
            if len(history) == max_new_tokens:
                return
            logits = self.feed_ids([token])


@dataclass
class StepEvent:
    step: Step


@dataclass
class AnswerEvent:
    answer: Answer


@dataclass
class DoneEvent:
    trace: Trace
    # The decoder's KV cache: the prompt under the clean clip, then everything generated. Hand it
    # to ``score_trace(clean_cache=...)`` to skip scoring's clean prefill (it is cropped to the
    # prompt there); otherwise drop it: it holds the whole sequence's keys and values.
    cache: Any = None


class StepSplitter:
    """Turns a growing list of generated ids into steps, each the moment its delimiter is
    decoded. A step's token span covers its ids up to and including the token in which the
    delimiter starts (``".<"`` carries both the step's full stop and the delimiter's ``<``)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.step_start = 0
        self.steps: list[Step] = []

    def push(self, token: int) -> Step | None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids[self.step_start :])
        if STEP_DELIMITER not in text:
            return None
        marker_at = text.index(STEP_DELIMITER)
        body = text[:marker_at].strip()
        end = self.step_start + 1
        while len(self.tokenizer.decode(self.ids[self.step_start : end])) <= marker_at:
            end += 1
        start, self.step_start = self.step_start, len(self.ids)
        if not body:  # a stray delimiter: no step to show
            return None
        step = Step(index=len(self.steps), text=body, token_start=start, token_end=end)
        self.steps.append(step)
        return step

    def finish(self) -> Step | None:
        """The text after the last delimiter (without ``<|im_end|>``) is the last step."""
        tail_ids = [t for t in self.ids[self.step_start :]]
        text = self.tokenizer.decode(tail_ids).replace(IM_END_TEXT, "").strip()
        if not text:
            return None
        end = len(self.ids)
        if tail_ids and self.tokenizer.decode(tail_ids[-1:]) == IM_END_TEXT:
            end -= 1
        step = Step(index=len(self.steps), text=text, token_start=self.step_start, token_end=end)
        self.steps.append(step)
        return step


@dataclass(frozen=True)
class ReasoningRequest:
    question: str
    options: list[str] | None = None
    prompt_kind: str = "reasoning"
    reference_answer: str | None = None
    decoding: DecodingSettings = DecodingSettings()
    two_pass: bool | None = None  # None: as the prompt kind says (direct answers in one pass)


def decoding_from_generation_config(
    settings: DecodingSettings, generation_config: dict[str, Any]
) -> DecodingSettings:
    """The official generate() reads the checkpoint's generation_config.json: a repetition
    penalty set there changes greedy outputs too, so we honour it."""
    penalty = generation_config.get("repetition_penalty")
    if penalty and settings.repetition_penalty == 1.0:
        return DecodingSettings(**{**asdict(settings), "repetition_penalty": float(penalty)})
    return settings


def stream_reasoning(
    loaded,
    media,
    request: ReasoningRequest,
    clip: ClipInfo | None = None,
    encoded=None,
) -> Iterator[StepEvent | AnswerEvent | DoneEvent]:
    """Yield each Step as soon as it is decoded, then the Answer, then the finished Trace.

    ``loaded`` is a LoadedModel, ``media`` a MediaInputs (pixel_values, spectrogram,
    real_time, clip); ``encoded`` may carry the clip's EncodedMedia to skip the encoders.
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    settings = decoding_from_generation_config(request.decoding, loaded.generation_config)
    prompt = build_prompt(tokenizer, request.prompt_kind, request.question, request.options)
    two_pass = PROMPTS[request.prompt_kind].two_pass if request.two_pass is None else request.two_pass
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    if encoded is None:
        encoded = model.encode_media(media.pixel_values, media.spectrogram, media.real_time)
    timings["encode_s"] = time.perf_counter() - t0

    im_end = tokenizer.convert_tokens_to_ids(IM_END_TEXT)
    decoder = Decoder(model)
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = decoder.feed_embeds(model.embed_prompt(list(prompt.ids), [encoded.av_block]))
    timings["prefill_s"] = time.perf_counter() - t0

    splitter = StepSplitter(tokenizer)
    yield from _decode_steps(decoder, logits, settings, splitter, im_end, timings)
    reasoning_ids = list(splitter.ids)
    reasoning_text = tokenizer.decode(reasoning_ids)
    t0 = time.perf_counter()
    if two_pass:
        answer_text = _answer_pass(decoder, tokenizer, reasoning_ids, settings, im_end)
    else:
        answer_text = splitter.steps[-1].text if splitter.steps else reasoning_text
    timings["answer_s"] = time.perf_counter() - t0
    choice = extract_choice(answer_text, request.options, request.prompt_kind)
    if choice is None and two_pass:
        choice = extract_choice(reasoning_text, request.options, request.prompt_kind)
    answer = Answer(text=answer_text, choice=choice)
    yield AnswerEvent(answer)

    text = prompt.text
    if two_pass:
        text = followup_prompt_text(prompt.text, reasoning_text.replace(IM_END_TEXT, ""))
    trace = Trace(
        question=trace_question(request.prompt_kind, request.question),
        clip=clip or getattr(media, "clip", None) or ClipInfo(sha256="unknown"),
        options=request.options,
        reference_answer=request.reference_answer,
        prompt_kind=request.prompt_kind,
        prompt=prompt.text,
        model=loaded.describe(),
        decoding={**asdict(settings), "two_pass": two_pass, "followup_prompt": text},
        steps=list(splitter.steps),
        answer=answer,
        timings={k: round(v, 4) for k, v in timings.items()},
        source="live",
    )
    trace.decoding["generated_ids"] = reasoning_ids
    yield DoneEvent(trace, cache=decoder.cache)


def _decode_steps(
    decoder: Decoder,
    logits: torch.Tensor,
    settings: DecodingSettings,
    splitter: StepSplitter,
    im_end: int,
    timings: dict[str, float],
) -> Iterator[StepEvent]:
    """Pass 1: decode the reasoning until ``<|im_end|>``, a StepEvent per finished step."""
    t0 = time.perf_counter()
    first_step_at = None
    for token in decoder.generate(logits, TokenPicker(settings), settings.max_new_tokens, stop_ids=[im_end]):
        step = splitter.push(token)
        if step is not None:
            first_step_at = first_step_at or time.perf_counter()
            yield StepEvent(step)
    last = splitter.finish()
    if last is not None:
        yield StepEvent(last)
    timings["generate_s"] = time.perf_counter() - t0
    if first_step_at is not None:
        timings["first_step_s"] = first_step_at - t0 + timings["encode_s"] + timings["prefill_s"]


def _answer_pass(
    decoder: Decoder, tokenizer, reasoning_ids: list[int], settings: DecodingSettings, im_end: int
) -> str:
    """Official second pass: prompt + reasoning ids (+ <|im_end|> when the model stopped) + the
    follow-up user turn. The cache already holds all but the last generated token."""
    from inference.model.prompts import FOLLOWUP_TEXT

    tail = reasoning_ids[-1:] if reasoning_ids else []
    if not reasoning_ids or reasoning_ids[-1] != im_end:
        tail = tail + [im_end]
    logits = decoder.feed_ids(tail + list(tokenizer(FOLLOWUP_TEXT).input_ids))
    answer_ids = list(
        decoder.generate(logits, TokenPicker(settings), settings.answer_max_new_tokens, stop_ids=[im_end])
    )
    return tokenizer.decode(answer_ids).replace(IM_END_TEXT, "").strip()


def run_reasoning(
    loaded, media, request: ReasoningRequest, clip: ClipInfo | None = None, encoded=None
) -> Trace:
    """The whole Trace at once, unscored (benchmarks and tests; the app and the commands run
    ``inference.reasoning.pipeline.analyze``)."""
    trace = None
    for event in stream_reasoning(loaded, media, request, clip=clip, encoded=encoded):
        if isinstance(event, DoneEvent):
            trace = event.trace
    assert trace is not None
    return trace
