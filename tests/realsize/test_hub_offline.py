"""The hub path offline, as a Space runs once the files are downloaded: the checkpoint (sharded,
with its index) and the three component configs in a Hugging Face cache (HF_HUB_CACHE,
HF_HUB_OFFLINE=1), loaded by hub id through ``python -m inference run``, with and without a
pinned --revision; a wrong revision and a missing weight file are one line each."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.realsize.hubcache import add_snapshot

pytestmark = pytest.mark.slow

CHECKPOINT = "BrianatCambridge/video-SALMONN-o1"
MAIN = "a" * 40
PINNED = "b" * 40
BROKEN = "c" * 40
SOURCES = {
    "--vision-source": "google/siglip-so400m-patch14-384",
    "--whisper-source": "openai/whisper-large-v3",
    "--qformer-source": "google-bert/bert-base-uncased",
}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """Two builds at small widths (1 and 2 LLM layers) as two commits of the checkpoint, a third
    commit missing one weight file, and the component configs."""
    from inference.model.realwidth import WidthRecipe, build_realwidth

    small = WidthRecipe(
        llm_hidden=64, llm_heads=4, llm_kv_heads=2, llm_intermediate=96, vision_hidden=48, vision_heads=3,
        vision_intermediate=80, whisper_width=40, whisper_heads=2, whisper_ffn=80, qformer_hidden=24,
        qformer_heads=2, qformer_intermediate=48, shard_mb=8,
    )  # fmt: skip
    root = tmp_path_factory.mktemp("hub")
    cache = root / "cache"
    one = build_realwidth(root / "one", small, log=lambda m: None)
    two = build_realwidth(
        root / "two", WidthRecipe(**{**small.__dict__, "llm_layers": 2}), log=lambda m: None
    )
    add_snapshot(cache, CHECKPOINT, one.checkpoint, MAIN)
    add_snapshot(cache, CHECKPOINT, two.checkpoint, PINNED, ref=None)  # reachable by its commit only
    broken = add_snapshot(cache, CHECKPOINT, one.checkpoint, BROKEN, ref="broken")
    (broken / "model-00002-of-00005.safetensors").unlink()
    for hub_id in SOURCES.values():
        add_snapshot(cache, hub_id, one.component(hub_id), "d" * 40)
    return cache


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from examples.synth import write_clip

    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=2.0, fps=8, size=(64, 48))


def run_offline(cache, video, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("STUDIO_CHECKPOINT", None)
    args = [sys.executable, "-m", "inference", "run", "--video", str(video), "--question", "What happens?"]
    args += ["--max-new-tokens", "3", "--json", "--device", "cpu", "--checkpoint", CHECKPOINT, *extra]
    for flag, hub_id in SOURCES.items():
        args += [flag, hub_id]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def test_loads_by_hub_id_from_the_cache_and_by_pinned_revision(hub_cache, video):
    latest = run_offline(hub_cache, video)
    assert latest.returncode == 0, latest.stderr[-2000:]
    trace = json.loads(latest.stdout)
    assert (trace["model"]["id"], trace["model"]["revision"], trace["model"]["tiny"]) == (
        CHECKPOINT,
        None,
        False,
    )
    pinned = run_offline(hub_cache, video, "--revision", PINNED)
    assert pinned.returncode == 0, pinned.stderr[-2000:]
    assert json.loads(pinned.stdout)["model"]["revision"] == PINNED


def test_wrong_revision_is_one_line(hub_cache, video):
    result = run_offline(hub_cache, video, "--revision", "e" * 40)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: checkpoint {CHECKPOINT} revision {'e' * 40!r} is not in the hub cache and the hub is "
        "unreachable (offline); download it first or pass --checkpoint with a local folder"
    )


def test_missing_weight_file_is_one_line(hub_cache, video):
    result = run_offline(hub_cache, video, "--revision", "broken")
    folder = hub_cache / "models--BrianatCambridge--video-SALMONN-o1" / "snapshots" / BROKEN
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {folder} lacks 1 of the 5 weight files its index names "
        "(model-00002-of-00005.safetensors); download the checkpoint again"
    )
