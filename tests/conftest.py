"""Fixtures shared by every test folder: where the optional shared data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SHARED_CLIPS = SHARED / "clips"
OFFICIAL_TINY = SHARED / "reference" / "official_tiny"


@pytest.fixture(scope="session")
def shared_clips() -> Path:
    """``../shared/clips``; tests that use it are skipped cleanly where it is absent."""
    if not (SHARED_CLIPS / "manifest.jsonl").exists():
        pytest.skip("../shared/clips is absent")
    return SHARED_CLIPS


@pytest.fixture(scope="session")
def official_tiny() -> Path:
    """``../shared/reference/official_tiny``: the golden data computed by the official code."""
    if not (OFFICIAL_TINY / "reference" / "reference.json").exists():
        pytest.skip("../shared/reference/official_tiny is absent")
    return OFFICIAL_TINY


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """The tiny demo checkpoint, built once (seconds on 2 cores) into STUDIO_CACHE,
    which defaults to the repository's .cache/studio so every test session reuses it."""
    import os

    os.environ.setdefault("STUDIO_CACHE", str(REPO / ".cache" / "studio"))
    from inference.tiny import default_tiny_checkpoint

    return default_tiny_checkpoint(log=lambda message: None)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded in float32 on the CPU, shared by the session (read-only use)."""
    from inference.model.loading import LoadSettings, load_model

    return load_model(LoadSettings(checkpoint=str(tiny_checkpoint), device="cpu", quantization="none"))


@pytest.fixture(scope="session")
def example_clips(tmp_path_factory) -> dict[str, Path]:
    """The project's generated example clips (examples/make_examples.py), by file name."""
    from examples.make_examples import ensure_examples

    out = tmp_path_factory.mktemp("examples")
    return {p.name: p for p in ensure_examples(out)}
