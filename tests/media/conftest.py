"""Clips the media tests generate for themselves (PyAV, small, cached for the session)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from examples.synth import write_clip


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_clip(name, **write_clip_kwargs)`` -> path, written once per session."""
    folder = tmp_path_factory.mktemp("media_clips")
    made: dict[str, Path] = {}

    def make(name: str, **kwargs) -> Path:
        if name not in made:
            made[name] = write_clip(folder / name, **kwargs)
        return made[name]

    return make


@pytest.fixture(scope="session")
def short_clip(make_clip) -> Path:
    """3 s, 10 fps, 160x96, stereo AAC tone."""
    return make_clip("short.mp4", seconds=3, fps=10)


@pytest.fixture(scope="session")
def silent_clip(make_clip) -> Path:
    """3 s, 10 fps, no audio track."""
    return make_clip("silent.mp4", seconds=3, fps=10, audio=None)
