"""The model the app serves: loaded once (in the background at startup or by the first
analysis), its status for the page while it builds or loads, and the CPU threads it may use.

Gradio-free, like ``ui.services`` (which uses it). The tiny demo model is built here when it is not
cached, so the page can show the build's progress and the seconds left.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.errors import UserError
from ui.config import AppConfig

log = logging.getLogger("studio")


class AppError(UserError):
    """Something the person at the page can fix (a missing name, clip or setting)."""


MODEL_MODULES = (
    "inference.model.loading",
    "inference.model.modeling",
    "inference.options",
    "inference.tiny",
    "inference.model.prompts",
    "inference.reasoning.generate",
    "inference.reasoning.perturb",
    "inference.reasoning.scoring",
    "inference.reasoning.attribution",
    "inference.reasoning.alternatives",
    "inference.reasoning.pipeline",
)
TRANSFORMERS_NAMES = (
    "AutoTokenizer",
    "PreTrainedTokenizerFast",
    "Qwen2Config",
    "Qwen2ForCausalLM",
    "DynamicCache",
    "BitsAndBytesConfig",
)


def import_model_code() -> None:
    """Import the model's code in the calling (main) thread, before any other thread runs it.

    transformers resolves its names lazily, on first access, and that is not thread-safe: the
    startup thread loading the weights while a request thread built a prompt once failed with
    "cannot import name 'AutoTokenizer' from 'transformers'" (seen in bench/app.py)."""
    import importlib

    for name in MODEL_MODULES:
        importlib.import_module(name)
    transformers = importlib.import_module("transformers")
    for name in TRANSFORMERS_NAMES:
        getattr(transformers, name)


def freeze_long_lived_objects() -> None:
    """Move every object alive now (torch, transformers, gradio, the model) out of the garbage
    collector's reach. A full collection walks all of them: ~270 ms for ~500k objects on the
    bench VM, during which no request is served (the GIL is held). After startup they live as
    long as the process; later collections then only look at new objects."""
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class ModelStatus:
    """Where the model is, for the page: ``phase`` is one of "not loaded" (the first analysis
    loads it), "building" (the tiny demo model, first run only), "loading", "ready", "failed"."""

    phase: str
    message: str  # one line a person reads
    fraction: float = 0.0  # of the way to a ready model
    seconds_left: float | None = None  # None: not known (or nothing left)

    @property
    def busy(self) -> bool:
        """The model is on its way: an analysis started now would wait for it."""
        return self.phase in ("building", "loading")


# A loaded tiny checkpoint takes ~1-3 s to read in; the estimate adds it to the build's.
TINY_LOAD_S = 2.0


class ModelHolder:
    """Loads the model on first use (or in a startup thread) and keeps it; a failed load is
    remembered and its message shown until the next attempt. ``status()`` says, at any time,
    what it is doing and how long is left (a first run builds the tiny demo model)."""

    def __init__(self, config: AppConfig, loader: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._loader = loader or self._load
        self._lock = threading.Lock()
        self._loaded: Any = None
        self.error: str | None = None
        self.state = "not loaded"  # not loaded | loading | ready | failed
        self._started = 0.0  # perf_counter when the load began
        self._build: tuple[float, float, str] | None = None  # (started, fraction, what) of a tiny build

    def expected_tiny(self) -> bool:
        """Whether the tiny demo model will be served (without loading anything)."""
        from inference.model.loading import resolve_device

        checkpoint = self.config.checkpoint
        if checkpoint == "tiny":
            return True
        if checkpoint:  # a local folder says so in its config.json (inference.tiny)
            config_file = Path(checkpoint).expanduser() / "config.json"
            try:
                return bool(json.loads(config_file.read_text(encoding="utf-8")).get("studio_tiny", False))
            except (OSError, ValueError):
                return False  # a hub id or an unreadable folder: the load will tell
        return resolve_device(self.config.device) != "cuda"

    def _on_build_progress(self, fraction: float, what: str) -> None:
        started = self._build[0] if self._build else time.perf_counter()
        self._build = (started, fraction, what)

    def _load(self) -> Any:
        from inference.model.loading import load_model, resolve_device

        # Before a tiny build too: its small matrices gain little from a second thread, and on a
        # busy 2-core machine two threads waiting for each other made it 5x slower (bench/first_run.py).
        set_cpu_threads(self.config)
        checkpoint = self.config.checkpoint
        if checkpoint == "tiny" or (
            not checkpoint and not resolve_device(self.config.device).startswith("cuda")
        ):
            from inference.tiny import default_tiny_checkpoint

            # Built here (when not cached) so that status() can follow the build's progress.
            default_tiny_checkpoint(log=log.info, progress=self._on_build_progress)
        settings = self.config.model_options.to_load_settings(log=log.info)
        self._build = None
        return load_model(settings)

    def status(self) -> ModelStatus:
        """What the model is doing now, with an estimate of the seconds left when building."""
        state, build = self.state, self._build
        if state == "ready":
            return ModelStatus("ready", "Model ready.", 1.0, 0.0)
        if state == "failed":
            return ModelStatus("failed", f"The model could not be loaded: {self.error}")
        if state == "not loaded":
            return ModelStatus("not loaded", "The model loads on the first analysis.")
        if build is None:
            waited = time.perf_counter() - self._started
            return ModelStatus("loading", f"Loading the model ({waited:.0f} s so far).")
        started, fraction, what = build
        elapsed = time.perf_counter() - started
        left = tiny_build_seconds_left(elapsed, fraction)
        message = (
            f"Building the tiny demo model (first run only): {what}, {fraction:.0%} done, "
            f"about {left:.0f} s left."
        )
        return ModelStatus("building", message, fraction, left)

    def get(self) -> Any:
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is None:
                self.state = "loading"
                started = self._started = time.perf_counter()
                try:
                    self._loaded = self._loader()
                except UserError as exc:
                    self.state, self.error = "failed", str(exc)
                    raise
                except Exception as exc:
                    self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
                    log.exception("loading the model failed")
                    raise AppError(
                        f"the model could not be loaded ({self.error}); see the server log"
                    ) from exc
                self.state, self.error = "ready", None
                log.info("model ready in %.1f s: %s", time.perf_counter() - started, self._loaded.describe())
                freeze_long_lived_objects()
        return self._loaded

    def statuses_until_ready(self, interval: float = 1.0) -> Iterator[ModelStatus]:
        """For an analysis that must wait: while another thread (the startup one) builds or loads
        the model, yields the status every ``interval`` seconds; returns when it is ready or
        failed, or at once when nobody is loading it. Then call get() (which loads, or retries)."""
        status = self.status()
        while status.busy:
            yield status
            time.sleep(interval)
            status = self.status()

    def start_background(self) -> threading.Thread:
        def warm() -> None:
            # A failure is remembered in self.error; the page shows it on the next analysis.
            with contextlib.suppress(Exception):
                self.get()

        thread = threading.Thread(target=warm, name="model-preload", daemon=True)
        thread.start()
        return thread

    @property
    def loaded(self) -> Any:
        return self._loaded


def tiny_build_seconds_left(elapsed: float, fraction: float) -> float:
    """Seconds until a tiny build that is ``fraction`` done after ``elapsed`` seconds is built and
    loaded. Until training starts the recipe's own cost is the guide, stretched by how much
    slower than expected the preparation runs (a busy machine is slow at both)."""
    from inference.tiny import PREPARE_COST_S, TinyRecipe, build_cost_s

    total = build_cost_s(TinyRecipe())
    prepared = PREPARE_COST_S / total
    if fraction < prepared:
        slowdown = max(1.0, elapsed / PREPARE_COST_S)
        left = total * slowdown - elapsed
    else:
        left = elapsed * (1 - fraction) / fraction
    return max(left, 0.0) + TINY_LOAD_S


def set_cpu_threads(config: AppConfig) -> int | None:
    """Torch's CPU threads for a model on the CPU (``AppConfig.torch_threads``); returns the
    number set, or None when left alone (a GPU model, or 0)."""
    import torch

    from inference.model.loading import resolve_device

    if config.torch_threads == 0 or resolve_device(config.device) != "cpu":
        return None
    threads = config.torch_threads if config.torch_threads > 0 else max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    return threads
