"""The page's event handlers: component values in, ``Studio`` calls, component values out.

Every handler is a named method; ``ui.layout`` wires them. Errors a person can fix
(``inference.errors.UserError``, ``annotation_db.StoreError``) become ``gr.Error`` with their
one-line message; those of the server's disk (full, read-only: ``StoreIOError``,
``ExportWriteError``) are also logged, for whoever runs it. Anything else is logged with its
traceback and shown as a short message, and the app keeps serving.

(No ``from __future__ import annotations`` here: Gradio reads the ``gr.Request`` /
``gr.OAuthProfile`` / ``gr.Progress`` parameters from the evaluated annotations.)
"""

import dataclasses
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
from ui import render
from ui.config import AppConfig
from ui.services import (
    AnalysisRequest,
    AnswerDecoded,
    AppError,
    Finished,
    Stage,
    StepDecoded,
    Studio,
    TraceView,
    parse_options,
)

log = logging.getLogger("studio")

NO_ERROR_TYPE = ""  # the error-type dropdown's "none"


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
    def __init__(self, studio: Studio, config: AppConfig) -> None:
        self.studio = studio
        self.config = config

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
        """Page load: the login name, or the name this browser remembers."""
        name = getattr(request, "username", None) or (profile.username if profile is not None else None)
        if name:
            return gr.update(value=name, interactive=False), f"Labeling as **{render.esc(name)}** (signed in)"
        saved = (saved_name or "").strip()
        if not saved:  # leave alone what may have been typed while the page was loading
            return gr.update(), gr.update()
        return gr.update(value=saved), self.who_line(saved)

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
        return name, self.who_line(name)

    # ------------------------------------------------------------------ analysis

    def prompt_kind_changed(self, kind: str):
        """SynthDec has a fixed question and no options."""
        free = kind != "synthdec"
        hint = "" if free else "SynthDec asks a fixed question: is the video AI-generated? (YES / NO)"
        return (
            gr.update(interactive=free, placeholder=hint or "Ask about the clip"),
            gr.update(interactive=free),
        )

    @shown_errors
    def analyze(
        self,
        video: str | None,
        question: str,
        options: str,
        reference: str,
        prompt_kind: str,
        max_new_tokens: float,
        do_sample: bool,
        temperature: float,
        top_p: float,
        seed: float,
        top_t: float,
        perturbations: list[str],
        attention: bool,
        compare_base: bool = False,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (how Gradio injects progress)
    ):
        """Stream an analysis: status, then each step as it is decoded, the answer, the scores.
        With ``compare_base`` (an adapter loaded) the base model's run follows in its own panel;
        the adapter's trace is saved and shown for labeling before it starts.
        Outputs: status, trace id, step index, steps, answer, step info, scores, token KL,
        started, alternatives (HTML, choices: emptied for the new trace), base model panel."""
        request = AnalysisRequest(
            video=video or "",
            question=(question or "").strip(),
            options=parse_options(options),
            prompt_kind=prompt_kind or "reasoning",
            reference_answer=(reference or "").strip().upper() or None,
            max_new_tokens=int(max_new_tokens),
            do_sample=bool(do_sample),
            temperature=float(temperature),
            top_p=float(top_p),
            seed=int(seed or 0),
            perturbations=tuple(perturbations or ()),
            top_t=int(top_t),
            attention=bool(attention),
            compare_base=bool(compare_base),
        )
        self.studio.check_request(request)
        steps: list[dict] = []
        answer: dict | None = None
        base_steps: list[dict] = []
        base_answer: dict | None = None
        stored: dict | None = None  # the adapter's (or only) trace, once saved
        done = ""  # the status line once it is saved
        started = time.perf_counter()

        def status(text: str) -> str:
            return f'<div class="status">{render.esc(text)}</div>'

        def frame(stage_text: str):
            """An update while the analysis runs: status, the steps so far, the answer."""
            if stored is not None:  # the base model runs: the labeled trace stays as it is
                return (
                    gr.update(),
                    stored["id"],  # every update names the trace (the last one is an API's result)
                    *(gr.update(),) * 9,
                    render.base_html(None, base_steps, base_answer, request.reference_answer, stage_text),
                )
            return (
                status(stage_text),
                gr.update(),
                gr.update(),
                render.steps_html(steps, None, streaming=True, show_labels=False),
                render.answer_html(answer, request.reference_answer, pending=answer is None and bool(steps)),
                f"{len(steps)} step{'s' if len(steps) != 1 else ''} so far",
                gr.update(),
                gr.update(),
                gr.update(),
                gr.update(),
                gr.update(),
                render.base_html(status="Waiting for the adapter's run\u2026")
                if request.compare_base
                else render.base_html(),
            )

        progress(0.01, desc="Decoding the clip")
        yield frame("Decoding the clip\u2026")
        media = self.studio.load_media(request.video)
        for event in self.studio.reason(media, request):
            if isinstance(event, Stage):
                progress(event.fraction, desc=event.message)
                yield frame(event.message + "\u2026")
            elif isinstance(event, StepDecoded):
                (base_steps if event.base else steps).append(dataclasses.asdict(event.step))
                n = len(base_steps if event.base else steps)
                who = "Base model: generating" if event.base else "Generating"
                progress(min(0.2 + 0.05 * n, 0.75), desc=f"{who}: step {n}")
                yield frame(f"{who}: step {n} decoded\u2026")
            elif isinstance(event, AnswerDecoded):
                decoded = {"text": event.answer.text, "choice": event.answer.choice}
                if event.base:
                    base_answer = decoded
                else:
                    answer = decoded
                yield frame(
                    "Answer decoded; scoring\u2026" if request.perturbations else "Answer decoded\u2026"
                )
            elif isinstance(event, Finished) and event.base:
                progress(0.97, desc="Saving the base model's trace")
                base = self.studio.save_trace(event.trace, media)
                done = f"{done} The base model's trace {base['id']} is shown beside it."
                yield (status(done), stored["id"], *(gr.update(),) * 9, render.base_html(base))
            elif isinstance(event, Finished):
                progress(0.97, desc="Saving the trace")
                stored = self.studio.save_trace(event.trace, media)
                done = self._done_text(stored, time.perf_counter() - started)
                yield self._analysis_done(stored, done, request.compare_base)
        if stored is None:
            raise AppError("the analysis ended without a result; see the server log")

    @staticmethod
    def _done_text(stored: dict, took: float) -> str:
        t = stored["timings"]
        parts = [
            f"{name[:-2]} {t[name]:.1f} s"
            for name in ("decode_s", "encode_s", "generate_s", "score_s")
            if name in t
        ]
        done = (
            f"Done in {took:.1f} s ({', '.join(parts)}). Trace {stored['id']} saved: label its steps below."
        )
        if stored["model"].get("tiny"):
            done += " Tiny demo model: its text is meaningless."
        return done

    def _analysis_done(self, stored: dict, done: str, compare_base: bool) -> tuple:
        """The outputs once the (adapter's) trace is saved: it is shown for labeling."""
        spans = render.step_spans(stored)
        return (
            f'<div class="status">{render.esc(done)}</div>',
            stored["id"],
            0,
            render.steps_html(stored["steps"], 0, spans=spans),
            render.answer_html(stored["answer"], stored.get("reference_answer")),
            render.step_info(stored["steps"], 0, None) if stored["steps"] else "The model gave no steps.",
            plot(render.scores_figure(stored["steps"])),
            plot(render.kl_figure(stored["steps"])),
            time.time(),
            render.alternatives_html([]),
            gr.update(choices=[], value=None),
            render.base_html(status="Running the base model (adapter off) next\u2026")
            if compare_base
            else render.base_html(),
        )

    # ------------------------------------------------------------------ the trace view

    def _view(self, request, profile, typed, trace_id: str, blind: bool) -> tuple[TraceView, str | None]:
        annotator = self._maybe_annotator(request, profile, typed)
        return self.studio.view(trace_id, annotator, blind), annotator

    def _step_outputs(self, view: TraceView, k: int, message: str = "", load_video: bool = False):
        """What a move to step ``k`` changes: steps, step info, step index, player (seek; with
        ``load_video`` also the clip), started, error type, comment, status line, the step's
        alternatives (HTML, choices). One event carries all of it: a second, chained event
        would cost the server more than these few milliseconds of rendering (bench/app.py)."""
        steps = view.trace["steps"]
        spans = render.step_spans(view.trace)
        label = view.mine.get(k)
        span = spans[k] if k < len(spans) else None
        player = {"playback_position": span[0]} if span else {}
        if load_video:
            player["value"] = view.video
        alts = [a for a in view.trace["alternatives"] if a["step_index"] == k]
        return (
            render.steps_html(steps, k, view.mine, view.peers, spans),
            render.step_info(steps, k, label),
            k,
            gr.update(**player),
            time.time(),
            (label or {}).get("error_type") or NO_ERROR_TYPE,
            (label or {}).get("comment") or "",
            message,
            render.alternatives_html(alts, view.preferences),
            gr.update(choices=render.alternative_choices(alts), value=None),
        )

    def _labeled_outputs(self, view: TraceView, k: int, message: str):
        """After a label or an undo: the step outputs and the score chart (coloured by label)."""
        return (
            *self._step_outputs(view, k, message),
            plot(render.scores_figure(view.trace["steps"], view.mine)),
        )

    @shown_errors
    def show_step(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        blind: bool,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        view, _ = self._view(request, profile, typed, trace_id, blind)
        return self._step_outputs(view, _clamp(step_index, view))

    @shown_errors
    def next_step(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        blind: bool,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        view, _ = self._view(request, profile, typed, trace_id, blind)
        return self._step_outputs(view, _clamp((step_index or 0) + 1, view))

    @shown_errors
    def prev_step(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        blind: bool,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        view, _ = self._view(request, profile, typed, trace_id, blind)
        return self._step_outputs(view, _clamp((step_index or 0) - 1, view))

    def _label(
        self, verdict, typed, trace_id, step_index, error_type, comment, blind, started, request, profile
    ):
        annotator = self.annotator(request, profile, typed)
        if not (trace_id or "").strip():
            raise AppError("no trace is open: analyse a clip or open one from the Queue tab")
        k = int(step_index or 0)
        spent = time.time() - started if isinstance(started, int | float) else 0.0
        self.studio.label(annotator, trace_id, k, verdict, error_type or None, comment or "", spent)
        view = self.studio.view(trace_id, annotator, blind)
        nxt = min(k + 1, _step_count(view) - 1)
        note = f"Step {k + 1}: {verdict}" + (
            f" ({render.ERROR_TYPE_NAMES.get(error_type, error_type)})"
            if error_type and verdict != "accept"
            else ""
        )
        return self._labeled_outputs(view, nxt, note + ("" if nxt != k else " \u00b7 last step"))

    @shown_errors
    def accept(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        error_type: str,
        comment: str,
        blind: bool,
        started: Any,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """Accept the step, then move to the next one."""
        return self._label(
            "accept", typed, trace_id, step_index, error_type, comment, blind, started, request, profile
        )

    @shown_errors
    def reject(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        error_type: str,
        comment: str,
        blind: bool,
        started: Any,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """Reject the step (with the error type chosen), then move to the next one."""
        return self._label(
            "reject", typed, trace_id, step_index, error_type, comment, blind, started, request, profile
        )

    @shown_errors
    def unsure(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        error_type: str,
        comment: str,
        blind: bool,
        started: Any,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """Mark the step unsure, then move to the next one."""
        return self._label(
            "unsure", typed, trace_id, step_index, error_type, comment, blind, started, request, profile
        )

    @shown_errors
    def undo(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        blind: bool,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """Undo my last change on the current step; with nothing to undo there, on the step
        before it (the one just labeled before moving on)."""
        annotator = self.annotator(request, profile, typed)
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
            return self._labeled_outputs(view, target, f"Undone on step {target + 1}: {now}")
        raise AppError("nothing to undo")

    @shown_errors
    def open_trace(
        self, typed: str, trace_id: str, blind: bool, request: gr.Request, profile: gr.OAuthProfile | None
    ):
        """Open a stored trace in the label view (first step I have not labeled).
        Outputs: tabs, trace id, answer, status, scores, token KL + the step outputs (the player
        loads the clip)."""
        view, _ = self._view(request, profile, typed, trace_id, blind)
        trace = view.trace
        first = next((s["index"] for s in trace["steps"] if s["index"] not in view.mine), 0)
        if view.video is None:
            gr.Warning(f"No video: {view.note}")
        source = f"{trace['source']} trace \u00b7 {trace['clip'].get('name') or ''}"
        question = trace["question"] or ""
        status = f'<div class="status">{render.esc(source)} \u00b7 Q: {render.esc(question)}</div>'
        return (
            gr.Tabs(selected="work"),
            trace["id"],
            render.answer_html(trace["answer"], trace.get("reference_answer")),
            status,
            plot(render.scores_figure(trace["steps"], view.mine)),
            plot(render.kl_figure(trace["steps"])),
            *self._step_outputs(view, first, load_video=True),
        )

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
        """Stored traces, highest step score first (triage). Outputs: queue table, progress table."""
        annotator = self._maybe_annotator(request, profile, typed)
        items = self.studio.queue(annotator, bool(unlabeled_only), order or "max_score")
        return render.queue_rows(items), render.progress_rows(self.studio.store.progress())

    def queue_pick(self, evt: gr.SelectData):
        """A click on a queue row: its trace id."""
        row = evt.row_value or []
        return row[0] if row else gr.update()

    @shown_errors
    def dashboard(self):
        """Counts, agreement and calibration. Outputs: markdown, agreement table, calibration
        figure, progress table."""
        stats = self.studio.store.stats()
        progress = self.studio.store.progress()
        return (
            render.stats_markdown(stats, progress),
            render.agreement_rows(stats),
            plot(render.calibration_figure(stats)),
            render.progress_rows(progress),
        )

    @shown_errors
    def export(self, format: str, suffix: str, min_agreement: float, annotators: str, since: str):
        """Write an export and offer it for download. Outputs: file, status."""
        names = [a.strip() for a in (annotators or "").split(",") if a.strip()]
        result = self.studio.export(format, suffix, min_agreement, names, since)
        return result["path"], f"{result['records']} {format} records in {result['path'].rsplit('/', 1)[-1]}"

    @shown_errors
    def backup(self, request: gr.Request, profile: gr.OAuthProfile | None):
        """A consistent copy of the database (ui.storage says who may). Outputs: file, status."""
        from ui.storage import write_backup

        user = getattr(request, "username", None) or (profile.username if profile is not None else None)
        path = write_backup(self.config, user)
        return str(path), f"Database backup: {path.name} (a consistent copy; open it with --db)"

    # ------------------------------------------------------------------ alternatives, rollouts

    def _alternatives_outputs(
        self, trace_id: str, annotator: str | None, k: int, message: str, rollouts=None
    ):
        view = self.studio.view(trace_id, annotator, True)
        alts = [a for a in view.trace["alternatives"] if a["step_index"] == k]
        return (
            render.alternatives_html(alts, view.preferences, rollouts),
            gr.update(choices=render.alternative_choices(alts), value=None),
            message,
        )

    @shown_errors
    def sample_alternatives(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        n: float,
        seed: float,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (how Gradio injects progress)
    ):
        """Sample N replacements of the current step from its prefix (stored as model
        alternatives). Outputs: alternatives HTML, choices, status."""
        annotator = self.annotator(request, profile, typed)
        k = int(step_index or 0)
        progress(0.1, desc=f"Sampling {int(n)} alternatives for step {k + 1}")
        added = self.studio.sample_alternatives(annotator, trace_id, k, int(n), int(seed or 0))
        return self._alternatives_outputs(
            trace_id, annotator, k, f"{len(added)} alternative(s) for step {k + 1}"
        )

    def _prefer(self, chosen, typed, trace_id, step_index, alternative_id, request, profile):
        annotator = self.annotator(request, profile, typed)
        if alternative_id in (None, ""):
            raise AppError("pick an alternative first")
        k = int(step_index or 0)
        self.studio.prefer(annotator, trace_id, k, int(alternative_id), chosen)
        return self._alternatives_outputs(trace_id, annotator, k, f"Step {k + 1}: you prefer the {chosen}")

    @shown_errors
    def prefer_alternative(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        alternative_id: Any,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """The chosen alternative is better than the original step (a preference pair)."""
        return self._prefer("alternative", typed, trace_id, step_index, alternative_id, request, profile)

    @shown_errors
    def prefer_original(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        alternative_id: Any,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """The original step is better than the chosen alternative."""
        return self._prefer("original", typed, trace_id, step_index, alternative_id, request, profile)

    @shown_errors
    def save_correction(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        text: str,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):
        """Store my rewrite of the step, preferred over the original. Outputs: alternatives
        HTML, choices, status, the emptied text box."""
        annotator = self.annotator(request, profile, typed)
        k = int(step_index or 0)
        alt = self.studio.add_correction(annotator, trace_id, k, text or "")
        return (
            *self._alternatives_outputs(
                trace_id, annotator, k, f"Correction #{alt['id']} saved for step {k + 1}"
            ),
            "",
        )

    @shown_errors
    def rollouts(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        n: float,
        reference: str,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (how Gradio injects progress)
    ):
        """Expected correctness of the step and its alternatives by N rollouts each."""
        annotator = self._maybe_annotator(request, profile, typed)
        k = int(step_index or 0)
        progress(0.1, desc=f"Rolling out step {k + 1} ({int(n)} rollouts per candidate)")
        result = self.studio.rollouts(trace_id, k, int(n), (reference or "").strip().upper() or None)
        p = result["results"][0]["expected_correctness"]
        return self._alternatives_outputs(
            trace_id,
            annotator,
            k,
            f"Step {k + 1}: p(correct) = {p:.2f} over {int(n)} rollouts",
            rollouts=result,
        )
