"""The app's example clips: generated on demand, and their reference answers are true."""

from __future__ import annotations

import json

import numpy as np
import pytest

from examples.make_examples import EXAMPLES, QUESTIONS, ensure_examples, questions
from inference.media import DecodeOptions, load_media

SR = 16000


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    paths = ensure_examples(folder)
    return {path.name: load_media(path, options=DecodeOptions(keep_waveform=True)) for path in paths}


def test_committed_questions_match_the_script():
    assert json.loads(QUESTIONS.read_text()) == questions()
    assert [q["file"] for q in questions()] == [ex.file for ex in EXAMPLES]


def test_ensure_examples_writes_only_what_is_missing(tmp_path):
    first = ensure_examples(tmp_path)
    assert [p.name for p in first] == [ex.file for ex in EXAMPLES]
    stamps = {p: p.stat().st_mtime_ns for p in first}
    first[1].unlink()
    second = ensure_examples(tmp_path)
    assert second == first
    assert all(p.stat().st_mtime_ns == stamps[p] for p in (first[0], first[2]))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ex.file for ex in EXAMPLES)


def centroids(frames: np.ndarray, colour: str) -> list[tuple[float, float]]:
    """(x, y) centre of the red or blue shape in each (384, 384, 3) frame."""
    r, g, b = (frames[..., c].astype(int) for c in range(3))
    mask = (r > 180) & (g < 100) & (b < 100) if colour == "red" else (b > 180) & (r < 100)
    out = []
    for m in mask:
        ys, xs = np.nonzero(m)
        out.append((xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan))
    return out


def beeps(wave: np.ndarray) -> int:
    """Number of separate bursts of sound (50 ms energy envelope)."""
    hop = SR // 20
    energy = np.array([np.abs(wave[k : k + hop]).mean() for k in range(0, len(wave) - hop + 1, hop)])
    on = energy > 0.02
    return int(on[0]) + int(np.sum(on[1:] & ~on[:-1]))


def test_facts_and_answers(examples):
    for record in questions():
        inputs = examples[record["file"]]
        assert inputs.clip.has_audio is record["has_audio"]
        assert (inputs.clip.width, inputs.clip.height, inputs.real_time) == (640, 360, 7.0)
        assert inputs.clip.frame_times_s == [i / 2 for i in range(14)]


def test_red_ball_chirp(examples):
    inputs = examples["red_ball_chirp.mp4"]
    xs = [x for x, _ in centroids(inputs.frames, "red")]
    assert all(b > a for a, b in zip(xs, xs[1:], strict=False))  # left to right: answer A
    assert all(np.isnan(centroids(inputs.frames, "blue")[i][0]) for i in range(len(xs)))
    wave = inputs.waveform

    def pitch(segment):
        return np.fft.rfftfreq(len(segment), 1 / SR)[np.abs(np.fft.rfft(segment)).argmax()]

    assert pitch(wave[: SR // 2]) < 400 < 1000 < pitch(wave[-SR // 2 :])  # rising


def test_blue_square_beeps(examples):
    inputs = examples["blue_square_beeps.mp4"]
    ys = [y for _, y in centroids(inputs.frames, "blue")]
    assert all(b > a for a, b in zip(ys, ys[1:], strict=False))  # moving down
    assert beeps(inputs.waveform) == 7  # answer C


def test_silent_shapes(examples):
    inputs = examples["silent_shapes.mp4"]
    assert inputs.audio_source == "silence"
    blue_ys = [y for _, y in centroids(inputs.frames, "blue")]
    red_ys = [y for _, y in centroids(inputs.frames, "red")]
    assert blue_ys[-1] - blue_ys[0] > 100 and abs(red_ys[-1] - red_ys[0]) < 2  # answer B
