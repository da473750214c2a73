"""Sampled frames -> ``pixel_values``, decoding only what the sampled frames need.

Which frames (official av_test_dataset.py:226-232): ``step = max(round(avg_fps / 2), 1)``,
``range(0, N, step)``, and above 60 frames ``np.linspace(0, N - 1, 60, dtype=int)``; frame ``i``
is the ``i``-th frame in presentation order (decord's numbering). How each becomes model input
(siglip_encoder_flash.py:61-103): RGB24, PIL bicubic resize straight to 384x384 (no aspect
preservation, no crop), ``/255`` in float64 cast to float32, then ``(x - 0.5) / 0.5``.

Cost. Decoding dominates, and H.264 cannot decode a frame without the frames it references, so
the floor is the reference frames between each sample and its GOP's keyframe. What gets there:
the decoder runs on every core (frame threads); packets of frames that nothing references and
that are not sampled are never decoded (``skip_frame = NONREF``, set per packet); once a GOP's
samples are in the decoder the reader seeks to the keyframe of the next GOP with a sample, so the
rest of the GOP and GOPs without samples are never decoded (long clips); decoding stops after the
last sample. Only the sampled frames are converted (RGB24, resize, normalise), on a worker thread
beside the decoder, each as it comes, so memory holds 60 small frames whatever the clip's length.
Seeking and skipping change the work, not the pixels (tests/media/test_sampling.py checks it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor

import av
import numpy as np
from PIL import Image

from inference.errors import CorruptMediaError
from inference.media.container import OpenedClip, rewind
from inference.media.limits import IMAGE_SIZE, DecodeOptions, MediaLimits

log = logging.getLogger(__name__)

# uint8 level -> normalised float32, computed the way the official processor does it:
# transformers' rescale (uint8 * (1/255) in float64, cast to float32), then normalize in float32.
PIXEL_LUT = ((np.arange(256) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)

_MIN_FRAMES_SAVED = 12  # frames left in a GOP that make a seek to the next GOP worth its flush
_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def sample_frame_indices(n_frames: int, avg_fps: float, limits: MediaLimits | None = None) -> list[int]:
    """The official frame choice. Python's ``round`` (half to even) as in the original:
    25 fps gives a stride of 12, not 13."""
    limits = limits or MediaLimits()
    step = max(round(avg_fps / limits.fps), 1)
    indices = list(range(0, n_frames, step))
    if len(indices) > limits.max_frames:
        indices = np.linspace(0, n_frames - 1, limits.max_frames, dtype=int).tolist()
    return indices


def frame_times(clip: OpenedClip, indices: list[int]) -> list[float]:
    """Seconds of each sampled frame: ``index / avg_fps`` for constant-frame-rate clips (the
    official clock), the frame's own timestamp relative to the first frame for VFR clips."""
    index = clip.index
    if index is not None and index.pts and index.is_vfr:
        base = index.pts[0]
        last = len(index.pts) - 1
        return [round(float((index.pts[min(i, last)] - base) * index.time_base), 6) for i in indices]
    return [round(i / clip.avg_fps, 6) for i in indices]


def to_model_frame(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """A decoded frame -> (384, 384, 3) uint8: RGB24, upright, PIL bicubic straight to 384x384."""
    # RGB24 via swscale, the conversion decord uses (to_ndarray + fromarray: PyAV's to_image
    # copies row by row and costs twice as much)
    image = Image.fromarray(frame.to_ndarray(format="rgb24"))
    if rotation % 360:
        # PyAV's rotation is counter-clockwise degrees, PIL's ROTATE_90 turns counter-clockwise
        image = image.transpose(_TRANSPOSE[rotation % 360])
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(image)


def to_pixel_values(frames: np.ndarray):
    """(F, 384, 384, 3) uint8 -> (F, 3, 384, 384) float32 torch tensor, bit-equal to the official
    processor for the same uint8 frames."""
    import torch

    out = torch.empty((frames.shape[0], 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.float32)
    view = out.numpy()
    for i, frame in enumerate(frames):  # frame by frame: no (F, H, W, 3) float temporaries
        normalise(frame, view[i])
    return out


def normalise(frame: np.ndarray, out: np.ndarray) -> None:
    """(384, 384, 3) uint8 -> ``out`` (3, 384, 384) float32. float32 ``x / 255`` then
    ``(x - 0.5) / 0.5`` equals PIXEL_LUT bit for bit, and is twice as fast as a lookup."""
    np.divide(frame.transpose(2, 0, 1), np.float32(255), out=out, dtype=np.float32)
    out -= np.float32(0.5)
    out /= np.float32(0.5)


def read_frames(
    clip: OpenedClip,
    indices: list[int],
    rotation: int,
    options: DecodeOptions,
    pixels: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Decode the frames ``indices`` (presentation order) -> (F, 384, 384, 3) uint8, and
    counters of what was decoded (``decoded``, ``seeks``). ``pixels`` (F, 3, 384, 384) float32,
    when given, receives the normalised frames as they come (``to_pixel_values`` of the result)."""
    out = _Frames(len(indices), pixels)
    index = clip.index
    stats = {"decoded": 0, "seeks": 0}
    if index is None or not index.pts:
        _read_by_count(clip, indices, rotation, out, stats)
        return out.frames, stats
    last = len(index.pts) - 1
    slots: dict[int, list[int]] = {}  # pts -> output rows
    missing_rows: list[int] = []
    for row, i in enumerate(indices):
        if i > last:
            missing_rows.append(row)  # the header promised more frames than the file holds
        else:
            slots.setdefault(index.pts[i], []).append(row)
    gop_of = dict(zip(index.pts, index.gop, strict=True))
    remaining = set(slots)
    if remaining:
        _read_by_pts(clip, remaining, gop_of, slots, rotation, out, stats, options)
    if remaining:
        log.warning(
            "%s: %d sampled frames not decoded on the fast path; decoding sequentially",
            clip.path.name,
            len(remaining),
        )
        rewind(clip)
        plain = dataclasses.replace(options, skip_nonref=False, seek=False)
        _read_by_pts(clip, remaining, gop_of, slots, rotation, out, stats, plain)
    missing_rows += [row for pts in remaining for row in slots[pts]]
    _fill_trailing(clip, indices, missing_rows, out, options)
    return out.frames, stats


class _Frames:
    """The output rows: uint8 model frames and, optionally, their normalised float32 twins."""

    def __init__(self, count: int, pixels: np.ndarray | None):
        self.frames = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        self.pixels = pixels

    def put(self, row: int, image: np.ndarray) -> None:
        self.frames[row] = image
        if self.pixels is not None:
            normalise(image, self.pixels[row])

    def copy(self, row: int, source: int) -> None:
        self.put(row, self.frames[source])


def _read_by_pts(clip, remaining, gop_of, slots, rotation, out, stats, options: DecodeOptions) -> None:
    """Decode forward, capturing frames whose pts is sampled; skip and seek as the options allow.

    Seeking: once every sample up to the current GOP has been sent to the decoder, the frames in
    flight are drained and the reader jumps to the keyframe of the next GOP holding a sample, so
    the rest of the current GOP and every GOP without a sample are never decoded.
    """
    ctx = clip.video.codec_context
    container = clip.container
    keyframe_ts = clip.index.keyframe_ts
    gop_size = Counter(clip.index.gop)
    converter = _Converter(out, rotation, options.convert_threads)
    unsent = Counter(gop_of[p] for p in remaining)  # GOP -> samples not yet sent to the decoder

    def capture(frames) -> None:
        for frame in frames:
            stats["decoded"] += 1
            if frame.pts in remaining:
                converter.submit(frame, slots[frame.pts])
                remaining.discard(frame.pts)

    def worth_jumping(gop: int, sent_in_gop: int) -> bool:
        target = min(unsent, default=None)
        if target is None:
            return True  # everything is sent: drain and stop
        if target <= gop:
            return False
        # a seek flushes the decoder's threads: not worth it for the last few frames of a GOP
        return target > gop + 1 or gop_size[gop] - sent_in_gop >= _MIN_FRAMES_SAVED

    packets = container.demux(clip.video)
    floor = -1  # after a jump, no other jump before the GOP jumped to is reached (no seek loops)
    current, sent_in_gop = None, 0
    try:
        while True:
            jumped = False
            for packet in packets:
                if packet.size == 0:
                    continue
                gop = gop_of.get(packet.pts)
                if gop != current:
                    current, sent_in_gop = gop, 0
                if options.seek and gop is not None and gop >= floor and worth_jumping(gop, sent_in_gop):
                    capture(ctx.decode(None))  # the samples still in flight
                    ctx.flush_buffers()
                    if not unsent:
                        return
                    floor = min(unsent)
                    container.seek(keyframe_ts[floor], stream=clip.video, backward=True, any_frame=False)
                    ctx.flush_buffers()
                    stats["seeks"] += 1
                    packets = container.demux(clip.video)
                    current, jumped = None, True
                    break
                sent_in_gop += 1
                wanted = packet.pts in remaining
                if wanted and unsent[gop] > 0:
                    unsent[gop] -= 1
                    if not unsent[gop]:
                        del unsent[gop]
                ctx.skip_frame = "NONREF" if options.skip_nonref and not wanted else "DEFAULT"
                try:
                    capture(ctx.decode(packet))
                except av.InvalidDataError:
                    continue  # a damaged packet: FFmpeg conceals; a missing sample is caught later
                if not remaining:
                    return
            if not jumped:
                break
        ctx.skip_frame = "DEFAULT"
        capture(ctx.decode(None))
    finally:
        converter.close()
        ctx.skip_frame = "DEFAULT"
        ctx.flush_buffers()


class _Converter:
    """Turns captured frames into model frames on a worker thread, so the decoding thread keeps
    the decoder fed meanwhile (swscale and PIL release the GIL). At most ``2 * threads`` frames
    wait, so memory stays bounded; ``threads=0`` converts on the calling thread."""

    def __init__(self, out: _Frames, rotation: int, threads: int):
        self.out, self.rotation = out, rotation
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="media-convert") if threads > 0 else None
        self.limit = 2 * max(threads, 1)
        self.pending: deque[Future] = deque()

    def _convert(self, frame: av.VideoFrame, rows: list[int]) -> None:
        image = to_model_frame(frame, self.rotation)
        for row in rows:
            self.out.put(row, image)

    def submit(self, frame: av.VideoFrame, rows: list[int]) -> None:
        if self.pool is None:
            self._convert(frame, rows)
            return
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._convert, frame, rows))

    def close(self) -> None:
        """Wait for every conversion (re-raising its error) and stop the worker."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def _read_by_count(clip, indices, rotation, out, stats) -> None:
    """For containers without timestamps: every frame, counted in output order."""
    rows: dict[int, list[int]] = {}
    for row, i in enumerate(indices):
        rows.setdefault(i, []).append(row)
    count, missing = 0, set(rows)
    try:
        for frame in clip.container.decode(clip.video):
            stats["decoded"] += 1
            if count in rows:
                image = to_model_frame(frame, rotation)
                for row in rows[count]:
                    out.put(row, image)
                missing.discard(count)
            count += 1
            if not missing:
                break
    except av.FFmpegError:
        pass
    _fill_trailing(clip, indices, [r for i in missing for r in rows[i]], out, DecodeOptions())


def _fill_trailing(
    clip: OpenedClip, indices: list[int], missing_rows: list[int], out: _Frames, options: DecodeOptions
) -> None:
    """Frames missing at the very end (a header that counts one frame too many, a last frame
    that does not decode) repeat the last good sample; missing frames elsewhere are an error."""
    if not missing_rows:
        return
    tail = clip.n_frames - options.trailing_frames_tolerance_s * clip.avg_fps
    good = [row for row in range(len(indices)) if row not in set(missing_rows)]
    if not good or any(indices[row] < tail for row in missing_rows):
        first = min(indices[row] for row in missing_rows)
        raise CorruptMediaError(
            clip.path.name, f"truncated or corrupt (frame {first} of {clip.n_frames} does not decode)"
        )
    for row in sorted(missing_rows):
        earlier = [g for g in good if g < row]
        out.copy(row, earlier[-1] if earlier else good[0])
