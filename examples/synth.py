"""Synthetic clips written with PyAV (no ffmpeg binary): the project's examples, test clips and
benchmark clips all come from here, so no media file is ever committed.

Every frame carries its own index as a row of 10 black/white blocks along the top (bit 9 on the
left), big enough to survive compression and the 384x384 resize, so a test can read back which
frame the pipeline sampled (``read_frame_number``). Below that row: a gradient background, a
circle moving left to right and a square moving top to bottom.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

NUMBER_BITS = 10  # frame numbers up to 1023 are readable; higher ones wrap
NUMBER_ROWS = 0.2  # the number row's height, as a fraction of the frame height


def draw_frame(
    i: int,
    n: int,
    width: int,
    height: int,
    number: bool = True,
    shapes: Sequence[str] = ("circle", "square"),
    texture: bool = False,
) -> np.ndarray:
    """Frame ``i`` of ``n``: (height, width, 3) uint8 RGB. ``texture`` adds fixed fine-grained
    noise to the background (costlier to encode and decode, like camera footage)."""
    t = i / max(n - 1, 1)
    frame = _background(width, height, texture).copy()
    radius = max(4, min(width, height) // 8)
    if "circle" in shapes:  # red circle: left -> right
        cx, cy = radius + t * (width - 2 * radius), height * 0.45
        y0, y1 = max(0, int(cy - radius)), min(height, int(cy + radius) + 2)
        x0, x1 = max(0, int(cx - radius)), min(width, int(cx + radius) + 2)
        y, x = np.mgrid[y0:y1, x0:x1]
        frame[y0:y1, x0:x1][(x - cx) ** 2 + (y - cy) ** 2 <= radius**2] = (230, 40, 40)
    if "square" in shapes:  # blue square: top -> bottom
        half = radius / 2
        sx, sy = width * 0.75, height * 0.25 + t * height * 0.6
        frame[
            max(0, round(sy - half)) : round(sy + half) + 1, max(0, round(sx - half)) : round(sx + half) + 1
        ] = (
            40,
            90,
            230,
        )
    if number:
        row = max(2, round(height * NUMBER_ROWS))
        for bit in range(NUMBER_BITS):
            on = (i >> (NUMBER_BITS - 1 - bit)) & 1
            frame[:row, round(bit * width / NUMBER_BITS) : round((bit + 1) * width / NUMBER_BITS)] = 255 * on
    return frame


@functools.lru_cache(maxsize=4)
def _background(width: int, height: int, texture: bool) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (40 + 60 * x / width).astype(np.uint8)
    frame[..., 1] = (50 + 50 * y / height).astype(np.uint8)
    frame[..., 2] = 90
    if texture:
        noise = np.random.default_rng(0).integers(-24, 25, size=(height, width, 1))
        frame = np.clip(frame.astype(int) + noise, 0, 255).astype(np.uint8)
    frame.flags.writeable = False
    return frame


def read_frame_number(frame: np.ndarray) -> int:
    """The index drawn by ``draw_frame`` from an (H, W, 3) uint8 frame (any size, upright)."""
    height, width = frame.shape[:2]
    row = height * NUMBER_ROWS
    value = 0
    for bit in range(NUMBER_BITS):
        left, right = bit * width / NUMBER_BITS, (bit + 1) * width / NUMBER_BITS
        margin = (right - left) / 4
        cell = frame[round(row / 4) : round(row * 3 / 4), round(left + margin) : round(right - margin)]
        value = (value << 1) | int(cell.mean() > 127)
    return value


def tone(seconds: float, rate: int, kind: str = "tone", channels: int = 2) -> np.ndarray:
    """(channels, samples) float32 audio: ``tone`` (440 Hz left, 660 Hz right), ``chirp`` (300 ->
    1200 Hz), ``beeps`` (880 Hz, 0.2 s on / 0.8 s off, once per second), or ``silence``."""
    t = np.arange(round(seconds * rate)) / rate
    if kind == "tone":
        left, right = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)
    elif kind == "chirp":
        freq = 300 + (1200 - 300) * t / max(seconds, 1e-9) / 2
        left = right = np.sin(2 * np.pi * freq * t)
    elif kind == "beeps":
        left = right = np.sin(2 * np.pi * 880 * t) * ((t % 1.0) < 0.2)
    elif kind == "silence":
        left = right = np.zeros_like(t)
    else:
        raise ValueError(f"unknown audio kind {kind!r}")
    audio = 0.3 * np.stack([left, right][:channels])
    return audio.astype(np.float32)


def write_clip(
    path: str | Path,
    seconds: float = 2.0,
    fps: float | Fraction = 10,
    size: tuple[int, int] = (160, 96),
    audio: str | None = "tone",
    audio_seconds: float | None = None,
    sample_rate: int = 44100,
    channels: int = 2,
    codec: str = "libx264",
    rotation: int = 0,
    frame_times: Sequence[float] | None = None,
    gop: int | None = None,
    faststart: bool = False,
    options: dict[str, str] | None = None,
    number: bool = True,
    shapes: Sequence[str] = ("circle", "square"),
    texture: bool = False,
) -> Path:
    """Write a clip: ``size`` is (width, height) as stored; ``rotation`` (degrees
    counter-clockwise, as PyAV reads it back) goes into the display matrix; ``frame_times`` (seconds)
    makes a variable-frame-rate clip; ``gop`` sets the keyframe interval; ``audio`` is a ``tone``
    kind or None for no audio track; ``number=False`` leaves out the frame-number row."""
    path = Path(path)
    width, height = size
    rate = Fraction(fps).limit_denominator(1001)
    n = len(frame_times) if frame_times is not None else max(1, round(seconds * rate))
    options = dict(options or {})
    if codec == "libx264":
        options.setdefault("preset", "superfast")  # keeps B-frames (ultrafast drops them)
    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=container_options) as out:
        video = out.add_stream(codec, rate=rate, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if gop:
            video.codec_context.gop_size = gop
        if frame_times is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=sample_rate, layout="stereo" if channels == 2 else "mono")
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(
                draw_frame(i, n, width, height, number, shapes, texture), format="rgb24"
            )
            if frame_times is not None:
                frame.pts, frame.time_base = round(frame_times[i] * 1000), Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = tone(
                audio_seconds if audio_seconds is not None else seconds, sample_rate, audio, channels
            )
            step = 1024
            for start in range(0, samples.shape[1], step):
                block = np.ascontiguousarray(samples[:, start : start + step])
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=sound.layout.name)
                frame.sample_rate, frame.pts = sample_rate, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def write_audio_only(path: str | Path, seconds: float = 2.0, sample_rate: int = 44100) -> Path:
    """An audio file without video: ``.m4a`` (AAC), ``.wav`` (PCM) or ``.mp3``, by suffix."""
    path = Path(path)
    codec = {".m4a": "aac", ".wav": "pcm_s16le", ".mp3": "libmp3lame"}[path.suffix]
    fmt = {"aac": "fltp", "pcm_s16le": "s16", "libmp3lame": "fltp"}[codec]
    samples = tone(seconds, sample_rate, "tone", 2)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=sample_rate, layout="stereo")
        data = samples if fmt == "fltp" else (samples * 32767).astype(np.int16).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout="stereo")
        frame.sample_rate = sample_rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
