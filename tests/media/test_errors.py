"""Every bad input a user can hand in gets its typed error and a one-line message; none hangs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from examples.synth import write_audio_only, write_clip
from inference.errors import (
    AudioFileError,
    AudioOnlyError,
    ClipTooLongError,
    CorruptMediaError,
    EmptyFileError,
    FileTooLargeError,
    FrameTooLargeError,
    ImageNotVideoError,
    MediaError,
    MediaNotFoundError,
    NotMediaError,
    NoVideoStreamError,
    UserError,
)
from inference.media import MediaLimits, load_media, probe_clip
from testkit.bad_inputs import empty, huge_dims_sps, png, random_bytes, text_file, truncated

pytestmark = pytest.mark.timeout(60)


def jpeg(folder: Path) -> Path:
    path = folder / "photo.jpg"
    Image.fromarray(np.full((48, 64, 3), 90, dtype=np.uint8)).save(path)
    return path


def gif(folder: Path) -> Path:
    path = folder / "still.gif"
    Image.fromarray(np.full((48, 64, 3), 30, dtype=np.uint8)).save(path)
    return path


def m4a(folder: Path) -> Path:
    return write_audio_only(folder / "song.m4a", seconds=1)


def wav(folder: Path) -> Path:
    return write_audio_only(folder / "speech.wav", seconds=1)


def mp3(folder: Path) -> Path:
    return write_audio_only(folder / "song.mp3", seconds=1)


def truncated_faststart(folder: Path) -> Path:
    """First half of a web-optimised MP4: the index survives, the frames it lists do not."""
    whole = write_clip(folder / "whole_fs.mp4", seconds=2, fps=10, faststart=True).read_bytes()
    path = folder / "truncated_fs.mp4"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def undecodable_video(folder: Path) -> Path:
    """A well-formed MP4 whose H.264 data is all zeros."""
    whole = write_clip(folder / "whole_nd.mp4", seconds=2, fps=10, faststart=True, audio=None).read_bytes()
    start = whole.find(b"mdat") + 4
    path = folder / "zeroed.mp4"
    path.write_bytes(whole[:start] + bytes(len(whole) - start))
    return path


BAD_INPUTS = [
    (empty, EmptyFileError, "is empty"),
    (random_bytes, NotMediaError, "is not a video file"),
    (text_file, NotMediaError, "is not a video file"),
    (png, ImageNotVideoError, "is a still image"),
    (jpeg, ImageNotVideoError, "is a still image"),
    (gif, ImageNotVideoError, "is a still image"),
    (m4a, AudioOnlyError, "has audio but no video"),
    (wav, AudioOnlyError, "has audio but no video"),
    (mp3, AudioOnlyError, "has audio but no video"),
    (truncated, CorruptMediaError, "is truncated or corrupt"),
    (truncated_faststart, CorruptMediaError, "of 20 frames present)"),
    (undecodable_video, NoVideoStreamError, "has no video stream that can be decoded (codec 'h264')"),
    # a 7 kB MP4 whose H.264 SPS claims 16000x16000: refused before any frame is decoded
    (huge_dims_sps, FrameTooLargeError, "has 16000x16000 frames, over the 35.4-megapixel limit"),
]


def check_message(exc: MediaError, path: Path, phrase: str) -> None:
    message = str(exc)
    assert isinstance(exc, UserError)
    assert "\n" not in message
    assert message.startswith(path.name + " ") or message.startswith(path.name + ":")
    assert phrase in message
    assert ";" in message  # the second half says what to do


@pytest.mark.parametrize(("make", "error", "phrase"), BAD_INPUTS, ids=[m.__name__ for m, _, _ in BAD_INPUTS])
@pytest.mark.parametrize("entry", [load_media, probe_clip], ids=["load_media", "probe_clip"])
def test_bad_input(tmp_path, make, error, phrase, entry):
    path = make(tmp_path)
    with pytest.raises(error) as caught:
        entry(path)
    assert type(caught.value) is error
    check_message(caught.value, path, phrase)


@pytest.mark.parametrize("entry", [load_media, probe_clip], ids=["load_media", "probe_clip"])
def test_too_long(short_clip, entry):
    with pytest.raises(ClipTooLongError) as caught:
        entry(short_clip, MediaLimits(max_duration_s=2.5))
    check_message(caught.value, short_clip, "lasts 0:03, over the 0:03 limit")


def test_too_long_message_in_minutes(make_clip):
    path = make_clip("70s.mp4", seconds=70, fps=8, size=(80, 48), sample_rate=16000, channels=1, gop=8)
    with pytest.raises(ClipTooLongError, match=r"lasts 1:10, over the 1:00 limit; cut it shorter"):
        probe_clip(path, MediaLimits(max_duration_s=60))


@pytest.mark.parametrize("entry", [load_media, probe_clip], ids=["load_media", "probe_clip"])
def test_too_large(short_clip, entry):
    size_mb = short_clip.stat().st_size / 2**20
    with pytest.raises(FileTooLargeError) as caught:
        entry(short_clip, MediaLimits(max_file_mb=size_mb / 2))
    check_message(caught.value, short_clip, f"over the {size_mb / 2:g} MB limit")


def test_frame_size_limit(make_clip):
    path = make_clip("320x192.mp4", seconds=1, fps=4, size=(320, 192), audio=None)
    with pytest.raises(FrameTooLargeError) as caught:
        load_media(path, MediaLimits(max_pixels=320 * 191))
    check_message(caught.value, path, "has 320x192 frames, over the 0.0611-megapixel limit")
    assert probe_clip(path, MediaLimits(max_pixels=320 * 192)).width == 320


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MediaNotFoundError, match=r"^nothere\.mp4: no such file; check the path"):
        load_media(tmp_path / "nothere.mp4")
    with pytest.raises(MediaNotFoundError):
        probe_clip(tmp_path)


def test_bad_separate_audio(short_clip, silent_clip, tmp_path):
    # FFmpeg reads a .txt as its "tty" (ANSI art) format: a file without an audio track
    with pytest.raises(
        AudioFileError, match=r"^notes\.txt is not an audio file \(it has no audio track\); give a WAV"
    ):
        load_media(short_clip, audio_path=text_file(tmp_path))
    with pytest.raises(AudioFileError, match="it has no audio track"):
        load_media(short_clip, audio_path=silent_clip)
    with pytest.raises(EmptyFileError):
        load_media(short_clip, audio_path=empty(tmp_path))


def test_damaged_clips_load_or_fail_cleanly(short_clip, tmp_path):
    """Random damage anywhere in a clip: a result or a MediaError, never another exception."""
    whole = short_clip.read_bytes()
    rng = np.random.default_rng(7)
    outcomes = set()
    for k in range(12):
        damaged = bytearray(whole)
        start = int(rng.integers(0, len(whole) - 100))
        length = int(rng.integers(1, 2000))
        damaged[start : start + length] = rng.integers(
            0, 256, len(damaged[start : start + length]), dtype=np.uint8
        ).tobytes()
        path = tmp_path / f"damaged{k}.mp4"
        path.write_bytes(bytes(damaged))
        try:
            inputs = load_media(path)
            outcomes.add("loaded")
            assert inputs.pixel_values.shape[1:] == (3, 384, 384)
        except MediaError:
            outcomes.add("error")
    assert "loaded" in outcomes  # FFmpeg conceals most damage, as a player would


def test_a_name_with_a_newline_stays_one_line(tmp_path):
    path = tmp_path / "two\nlines\t.mp4"
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError) as caught:
        load_media(path)
    assert str(caught.value) == "two\\nlines\\t.mp4 is empty (0 bytes); upload the clip again"
