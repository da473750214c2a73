"""Which moment of the clip a step attends to (inference.reasoning.attribution) on the tiny model."""

from __future__ import annotations

import pytest

from inference.reasoning.attribution import FrameAttention, frame_span


def test_frame_span_runs_to_the_next_sampled_frame():
    times = [0.0, 0.5, 1.0]
    assert frame_span(0, times, 1.4) == (0.0, 0.5)
    assert frame_span(2, times, 1.4) == (1.0, 1.4)
    assert frame_span(2, times, 0.0) == (1.0, 1.5)
    assert frame_span(None, times, 1.4) is None
    assert frame_span(3, times, 1.4) is None


def test_top_frame_and_span():
    attention = FrameAttention([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], [0.0, 0.5, 1.0], 1.5)
    assert [attention.top_frame(0), attention.top_frame(1)] == [1, 0]
    assert attention.span(0) == (0.5, 1.0)
    assert attention.to_dict()["top_frames"] == [1, 0]


@pytest.mark.slow
def test_attention_per_step_sums_to_one_and_restores_the_attention_kind(tiny_model, clip):
    from inference.media import load_media
    from inference.reasoning.attribution import frame_attention
    from studio_trace import Trace

    media = load_media(clip)
    trace = Trace(question="What moves?", clip=media.clip, options=["a", "b"])
    from inference.model.prompts import build_prompt
    from studio_trace import Step

    trace.prompt = build_prompt(tiny_model.tokenizer, "reasoning", "What moves?", ["a", "b"]).text
    trace.steps = [Step(0, "A ball moves to the right."), Step(1, "So the answer is A!:")]
    encoded = tiny_model.model.encode_media(media.pixel_values, media.spectrogram, media.real_time)
    before = tiny_model.model.llm.config._attn_implementation
    first = frame_attention(tiny_model, trace, encoded)
    assert tiny_model.model.llm.config._attn_implementation == before
    assert len(first.weights) == 2
    for row in first.weights:
        assert len(row) == media.n_frames
        assert sum(row) == pytest.approx(1.0, abs=1e-5)
        assert min(row) >= 0
    assert first.span(1)[0] in media.clip.frame_times_s
    assert frame_attention(tiny_model, trace, encoded).weights == first.weights  # deterministic
