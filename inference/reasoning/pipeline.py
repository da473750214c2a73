"""The analysis of one clip, written once: what the app, ``inference run`` and ``inference batch``
all consume, and what ``alternatives`` and ``rollouts`` start from.

``ClipSession`` owns one clip (its MediaInputs) encoded on one loaded model: the clean AV block,
encoded once, and the KV cache of the clean prompt once a reasoning has been generated (handed
to scoring, which then skips its own clean prefill). Its verbs: ``reason`` (a stream of typed
events), ``score``, ``clip_spans``, ``alternatives``, ``rollouts``, and ``base_model`` (the LoRA
adapter switched off, for a side-by-side comparison).

``analyze(session, settings)`` is the whole analysis as typed events: ``Phase`` (a new part
begins), ``StepDecoded``, ``AnswerDecoded``, ``Scored``, ``SpansFound`` and ``Finished`` with the
Trace. The same clip and settings give the same Trace from every entry point
(tests/scoring/test_pipeline.py).

Importing this module imports no torch: the app's label-only mode uses its event classes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# ---- events --------------------------------------------------------------------------------------


@dataclass
class Phase:
    """A part of the analysis begins: "generate", "score" (``detail``: the perturbations) or
    "attention" (the clip spans)."""

    name: str
    detail: str = ""
    base: bool = False  # of the base model (adapter off) in a side-by-side comparison


@dataclass
class StepDecoded:
    step: Any  # studio_trace.Step
    base: bool = False


@dataclass
class AnswerDecoded:
    answer: Any  # studio_trace.Answer
    base: bool = False


@dataclass
class Scored:
    trace: Any  # every step now carries its scores and per-token KL
    base: bool = False


@dataclass
class SpansFound:
    trace: Any
    spans: list  # per step, (start, end) seconds of the clip it attends to most, or None
    base: bool = False


@dataclass
class Finished:
    trace: Any  # studio_trace.Trace, scored and with clip spans when asked
    base: bool = False


Event = Phase | StepDecoded | AnswerDecoded | Scored | SpansFound | Finished


# ---- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything besides the clip and the model that shapes a Trace."""

    prompt_kind: str = "reasoning"
    question: str = ""  # synthdec: empty or its fixed text (the Trace carries the fixed text)
    options: tuple[str, ...] = ()
    reference_answer: str | None = None
    max_new_tokens: int = 512  # official max_tokens
    do_sample: bool = False  # official inference is greedy
    temperature: float = 1.0
    top_p: float = 0.9
    seed: int = 0  # of the decoding
    perturbations: tuple[str, ...] = ()  # contrastive scores under these; empty: no scores
    top_t: int = 3  # paper Fig. 5: T = 3 works best
    score_seed: int | None = None  # the perturbations' seed; None: ``seed``
    clip_spans: bool = True  # each step's clip span (inference.reasoning.attribution)

    def reasoning_request(self):
        from inference.reasoning.generate import DecodingSettings, ReasoningRequest

        return ReasoningRequest(
            question=self.question,
            options=list(self.options) or None,
            prompt_kind=self.prompt_kind,
            reference_answer=self.reference_answer or None,
            decoding=DecodingSettings(
                max_new_tokens=self.max_new_tokens,
                do_sample=self.do_sample,
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self.seed,
            ),
        )


# ---- one clip on one model -----------------------------------------------------------------------


class ClipSession:
    """One clip encoded on one loaded model (module docstring)."""

    def __init__(self, loaded: Any, media: Any, encoded: Any = None) -> None:
        self.loaded = loaded
        self.media = media
        self._encoded = encoded
        self.encode_s = 0.0  # the time the encoders took here (0 when given an encoding)
        self._generated: tuple[Any, Any] | None = None  # (trace, the decoder's KV cache)

    @property
    def encoded(self) -> Any:
        """The clip's clean EncodedMedia (av_block, layout), encoded on first use."""
        if self._encoded is None:
            media = self.media
            started = time.perf_counter()
            self._encoded = self.loaded.model.encode_media(
                media.pixel_values, media.spectrogram, float(media.real_time)
            )
            self.encode_s = time.perf_counter() - started
        return self._encoded

    @property
    def has_adapter(self) -> bool:
        return bool(getattr(self.loaded, "adapter", None))

    @contextmanager
    def base_model(self) -> Iterator[None]:
        """The LLM with its LoRA layers switched off: the frozen base model (the pDPO reference
        policy). Encoders and projectors carry no adapter, so the encoding is shared. peft
        restores the adapter when the block exits, also when a consumer closes the stream early
        (GeneratorExit runs this exit)."""
        with self.loaded.model.llm.disable_adapter():
            yield

    def reason(
        self, settings: AnalysisSettings, base: bool = False
    ) -> Iterator[StepDecoded | AnswerDecoded | Finished]:
        """Each step as soon as it is decoded, the answer, then the (unscored) Trace. The
        decoder's cache is kept for ``score`` of that trace."""
        from inference.reasoning.generate import AnswerEvent, DoneEvent, StepEvent, stream_reasoning

        self.release_cache()
        for event in stream_reasoning(
            self.loaded, self.media, settings.reasoning_request(), encoded=self.encoded
        ):
            if isinstance(event, StepEvent):
                yield StepDecoded(event.step, base=base)
            elif isinstance(event, AnswerEvent):
                yield AnswerDecoded(event.answer, base=base)
            elif isinstance(event, DoneEvent):
                self._generated = (event.trace, event.cache)
                yield Finished(event.trace, base=base)

    def release_cache(self) -> None:
        """Drop the last generation's KV cache (the whole sequence's keys and values)."""
        self._generated = None

    def score(self, trace: Any, perturbations: tuple[str, ...], top_t: int = 3, seed: int = 0) -> Any:
        """Contrastive step scores of ``trace``, in place (``inference.reasoning.scoring``)."""
        from inference.reasoning.scoring import score_trace

        cache = self._generated[1] if self._generated and self._generated[0] is trace else None
        self.release_cache()
        return score_trace(
            self.loaded,
            self.media,
            trace,
            perturbations=perturbations,
            top_t=top_t,
            seed=seed,
            encoded=self.encoded,
            clean_cache=cache,  # generation's prefill of the prompt under the clean clip
        )

    def clip_spans(self, trace: Any) -> list:
        """Each step's clip span, stored in ``trace.scoring["frame_attention"]`` (the one place
        a Trace keeps them) and returned."""
        from inference.reasoning.attribution import frame_attention

        started = time.perf_counter()
        attention = frame_attention(self.loaded, trace, self.encoded)
        spans = [attention.span(k) for k in range(len(trace.steps))]
        trace.scoring = {**(trace.scoring or {}), "frame_attention": {**attention.to_dict(), "spans": spans}}
        trace.timings["attention_s"] = round(time.perf_counter() - started, 4)
        return spans

    def alternatives(self, trace: Any, step_index: int, settings: Any) -> list:
        """``settings.n`` sampled replacements of a step, appended to ``trace.alternatives``."""
        from inference.reasoning.alternatives import sample_alternatives

        return sample_alternatives(
            self.loaded, self.media, trace, step_index, settings=settings, encoded=self.encoded
        )

    def rollouts(
        self,
        trace: Any,
        step_index: int,
        settings: Any,
        reference: str | None = None,
        alternatives: tuple[int, ...] | list[int] = (),
        mu: float | None = None,
    ) -> dict[str, Any]:
        """Expected correctness of a step and of the given alternatives at it, by rollouts."""
        from inference.reasoning.alternatives import DEFAULT_MU, rollout_step

        return rollout_step(
            self.loaded,
            self.media,
            trace,
            step_index,
            reference=reference,
            alternatives=alternatives,
            settings=settings,
            mu=DEFAULT_MU if mu is None else mu,
            encoded=self.encoded,
        )


# ---- the analysis --------------------------------------------------------------------------------


def analyze(session: ClipSession, settings: AnalysisSettings, compare_base: bool = False) -> Iterator[Event]:
    """The whole analysis as events. With ``compare_base`` and an adapter loaded, the base model
    (adapter off) then analyses the same encoded clip with the same settings."""
    trace = yield from _analyze_one(session, settings, base=False)
    if compare_base and session.has_adapter:
        with session.base_model():
            yield from _analyze_one(session, settings, base=True, compared_with=trace.id)


def _analyze_one(
    session: ClipSession, settings: AnalysisSettings, base: bool, compared_with: str | None = None
) -> Iterator[Event]:
    yield Phase("generate", base=base)
    trace = None
    for event in session.reason(settings, base=base):
        if isinstance(event, Finished):
            trace = event.trace
        else:
            yield event
    trace.timings["encode_s"] = round(session.encode_s, 4)
    trace.timings["decode_s"] = round(float(getattr(session.media, "timings", {}).get("decode_s", 0.0)), 4)
    if base:
        trace.model["adapter"] = None
        trace.model["compared_with"] = compared_with
    if settings.perturbations and trace.steps:
        yield Phase("score", ", ".join(settings.perturbations), base=base)
        seed = settings.seed if settings.score_seed is None else settings.score_seed
        session.score(trace, settings.perturbations, settings.top_t, seed)
        yield Scored(trace, base=base)
    session.release_cache()
    if settings.clip_spans and trace.steps:
        yield Phase("attention", base=base)
        yield SpansFound(trace, session.clip_spans(trace), base=base)
    yield Finished(trace, base=base)
    return trace


def analysis_trace(events: Iterator[Event]) -> Any:
    """The (first model's) finished Trace of an ``analyze`` stream, for callers that need no
    events (``inference run``, ``inference batch``)."""
    trace = None
    for event in events:
        if isinstance(event, Finished) and not event.base:
            trace = event.trace
    if trace is None:
        raise RuntimeError("the analysis ended without a trace")
    return trace
