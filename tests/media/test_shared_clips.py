"""The six real clips in ../shared/clips (skipped cleanly where they are absent)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.media import DecodeOptions, load_media, probe_clip

pytestmark = pytest.mark.shared_clips


def spread(n: int) -> list[int]:
    return np.linspace(0, n - 1, 60, dtype=int).tolist()


# file -> frames, avg fps, display (width, height), has_audio, sampled frame indices,
#         audio samples, chunks, LLM tokens
EXPECTED = {
    "standup_1.mp4": (1368, 30000 / 1001, (360, 640), True, spread(1368), 730_330, 2, 11220),
    "medical_example_clip.mp4": (2113, 1320625 / 44044, (640, 360), True, spread(2113), 1_127_526, 3, 11400),
    "synth_1.mp4": (161, 24.0, (1280, 720), False, list(range(0, 161, 12)), 107_333, 1, 2702),
    "synth_2.mp4": (161, 24.0, (1280, 720), False, list(range(0, 161, 12)), 107_333, 1, 2702),
    # these two audio tracks end a little before the picture: the audio is not padded to it
    "nextqa_1.mp4": (729, 24.0, (640, 1138), True, spread(729), 485_947, 2, 11220),
    "Lark20250826-101931.mp4": (473, 22.48, (640, 480), True, list(range(0, 473, 11)), 336_225, 1, 7998),
}


@pytest.fixture(scope="module")
def load(shared_clips):
    """``load(name)`` -> MediaInputs, each real clip decoded once for the module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_media(shared_clips / name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_facts(shared_clips, load, name):
    n, fps, size, has_audio, indices, samples, chunks, tokens = EXPECTED[name]
    inputs = load(name)
    assert inputs.source_frames == n
    assert inputs.real_time == n / fps
    assert (inputs.clip.width, inputs.clip.height) == size
    assert inputs.clip.has_audio is has_audio
    assert inputs.frame_indices == indices
    assert inputs.clip.frame_times_s == [round(i / fps, 6) for i in indices]
    assert tuple(inputs.pixel_values.shape) == (len(indices), 3, 384, 384)
    assert tuple(inputs.spectrogram.shape) == (chunks, 128, 3000)
    assert inputs.audio_samples == samples
    assert samples <= round(16000 * n / fps)  # cut at the clip's length
    assert inputs.llm_tokens == tokens
    assert probe_clip(shared_clips / name) == inputs.clip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_frames_equal_decord(shared_clips, load, name):
    decord = pytest.importorskip("decord")
    inputs = load(name)
    reader = decord.VideoReader(str(shared_clips / name), ctx=decord.cpu(0), num_threads=1)
    assert len(reader) == inputs.source_frames
    assert reader.get_avg_fps() == pytest.approx(inputs.clip.fps, abs=1e-6)
    frames = reader.get_batch(inputs.frame_indices).asnumpy()
    resized = np.stack([np.asarray(Image.fromarray(f).resize((384, 384), Image.BICUBIC)) for f in frames])
    assert np.array_equal(inputs.frames, resized)


def test_standup_with_its_official_wav(shared_clips):
    keep = DecodeOptions(keep_waveform=True)
    wav = shared_clips / "standup_1_16k_mono.wav"
    inputs = load_media(shared_clips / "standup_1.mp4", audio_path=wav, options=keep)
    assert inputs.audio_samples == 730_330  # the official cut at round(16000 * 45.6456)
    assert inputs.audio_source == "file"
    container = load_media(shared_clips / "standup_1.mp4", options=keep)
    assert np.abs(container.waveform - inputs.waveform).max() <= 1 / 32768 + 1e-9
