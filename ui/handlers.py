"""The page's event handlers: component values in, ``Studio`` calls, named component values out.

Every handler returns a dict keyed by the page's components (``ui.layout.Page``), so what it
changes is written beside what it sets; a program calling the API gets the event's outputs in
the order ``ui.layout`` lists them. The analysis (a stream) lives in ``ui.streaming``.

Errors a person can fix (``inference.errors.UserError``, ``annotation_db.StoreError``) become
``gr.Error`` with their one-line message; those of the server's disk (full, read-only:
``StoreIOError``, ``ExportWriteError``) are also logged, for whoever runs it. Anything else is
logged with its traceback and shown as a short message, and the app keeps serving.

Which trace a page shows is kept per browser session in a ``gr.State`` (the "desk",
``ui.workspace``); every label, undo, note or preference is checked against it on the server,
so a key pressed while an analysis runs, after it failed or after a new clip was chosen stores
nothing.

(No ``from __future__ import annotations`` here: Gradio reads the ``gr.Request`` /
``gr.OAuthProfile`` / ``gr.Progress`` parameters from the evaluated annotations.)
"""

import functools
import inspect
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from annotation_db import ExportWriteError, NothingToUndoError, StoreError, StoreIOError
from inference.errors import UserError
from ui import figures, render, workspace
from ui.config import AppConfig
from ui.services import AppError, Studio, TraceView

log = logging.getLogger("studio")

NO_ERROR_TYPE = ""  # the error-type choice "none"


def _as_gradio_error(exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, StoreIOError | ExportWriteError):  # the disk: whoever runs the server must act
        log.warning("%s", exc)
    if isinstance(exc, UserError | StoreError):
        return gr.Error(str(exc), print_exception=False)
    log.exception("unexpected error in a handler")
    return gr.Error(
        f"unexpected error ({type(exc).__name__}); the server log has the details", print_exception=False
    )


def shown_errors(fn: Callable) -> Callable:
    """Turn the errors of a handler (plain or generator) into messages on the page."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _as_gradio_error(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _as_gradio_error(exc) from exc

    return wrapper


def plot(figure: dict) -> PlotData:
    """A figure in plotly's JSON form (``ui.render``) as gr.Plot's value, passed through as it is."""
    return PlotData(type="plotly", plot=json.dumps(figure))


def _step_count(view: TraceView) -> int:
    return len(view.trace["steps"])


def _clamp(step_index: Any, view: TraceView) -> int:
    try:
        k = int(step_index)
    except (TypeError, ValueError):
        k = 0
    return min(max(k, 0), max(_step_count(view) - 1, 0))


class Handlers:
    """Handlers of one page; ``page`` (the components) is set once the layout is built."""

    def __init__(self, studio: Studio, config: AppConfig) -> None:
        self.studio = studio
        self.config = config
        self.page: Any = None  # ui.layout.Page
        for verdict in ("accept", "reject", "unsure"):
            setattr(self, verdict, self._verdict_handler(verdict))

    # ------------------------------------------------------------------ identity

    def annotator(self, request: gr.Request | None, profile: Any, typed: str | None) -> str:
        """Who is labeling: the login (password or Hugging Face) when auth is on, else the
        name typed on the page (kept in the browser)."""
        username = getattr(request, "username", None) if request is not None else None
        if username:
            return username
        if profile is not None and getattr(profile, "username", None):
            return profile.username
        if self.config.auth_on:
            raise AppError("sign in first: every label belongs to the signed-in user")
        name = (typed or "").strip()
        if not name:
            raise AppError("type your name in the Annotator box first (this browser remembers it)")
        return name

    def _maybe_annotator(self, request: gr.Request | None, profile: Any, typed: str | None) -> str | None:
        try:
            return self.annotator(request, profile, typed)
        except AppError:
            return None

    @shown_errors
    def on_load(self, saved_name: str | None, request: gr.Request, profile: gr.OAuthProfile | None):
        """Page load: the login name, or the name this browser remembers; the page's desk (it
        shows no trace yet)."""
        p = self.page
        out = {p.desk: workspace.new_desk()}
        name = getattr(request, "username", None) or (profile.username if profile is not None else None)
        if name:
            out[p.annotator] = gr.update(value=name, interactive=False)
            out[p.who] = f"Labeling as **{render.esc(name)}** (signed in)"
            return out
        saved = (saved_name or "").strip()
        if saved:  # else leave alone what may have been typed while the page was loading
            out[p.annotator] = gr.update(value=saved)
            out[p.who] = self.who_line(saved)
        return out

    def who_line(self, name: str | None) -> str:
        if self.config.auth_on:
            return "Sign in to label."
        return (
            f"Labeling as **{render.esc(name)}**"
            if name
            else "Type your name to label (kept in this browser)."
        )

    def remember_name(self, name: str | None):
        """Keep the typed name in the browser (gr.BrowserState) and confirm it."""
        name = (name or "").strip()
        return {self.page.saved_name: name, self.page.who: self.who_line(name)}

    # ------------------------------------------------------------------ the label view

    def controls(self, on: bool, note: tuple[str, str] = ("", "")) -> dict:
        """The labeling controls, on (a trace is shown) or off (none, or an analysis runs); the
        note fields (error type, comment) get ``note`` as their values."""
        p = self.page
        out = {button: gr.update(interactive=on) for button in p.label_controls}
        out[p.error_type] = gr.update(value=note[0], interactive=on)
        out[p.comment] = gr.update(value=note[1], interactive=on)
        return out

    def cleared(self, message: str) -> dict:
        """The label view with no trace: nothing to label until one is shown."""
        p = self.page
        return {
            p.trace_id: "",
            p.step_index: 0,
            p.steps: render.steps_html([], empty_message=message),
            p.step_info: "No step selected.",
            p.position: "",
            p.trace_card: render.trace_card(None),
            p.answer: render.answer_html(None),
            p.alternatives_view: render.alternatives_html([]),
            p.alternative: gr.update(choices=[], value=None),
            **self.controls(False),
        }

    def clip_changed(self, desk: dict | None):
        """A new clip on the Analyze tab: the old trace leaves the label view."""
        if desk is None or not desk.get("shown"):
            return {self.page.desk: desk}
        return {
            self.page.desk: workspace.new_desk(),
            **self.cleared("A new clip is chosen: analyse it, or open a trace from the Queue."),
        }

    def _view(self, request, profile, typed, trace_id: str, blind: bool) -> tuple[TraceView, str | None]:
        annotator = self._maybe_annotator(request, profile, typed)
        return self.studio.view(trace_id, annotator, blind), annotator

    def step_outputs(
        self, view: TraceView, k: int, desk: dict | None, message: str = "", load_video: bool = False
    ) -> dict:
        """What a move to step ``k`` changes: the list, the step's line, index and position,
        the player (seek to the step's span), the clock, the step's note (error type, comment),
        the status line and the step's alternatives. One event carries all of it: a second,
        chained event would cost the server more than these few milliseconds (bench/app.py)."""
        p = self.page
        steps = view.trace["steps"]
        spans = render.step_spans(view.trace)
        label = view.mine.get(k)
        span = spans[k] if k < len(spans) else None
        note = workspace.note_for(desk, k, label)
        alts = [a for a in view.trace["alternatives"] if a["step_index"] == k]
        place = (desk or {}).get("place", "")
        player = {"playback_position": span[0]} if span else {}
        if load_video:
            player["value"] = view.video
        return {
            p.steps: render.steps_html(steps, k, view.mine, view.peers, spans),
            p.step_info: render.step_info(steps, k, label),
            p.step_index: k,
            p.step_no: k + 1,
            p.position: workspace.position_line(k, len(steps), place),
            p.player: gr.update(**player),
            p.started: time.time(),
            p.error_type: note[0],
            p.comment: note[1],
            p.label_status: message,
            p.alternatives_view: render.alternatives_html(alts, view.preferences),
            p.alternative: gr.update(choices=render.alternative_choices(alts), value=None),
            p.desk: workspace.with_loaded(desk, k, note),
        }

    def _keep_note(self, annotator, trace_id, k, error_type, comment, blind, desk, view: TraceView) -> tuple:
        """Before leaving step ``k``: save its note if the person changed it (on my label), or
        keep it as a draft (no label yet). Returns (desk, view, message)."""
        note = workspace.changed_note(desk, k, error_type, comment)
        if note is None or annotator is None:
            return desk, view, ""
        label = view.mine.get(k)
        if label is None:
            return (
                workspace.with_draft(desk, k, note),
                view,
                f"Step {k + 1}: note kept as a draft (no verdict yet)",
            )
        self.studio.annotate(annotator, trace_id, k, note[0] or None, workspace.check_comment(note[1]))
        return desk, self.studio.view(trace_id, annotator, blind), f"Step {k + 1}: note saved \u2713"

    def _move(self, typed, trace_id, step_index, blind, error_type, comment, desk, request, profile, to):
        trace_id = workspace.check_shown(workspace.shown_trace(desk), trace_id)
        view, annotator = self._view(request, profile, typed, trace_id, blind)
        k = _clamp(step_index, view)
        desk, view, message = self._keep_note(annotator, trace_id, k, error_type, comment, blind, desk, view)
        return self.step_outputs(view, _clamp(to(k), view), desk, message)

    @shown_errors
    def show_step(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        blind: bool,
        error_type: str | None = None,
        comment: str | None = None,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """Show step ``step_index`` (0-based) of the trace."""
        target = _clamp_int(step_index)
        return self._move(
            typed,
            trace_id,
            (desk or {}).get("step", target),
            blind,
            error_type,
            comment,
            desk,
            request,
            profile,
            lambda _k: target,
        )

    @shown_errors
    def go_to_step(
        self,
        typed: str,
        trace_id: str,
        step_no: float,
        blind: bool,
        error_type: str,
        comment: str,
        desk: dict | None,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """The page's step field (numbered from 1) or a click on a step."""
        target = _clamp_int(step_no) - 1
        current = (desk or {}).get("step") or 0
        return self._move(
            typed, trace_id, current, blind, error_type, comment, desk, request, profile, lambda _k: target
        )

    @shown_errors
    def next_step(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        blind: bool,
        error_type: str | None = None,
        comment: str | None = None,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        return self._move(
            typed, trace_id, step_index, blind, error_type, comment, desk, request, profile, lambda k: k + 1
        )

    @shown_errors
    def prev_step(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        blind: bool,
        error_type: str | None = None,
        comment: str | None = None,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        return self._move(
            typed, trace_id, step_index, blind, error_type, comment, desk, request, profile, lambda k: k - 1
        )

    # ------------------------------------------------------------------ labels

    def labeled_outputs(self, view: TraceView, k: int, desk: dict | None, message: str) -> dict:
        """After a label or an undo: the step outputs and the score chart (coloured by label)."""
        return {
            **self.step_outputs(view, k, desk, message),
            self.page.scores_plot: plot(figures.scores_figure(view.trace["steps"], view.mine)),
        }

    def label(
        self,
        verdict,
        typed,
        trace_id,
        step_index,
        error_type,
        comment,
        blind,
        started,
        desk,
        request,
        profile,
    ):
        """Label the step (with the error type and comment on the page), then move to the next."""
        annotator = self.annotator(request, profile, typed)
        trace_id = workspace.check_shown(workspace.shown_trace(desk), trace_id)
        k = int(step_index or 0)
        spent = time.time() - started if isinstance(started, int | float) else 0.0
        comment = workspace.check_comment(comment)
        self.studio.label(annotator, trace_id, k, verdict, error_type or None, comment, spent)
        view = self.studio.view(trace_id, annotator, blind)
        desk = workspace.with_draft(desk, k, None)
        nxt = min(k + 1, _step_count(view) - 1)
        note = f"Step {k + 1}: {verdict}"
        if error_type and verdict != "accept":
            note += f" ({render.ERROR_TYPE_NAMES.get(error_type, error_type)})"
        elif verdict != "accept":
            note += " \u00b7 press k, then 1-5, to add its error type"
        return self.labeled_outputs(view, nxt, desk, note + ("" if nxt != k else " \u00b7 last step"))

    def _verdict_handler(self, verdict: str) -> Callable:
        """The handler of one verdict button (its API name is the verdict: /accept, ...)."""

        @shown_errors
        def handler(
            typed: str,
            trace_id: str,
            step_index: float,
            error_type: str,
            comment: str,
            blind: bool,
            started: Any = None,
            desk: dict | None = None,
            request: gr.Request = None,
            profile: gr.OAuthProfile | None = None,
        ):
            return self.label(
                verdict,
                typed,
                trace_id,
                step_index,
                error_type,
                comment,
                blind,
                started,
                desk,
                request,
                profile,
            )

        handler.__name__ = handler.__qualname__ = verdict
        handler.__doc__ = f"Label the step '{verdict}' (with the error type and comment given), then move on."
        return handler

    @shown_errors
    def save_note(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        error_type: str,
        comment: str,
        blind: bool,
        desk: dict | None,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """The error type (keys 1-5) or the comment of the current step changed: saved on my
        label of it at once, or kept as the draft its verdict will carry."""
        annotator = self.annotator(request, profile, typed)
        trace_id = workspace.check_shown(workspace.shown_trace(desk), trace_id)
        k = int(step_index or 0)
        comment = workspace.check_comment(comment)
        view = self.studio.view(trace_id, annotator, blind)
        label = view.mine.get(k)
        note = (error_type or "", comment or "")
        if label is None:
            desk = workspace.with_loaded(workspace.with_draft(desk, k, note), k, note)
            return {self.page.desk: desk, self.page.label_status: f"Step {k + 1}: note ready for its verdict"}
        if label["verdict"] == "accept" and error_type:
            raise AppError("an accepted step has no error type: press r (reject) or u (unsure) to give one")
        self.studio.annotate(annotator, trace_id, k, error_type or None, comment)
        view = self.studio.view(trace_id, annotator, blind)
        out = self.step_outputs(view, k, desk, f"Step {k + 1}: note saved \u2713")
        out.pop(self.page.player)  # the clip keeps playing where it is
        out.pop(self.page.started)
        return out

    @shown_errors
    def undo(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        blind: bool,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """Undo my last change on the current step; with nothing to undo there, on the step
        before it (the one just labeled before moving on)."""
        annotator = self.annotator(request, profile, typed)
        trace_id = workspace.check_shown(workspace.shown_trace(desk), trace_id)
        view = self.studio.view(trace_id, annotator, blind)
        k = _clamp(step_index, view)
        candidates = [k, k - 1] if k > 0 else [k]
        for target in candidates:
            try:
                label = self.studio.undo(annotator, trace_id, target)
            except NothingToUndoError as exc:  # any other error is about this step: shown as it is
                if target == candidates[-1]:
                    raise AppError(str(exc)) from exc
                continue
            view = self.studio.view(trace_id, annotator, blind)
            now = f"now {label['verdict']}" if label else "now unlabeled"
            return self.labeled_outputs(view, target, desk, f"Undone on step {target + 1}: {now}")
        raise AppError("nothing to undo")

    # ------------------------------------------------------------------ opening a trace

    def trace_outputs(
        self, view: TraceView, annotator: str | None, order: str, desk: dict | None, k: int
    ) -> dict:
        """Everything the label view shows of a trace, at step ``k``, with the clip loaded."""
        p = self.page
        trace = view.trace
        place = ""
        if annotator:
            place = workspace.queue_place(
                self.studio.queue(annotator, False, order or "max_score"), trace["id"]
            )
        desk = None if desk is None else workspace.new_desk(trace["id"], place)
        out = self.step_outputs(view, k, desk, load_video=True)
        return {
            **out,
            p.trace_id: trace["id"],
            p.answer: render.answer_html(trace["answer"], trace.get("reference_answer")),
            p.trace_card: render.trace_card(trace),
            p.scores_plot: plot(figures.scores_figure(trace["steps"], view.mine)),
            p.kl_plot: plot(figures.kl_figure(trace["steps"])),
            p.tabs: gr.Tabs(selected="label"),
            **self.controls(True, (out[p.error_type], out[p.comment])),
        }

    @shown_errors
    def open_trace(
        self,
        typed: str,
        trace_id: str,
        blind: bool,
        order: str | None = None,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """Open a stored trace in the label view, at the first step I have not labeled."""
        view, annotator = self._view(request, profile, typed, (trace_id or "").strip(), blind)
        first = next((s["index"] for s in view.trace["steps"] if s["index"] not in view.mine), 0)
        if view.video is None:
            gr.Warning(f"No video: {view.note}")
        source = f"{view.trace['source']} trace \u00b7 {view.trace['clip'].get('name') or ''}"
        return {
            **self.trace_outputs(view, annotator, order, desk, first),
            self.page.status: f'<div class="status">Opened a {render.esc(source)}</div>',
        }

    @shown_errors
    def next_trace(
        self,
        typed: str,
        trace_id: str,
        blind: bool,
        order: str,
        desk: dict | None,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """The next trace I have not finished, in the queue's order (key n)."""
        annotator = self.annotator(request, profile, typed)
        items = self.studio.queue(annotator, False, order or "max_score")
        nxt = workspace.next_unlabeled(items, (trace_id or "").strip() or None)
        if nxt is None:
            raise AppError("every trace in your queue is labeled: nothing left to open")
        return self.open_trace(typed, nxt, blind, order, desk, request, profile)

    # ------------------------------------------------------------------ queue, dashboard, export

    @shown_errors
    def queue(
        self,
        typed: str,
        unlabeled_only: bool,
        order: str,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """Stored traces in the chosen order (default: highest step score first)."""
        annotator = self._maybe_annotator(request, profile, typed)
        items = self.studio.queue(annotator, bool(unlabeled_only), order or "max_score")
        return {
            self.page.queue_table: render.queue_rows(items),
            self.page.progress_table: render.progress_rows(self.studio.store.progress()),
        }

    def queue_pick(self, evt: gr.SelectData):
        """A click on a queue row: its trace id (the first column)."""
        row = evt.row_value or []
        return {self.page.open_id: row[0] if row else gr.update()}

    @shown_errors
    def dashboard(self):
        """Counts, agreement and calibration."""
        p = self.page
        stats = self.studio.store.stats()
        progress = self.studio.store.progress()
        return {
            p.stats_md: render.stats_markdown(stats, progress),
            p.agreement_table: render.agreement_rows(stats),
            p.calibration_plot: plot(figures.calibration_figure(stats)),
            p.dashboard_progress: render.progress_rows(progress),
        }

    @shown_errors
    def export(
        self,
        format: str,
        suffix: str,
        min_agreement: float,
        annotators: str,
        since: str,
        resolution: str = "majority",
        min_annotators: float = 0,
        adjudicated_only: bool = False,
    ):
        """Write an export and offer it for download."""
        names = [a.strip() for a in (annotators or "").split(",") if a.strip()]
        result = self.studio.export(
            format,
            suffix,
            min_agreement,
            names,
            since,
            resolution=resolution or "majority",
            min_annotators=int(min_annotators or 0),
            adjudicated_only=bool(adjudicated_only),
        )
        message = f"{result['records']} {format} records in {result['path'].rsplit('/', 1)[-1]}"
        return {self.page.export_file: result["path"], self.page.export_status: message}

    @shown_errors
    def backup(self, request: gr.Request, profile: gr.OAuthProfile | None):
        """A consistent copy of the database (ui.storage says who may)."""
        from ui.storage import write_backup

        user = getattr(request, "username", None) or (profile.username if profile is not None else None)
        path = write_backup(self.config, user)
        message = f"Database backup: {path.name} (a consistent copy; open it with --db)"
        return {self.page.export_file: str(path), self.page.export_status: message}


def _clamp_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
