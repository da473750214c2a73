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

import errno
import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from annotation_db import FORMATS, ExportEmptyError, ExportWriteError, Store, StoreConfig, StoredTrace
from annotation_db.export import export_write_error
from inference.reasoning.pipeline import AnalysisSettings, AnswerDecoded, Finished, Phase, StepDecoded
from ui.config import AppConfig
from ui.gpu import gpu_task
from ui.models import AppError, ModelHolder, import_model_code

log = logging.getLogger("studio")

MAX_STEP_SECONDS = 300.0  # time on one step beyond this is a pause, not labeling: cap it
EXPORT_SUFFIXES = ("jsonl", "parquet")
ANYONE = "\u2014"  # stands for "no annotator" in store.queue, which needs a name ("—" labels nothing)


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
        *,
        resolution: str = "majority",
        min_annotators: int = 0,
        adjudicated_only: bool = False,
    ) -> dict[str, Any]:
        """An export file in a fresh temporary folder; the filters as ``Store.export`` takes them."""
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
                resolution=resolution,
                min_annotators=min_annotators,
                adjudicated_only=adjudicated_only,
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
