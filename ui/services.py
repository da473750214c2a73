"""What the app does, without Gradio: analyse a clip, label steps, sample alternatives, export.

``Studio`` composes ``inference`` (media, model, generation, scoring) and ``annotation_db``
(the store); the Gradio handlers in ``ui.handlers`` only translate between its values and
components. Everything here can be driven from a test or a benchmark directly.

Threads: Gradio calls handlers from a pool of worker threads. The Store keeps one SQLite
connection per thread and queues its writers, so one Store is shared by every handler. Model
work is kept to one event at a time by Gradio's queue (every GPU event is in the concurrency
group "gpu" with limit 1); the model is loaded once, under a lock, by whichever comes first: the
startup thread or the first analysis.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from annotation_db import FORMATS, ExportEmptyError, ExportWriteError, Store, StoreConfig, StoredTrace
from annotation_db.export import export_write_error
from inference.errors import UserError
from inference.reasoning.pipeline import AnalysisSettings, AnswerDecoded, Finished, Phase, StepDecoded
from ui.config import AppConfig
from ui.gpu import gpu_task

log = logging.getLogger("studio")

MAX_STEP_SECONDS = 300.0  # time on one step beyond this is a pause, not labeling: cap it
EXPORT_SUFFIXES = ("jsonl", "parquet")
ANYONE = "\u2014"  # stands for "no annotator" in store.queue, which needs a name ("—" labels nothing)


class AppError(UserError):
    """Something the person at the page can fix (a missing name, clip or setting)."""


# ---- events of an analysis (the Gradio handler turns each into a screen update) ----------------
# StepDecoded, AnswerDecoded and Finished are the pipeline's (inference.reasoning.pipeline); its
# Phase events become Stages here (``stage_of``).


@dataclass
class Stage:
    """A new phase of the analysis: decode, load, encode, generate, score, attention, store."""

    name: str
    fraction: float  # of the whole analysis, for a progress bar
    message: str


@dataclass
class Stored:
    trace: dict[str, Any]  # the stored trace (Trace JSON + store ids)


@dataclass(frozen=True)
class AnalysisRequest:
    video: str
    question: str = ""
    options: tuple[str, ...] = ()
    prompt_kind: str = "reasoning"
    reference_answer: str | None = None
    max_new_tokens: int = 512  # official max_tokens
    do_sample: bool = False  # official inference is greedy
    temperature: float = 1.0
    top_p: float = 0.9
    seed: int = 0
    perturbations: tuple[str, ...] = ("noise",)  # the paper's; empty = no scores
    top_t: int = 3  # paper Fig. 5: T = 3 works best
    attention: bool = True  # derive each step's clip span (inference.reasoning.attribution)
    # With a LoRA adapter loaded (--adapter): also run the base model (adapter off) on the same
    # clip, question and settings, so the two traces can be read side by side.
    compare_base: bool = False

    def settings(self) -> AnalysisSettings:
        """The pipeline's settings. A fixed-question prompt (synthdec) ignores the question and
        options boxes, which may still hold the last clip's."""
        synthdec = self.prompt_kind == "synthdec"
        return AnalysisSettings(
            prompt_kind=self.prompt_kind,
            question="" if synthdec else self.question,
            options=() if synthdec else tuple(self.options),
            reference_answer=self.reference_answer or None,
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            perturbations=tuple(self.perturbations),
            top_t=self.top_t,
            clip_spans=self.attention,
        )


PHASE_STAGES = {  # pipeline phase -> (fraction of the analysis, message)
    "generate": (0.2, "Generating the reasoning"),
    "score": (0.8, "Scoring every step ({detail})"),
    "attention": (0.92, "Finding the moment each step relies on"),
}


def stage_of(phase: Phase) -> Stage:
    fraction, message = PHASE_STAGES[phase.name]
    who = "Base model: " if phase.base else ""
    return Stage(phase.name, fraction, who + message.format(detail=phase.detail))


def parse_options(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Options typed one per line (a leading "A." / "B)" is dropped: the prompt adds letters)."""
    import re

    lines = text.splitlines() if isinstance(text, str) else list(text or [])
    out = []
    for line in lines:
        line = re.sub(r"^\s*\(?[A-Za-z][.)]\s+", "", str(line)).strip()
        if line:
            out.append(line)
    return tuple(out)


# ---- the model, loaded once ---------------------------------------------------------------------


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


class MediaCache:
    """The decoded media of the last few clips, by sha256, so alternatives and rollouts of a
    trace just analysed do not decode its clip again. A 60-frame clip holds ~130 MB."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> Any:
        with self._lock:
            item = self._items.get(sha256)
            if item is not None:
                self._items.move_to_end(sha256)
            return item

    def put(self, sha256: str, media: Any) -> None:
        with self._lock:
            self._items[sha256] = media
            self._items.move_to_end(sha256)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# ---- what one page shows about one stored trace --------------------------------------------------


def page_trace(stored: StoredTrace) -> dict[str, Any]:
    """A stored trace as the page's render functions take it: its Trace JSON (dataclasses.asdict),
    each alternative with its store ``id`` and author (``created_by``). The one place the UI
    turns a Trace into a dict."""
    data = stored.trace.to_dict()
    for alt, alt_id, author in zip(
        data["alternatives"], stored.alternative_ids, stored.alternative_authors, strict=True
    ):
        alt.update(id=alt_id, created_by=author)
    return data


@dataclass
class TraceView:
    trace: dict[str, Any]  # page_trace(store.get_trace(...)): what render takes
    mine: dict[int, dict[str, Any]] = field(default_factory=dict)  # step index -> my label (original step)
    mine_alternatives: dict[int, dict[str, Any]] = field(default_factory=dict)  # alternative id -> my label
    peers: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # step index -> others' labels
    preferences: dict[int, str] = field(default_factory=dict)  # alternative id -> my choice
    video: str | None = None  # a playable path of the clip, when there is one
    note: str = ""  # why there is no video


class Studio:
    """The app's services over one store and (unless label-only) one model."""

    def __init__(
        self, config: AppConfig, store: Store | None = None, models: ModelHolder | None = None
    ) -> None:
        from inference.media import MediaLimits

        self.config = config
        self.store = store or Store.open(config.db, StoreConfig(synchronous=config.db_sync))
        if self.store.read_only:  # reads are served; every label gets StoreReadOnlyError's message
            log.warning(
                "%s is open read-only (%s): labels cannot be saved until it is writable and the app restarted",
                self.store.path,
                self.store.read_only,
            )
        if config.auth_roles and not self.store.read_only:  # the auth file's roles, as written there
            changed = self.store.sync_roles(config.auth_roles)
            if changed:
                log.info("roles from %s: %s", config.auth_file, ", ".join(changed))
        self.models = None if config.label_only else (models or ModelHolder(config))
        if self.models is not None:
            import_model_code()  # before any worker or startup thread touches it (see there)
        self.media = MediaCache()
        self.limits = MediaLimits(max_duration_s=config.max_duration_s, max_file_mb=config.max_upload_mb)
        self.served_roots = [Path(p).resolve() for p in self.playable_roots()]
        self.served_files = self.stored_clip_files()

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ files the page may play

    def playable_roots(self) -> list[str]:
        """Folders whose clips the page may play (Gradio's allowed_paths): analysed clips (the
        media folder holds nothing else), the examples and the --media-path folders."""
        from examples.make_examples import DEFAULT_DIR

        roots = [str(self.config.media_root), str(DEFAULT_DIR), *self.config.media_paths]
        return list(dict.fromkeys(roots))

    def stored_clip_files(self) -> list[Path]:
        """The clip files of stored traces outside the served folders, one by one: serving their
        folders would also serve whatever lies beside them (a database, a password file)."""
        files = []
        for item in self.store.queue(ANYONE, unlabeled_only=False):
            if item["video_path"]:
                path = Path(item["video_path"]).resolve()
                if path.is_file() and not any(path.is_relative_to(root) for root in self.served_roots):
                    files.append(path)
        return list(dict.fromkeys(files))

    def private_files(self) -> list[str]:
        """Files no request may download, even from a served folder: the database (and its WAL,
        shared-memory, journal and lock files) and the password file."""
        db = Path(self.config.db).resolve()
        private = [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal", "-writer.lock"))]
        if self.config.auth_file:
            private.append(Path(self.config.auth_file).resolve())
        return [str(p) for p in private]

    def playable(self, path: str | None) -> tuple[str | None, str]:
        """(path, "") when the page can play the clip, else (None, why not)."""
        if not path:
            return None, "this trace names no clip file"
        resolved = Path(path).resolve()
        if not resolved.is_file():
            return None, f"the clip {Path(path).name} is not on this server ({path})"
        allowed = [*self.served_roots, Path.cwd().resolve(), Path(tempfile.gettempdir()).resolve()]
        if resolved not in self.served_files and not any(resolved.is_relative_to(root) for root in allowed):
            return (
                None,
                f"the clip's folder {resolved.parent} is not served; restart with --media-path {resolved.parent}",
            )
        return str(resolved), ""

    # ------------------------------------------------------------------ analysis

    def check_request(self, request: AnalysisRequest) -> None:
        """Cheap checks before any decoding: a clip, a question and options the prompt takes,
        known perturbations, sane settings."""
        from inference.model.prompts import build_user_text
        from inference.reasoning.perturb import get_perturbation

        if self.models is None:
            raise AppError(
                "this app runs in label-only mode (no model); label stored traces in the Queue tab"
            )
        if not request.video:
            raise AppError("no clip: upload a video or pick an example first")
        question = "" if request.prompt_kind == "synthdec" else request.question
        options = None if request.prompt_kind == "synthdec" else list(request.options)
        build_user_text(request.prompt_kind, question, options)
        for name in request.perturbations:
            get_perturbation(name)
        if not 1 <= request.max_new_tokens <= 4096:
            raise AppError("max new tokens must be between 1 and 4096")
        if request.do_sample and not (0 < request.top_p <= 1 and request.temperature > 0):
            raise AppError("sampling needs 0 < top-p <= 1 and a temperature above 0")
        if request.top_t < 0:
            raise AppError("top-T must be 0 or more")
        if request.compare_base and not self.config.adapter:
            raise AppError("comparing with the base model needs an adapter: start the app with --adapter DIR")

    def load_media(self, path: str) -> Any:
        from inference.media import load_media

        return load_media(path, self.limits)

    def media_for(self, stored: StoredTrace) -> Any:
        """The decoded media of a stored trace's clip (cached, else decoded again)."""
        clip = stored.trace.clip
        media = self.media.get(clip.sha256)
        if media is not None:
            return media
        path = clip.path
        if not path or not Path(path).is_file():
            raise AppError(
                f"the clip of this trace ({clip.name or path or 'unnamed'}) is not on this server; "
                "alternatives and rollouts need it"
            )
        media = self.load_media(path)
        if media.clip.sha256 != clip["sha256"]:
            raise AppError(f"{path} has changed since this trace was made (its sha256 differs)")
        self.media.put(clip["sha256"], media)
        return media

    def reason(
        self, media: Any, request: AnalysisRequest
    ) -> Iterator[Stage | StepDecoded | AnswerDecoded | Finished]:
        """The model's part of an analysis: encode, stream the steps, the answer, then scores and
        clip spans. Runs where the GPU is (``ui.gpu.gpu_task``)."""
        return _reason(self, media, request)

    def keep_clip(self, path: str, sha256: str) -> Path:
        """Copy an uploaded clip into the media folder under its content hash (once). AppError
        when the folder's disk is full or cannot be written (no partial file is left)."""
        source = Path(path)
        root = self.config.media_root
        target = root / f"{sha256}{source.suffix.lower() or '.mp4'}"
        partial = target.with_name(f".{target.name}.{threading.get_ident()}.partial")
        try:
            root.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copyfile(source, partial)
                partial.replace(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise AppError(
                    f"the disk holding {root} is full, so the analysis was not saved; free some space there, "
                    "then analyse again"
                ) from None
            raise AppError(
                f"cannot keep the clip in {root} ({exc.strerror}), so the analysis was not saved; make the "
                "folder writable or start the app with --media-dir on another disk"
            ) from None
        return target

    def save_trace(self, trace: Any, media: Any) -> dict[str, Any]:
        """Store a live trace (its clip kept in the media folder); return it as stored, as the
        page renders it (``page_trace``)."""
        trace.clip.path = str(self.keep_clip(media.clip.path, trace.clip.sha256).resolve())
        self.store.add_trace(trace)
        self.media.put(trace.clip.sha256, media)
        return page_trace(self.store.get_trace(trace.id))

    def analyze(
        self, request: AnalysisRequest
    ) -> Iterator[Stage | StepDecoded | AnswerDecoded | Finished | Stored]:
        """The whole analysis as events (for tests and benchmarks; the page streams the same).
        With ``compare_base`` two traces are stored: the adapter's, then the base model's."""
        self.check_request(request)
        yield Stage("decode", 0.02, "Decoding the clip")
        media = self.load_media(request.video)
        finished = []
        for event in self.reason(media, request):
            if isinstance(event, Finished):
                finished.append(event.trace)
            yield event
        yield Stage("store", 0.98, "Saving the trace")
        for trace in finished:
            yield Stored(self.save_trace(trace, media))

    # ------------------------------------------------------------------ labeling

    def view(self, trace_id: str, annotator: str | None, blind: bool = True) -> TraceView:
        trace_id = (trace_id or "").strip()
        if not trace_id:
            raise AppError("no trace is open: analyse a clip or open one from the Queue tab")
        stored = self.store.get_trace(trace_id)
        view = TraceView(trace=page_trace(stored))
        if annotator:
            for label in self.store.labels_for_trace(trace_id, annotator):
                if label["alternative_id"] is None:
                    view.mine[label["step_index"]] = label
                else:
                    view.mine_alternatives[label["alternative_id"]] = label
            for pref in self.store.preferences_for_trace(trace_id, annotator):
                view.preferences[pref["alternative_id"]] = pref["chosen"]
        if blind:
            others = self.store.peer_labels(annotator, trace_id) if annotator else []
        else:
            others = [x for x in self.store.labels_for_trace(trace_id) if x["annotator"] != annotator]
        for label in others:
            if label["alternative_id"] is None:
                view.peers.setdefault(label["step_index"], []).append(label)
        view.video, view.note = self.playable(stored.trace.clip.path)
        return view

    def label(
        self,
        annotator: str,
        trace_id: str,
        step_index: int,
        verdict: str,
        error_type: str | None = None,
        comment: str = "",
        time_spent_s: float = 0.0,
        alternative_id: int | None = None,
    ) -> dict[str, Any]:
        error_type = (error_type or None) if verdict != "accept" else None
        return self.store.set_label(
            annotator,
            trace_id,
            int(step_index),
            verdict,
            alternative_id=alternative_id,
            error_type=error_type,
            comment=comment or "",
            time_spent_s=min(max(float(time_spent_s or 0.0), 0.0), MAX_STEP_SECONDS),
        )

    def annotate(
        self, annotator: str, trace_id: str, step_index: int, error_type: str | None, comment: str
    ) -> dict[str, Any]:
        """Change the error type and comment of my label of a step, its verdict kept (an
        accepted step keeps no error type)."""
        label = next(
            (
                x
                for x in self.store.labels_for_trace(trace_id, annotator)
                if x["step_index"] == int(step_index) and x["alternative_id"] is None
            ),
            None,
        )
        if label is None:
            raise AppError(f"step {int(step_index) + 1} has no label of yours yet: give a verdict first")
        error_type = None if label["verdict"] == "accept" else (error_type or None)
        return self.store.edit_label(annotator, label["id"], error_type=error_type, comment=comment or "")

    def undo(self, annotator: str, trace_id: str, step_index: int) -> dict[str, Any] | None:
        return self.store.undo_label(annotator, trace_id, int(step_index))

    def queue(
        self, annotator: str | None, unlabeled_only: bool = True, order: str = "max_score"
    ) -> list[dict]:
        # Without a name nothing is "mine": show every trace, by score.
        return self.store.queue(
            annotator or ANYONE, unlabeled_only=unlabeled_only and bool(annotator), order=order
        )

    def export(
        self,
        format: str,
        suffix: str = "jsonl",
        min_agreement: float = 0.0,
        annotators: Sequence[str] = (),
        since: str | None = None,
    ) -> dict[str, Any]:
        if format not in FORMATS:
            raise AppError(f"export format must be one of {', '.join(FORMATS)}")
        if suffix not in EXPORT_SUFFIXES:
            raise AppError(f"export file type must be {' or '.join(EXPORT_SUFFIXES)}")
        where = f"(the app exports to TMPDIR, now {tempfile.gettempdir()})"
        try:
            folder = Path(tempfile.mkdtemp(prefix="studio-export-"))
        except OSError as exc:
            raise AppError(
                f"{export_write_error(Path(tempfile.gettempdir()) / 'export', exc)} {where}"
            ) from None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = folder / f"{format}-{stamp}.{suffix}"
        try:
            return self.store.export(
                format,
                out,
                annotators=list(annotators) or None,
                min_agreement=float(min_agreement or 0.0),
                since=(since or "").strip() or None,
            )
        except ExportWriteError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise AppError(f"{exc} {where}") from None
        except ExportEmptyError:  # nothing to write: no file and no folder are left behind
            shutil.rmtree(folder, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ alternatives, rollouts

    def sample_alternatives(
        self, annotator: str, trace_id: str, step_index: int, n: int = 3, seed: int = 0
    ) -> list[dict[str, Any]]:
        """Sample ``n`` replacements of a step from its prefix and store them (source model)."""
        if self.models is None:
            raise AppError("label-only mode has no model to sample alternatives; write a correction instead")
        stored = self.store.get_trace(trace_id)
        media = self.media_for(stored)
        samples = _sample(self, stored, media, int(step_index), int(n), int(seed))
        out = []
        for alt in samples:
            if alt.text.strip():  # a sample may stop at once (an immediate marker): nothing to show
                out.append(
                    self.store.add_alternative(
                        annotator, trace_id, int(step_index), alt.text, source="model", settings=alt.settings
                    )
                )
        return out

    def add_correction(self, annotator: str, trace_id: str, step_index: int, text: str) -> dict[str, Any]:
        """A human rewrite of the step, preferred over the original by its author."""
        alt = self.store.add_alternative(annotator, trace_id, int(step_index), text, source="human")
        self.prefer(annotator, trace_id, int(step_index), alt["id"], "alternative")
        return alt

    def prefer(
        self, annotator: str, trace_id: str, step_index: int, alternative_id: int, chosen: str
    ) -> dict:
        """One preference per step and annotator: choosing withdraws my other choices at the step."""
        for pref in self.store.preferences_for_trace(trace_id, annotator):
            if pref["step_index"] == int(step_index) and pref["alternative_id"] != int(alternative_id):
                self.store.record_preference(
                    annotator, trace_id, int(step_index), pref["alternative_id"], None
                )
        return self.store.record_preference(annotator, trace_id, int(step_index), int(alternative_id), chosen)

    def rollouts(
        self, trace_id: str, step_index: int, n: int = 6, reference: str | None = None
    ) -> dict[str, Any]:
        """Expected correctness of the step and of each stored alternative at it, by rollouts."""
        if self.models is None:
            raise AppError("label-only mode has no model for rollouts")
        stored = self.store.get_trace(trace_id)
        reference = (reference or "").strip() or stored.trace.reference_answer
        if not reference:
            raise AppError("rollouts need the correct answer: type it in 'Reference answer' (e.g. B)")
        media = self.media_for(stored)
        result = _rollouts(self, stored, media, int(step_index), int(n), reference)
        # Kept on the step and its alternatives: the pDPO export's soft labels come from them.
        for item in result["results"]:
            self.store.set_expected_correctness(
                trace_id, int(step_index), item["expected_correctness"], alternative_id=item["alternative_id"]
            )
        return result


# ---- model work (decorated for ZeroGPU; module-level so the decorator sees plain functions) ----


@gpu_task
def _reason(studio: Studio, media: Any, request: AnalysisRequest) -> Iterator[Any]:
    from inference.reasoning.pipeline import ClipSession, Scored, SpansFound, analyze

    for status in studio.models.statuses_until_ready():  # a build or load another thread runs
        yield Stage("load", 0.05, status.message)
    if studio.models.loaded is None:  # nobody loads it yet (--no-preload): this analysis does
        yield Stage("load", 0.05, "Loading the model (once)")
    session = ClipSession(studio.models.get(), media)
    yield Stage("encode", 0.1, "Encoding frames and audio")
    session.encoded  # noqa: B018 -- encode under the "encode" stage
    for event in analyze(session, request.settings(), compare_base=request.compare_base):
        if isinstance(event, Phase):
            yield stage_of(event)
        elif not isinstance(event, Scored | SpansFound):  # the page shows the trace at Finished
            yield event


def _session(studio: Studio, media: Any) -> Any:
    from inference.reasoning.pipeline import ClipSession

    return ClipSession(studio.models.get(), media)


@gpu_task
def _sample(studio: Studio, stored: StoredTrace, media: Any, step_index: int, n: int, seed: int) -> list:
    from inference.reasoning.alternatives import AlternativeSettings

    return _session(studio, media).alternatives(stored.trace, step_index, AlternativeSettings(n=n, seed=seed))


@gpu_task
def _rollouts(
    studio: Studio, stored: StoredTrace, media: Any, step_index: int, n: int, reference: str
) -> dict:
    from inference.reasoning.alternatives import RolloutSettings

    trace = stored.trace
    at_step = [j for j, alt in enumerate(trace.alternatives) if alt.step_index == step_index]
    result = _session(studio, media).rollouts(
        trace, step_index, RolloutSettings(n=n), reference=reference, alternatives=at_step
    )
    ids = stored.alternative_ids  # same order as trace.alternatives
    for item in result["results"]:
        kind, _, j = item["candidate"].partition(":")
        item["alternative_id"] = ids[int(j)] if kind == "alternative" else None
    return result
