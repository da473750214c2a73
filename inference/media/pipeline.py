"""A clip file -> ``MediaInputs``: the tensors the model takes plus what the pipeline saw."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.media.audio import LogMelStream, decode_container_audio, load_audio_file
from inference.media.container import (
    OpenedClip,
    build_index,
    display_size,
    first_frame,
    open_clip,
    sha256_file,
)
from inference.media.frames import frame_times, read_frames, sample_frame_indices
from inference.media.limits import IMAGE_SIZE, DecodeOptions, MediaLimits
from inference.model.layout import AUDIO_TOKENS_PER_CHUNK, av_layout
from studio_trace import ClipInfo

if TYPE_CHECKING:
    import torch


@dataclass
class MediaInputs:
    """What the model is fed for one clip, and where it came from.

    ``pixel_values`` (F, 3, 384, 384) float32 in [-1, 1]; ``spectrogram`` (C, 128, 3000) float32,
    one row per 30 s chunk; ``real_time`` = n_frames / avg_fps seconds, the official clock (it
    sets how many audio tokens are interleaved with the frames); ``audio_samples`` the 16 kHz
    samples behind the spectrogram after padding and cutting (``waveform``, float32, only with
    ``DecodeOptions(keep_waveform=True)``); ``frames`` the sampled frames as the model sees them,
    (F, 384, 384, 3) uint8 (for display).
    """

    pixel_values: torch.Tensor
    spectrogram: torch.Tensor
    real_time: float
    audio_samples: int
    frame_indices: list[int]
    clip: ClipInfo
    waveform: np.ndarray | None
    frames: np.ndarray
    audio_source: str = "container"  # "container" | "file" | "silence"
    source_frames: int = 0  # frames in the clip (decord's len(VideoReader))
    timings: dict[str, float] = field(default_factory=dict)  # seconds: index_s, frames_s, decode_s
    stats: dict[str, int] = field(default_factory=dict)  # frames decoded, seeks

    @property
    def n_frames(self) -> int:
        return len(self.frame_indices)

    @property
    def n_chunks(self) -> int:
        return int(self.spectrogram.shape[0])

    @property
    def llm_tokens(self) -> int:
        return llm_token_cost(self.n_frames, self.n_chunks, self.real_time)


def llm_token_cost(n_frames: int, n_chunks: int, real_time: float | None = None) -> int:
    """Exact length of the audio-visual block the ``<image>`` placeholder expands to.

    182 tokens per frame plus the 150 speech tokens of every 30 s chunk, nearest-interpolated up
    to a multiple of the frame count: ``F * 182 + N'`` with ``N = 150 * C`` and
    ``N' = N + (F - N % F) % F`` (videosalmonno1.py:453-470). Clips under 3 s (``real_time``
    given) interleave only ``round(real_time * 50)`` of them and append the rest, as the
    official code does; ``real_time=None`` means a clip of 3 s or more.
    """
    audio_tokens = AUDIO_TOKENS_PER_CHUNK * n_chunks
    if real_time is None:
        real_time = float(audio_tokens)  # any length >= 3 s: every audio token is interleaved
    return av_layout(n_frames, audio_tokens, real_time).length


def probe_clip(path: str | Path, limits: MediaLimits | None = None) -> ClipInfo:
    """Validate a clip and describe it without decoding more than its first frame (for the UI on
    upload): raises the typed MediaError a bad file deserves; reads the file for its sha256 and
    demuxes it once for the frame count and timestamps."""
    limits = limits or MediaLimits()
    with open_clip(path, limits) as clip:
        build_index(clip, limits)
        rotation = first_frame(clip).rotation
        indices = sample_frame_indices(clip.n_frames, clip.avg_fps, limits)
        return _clip_info(clip, rotation, indices, has_audio=clip.audio is not None)


def load_media(
    path: str | Path,
    limits: MediaLimits | None = None,
    audio_path: str | Path | None = None,
    options: DecodeOptions | None = None,
) -> MediaInputs:
    """The whole preprocessing of one clip, as the official av_test_dataset.py does it.

    ``audio_path`` replaces the clip's own audio track by a separate file (channel 0, as the
    official loader reads its WAVs). Raises a MediaError subclass for every bad input.
    """
    import torch

    limits = limits or MediaLimits()
    options = options or DecodeOptions()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    extra_audio = load_audio_file(audio_path, limits.max_file_mb) if audio_path is not None else None
    with open_clip(path, limits) as clip, ThreadPoolExecutor(1, thread_name_prefix="media-audio") as side:
        ctx = clip.video.codec_context
        ctx.thread_type = "AUTO"  # frame + slice threads; must be set before the first decode
        ctx.thread_count = options.threads
        build_index(clip, limits)  # the last check that can reject the clip
        timings["index_s"] = time.perf_counter() - start
        real_time, source_frames = clip.real_time, clip.n_frames
        # beside the video decoding, on one worker thread (all of it releases the GIL): the
        # audio track streamed into its log-mel chunks, then the file's sha256
        audio = side.submit(_audio_features, clip, extra_audio, real_time, options)
        sha256 = side.submit(sha256_file, clip.path)
        rotation = first_frame(clip).rotation if options.apply_rotation else 0
        indices = sample_frame_indices(clip.n_frames, clip.avg_fps, limits)
        pixel_values = torch.empty((len(indices), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.float32)
        frames, stats = read_frames(clip, indices, rotation, options, pixels=pixel_values.numpy())
        timings["frames_s"] = time.perf_counter() - start - timings["index_s"]
        spectrogram, audio_samples, waveform, source = audio.result()
        info = _clip_info(clip, rotation, indices, source != "silence", sha256.result())
    timings["decode_s"] = time.perf_counter() - start
    return MediaInputs(
        pixel_values=pixel_values,
        spectrogram=spectrogram,
        real_time=real_time,
        audio_samples=audio_samples,
        frame_indices=indices,
        clip=info,
        waveform=waveform,
        frames=frames,
        audio_source=source,
        source_frames=source_frames,
        timings=timings,
        stats=stats,
    )


def _audio_features(clip: OpenedClip, extra: np.ndarray | None, real_time: float, options: DecodeOptions):
    """-> (spectrogram, audio samples, waveform or None, source). Runs on the side thread, with
    the process's torch thread setting (``torch.set_num_threads`` is process-wide: not ours to
    change; on a shared CPU the app and the batch command set 1)."""
    stream = LogMelStream(real_time, options.keep_waveform)
    if extra is not None:
        stream.add(extra)
        source = "file"
    elif clip.audio is not None and decode_container_audio(
        clip.path, clip.audio.index, stream, options.stereo
    ):
        source = "container"
    else:
        source = "silence"
    return (*stream.finish(), source)


def _clip_info(
    clip: OpenedClip, rotation: int, indices: list[int], has_audio: bool, sha256: str | None = None
) -> ClipInfo:
    ctx = clip.video.codec_context
    width, height = display_size(ctx.width, ctx.height, rotation)
    return ClipInfo(
        sha256=sha256 or sha256_file(clip.path),
        name=clip.path.name,
        path=str(clip.path),
        duration_s=round(clip.real_time, 6),
        fps=round(clip.avg_fps, 6),
        width=width,
        height=height,
        has_audio=has_audio,
        frame_times_s=frame_times(clip, indices),
    )
