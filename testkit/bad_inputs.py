"""The bad-input suite's inputs: one maker per kind of file a user hands in, and what must come of it.

Every input is generated (PyAV, PIL, byte patching), small where size does not matter, and
written once per folder (``InputSet``). Each carries its expected outcome: a correct result (the
clip facts the pipeline must report) or a one-line error containing a phrase. The tests
(tests/hardening/test_bad_inputs.py) and the benchmark (bench/bad_inputs.py) run the same list
through the CLI and the app, judged by ``testkit.outcomes``.

The "huge dimensions" inputs are MP4s whose headers are patched (``testkit.mp4_patch``), not
encoded at that size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from examples.synth import tone, write_audio_only, write_clip
from testkit.mp4_patch import patch_dimensions

# A name that runs commands if any layer passes it through a shell: ``$()``, backticks, ``;``,
# quotes, ``&``, ``|``, ``>`` and non-ASCII letters (any command here would create a PWNED file).
SHELL_NAME = "clip $(touch PWNED1); `touch PWNED2` & touch PWNED3 | 'é视频' \"x\" >PWNED4.mp4"
PWNED_GLOB = "PWNED*"


@dataclass(frozen=True)
class Expected:
    """A correct result (``error is None``; the other fields, where set, are checked against the
    clip facts) or a one-line error containing ``error``."""

    error: str | None = None
    size: tuple[int, int] | None = None  # (width, height) upright, as a player shows it
    frames: int | None = None  # frames the model sees
    frame_times_s: tuple[float, ...] | None = None  # when each was shown (the VFR clip's own clock)
    duration_s: float | None = None
    has_audio: bool | None = None
    audio_source: str | None = None  # what probe reports: "container" (the clip's track) or "silence"

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class BadInput:
    name: str  # test id and table row
    make: Callable[[Path], Path]  # folder -> the file, written into the folder
    expected: Expected
    what: str  # one line for the table
    slow: bool = False  # costs seconds to make or to run (the 10-minute clip)


# --------------------------------------------------------------------------- not videos


def empty(folder: Path) -> Path:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return path


def random_bytes(folder: Path) -> Path:
    path = folder / "random.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    return path


def text_file(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text("These are my notes about the clip.\n" * 40, encoding="utf-8")
    return path


def png(folder: Path) -> Path:
    path = folder / "still.png"
    Image.fromarray(np.full((96, 160, 3), 200, dtype=np.uint8)).save(path)
    return path


def audio_only(folder: Path) -> Path:
    return write_audio_only(folder / "song.m4a", seconds=2)


# --------------------------------------------------------------------------- damaged or lying


def truncated(folder: Path) -> Path:
    """The first half of a clip whose index (moov) comes last, as most tools write it."""
    whole = write_clip(folder / "_whole.mp4", seconds=2, fps=10).read_bytes()
    path = folder / "truncated.mp4"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def huge_dims_header(folder: Path) -> Path:
    """A 160x96 clip whose track header and sample entry claim 60000x60000 (the SPS is true)."""
    source = write_clip(folder / "_small_for_header.mp4", seconds=1, fps=10, audio=None)
    return patch_dimensions(source, folder / "huge_header.mp4", 60000, 60000, sps=False)


def huge_dims_sps(folder: Path) -> Path:
    """Every header, H.264 SPS included, claims 16000x16000: the largest FFmpeg would decode
    (256 Mpixel, 384 MB a frame) for a file of a few kB."""
    source = write_clip(folder / "_small_for_sps.mp4", seconds=1, fps=10, audio=None)
    return patch_dimensions(source, folder / "huge_sps.mp4", 16000, 16000, sps=True)


def huge_dims_sps_60k(folder: Path) -> Path:
    """Every header claims 60000x60000: past FFmpeg's own size check."""
    source = write_clip(folder / "_small_for_sps60k.mp4", seconds=1, fps=10, audio=None)
    return patch_dimensions(source, folder / "huge_sps_60k.mp4", 60000, 60000, sps=True)


# --------------------------------------------------------------------------- unusual but valid


def one_frame(folder: Path) -> Path:
    return write_clip(folder / "one_frame.mp4", seconds=0.1, fps=10)


def ten_minutes(folder: Path) -> Path:
    """600 s at 2 fps, 64x48, mono 16 kHz AAC all the way: ten minutes of clip in a few MB."""
    video = write_clip(folder / "_video_for_10min.mp4", seconds=600, fps=2, size=(64, 48), audio=None, gop=60)
    return with_audio(video, folder / "ten_minutes.mp4", "mono", seconds=600, rate=16000, loop_s=10.24)


def uhd_4k(folder: Path) -> Path:
    return write_clip(folder / "4k.mp4", seconds=1, fps=4, size=(3840, 2160))


def portrait(folder: Path) -> Path:
    return write_clip(folder / "portrait.mp4", seconds=2, fps=10, size=(96, 160))


def rotated(folder: Path) -> Path:
    """Stored 160x96 with a 90-degree display matrix, as phones write portrait video."""
    return write_clip(folder / "rotated.mp4", seconds=2, fps=10, size=(160, 96), rotation=90)


def variable_frame_rate(folder: Path) -> Path:
    """20 frames 50 ms apart, then 10 frames 200 ms apart (a phone slowing down in low light)."""
    times = [0.05 * i for i in range(20)] + [1.0 + 0.2 * i for i in range(10)]
    return write_clip(folder / "vfr.mp4", frame_times=times)


def webm_vp9(folder: Path) -> Path:
    return write_clip(folder / "clip.webm", seconds=2, fps=10, codec="libvpx-vp9", audio=None)


def silent_audio(folder: Path) -> Path:
    """An audio track that holds only silence (not a missing track)."""
    return write_clip(folder / "silent_track.mp4", seconds=2, fps=10, audio="silence")


def six_channel_audio(folder: Path) -> Path:
    video = write_clip(folder / "_video_for_51.mp4", seconds=2, fps=10, audio=None)
    return with_audio(video, folder / "surround_5.1.mp4", "5.1", seconds=2)


def shell_name(folder: Path) -> Path:
    return write_clip(folder / SHELL_NAME, seconds=2, fps=10)


# --------------------------------------------------------------------------- the list

INPUTS: list[BadInput] = [
    BadInput("empty", empty, Expected(error="is empty"), "0-byte .mp4"),
    BadInput(
        "random_bytes",
        random_bytes,
        Expected(error="is not a video file"),
        "300 kB of random bytes named .mp4",
    ),
    BadInput("text_file", text_file, Expected(error="is not a video file"), "a text file (.txt)"),
    BadInput("png", png, Expected(error="is a still image"), "a PNG picture"),
    BadInput("audio_only", audio_only, Expected(error="has audio but no video"), "an AAC .m4a, no video"),
    BadInput(
        "truncated", truncated, Expected(error="is truncated or corrupt"), "first half of an MP4 (moov last)"
    ),
    BadInput(
        "huge_dims_header",
        huge_dims_header,
        Expected(size=(160, 96), frames=2, has_audio=False),
        "160x96 MP4, tkhd + stsd claim 60000x60000",
    ),
    BadInput(
        "huge_dims_sps",
        huge_dims_sps,
        Expected(error="over the 35.4-megapixel limit"),
        "MP4, tkhd + stsd + H.264 SPS claim 16000x16000",
    ),
    BadInput(
        "huge_dims_sps_60k",
        huge_dims_sps_60k,
        Expected(error="has no video stream that can be decoded"),
        "MP4, tkhd + stsd + H.264 SPS claim 60000x60000",
    ),
    BadInput("one_frame", one_frame, Expected(size=(160, 96), frames=1, has_audio=True), "one frame (0.1 s)"),
    BadInput(
        "ten_minutes",
        ten_minutes,
        Expected(size=(64, 48), frames=60, duration_s=600.0, has_audio=True),
        "600 s, 2 fps, 64x48, mono AAC",
        slow=True,
    ),
    BadInput("4k", uhd_4k, Expected(size=(3840, 2160), frames=2, has_audio=True), "3840x2160, 1 s"),
    BadInput(
        "portrait", portrait, Expected(size=(96, 160), frames=4, has_audio=True), "96x160 stored upright"
    ),
    BadInput(
        "rotated",
        rotated,
        Expected(size=(96, 160), frames=4, has_audio=True),
        "160x96 + 90-degree display matrix",
    ),
    BadInput(
        "variable_frame_rate",
        variable_frame_rate,
        # official sampling: every round(avg fps / 2)-th frame (avg 11.5 fps: frames 0, 6, ..., 24),
        # each at its own timestamp
        Expected(size=(160, 96), frames=5, frame_times_s=(0.0, 0.3, 0.6, 0.9, 1.8), has_audio=True),
        "30 frames: 50 ms apart, then 200 ms",
    ),
    BadInput(
        "webm_vp9",
        webm_vp9,
        Expected(size=(160, 96), frames=4, has_audio=False, audio_source="silence"),
        "WEBM, VP9, no audio",
    ),
    BadInput(
        "silent_audio",
        silent_audio,
        Expected(size=(160, 96), frames=4, has_audio=True, audio_source="container"),
        "AAC track of silence",
    ),
    BadInput(
        "six_channel_audio",
        six_channel_audio,
        Expected(size=(160, 96), frames=4, has_audio=True, audio_source="container"),
        "5.1 AAC (6 channels)",
    ),
    BadInput(
        "shell_name",
        shell_name,
        Expected(size=(160, 96), frames=4, has_audio=True),
        "name with $( ), backticks, ; & | > quotes, é视频",
    ),
]
BY_NAME = {item.name: item for item in INPUTS}


class InputSet:
    """The inputs written into one folder, each on first use."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._made: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        if name not in self._made:
            self._made[name] = BY_NAME[name].make(self.folder)
        return self._made[name]

    def __iter__(self) -> Iterator[tuple[BadInput, Path]]:
        for item in INPUTS:
            yield item, self.path(item.name)


# --------------------------------------------------------------------------- helpers


def with_audio(
    video_clip: Path, path: Path, layout: str, seconds: float, rate: int = 48000, loop_s: float | None = None
) -> Path:
    """``video_clip``'s video (copied, not re-encoded) plus an AAC track in ``layout``, the two
    interleaved by time. ``loop_s`` encodes that much audio once and repeats its packets to
    ``seconds`` (FFmpeg's AAC encoder runs ~75x real time: ten minutes would cost 8 s)."""
    with av.open(str(video_clip)) as source, av.open(str(path), "w") as out:
        video_in = source.streams.video[0]
        video_out = out.add_stream_from_template(video_in)
        sound = out.add_stream("aac", rate=rate, layout=layout)
        channels = sound.layout.nb_channels
        timed: list[tuple[float, av.Packet]] = []
        for packet in source.demux(video_in):
            if packet.dts is not None:
                packet.stream = video_out
                timed.append((float(packet.dts * packet.time_base), packet))
        span = min(seconds, loop_s or seconds)
        stereo = tone(span, rate, "tone", 2)
        # every channel its own mix of the two tones, so a channel mix-down is not silence
        samples = np.stack([stereo[k % 2] * (1 + k) / channels for k in range(channels)]).astype(np.float32)
        encoded: list[av.Packet] = []
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            encoded += sound.encode(frame)
        encoded += sound.encode(None)
        loop, total = samples.shape[1], round(seconds * rate)
        for offset in range(0, total, loop):
            for packet in encoded:
                if (offset and packet.pts < 0) or packet.pts + offset >= total:
                    continue  # the encoder's priming packet starts the first loop only
                copy = av.Packet(bytes(packet))
                copy.pts = copy.dts = packet.pts + offset
                copy.duration, copy.time_base, copy.stream = packet.duration, Fraction(1, rate), sound
                timed.append(((packet.pts + offset) / rate, copy))
        for _, packet in sorted(timed, key=lambda item: item[0]):
            out.mux(packet)
    return path
