"""Open a clip safely and index it without decoding: the validation behind every typed error.

Everything here is PyAV (FFmpeg libraries, no ffmpeg binary). PyAV raises clean exceptions on
garbage, where decord can hang or crash, so a file is validated here before anything decodes it.
The index is one demux pass over the video packets (no decoding, ~15 ms for a 70 s clip): the
presentation timestamps of every frame (frame ``i`` is the ``i``-th in presentation order, as
decord counts), the GOP of every frame and the keyframe to seek to for each GOP.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from inference.errors import (
    AudioOnlyError,
    ClipTooLongError,
    CorruptMediaError,
    EmptyFileError,
    FileTooLargeError,
    FrameTooLargeError,
    ImageNotVideoError,
    MediaNotFoundError,
    NotMediaError,
    NoVideoStreamError,
)
from inference.media.limits import MediaLimits

# FFmpeg demuxers that are happy to "open" things that are not videos.
_IMAGE_FORMATS = {"image2", "image2pipe"}  # plus every "*_pipe" (png_pipe, jpeg_pipe, ...)
_NOT_VIDEO_FORMATS = {"tty", "ansi", "txt", "srt", "webvtt", "ass", "lrc", "data"}
# image codecs: a stream of one frame in them is a picture (an animated GIF is a video)
_STILL_CODECS = {
    "png",
    "apng",
    "gif",
    "mjpeg",
    "bmp",
    "webp",
    "tiff",
    "jpeg2000",
    "jpegls",
    "qoi",
    "ppm",
    "pgm",
}
# Leading bytes of the container formats a clip comes in: a file that starts like one of these
# but does not open is a damaged clip, not a non-media file.
_CONTAINER_MAGIC = (
    (4, b"ftyp"),  # ISO-BMFF: MP4, MOV, M4A, 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # EBML: MKV, WEBM
    (0, b"RIFF"),  # AVI, WAV
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
)


@dataclass
class VideoIndex:
    """Frames of the video stream in presentation order, from the demuxer alone (no decoding).

    ``pts[i]`` is frame ``i``'s timestamp in ``time_base`` units; ``gop[i]`` the GOP (counted in
    decode order from 0) that has to be decoded to reach it; ``keyframe_ts[g]`` the timestamp to
    seek to for GOP ``g``. ``pts`` is empty when the container gives packets no timestamps.
    """

    time_base: Fraction
    pts: list[int] = field(default_factory=list)
    gop: list[int] = field(default_factory=list)
    keyframe_ts: list[int] = field(default_factory=list)
    packets: int = 0

    @property
    def is_vfr(self) -> bool:
        """True when frame durations differ by more than 10% (a CFR clip stored with a coarse
        timescale, e.g. 33/34 ms at 29.97 fps, is still CFR)."""
        deltas = [b - a for a, b in zip(self.pts, self.pts[1:], strict=False)]
        if len(deltas) < 2:
            return False
        typical = statistics.median(deltas)
        return typical <= 0 or (max(deltas) - min(deltas)) > 0.1 * typical + 1


@dataclass
class OpenedClip:
    """An opened, validated clip. Close it with ``close()`` (or use it as a context manager)."""

    path: Path
    container: av.container.InputContainer
    video: av.video.stream.VideoStream
    audio: av.audio.stream.AudioStream | None
    n_frames: int  # as decord's len(VideoReader): the container's frame count
    avg_fps: float  # as decord's get_avg_fps(): the stream's average frame rate
    index: VideoIndex | None = None
    counted: bool = True  # n_frames is the container's count, not a duration x fps estimate

    @property
    def real_time(self) -> float:
        """Seconds, exactly as the official loader: n_frames / avg_fps (av_test_dataset.py:229)."""
        return self.n_frames / self.avg_fps

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> OpenedClip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_file(path: str | Path, max_file_mb: float | None) -> Path:
    """Existence, emptiness and size: the checks that need no decoder."""
    path = Path(path)
    if not path.is_file():
        raise MediaNotFoundError(path.name or str(path))
    size = path.stat().st_size
    if size == 0:
        raise EmptyFileError(path.name)
    if max_file_mb is not None and size > max_file_mb * 1024 * 1024:
        raise FileTooLargeError(path.name, size / (1024 * 1024), max_file_mb)
    return path


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def open_clip(path: str | Path, limits: MediaLimits) -> OpenedClip:
    """Open ``path`` and check it is a video the pipeline can use, or raise a typed MediaError.

    Reads only the container header; the duration limit is checked against it here and
    again against the exact frame count once the index is built.
    """
    path = check_file(path, limits.max_file_mb)
    name = path.name
    try:
        # max_pixels: the header probe decodes a frame at the size the stream claims (options
        # here reach the probe's decoders; the decoder we use gets it in _validate)
        container = av.open(
            str(path), metadata_errors="ignore", options={"max_pixels": str(limits.max_pixels)}
        )
    except av.FFmpegError as exc:
        raise (CorruptMediaError(name) if _looks_like_container(path) else NotMediaError(name)) from exc
    try:
        return _validate(path, container, limits)
    except BaseException:
        container.close()
        raise


def _validate(path: Path, container: av.container.InputContainer, limits: MediaLimits) -> OpenedClip:
    name = path.name
    fmt = container.format.name
    if fmt in _NOT_VIDEO_FORMATS or _looks_like_text(path):
        raise NotMediaError(name)
    if fmt.endswith("_pipe") or fmt in _IMAGE_FORMATS:
        raise ImageNotVideoError(name)
    videos = [s for s in container.streams.video if not _is_cover_art(s)]
    audios = list(container.streams.audio)
    if not videos:
        raise AudioOnlyError(name) if audios else NotMediaError(name)
    video = videos[0]
    ctx = video.codec_context
    if ctx is None:
        raise NoVideoStreamError(name, getattr(video, "codec_tag", "") or "unknown")
    if ctx.name in _STILL_CODECS and (video.frames or 0) <= 1:
        raise ImageNotVideoError(name)
    if not ctx.width or not ctx.height:
        raise NoVideoStreamError(name, ctx.name)
    if ctx.width * ctx.height > limits.max_pixels:
        raise FrameTooLargeError(name, ctx.width, ctx.height, limits.max_pixels)
    # and a size change later in the stream (a new SPS) cannot make the decoder allocate more
    ctx.options = {**ctx.options, "max_pixels": str(limits.max_pixels)}
    avg_fps = _average_fps(video)
    n_frames = int(video.frames or 0)
    counted = n_frames > 0
    if not counted and avg_fps and container.duration:
        # MKV/WEBM carry no frame count: estimate for the early limit check; the index replaces
        # it by the number of video packets (what decord2 reports too)
        n_frames = int(avg_fps * container.duration / av.time_base)
    header_s = max(
        n_frames / avg_fps if avg_fps else 0.0,
        float(video.duration * video.time_base) if video.duration else 0.0,
    )
    if header_s > limits.max_duration_s:
        raise ClipTooLongError(name, header_s, limits.max_duration_s)
    audio = audios[0] if audios and audios[0].codec_context is not None else None
    return OpenedClip(path, container, video, audio, n_frames, avg_fps or 0.0, counted=counted)


def build_index(clip: OpenedClip, limits: MediaLimits) -> VideoIndex:
    """Demux the video stream once (no decoding) and fill ``clip.index``.

    Fixes ``n_frames``/``avg_fps`` where the header had none, and raises CorruptMediaError when
    frames the header promises are missing.
    """
    name = clip.path.name
    video = clip.video
    records: list[tuple[int | None, bool]] = []  # decode order: pts, keyframe
    try:
        for packet in clip.container.demux(video):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            records.append((packet.pts, packet.is_keyframe))
    except av.FFmpegError as exc:
        if not records:
            raise CorruptMediaError(name) from exc
        # a damaged tail: keep what was read; the frame count check below decides
    if not records:
        raise NoVideoStreamError(name, video.codec_context.name)
    if len(records) == 1 and video.codec_context.name in _STILL_CODECS:
        raise ImageNotVideoError(name)
    index = VideoIndex(time_base=video.time_base or Fraction(1, 1), packets=len(records))
    if all(r[0] is not None for r in records):
        gop, keyframe_ts, seen_key, by_pts = 0, [], False, []
        for pts, key in records:
            if key:
                if seen_key:
                    gop += 1
                seen_key = True
            if len(keyframe_ts) <= gop:
                # the keyframe's pts: FFmpeg's demuxers seek by presentation time (mov shifts its
                # dts index by the edit list; seeking by dts lands one GOP early)
                keyframe_ts.append(pts)
            by_pts.append((pts, gop))
        by_pts.sort()
        index.pts = [p for p, _ in by_pts]
        index.gop = [g for _, g in by_pts]
        index.keyframe_ts = keyframe_ts
    if not clip.counted or clip.n_frames <= 0:
        clip.n_frames = len(records)
    if not clip.avg_fps:
        span = (index.pts[-1] - index.pts[0]) * index.time_base if len(index.pts) > 1 else 0
        clip.avg_fps = float((len(index.pts) - 1) / span) if span else 25.0
    tolerance = max(2, round(clip.avg_fps * 0.5))
    if len(records) < clip.n_frames - tolerance:
        raise CorruptMediaError(
            name, f"truncated or corrupt ({len(records)} of {clip.n_frames} frames present)"
        )
    if clip.real_time > limits.max_duration_s:
        raise ClipTooLongError(name, clip.real_time, limits.max_duration_s)
    clip.index = index
    rewind(clip)
    return index


def first_frame(clip: OpenedClip, max_packets: int = 300) -> av.VideoFrame:
    """Decode the first frame (proves the stream decodes; gives its rotation). Rewinds after."""
    name = clip.path.name
    ctx = clip.video.codec_context
    frame = None
    try:
        for i, packet in enumerate(clip.container.demux(clip.video)):
            frames = packet.decode()
            if frames:
                frame = frames[0]
                break
            if i >= max_packets:
                break
        if frame is None:
            frames = ctx.decode(None)
            frame = frames[0] if frames else None
    except av.FFmpegError as exc:
        raise NoVideoStreamError(name, ctx.name) from exc
    if frame is None:
        raise NoVideoStreamError(name, ctx.name)
    rewind(clip)
    return frame


def rewind(clip: OpenedClip) -> None:
    """Back to the first packet with an empty decoder (a seek to 0 flushes the decoders)."""
    clip.container.seek(0)
    clip.video.codec_context.flush_buffers()


def display_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """Size as a player shows it: width and height swap for a quarter turn."""
    return (height, width) if rotation % 180 else (width, height)


def _average_fps(video: av.video.stream.VideoStream) -> float:
    """decord's get_avg_fps(): the stream's avg_frame_rate, else its r_frame_rate."""
    for rate in (video.average_rate, video.guessed_rate, video.base_rate):
        if rate and rate > 0:
            return float(rate)
    return 0.0


def _is_cover_art(stream: av.stream.Stream) -> bool:
    """An M4A/MP3 cover picture shows up as a one-frame video stream."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _looks_like_container(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(16)
    return any(head[offset : offset + len(magic)] == magic for offset, magic in _CONTAINER_MAGIC)


def _looks_like_text(path: Path) -> bool:
    """Text (a subtitle, a README) with a video extension: FFmpeg's tty demuxer would take it."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
