"""Which frames are sampled, when they were shown, and that the decoded frame is that frame."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from examples.synth import read_frame_number
from inference.media import DecodeOptions, MediaLimits, load_media, sample_frame_indices


def official_indices(n: int, avg_fps: float) -> list[int]:
    """av_test_dataset.py:226-232, restated."""
    step = max(round(avg_fps / 2), 1)
    indices = list(range(0, n, round(step)))
    if len(indices) > 60:
        indices = np.linspace(0, n - 1, 60, dtype=int).tolist()
    return indices


def test_official_tiny_clip_indices():
    assert sample_frame_indices(180, 30000 / 1001) == list(range(0, 180, 15))


def test_25_fps_rounds_half_to_even():
    # round(12.5) == 12 in Python: 2.08 samples per second, not 1.92
    assert sample_frame_indices(100, 25.0) == [0, 12, 24, 36, 48, 60, 72, 84, 96]


def test_over_60_frames_spreads_60_over_the_whole_clip():
    indices = sample_frame_indices(2113, 1320625 / 44044)  # medical_example_clip.mp4
    assert indices == np.linspace(0, 2112, 60, dtype=int).tolist()
    assert (indices[0], indices[-1], len(indices)) == (0, 2112, 60)


def test_exactly_60_frames_keeps_the_stride():
    assert sample_frame_indices(300, 10.0) == list(range(0, 300, 5))


@pytest.mark.parametrize(
    ("n", "fps", "expected"),
    [
        (1, 30.0, [0]),
        (5, 1.0, [0, 1, 2, 3, 4]),  # below 2 fps every frame is taken (stride max(round(0.5), 1))
        (7, 2.0, [0, 1, 2, 3, 4, 5, 6]),
        (88, 12.5, [0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 60, 66, 72, 78, 84]),
        (1368, 30000 / 1001, np.linspace(0, 1367, 60, dtype=int).tolist()),
    ],
)
def test_matches_official_rule(n, fps, expected):
    assert sample_frame_indices(n, fps) == expected == official_indices(n, fps)


def test_limits_change_the_rule():
    assert sample_frame_indices(100, 10.0, MediaLimits(fps=1.0, max_frames=4)) == [0, 33, 66, 99]


def frame_numbers(inputs) -> list[int]:
    return [read_frame_number(frame) for frame in inputs.frames]


def test_short_clip(short_clip):
    inputs = load_media(short_clip)
    assert inputs.frame_indices == [0, 5, 10, 15, 20, 25]
    assert frame_numbers(inputs) == inputs.frame_indices
    assert inputs.clip.frame_times_s == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert (inputs.source_frames, inputs.real_time) == (30, 3.0)
    assert tuple(inputs.pixel_values.shape) == (6, 3, 384, 384)


def test_30_second_clip(make_clip):
    inputs = load_media(make_clip("30s.mp4", seconds=30, fps=10, size=(80, 48), audio=None))
    assert inputs.frame_indices == list(range(0, 300, 5))
    assert frame_numbers(inputs) == inputs.frame_indices
    assert inputs.clip.frame_times_s == [i / 2 for i in range(60)]
    assert inputs.real_time == 30.0


def test_70_second_clip_spreads_60_frames(make_clip):
    path = make_clip("70s.mp4", seconds=70, fps=8, size=(80, 48), sample_rate=16000, channels=1, gop=8)
    inputs = load_media(path)
    expected = np.linspace(0, 559, 60, dtype=int).tolist()
    assert inputs.frame_indices == expected
    assert frame_numbers(inputs) == expected
    assert inputs.clip.frame_times_s == [round(i / 8, 6) for i in expected]
    assert inputs.stats["seeks"] > 0  # whole GOPs without a sample were jumped over


def test_fast_paths_give_the_same_frames(make_clip):
    """Seeking and skipping unreferenced frames change the work, never the pixels."""
    path = make_clip("70s.mp4", seconds=70, fps=8, size=(80, 48), sample_rate=16000, channels=1, gop=8)
    fast = load_media(path)
    plain = load_media(path, options=DecodeOptions(seek=False, skip_nonref=False, threads=1))
    assert np.array_equal(fast.frames, plain.frames)
    assert plain.stats == {"decoded": 560, "seeks": 0}
    assert fast.stats["decoded"] < 500


@pytest.mark.parametrize(
    ("fps", "seconds", "n", "step"),
    [(Fraction(25, 2), 7, 88, 6), (25, 4, 100, 12), (Fraction(30000, 1001), 2, 60, 15), (1, 5, 5, 1)],
)
def test_odd_frame_rates(make_clip, fps, seconds, n, step):
    path = make_clip(f"fps{float(fps):.3f}.mp4", seconds=seconds, fps=fps, size=(80, 48), audio=None)
    inputs = load_media(path)
    assert inputs.source_frames == n
    assert inputs.frame_indices == list(range(0, n, step))
    assert frame_numbers(inputs) == inputs.frame_indices
    assert inputs.clip.fps == pytest.approx(float(fps), abs=1e-6)
    assert inputs.clip.frame_times_s == [round(i / float(fps), 6) for i in inputs.frame_indices]


def test_variable_frame_rate_uses_timestamps(make_clip):
    times = [0, 0.1, 0.15, 0.4, 0.5, 0.55, 0.9, 1.0, 1.3, 1.35, 1.8, 2.0, 2.1, 2.5]
    inputs = load_media(make_clip("vfr.mp4", frame_times=times, size=(80, 48)))
    # avg fps = 14 frames / 2.25 s (the container's own average), stride round(6.22 / 2) = 3
    assert inputs.clip.fps == pytest.approx(14 / 2.25, abs=1e-6)
    assert inputs.frame_indices == [0, 3, 6, 9, 12]
    assert frame_numbers(inputs) == [0, 3, 6, 9, 12]
    assert inputs.clip.frame_times_s == [0.0, 0.4, 0.9, 1.35, 2.1]
