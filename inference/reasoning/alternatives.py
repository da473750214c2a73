"""Alternative steps and rollouts: the candidates and the estimates behind step preferences.

Alternatives (paper section 3; official ``contrast_gen``, ``llava_trainer.py:1559-1572``): from
the prefix of step k, i.e. the prompt + ``tok(prev_k)`` (the steps before k, each followed by
``"<end_of_step>\\n"``, tokenized as one string: the scoring convention), sample a replacement
step with top_p 0.9 and at most 64 tokens (``prediction_generate(buildtree=True)`` caps at 64),
stopping when ``<end_of_step>`` appears (or at ``<|im_end|>``).

Rollouts (official ``do_rollout``, ``llava_trainer.py:1266-1297``, and the two-pass answer of
``inference.py:403-427``): from the prefix + a candidate step + ``"<end_of_step>\\n"``, sample a
continuation to ``<|im_end|>``, then ask the follow-up question for the final answer; the
fraction of rollouts whose extracted answer matches the reference is the candidate's expected
correctness p(s) (N = 6 in the paper). Two candidates at one prefix give the paper's pDPO label:
hard ``1[p(s) > p(s')]`` or soft ``sigmoid((p(s) - p(s')) / mu)``.

The clip is encoded and the prompt prefilled ONCE; every sample starts from that KV cache, which
is cropped back to the prefix after each sample (no copy of an 11k-token cache per sample).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from inference.model.prompts import FOLLOWUP_TEXT
from inference.reasoning.generate import (
    Decoder,
    DecodingSettings,
    TokenPicker,
    decoding_from_generation_config,
)
from inference.reasoning.scoring import MARKER, ScoringError, prev_text, trace_prompt_ids
from studio_trace import IM_END as IM_END_TEXT
from studio_trace import STEP_DELIMITER, Alternative, Trace, extract_choice

PREFIX_CONVENTION = "prompt + tok(previous steps, each + '<end_of_step>\\n')"


@dataclass(frozen=True)
class AlternativeSettings:
    n: int = 4  # candidates per request: enough to choose from, cheap at 64 tokens each
    top_p: float = 0.9  # paper / official prediction_generate(top_p=0.9)
    temperature: float = 1.0  # official generate() leaves it at 1
    max_new_tokens: int = 64  # official prediction_generate(buildtree=True): 64 tokens per step
    seed: int = 0  # sample i uses seed + i, so each is reproducible alone


@dataclass(frozen=True)
class RolloutSettings:
    n: int = 6  # paper: 6 rollouts per step estimate p(s)
    top_p: float = 0.9  # official do_rollout samples (do_sample=True, top_p=0.9)
    temperature: float = 1.0
    max_new_tokens: int = 512  # official max_new_tokens for a whole reasoning
    answer_max_new_tokens: int = 64  # the second pass only states the answer
    answer_do_sample: bool = False  # the answer pass is greedy as in official inference
    seed: int = 0  # rollout i uses seed + i


@dataclass
class Rollout:
    seed: int
    continuation: str  # text after the candidate step, <|im_end|> removed
    answer: str  # the second pass's text
    choice: str | None  # extracted letter (or YES/NO)
    correct: bool
    stopped: str  # "im_end" | "length"


@dataclass
class RolloutResult:
    step_index: int
    candidate: str  # "step" or "alternative:<j>" or "text"
    text: str
    reference: str
    expected_correctness: float
    rollouts: list[Rollout] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Preference:
    """Suggested pDPO label for candidate s over s' at the same prefix."""

    p_s: float
    p_s_alt: float
    hard: int  # 1[p(s) > p(s')]: a tie gives 0, as the paper writes it
    soft: float  # sigmoid((p(s) - p(s')) / mu)
    mu: float


DEFAULT_MU = 0.2  # not given in the paper or code: one rollout of 6 (1/6) -> 0.70, all 6 -> 0.99


def suggest_preference(p_s: float, p_s_alt: float, mu: float = DEFAULT_MU) -> Preference:
    """The paper's hard and soft labels from two expected correctnesses."""
    if mu <= 0:
        raise ValueError("mu must be positive")
    soft = 1.0 / (1.0 + math.exp(-(p_s - p_s_alt) / mu))
    return Preference(p_s, p_s_alt, int(p_s > p_s_alt), soft, mu)


# ---- shared machinery ----------------------------------------------------------------------------


def _tok(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text).input_ids) if text else []


class PrefixSampler:
    """The clip encoded and the prompt fed once; ``set_prefix`` feeds a text prefix after it
    (cropping back to the prompt first), and each sample starts from there."""

    def __init__(self, loaded, media, trace: Trace, prefix: str = "", encoded=None) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.im_end = self.tokenizer.convert_tokens_to_ids(IM_END_TEXT)
        self.base = decoding_from_generation_config(DecodingSettings(), loaded.generation_config)
        model = loaded.model
        if encoded is None:
            encoded = model.encode_media(media.pixel_values, media.spectrogram, float(media.real_time))
        self.decoder = Decoder(model)
        with torch.no_grad():
            embeds = model.embed_prompt(trace_prompt_ids(self.tokenizer, trace), [encoded.av_block])
            self.prompt_logits = self.decoder.feed_embeds(embeds)
        self.prompt_length = self.decoder.length
        self.set_prefix(prefix)

    def set_prefix(self, prefix: str) -> None:
        self.length = self.prompt_length
        self.rewind()
        logits = self.prompt_logits
        prefix_ids = _tok(self.tokenizer, prefix)
        if prefix_ids:
            with torch.no_grad():
                logits = self.decoder.feed_ids(prefix_ids)
        self.first_logits = logits
        self.length = self.decoder.length

    def picker(self, seed: int, top_p: float, temperature: float, do_sample: bool = True) -> TokenPicker:
        settings = DecodingSettings(
            do_sample=do_sample,
            top_p=top_p,
            temperature=temperature,
            seed=seed,
            repetition_penalty=self.base.repetition_penalty,
        )
        return TokenPicker(settings)

    def rewind(self) -> None:
        """Drop whatever a sample appended to the cache, back to the prefix."""
        extra = self.decoder.cache.get_seq_length() - self.length
        if extra > 0:
            self.decoder.cache.crop(-extra)
        self.decoder.length = self.length

    def sample(self, picker: TokenPicker, max_new_tokens: int, stop_text: str | None = None) -> list[int]:
        """Generated ids from the prefix (the cache then holds all but the last one)."""
        with torch.no_grad():
            return list(
                self.decoder.generate(
                    self.first_logits,
                    picker,
                    max_new_tokens,
                    stop_ids=[self.im_end],
                    stop_text=stop_text,
                    tokenizer=self.tokenizer,
                )
            )


def _check_step(trace: Trace, step_index: int) -> None:
    if not trace.steps:
        raise ScoringError("the trace has no steps")
    if not 0 <= step_index < len(trace.steps):
        raise ScoringError(
            f"step {step_index} does not exist; the trace has steps 0 to {len(trace.steps) - 1}"
        )


def step_text_from_sample(text: str) -> tuple[str, str]:
    """(step text, how it stopped) from a decoded sample."""
    if STEP_DELIMITER in text:
        return text[: text.index(STEP_DELIMITER)].strip(), "marker"
    if IM_END_TEXT in text:
        return text[: text.index(IM_END_TEXT)].strip(), "im_end"
    return text.strip(), "length"


# ---- alternatives --------------------------------------------------------------------------------


def sample_alternatives(
    loaded,
    media,
    trace: Trace,
    step_index: int,
    n: int = 4,
    seed: int = 0,
    settings: AlternativeSettings | None = None,
    encoded=None,
) -> list[Alternative]:
    """Sample ``n`` replacements for step ``step_index`` from its prefix; they are appended to
    ``trace.alternatives`` and returned. Alternative i is drawn with seed ``seed + i``."""
    settings = settings or AlternativeSettings(n=n, seed=seed)
    _check_step(trace, step_index)
    texts = [s.text for s in trace.steps]
    sampler = PrefixSampler(loaded, media, trace, prev_text(texts, step_index), encoded)
    out = []
    for i in range(settings.n):
        t0 = time.perf_counter()
        picker = sampler.picker(settings.seed + i, settings.top_p, settings.temperature)
        ids = sampler.sample(picker, settings.max_new_tokens, stop_text=STEP_DELIMITER)
        sampler.rewind()
        text, stopped = step_text_from_sample(loaded.tokenizer.decode(ids))
        out.append(
            Alternative(
                step_index=step_index,
                text=text,
                source="model",
                settings={
                    "top_p": settings.top_p,
                    "temperature": settings.temperature,
                    "max_new_tokens": settings.max_new_tokens,
                    "seed": settings.seed + i,
                    "stopped": stopped,
                    "tokens": len(ids),
                    "prefix": PREFIX_CONVENTION,
                    "sample_s": round(time.perf_counter() - t0, 4),
                },
            )
        )
    trace.alternatives.extend(out)
    return out


# ---- rollouts ------------------------------------------------------------------------------------


def normalise_choice(answer: str | None) -> str | None:
    return answer.strip().upper() if answer and answer.strip() else None


def rollout_candidate(
    loaded,
    media,
    trace: Trace,
    step_index: int,
    text: str | None = None,
    n: int = 6,
    reference: str | None = None,
    seed: int = 0,
    settings: RolloutSettings | None = None,
    encoded=None,
    candidate: str = "step",
    sampler: PrefixSampler | None = None,
) -> RolloutResult:
    """Roll out ``n`` continuations to a final answer from step ``step_index``'s prefix followed by
    ``text`` (default: the step itself) and ``"<end_of_step>\\n"``; return the fraction whose
    extracted answer equals ``reference`` (default: the trace's reference answer)."""
    settings = settings or RolloutSettings(n=n, seed=seed)
    _check_step(trace, step_index)
    reference = normalise_choice(reference or trace.reference_answer)
    if reference is None:
        raise ScoringError("no reference answer to compare with; pass one (e.g. --reference B)")
    texts = [s.text for s in trace.steps]
    text = trace.steps[step_index].text if text is None else text.strip()
    prefix = prev_text(texts, step_index) + text + MARKER
    if sampler is None:
        sampler = PrefixSampler(loaded, media, trace, prefix, encoded)
    else:
        sampler.set_prefix(prefix)
    tokenizer, im_end = loaded.tokenizer, sampler.im_end
    followup = _tok(tokenizer, FOLLOWUP_TEXT)
    rollouts = []
    for i in range(settings.n):
        picker = sampler.picker(settings.seed + i, settings.top_p, settings.temperature)
        ids = sampler.sample(picker, settings.max_new_tokens)
        stopped = "im_end" if ids and ids[-1] == im_end else "length"
        # Second pass on the same cache, as generate.stream_reasoning: the last sampled token,
        # <|im_end|> when the model did not stop by itself, then the follow-up user turn.
        tail = ids[-1:] + ([] if stopped == "im_end" else [im_end])
        with torch.no_grad():
            logits = sampler.decoder.feed_ids(tail + followup)
            answer_picker = sampler.picker(
                settings.seed + i, settings.top_p, settings.temperature, do_sample=settings.answer_do_sample
            )
            answer_ids = list(
                sampler.decoder.generate(
                    logits, answer_picker, settings.answer_max_new_tokens, stop_ids=[im_end]
                )
            )
        sampler.rewind()
        continuation = tokenizer.decode(ids).replace(IM_END_TEXT, "").strip()
        answer = tokenizer.decode(answer_ids).replace(IM_END_TEXT, "").strip()
        choice = extract_choice(answer, trace.options, trace.prompt_kind)
        if choice is None:  # as the two-pass decode: fall back to the reasoning itself
            choice = extract_choice(prefix + continuation, trace.options, trace.prompt_kind)
        rollouts.append(
            Rollout(settings.seed + i, continuation, answer, choice, choice == reference, stopped)
        )
    correct = sum(r.correct for r in rollouts)
    return RolloutResult(
        step_index=step_index,
        candidate=candidate,
        text=text,
        reference=reference,
        expected_correctness=correct / len(rollouts) if rollouts else 0.0,
        rollouts=rollouts,
        settings=asdict(settings),
    )


def rollout_step(
    loaded,
    media,
    trace: Trace,
    step_index: int,
    n: int = 6,
    reference: str | None = None,
    alternatives: Sequence[int] = (),
    seed: int = 0,
    settings: RolloutSettings | None = None,
    mu: float = DEFAULT_MU,
    encoded=None,
) -> dict[str, Any]:
    """Rollouts from step ``step_index`` and from each of the given alternatives (indices into
    ``trace.alternatives``, which must replace that step); stores each expected correctness on
    its Step / Alternative and returns ``{"results": [...], "preferences": [...]}``, one
    preference of the step over each alternative."""
    settings = settings or RolloutSettings(n=n, seed=seed)
    _check_step(trace, step_index)
    sampler = PrefixSampler(loaded, media, trace, encoded=encoded)  # one prompt prefill for all
    step_result = rollout_candidate(
        loaded, media, trace, step_index, None, reference=reference, settings=settings, sampler=sampler
    )
    trace.steps[step_index].expected_correctness = step_result.expected_correctness
    results, preferences = [step_result], []
    for j in alternatives:
        if not 0 <= j < len(trace.alternatives):
            raise ScoringError(f"alternative {j} does not exist; the trace has {len(trace.alternatives)}")
        alt = trace.alternatives[j]
        if alt.step_index != step_index:
            raise ScoringError(f"alternative {j} replaces step {alt.step_index}, not step {step_index}")
        result = rollout_candidate(
            loaded,
            media,
            trace,
            step_index,
            alt.text,
            reference=reference,
            settings=settings,
            candidate=f"alternative:{j}",
            sampler=sampler,
        )
        alt.expected_correctness = result.expected_correctness
        results.append(result)
        pref = suggest_preference(step_result.expected_correctness, result.expected_correctness, mu)
        preferences.append({"chosen_over": f"alternative:{j}", **asdict(pref)})
    return {"results": [r.to_dict() for r in results], "preferences": preferences}
