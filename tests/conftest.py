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
