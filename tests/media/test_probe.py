"""``python -m inference probe``: what it prints, and exit code 2 with one line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from inference.cli import main

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_text_output(short_clip, capsys):
    assert main(["probe", str(short_clip)]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("LLM"))
    assert lines["duration"] == "3.000 s (30 frames at 10.000 fps)"
    assert lines["size"] == "160x96 (as displayed)"
    assert lines["has_audio"] == "true: the clip's own track"
    assert lines["frames"] == "6 sampled, at (s): 0.00 0.50 1.00 1.50 2.00 2.50"
    assert lines["audio"] == "3.000 s -> 1 chunk(s) of 30 s"
    assert lines["tensors"] == "pixel_values (6, 3, 384, 384), spectrogram (1, 128, 3000)"
    assert "LLM tokens  1242 (6 frames x 182 + 150 audio)" in out


def test_json_output(silent_clip, capsys):
    assert main(["probe", str(silent_clip), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    report.pop("decode_s")
    clip = report.pop("clip")
    assert report == {
        "source_frames": 30,
        "real_time_s": 3.0,
        "frames": 6,
        "frame_indices": [0, 5, 10, 15, 20, 25],
        "audio_source": "silence",
        "audio_seconds": 3.0,
        "audio_samples": 48000,
        "audio_chunks": 1,
        "pixel_values_shape": [6, 3, 384, 384],
        "spectrogram_shape": [1, 128, 3000],
        "llm_tokens": 1242,
        "video_tokens": 1092,
        "audio_tokens": 150,
    }
    assert clip["has_audio"] is False and clip["frame_times_s"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert set(clip) == {
        "sha256",
        "name",
        "path",
        "duration_s",
        "fps",
        "width",
        "height",
        "has_audio",
        "frame_times_s",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-duration", "2"], "error: short.mp4 lasts 0:03, over the 0:02 limit; cut it shorter"),
        (["--max-file-mb", "0.001"], "error: short.mp4 is 0.0"),
    ],
)
def test_limits(short_clip, capsys, args, message):
    assert main(["probe", str(short_clip), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message) and captured.err.count("\n") == 1
    assert "limit; " in captured.err


def test_bad_file_exit_code_and_one_line(tmp_path):
    """Through the real entry point: exit status 2, one line on stderr, no traceback."""
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 20)
    done = subprocess.run(
        [sys.executable, "-m", "inference", "probe", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: notes.mp4 is not a video file that can be read; upload a video such as MP4, MOV, MKV or WEBM\n"
    )
