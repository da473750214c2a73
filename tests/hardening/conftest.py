"""The ``app_process`` fixture: ``python app.py ...`` in its own process (``testkit.AppProcess``),
so that a test can kill it, restart it and read its peak memory, and so that a crash in the app
is not a crash of the test session. Used by the hardening suite (bad input, load, faults, access)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.app_process import AppProcess


@pytest.fixture
def app_process(tmp_path):
    """``app_process(*flags, db=None, preexec=None)`` -> a started AppProcess (stopped at the end of the test); its
    database and clips under the test's tmp_path unless the flags say otherwise."""
    started: list[AppProcess] = []

    def start(*flags: str, db: Path | None = None, preexec: Callable[[], None] | None = None) -> AppProcess:
        db = db or tmp_path / "annotations.db"
        app = AppProcess(
            ["--db", str(db), "--torch-threads", "1", *flags],
            log_path=tmp_path / f"app-{len(started)}.log",
            preexec=preexec,
        )
        started.append(app)
        return app.start()

    yield start
    for app in started:
        app.stop()
