"""bench/gpu.py, the one GPU script, on its CPU path at tiny size, so that it cannot rot unseen
(it has never run on CUDA here: no GPU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_gpu_script_runs_on_the_cpu_at_tiny_size(tiny_checkpoint, tmp_path):
    from examples.synth import write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=3.0, fps=8, size=(96, 64))
    env = {**os.environ, "PYTHONPATH": str(REPO), "STUDIO_CACHE": str(tiny_checkpoint.parent)}
    args = ["--tiny", "--cpu", "--clip", str(clip), "--tokens", "8", "--batch-clips", "2"]
    args += ["--pairs", "2", "--pair-steps", "1"]
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("## bench/gpu.py -- CPU, torch ")
    assert lines[1].startswith("Model: tiny checkpoint, cpu, none. Clip: clip.mp4 (6 frames).")
    rows = dict(re.findall(r"^\| (.+?) \| (.+?) \|$", done.stdout, flags=re.M)[2:])
    number = r"\d+(\.\d+)?"
    assert set(rows) == {
        "peak memory (inference)",
        "time to first token (encode + prefill)",
        "time to first streamed step",
        "decode",
        "scoring / generation time",
        "batch",
        "pDPO (LoRA on the LLM)",
    }
    assert re.fullmatch(rf"{number} GiB \(peak RSS of the process\)", rows["peak memory (inference)"])
    assert re.fullmatch(rf"{number} tokens/s", rows["decode"])
    assert re.fullmatch(rf"{number} clips/min", rows["batch"])
    assert re.fullmatch(rf"{number} pairs/s, peak {number} GiB", rows["pDPO (LoRA on the LLM)"])


def test_gpu_script_without_cuda_says_how_to_run_it():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py")], capture_output=True, text=True, timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: no CUDA device here; run with --tiny --cpu for the CPU path\n"
