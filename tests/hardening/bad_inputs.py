"""The bad-input suite's inputs: one maker per kind of file a user hands in, and what must come of it.

Every input is generated (PyAV, PIL, byte patching), small where size does not matter, and
written once per folder (``InputSet``). Each carries its expected outcome: a correct result (the
clip facts the pipeline must report) or a one-line error containing a phrase. The tests
(tests/hardening/test_bad_inputs.py) and the benchmark (bench/bad_inputs.py) run the same list
through the CLI and the app.

The "huge dimensions" inputs are MP4s whose headers are patched, not encoded at that size: the
container's track and sample-entry sizes (which FFmpeg does not trust) and the H.264 sequence
parameter set (which the decoder does trust, and would allocate every frame from).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from examples.synth import tone, write_audio_only, write_clip

REPO = Path(__file__).resolve().parents[2]

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


def patch_dimensions(source: Path, path: Path, width: int, height: int, sps: bool) -> Path:
    """Copy an H.264 MP4 (moov after mdat, as ``write_clip`` writes it) claiming ``width`` x
    ``height`` in its video track header and sample entry, and with ``sps`` in its sequence
    parameter set too (the frames stay the small ones)."""
    data = bytearray(source.read_bytes())
    tkhd = _box_path(data, ["moov", "trak", "tkhd"])
    pos, _, size = tkhd[-1]
    struct.pack_into(">II", data, pos + size - 8, width << 16, height << 16)  # 16.16 fixed point
    chain = _box_path(data, ["moov", "trak", "mdia", "minf", "stbl", "stsd", "avc1", "avcC"])
    pos, header, _ = chain[-2]
    struct.pack_into(">HH", data, pos + header + 24, width, height)  # VisualSampleEntry
    if sps:
        pos, header, size = chain[-1]
        body = bytes(data[pos + header : pos + size])
        assert body[5] & 0x1F == 1, "one SPS expected"
        length = struct.unpack(">H", body[6:8])[0]
        new_sps = _patch_sps(body[8 : 8 + length], width, height)
        new_body = body[:6] + struct.pack(">H", len(new_sps)) + new_sps + body[8 + length :]
        data[pos + header : pos + size] = new_body
        for box_pos, _, box_size in chain:  # every enclosing box grows; mdat comes first: no offsets move
            struct.pack_into(">I", data, box_pos, box_size + len(new_body) - len(body))
    path.write_bytes(bytes(data))
    return path


_CHILDREN_AFTER = {"stsd": 8, "avc1": 78}  # bytes of fields before a box's children


def _box_path(data: bytearray, names: list[str], start: int = 0, end: int | None = None, chain=()):
    """[(offset, header size, size)] of the boxes along ``names`` (the first match at each level)."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if kind.decode("latin1") == names[0]:
            here = (*chain, (pos, header, size))
            if len(names) == 1:
                return here
            inner = pos + header + _CHILDREN_AFTER.get(names[0], 0)
            found = _box_path(data, names[1:], inner, pos + size, here)
            if found:
                return found
        pos += size
    return None


def _patch_sps(nal: bytes, width: int, height: int) -> bytes:
    """An H.264 SPS NAL unit with its picture size in macroblocks replaced (bits before and
    after kept, emulation prevention redone)."""
    bits = "".join(f"{b:08b}" for b in _unescape(nal[1:]))
    reader = _Bits(bits)
    profile = reader.u(8)
    reader.u(16)  # constraint flags, level
    reader.ue()  # seq_parameter_set_id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        if reader.ue() == 3:  # chroma_format_idc
            reader.u(1)
        reader.ue(), reader.ue(), reader.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        assert reader.u(1) == 0, "SPS scaling matrices are not handled"
    reader.ue()  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    assert poc_type in (0, 2), "pic_order_cnt_type 1 is not handled"
    if poc_type == 0:
        reader.ue()
    reader.ue(), reader.u(1)  # max_num_ref_frames, gaps_in_frame_num_allowed
    start = reader.i
    reader.ue(), reader.ue()  # pic_width_in_mbs_minus1, pic_height_in_map_units_minus1
    patched = bits[:start] + _ue(width // 16 - 1) + _ue(height // 16 - 1) + bits[reader.i :]
    patched = patched.rstrip("0")  # up to the stop bit, which moves with the payload; realign
    patched += "0" * (-len(patched) % 8)
    return nal[:1] + _escape(int(patched, 2).to_bytes(len(patched) // 8, "big"))


class _Bits:
    def __init__(self, bits: str):
        self.bits, self.i = bits, 0

    def u(self, n: int) -> int:
        value = int(self.bits[self.i : self.i + n] or "0", 2)
        self.i += n
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.i] == "0":
            zeros += 1
            self.i += 1
        self.i += 1
        return (1 << zeros) - 1 + self.u(zeros)


def _ue(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def _unescape(payload: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in payload:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


# --------------------------------------------------------------------------- running them

QUESTION = "What moves?"
OPTIONS = ["the circle", "the square"]


@dataclass
class Outcome:
    """What one input came to through one entry point: ``result`` or ``error`` (the one line a
    user sees), the peak memory of the process, and what differs from ``Expected`` (nothing when
    it went as it should)."""

    kind: str  # "result" | "error" | "failure" (a crash, a hang, a traceback, ...)
    detail: str  # the error line, or the clip facts of the result
    peak_mb: float
    seconds: float
    problems: list[str]


# ru_maxrss of a child includes the memory of whoever forked it (Linux carries the pre-exec
# high-water mark over exec), so the CLI is started through this small launcher: it forks the
# command, waits for it and writes the command's own peak (kB) to the file named first.
_LAUNCHER = """\
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def cli_args(command: str, path: Path, checkpoint: Path | None = None, *extra: str) -> list[str]:
    """``python -m inference probe|run`` for one input, JSON out; ``run`` on the CPU with few tokens."""
    if command == "probe":
        return [sys.executable, "-m", "inference", "probe", str(path), "--json", *extra]
    return [
        sys.executable, "-m", "inference", "run", "--video", str(path),
        "--checkpoint", str(checkpoint), "--device", "cpu", "--quantization", "none",
        "--question", QUESTION, "--options", *OPTIONS, "--max-new-tokens", "16", "--json", *extra,
    ]  # fmt: skip


def run_cli(
    args: list[str], cwd: Path, timeout_s: float = 240.0, env: dict[str, str] | None = None
) -> tuple[int, str, str, float, float]:
    """Run one command as a user would (its own process) -> (exit code, stdout, stderr, peak MB,
    seconds). A command still running after ``timeout_s`` is killed and reads as exit code -9.
    ``env`` adds to the environment."""
    cwd.mkdir(parents=True, exist_ok=True)
    fd, peak_file = tempfile.mkstemp(suffix=".maxrss")
    os.close(fd)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "STUDIO_CACHE": os.environ.get("STUDIO_CACHE", str(REPO / ".cache" / "studio")),
        **(env or {}),
    }
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, peak_file, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a timeout kills the launcher and the command together
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = -9
    seconds = time.perf_counter() - start
    try:
        peak_mb = int(Path(peak_file).read_text() or 0) / 1024
    finally:
        os.unlink(peak_file)
    return code, out.decode(errors="replace"), err.decode(errors="replace"), peak_mb, seconds


def cli_outcome(
    item: BadInput, path: Path, command: str, result: tuple[int, str, str, float, float]
) -> Outcome:
    """Judge one CLI run against ``item.expected``: exit 0 and JSON with the right clip facts, or
    exit 2 and exactly one stderr line ``error: <file name> ...<phrase>...; <what to do>``."""
    code, out, err, peak_mb, seconds = result
    expected = item.expected
    problems: list[str] = []
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    if code == 0:
        try:
            data = json.loads(out)
        except ValueError:
            return Outcome("failure", out[-200:], peak_mb, seconds, ["exit 0 without JSON on stdout"])
        clip = data.get("clip", {})
        frames = data["frames"] if command == "probe" else len(clip.get("frame_times_s", []))
        detail = clip_facts(clip, frames)
        if not expected.ok:
            problems.append(f"accepted, expected an error containing {expected.error!r}")
        problems += compare_clip(expected, clip, frames)
        source = data.get("audio_source")
        if command == "probe" and expected.audio_source is not None and source != expected.audio_source:
            problems.append(f"audio from {source!r}, expected {expected.audio_source!r}")
        if clip.get("name") != path.name:
            problems.append(f"clip name {clip.get('name')!r}, expected {path.name!r}")
        if command == "run" and not (
            isinstance(data.get("steps"), list) and "text" in data.get("answer", {})
        ):
            problems.append("the trace has no steps list or no answer")
        return Outcome("result", detail, peak_mb, seconds, problems)
    if code != 2 or len(lines) != 1:
        tail = " | ".join(lines[-3:])
        return Outcome(
            "failure",
            f"exit {code}: {tail}"[:300],
            peak_mb,
            seconds,
            [*problems, f"exit {code}, {len(lines)} stderr lines"],
        )
    line = lines[0]
    problems += check_error_line(expected, line.removeprefix("error: "), path.name)
    if not line.startswith("error: "):
        problems.append("the stderr line does not start with 'error: '")
    if out.strip():
        problems.append("an error, yet output on stdout")
    return Outcome("error", line, peak_mb, seconds, problems)


def check_error_line(expected: Expected, message: str, name: str) -> list[str]:
    """A refusal as the user reads it: one line naming the file, the expected phrase, and a
    second half (after ';') that says what to do."""
    problems = []
    if expected.ok:
        problems.append(f"refused, expected a result: {message}")
    elif expected.error not in message:
        problems.append(f"message lacks {expected.error!r}")
    if "\n" in message:
        problems.append("a multi-line message")
    if not message.startswith(name):
        problems.append(f"message does not start with the file name {name!r}")
    if ";" not in message:
        problems.append("message does not say what to do")
    return problems


def compare_clip(expected: Expected, clip: dict, frames: int) -> list[str]:
    problems = []
    size = (clip.get("width"), clip.get("height"))
    if expected.size is not None and size != expected.size:
        problems.append(f"size {size}, expected {expected.size}")
    if expected.frames is not None and frames != expected.frames:
        problems.append(f"{frames} frames, expected {expected.frames}")
    times = tuple(clip.get("frame_times_s", ()))
    if expected.frame_times_s is not None and times != expected.frame_times_s:
        problems.append(f"frames at {times} s, expected {expected.frame_times_s}")
    if expected.duration_s is not None and abs(clip.get("duration_s", 0) - expected.duration_s) > 0.01:
        problems.append(f"duration {clip.get('duration_s')} s, expected {expected.duration_s}")
    if expected.has_audio is not None and clip.get("has_audio") != expected.has_audio:
        problems.append(f"has_audio {clip.get('has_audio')}, expected {expected.has_audio}")
    return problems


def clip_facts(clip: dict, frames: int) -> str:
    audio = "audio" if clip.get("has_audio") else "no audio"
    plural = "" if frames == 1 else "s"
    return f"{clip.get('width')}x{clip.get('height')}, {frames} frame{plural}, {clip.get('duration_s'):g} s, {audio}"


def analyze_settings() -> dict:
    """The app's /analyze settings for the suite: few tokens, one perturbation (scoring runs)."""
    return {"max_new_tokens": 16, "perturbations": ["noise"]}


def app_outcome(item: BadInput, path: Path, client, get_trace) -> Outcome:
    """Upload and analyse one input through the app's API (``client``: gradio_client) -> the
    Outcome, judged as the CLI's: a stored trace with the right clip facts, or an AppError whose
    message is the one line. ``get_trace(id)`` reads the trace back from the app's store.
    ``peak_mb`` is left 0: the caller reads the app process's memory."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from tests.app.conftest import analyze_args

    start = time.perf_counter()
    args = analyze_args(handle_file(str(path)), QUESTION, "\n".join(OPTIONS), "A", **analyze_settings())
    try:
        result = client.predict(*args, api_name="/analyze")
    except AppError as exc:
        message = str(exc)
        return Outcome(
            "error",
            message,
            0.0,
            time.perf_counter() - start,
            check_error_line(item.expected, message, path.name),
        )
    except Exception as exc:  # the connection dropped, a timeout, ...: what must never happen
        return Outcome(
            "failure", f"{type(exc).__name__}: {exc}"[:300], 0.0, time.perf_counter() - start, ["no answer"]
        )
    seconds = time.perf_counter() - start
    trace_id = result[1]
    try:
        stored = get_trace(trace_id)
    except Exception as exc:
        return Outcome("failure", f"trace {trace_id!r} not stored: {exc}", 0.0, seconds, ["no stored trace"])
    clip = stored["clip"]
    frames = len(clip["frame_times_s"])
    problems = [] if item.expected.ok else [f"accepted, expected an error containing {item.expected.error!r}"]
    problems += compare_clip(item.expected, clip, frames)
    if not isinstance(stored.get("steps"), list) or not stored.get("answer"):
        problems.append("the stored trace has no steps list or no answer")
    return Outcome("result", clip_facts(clip, frames), 0.0, seconds, problems)


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's peak resident memory (VmHWM) to its current size, so that the next
    reading is the peak of what follows (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False
