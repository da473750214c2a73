"""ZeroGPU: with the ``spaces`` package installed (as on a ZeroGPU Space), the GPU functions are
declared to ``spaces.GPU`` with their durations, and off a ZeroGPU Space (no SPACES_ZERO_GPU) the
app starts and runs them on the CPU."""

from __future__ import annotations

import os

import pytest
from gradio_client import handle_file

from tests.app.conftest import analyze_args

spaces = pytest.importorskip("spaces", reason="the spaces package is pinned in requirements-dev.txt")


def test_gpu_functions_are_declared_with_their_durations():
    import ui.services  # noqa: F401 (decorates the GPU functions on import)
    from ui.gpu import DECLARED, DURATIONS_S, zero_gpu_available

    assert zero_gpu_available()
    assert DECLARED == DURATIONS_S == {"_reason": 180, "_sample": 60, "_rollouts": 180}


def test_off_zero_gpu_the_functions_are_the_plain_ones():
    assert not os.environ.get("SPACES_ZERO_GPU")
    from ui import services

    # spaces.GPU returns the function itself off ZeroGPU: no wrapper that would ask for a GPU
    assert services._reason.__module__ == "ui.services" and not hasattr(services._reason, "zerogpu")


@pytest.mark.slow
def test_app_starts_and_analyses_on_the_cpu_with_spaces_installed(app, clip):
    """The decorated ``_reason`` runs on the CPU: the analysis is stored with its steps and scores."""
    job = app.client().submit(
        *analyze_args(handle_file(str(clip)), max_new_tokens=24, attention=False), api_name="/analyze"
    )
    trace_id = job.result()[1]
    stored = app.studio.store.get_trace(trace_id).to_dict()
    assert stored["model"]["device"] == "cpu" and stored["steps"]
    assert all(set(step["scores"]) == {"noise", "mute"} for step in stored["steps"])
