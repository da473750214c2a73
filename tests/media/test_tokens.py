"""The exact LLM token cost of a clip's audio-visual block."""

from __future__ import annotations

import pytest

from inference.media import llm_token_cost, load_media


@pytest.mark.parametrize(
    ("frames", "chunks", "real_time", "tokens"),
    [
        (12, 1, 6.006, 12 * 182 + 156),  # official_tiny: 150 -> 156 = 12 x 13
        (60, 1, 30.0, 60 * 182 + 180),  # 150 -> 180 = 60 x 3
        (60, 2, 45.6456, 60 * 182 + 300),  # 300 is a multiple of 60
        (60, 3, 70.47, 60 * 182 + 480),  # 450 -> 480 = 60 x 8
        (7, 1, None, 7 * 182 + 154),  # 150 -> 154 = 7 x 22
        # under 3 s only round(real_time * 50) tokens are interleaved, the rest follow the frames
        (4, 1, 2.0, 4 * 182 + 100 + 50),
        (3, 1, 1.1, 3 * 182 + 57 + 95),  # front 55 -> 57, back 95
    ],
)
def test_llm_token_cost(frames, chunks, real_time, tokens):
    assert llm_token_cost(frames, chunks, real_time) == tokens


def test_media_inputs_token_count(short_clip):
    inputs = load_media(short_clip)  # 3 s: 6 frames, 1 chunk, round(3.0 * 50) = 150 all interleaved
    assert inputs.llm_tokens == 6 * 182 + 150
