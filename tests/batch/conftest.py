"""Batch fixtures: small generated clips, a manifest over them (plus a missing and a garbage
clip), and one two-process ``accelerate launch`` run over it that several tests read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.app_process import free_port

REPO = Path(__file__).resolve().parents[2]
SAMPLES = 2
MAX_NEW_TOKENS = 8  # the tiny model's steps are meaningless; a few tokens exercise the same path
GOOD = 3  # clips that decode
BAD = 2  # a missing file and a garbage file


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """Three 2 s clips (different shapes and sounds) and a file that is not a video."""
    from examples.synth import write_clip

    folder = tmp_path_factory.mktemp("batch-clips")
    write_clip(folder / "circle.mp4", seconds=2.0, fps=8, size=(128, 96), shapes=("circle",))
    write_clip(folder / "square.mp4", seconds=2.0, fps=8, size=(128, 96), shapes=("square",), audio="chirp")
    write_clip(folder / "silent.mp4", seconds=2.0, fps=8, size=(96, 128), audio=None)
    (folder / "garbage.mp4").write_bytes(b"this is not a video\n" * 64)
    return folder


@pytest.fixture(scope="session")
def manifest(clip_dir) -> Path:
    """The shared clips' manifest format: ``file`` relative to the manifest, options or null."""
    rows = [
        {
            "file": "circle.mp4",
            "question": "Which shape moves?",
            "options": ["circle", "square"],
            "reference_answer": "A",
        },
        {
            "file": "square.mp4",
            "question": "Which shape moves?",
            "options": ["circle", "square"],
            "reference_answer": "B",
        },
        {"video": str(clip_dir / "silent.mp4"), "question": "Is there any sound?", "options": None},
        {"file": "missing.mp4", "question": "Which shape moves?", "options": ["circle", "square"]},
        {"file": "garbage.mp4", "question": "Which shape moves?", "options": ["circle", "square"]},
    ]
    return write_manifest(clip_dir / "manifest.jsonl", rows)


def batch_args(manifest: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [
        "batch",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--samples-per-question",
        str(SAMPLES),
        "--max-new-tokens",
        str(MAX_NEW_TOKENS),
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
        *extra,
    ]


ONE_NODE_CONFIG = REPO / "examples" / "accelerate" / "one_node_multi_gpu.yaml"


def launch_command(processes: int, args: list[str]) -> list[str]:
    """``accelerate launch`` with the README's one-node config file (works offline, no prompt).
    accelerate's own ``--cpu`` starts several processes only through mpirun; the config's
    torchrun launcher starts them on a machine without a GPU too, and the batch command makes
    them CPU processes (gloo)."""
    accelerate = Path(sys.executable).with_name("accelerate")
    return [
        str(accelerate),
        "launch",
        "--config_file",
        str(ONE_NODE_CONFIG),
        "--num_processes",
        str(processes),
        "--main_process_port",
        str(free_port()),
        "-m",
        "inference",
        *args,
    ]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("STUDIO_CACHE", str(REPO / ".cache" / "studio"))
    return env


@dataclass
class BatchRun:
    out: Path
    manifest: Path
    checkpoint: Path
    returncode: int
    stdout: str
    stderr: str

    def lines(self, pattern: str) -> list[dict]:
        rows = []
        for path in sorted((self.out / "shards").glob(pattern)):
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return rows


def launch(processes: int, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        launch_command(processes, args),
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def two_process_run(tmp_path_factory, manifest, tiny_checkpoint) -> BatchRun:
    """The manifest through ``accelerate launch`` with two CPU processes (tests read, never write)."""
    out = tmp_path_factory.mktemp("batch-run") / "out"
    done = launch(2, batch_args(manifest, out, tiny_checkpoint))
    return BatchRun(out, manifest, tiny_checkpoint, done.returncode, done.stdout, done.stderr)


@pytest.fixture
def run_copy(two_process_run, tmp_path) -> Path:
    """A copy of the two-process run's folder that a test may resume or change."""
    target = tmp_path / "out"
    shutil.copytree(two_process_run.out, target)
    return target
