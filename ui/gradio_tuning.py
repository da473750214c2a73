"""Settings that keep Gradio's own per-event work small: labeling is many small events, and
these costs were measured per label on the bench VM."""

from __future__ import annotations

import importlib.util
import os
import sys

# Gradio's queue rebuilds a pandas summary of every recorded event (up to 10,000) after each
# event, for its optional monitoring page (gradio/queueing.py, compute_analytics_summary): on
# the bench VM that was ~10 ms of CPU per label and grew with the number of labels. Summarise
# every 1,000 events over the last 1,000 instead (only the monitoring page reads it). Read by
# gradio's Queue when the Blocks are created; a value set in the environment wins.
GRADIO_QUEUE_ENV = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000", "GRADIO_ANALYTICS_MAX_EVENTS": "1000"}


def _fail_fast_on_absent_matplotlib() -> None:
    """Gradio tries ``import matplotlib`` twice around every event (utils.MatplotlibBackendMananger,
    route_utils.py). Where matplotlib is not installed each try searches the whole sys.path
    again (a failed import is not cached): ~2 ms of file-system calls per label on the bench VM.
    A None in sys.modules makes the same ImportError immediate; nothing else changes, since
    the package is absent anyway."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def tune_gradio() -> None:
    """Apply both before the Blocks are created (Gradio's queue reads the variables then)."""
    for name, value in GRADIO_QUEUE_ENV.items():
        os.environ.setdefault(name, value)
    _fail_fast_on_absent_matplotlib()
