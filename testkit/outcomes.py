"""Running one bad input through an entry point and judging what came of it: the CLI (``python -m
inference probe|run`` in its own process, with its own peak memory) and the app (an analysis
through gradio_client). An ``Outcome`` lists what differs from the input's ``Expected``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from testkit.app_api import analyze_args
from testkit.app_process import REPO
from testkit.bad_inputs import BadInput, Expected

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
