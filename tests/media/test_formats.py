"""Portrait, rotated, 4K, other codecs and containers: the same frames come out."""

from __future__ import annotations

import numpy as np
import pytest

from examples.synth import read_frame_number
from inference.media import DecodeOptions, load_media, probe_clip


def numbers(frames: np.ndarray, quarter_turns_back: int = 0) -> list[int]:
    return [read_frame_number(np.rot90(frame, quarter_turns_back)) for frame in frames]


def test_portrait(make_clip):
    inputs = load_media(make_clip("portrait.mp4", seconds=2, fps=10, size=(96, 160)))
    assert (inputs.clip.width, inputs.clip.height) == (96, 160)
    assert numbers(inputs.frames) == inputs.frame_indices == [0, 5, 10, 15]


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_rotated_clip_is_turned_upright(make_clip, rotation):
    """Stored 160x96 with a display matrix, as phones write portrait video. PyAV reports the
    counter-clockwise turn a player applies; the frames come out turned that way."""
    path = make_clip(f"rot{rotation}.mp4", seconds=2, fps=10, size=(160, 96), rotation=rotation)
    info = probe_clip(path)
    expected_size = (160, 96) if rotation == 180 else (96, 160)
    assert (info.width, info.height) == expected_size
    inputs = load_media(path)
    assert (inputs.clip.width, inputs.clip.height) == expected_size
    # turning the frames back (clockwise) finds the number row at the top again
    assert numbers(inputs.frames, -(rotation // 90)) == [0, 5, 10, 15]
    if rotation != 180:
        assert numbers(inputs.frames, rotation // 90) != [0, 5, 10, 15]


def test_rotation_can_be_ignored_like_decord(make_clip):
    path = make_clip("rot90.mp4", seconds=2, fps=10, size=(160, 96), rotation=90)
    inputs = load_media(path, options=DecodeOptions(apply_rotation=False))
    assert numbers(inputs.frames) == [0, 5, 10, 15]
    assert (inputs.clip.width, inputs.clip.height) == (160, 96)


def test_4k(make_clip):
    inputs = load_media(make_clip("4k.mp4", seconds=1, fps=4, size=(3840, 2160), audio=None))
    assert (inputs.clip.width, inputs.clip.height) == (3840, 2160)
    assert tuple(inputs.frames.shape) == (2, 384, 384, 3)
    assert numbers(inputs.frames) == [0, 2]


@pytest.mark.parametrize(
    ("name", "codec", "audio"),
    [
        ("clip.mkv", "libx264", "tone"),
        ("clip.webm", "libvpx", None),
        ("clip.avi", "mpeg4", None),
        ("clip.mov", "mpeg4", "tone"),
    ],
)
def test_containers_and_codecs(make_clip, name, codec, audio):
    inputs = load_media(make_clip(name, seconds=3, fps=10, codec=codec, audio=audio))
    assert numbers(inputs.frames) == inputs.frame_indices == [0, 5, 10, 15, 20, 25]
    assert (inputs.real_time, inputs.clip.has_audio) == (3.0, audio is not None)
    assert inputs.clip.frame_times_s == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_frame_count_without_header_count(make_clip):
    """MKV stores no frame count and its duration is the longest stream's (here the audio): the
    frames are counted from the packets, as decord2 does, not estimated as duration x fps."""
    path = make_clip("long_audio.mkv", seconds=3, fps=10, audio_seconds=4.5)
    inputs = load_media(path)
    assert (inputs.source_frames, inputs.real_time) == (30, 3.0)
    assert numbers(inputs.frames) == inputs.frame_indices == [0, 5, 10, 15, 20, 25]


def test_animated_gif_is_a_video(tmp_path):
    from PIL import Image

    path = tmp_path / "anim.gif"
    images = [Image.fromarray(np.full((48, 64, 3), 20 * i, dtype=np.uint8)) for i in range(10)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    inputs = load_media(path)
    assert (inputs.source_frames, inputs.clip.fps, inputs.frame_indices) == (10, 10.0, [0, 5])
    levels = inputs.frames.reshape(2, -1).mean(axis=1)
    assert abs(levels[0] - 0) < 3 and abs(levels[1] - 100) < 3


def test_probe_agrees_with_load(short_clip):
    info = probe_clip(short_clip)
    assert info == load_media(short_clip).clip
    assert len(info.sha256) == 64 and info.name == "short.mp4"
