"""The handlers of model work: the streamed analysis, alternatives, rollouts, preferences.

An analysis streams to the Analyze tab (status with a progress bar, the steps as they are
decoded, the answer); meanwhile the label view shows no trace and its controls are off, so no
key can label what is not on screen. Once saved, the trace opens in the label view. A failed
analysis says so in its status (and as a message) and leaves the label view empty.

(No ``from __future__ import annotations``: Gradio reads ``gr.Request`` from the annotations.)
"""

import dataclasses
import time
from typing import Any

import gradio as gr

from ui import figures, render, workspace
from ui.handlers import Handlers, _as_gradio_error, plot, shown_errors
from ui.services import AnalysisRequest, AnswerDecoded, AppError, Finished, Stage, StepDecoded

# The tiny demo model decodes a step in a few milliseconds: every step would land in one frame
# of the page. Each step frame is kept on screen at least this long, so the stream reads as
# one; the real model takes longer per step and is never held. The wait is counted in the
# timings ("display").
MIN_STEP_FRAME_S = 0.25
SETTLE_S = 0.1


class AnalysisRun:
    """One analysis as the page sees it: the steps and answer so far, the phase clock, the
    progress. ``frame`` and ``done`` give the outputs to send."""

    def __init__(self, handlers: Handlers, request: AnalysisRequest) -> None:
        self.h = handlers
        self.p = handlers.page
        self.request = request
        self.steps: list[dict] = []
        self.answer: dict | None = None
        self.base_steps: list[dict] = []
        self.base_answer: dict | None = None
        self.stored: dict | None = None
        self.clock = workspace.PhaseClock(time.perf_counter())
        self.fraction = 0.0
        self.last_step_frame = 0.0
        self.done_text = ""

    def status(self, text: str, failed: bool = False) -> str:
        return render.status_html(text, None if failed else self.fraction, failed=failed)

    def enter(self, phase: str, within: float = 0.0) -> None:
        self.clock.enter(phase, time.perf_counter())
        fraction = workspace.progress_fraction(phase, within)
        if fraction is not None:  # a phase the bar does not know keeps it where it is
            self.fraction = max(self.fraction, fraction)

    def frame(self, text: str) -> dict:
        """An update while the model runs: status, the steps so far, the answer."""
        p, request = self.p, self.request
        if self.stored is not None:  # the base model runs: the labeled trace stays as it is
            return {
                p.trace_id: self.stored["id"],  # every update names it (the last is an API's result)
                p.base_view: render.base_html(
                    None, self.base_steps, self.base_answer, request.reference_answer, text
                ),
            }
        waiting = "Waiting for the adapter's run\u2026" if request.compare_base else ""
        return {
            p.status: self.status(text),
            p.stream_view: render.stream_html(self.steps, self.answer, request.reference_answer),
            p.base_view: render.base_html(status=waiting),
        }

    def pace(self) -> None:
        """Hold a step frame until the previous one has been on screen MIN_STEP_FRAME_S."""
        wait = self.last_step_frame + MIN_STEP_FRAME_S - time.perf_counter()
        if wait > 0:
            self.clock.enter("display", time.perf_counter())
            time.sleep(wait)
        self.last_step_frame = time.perf_counter()

    def settle(self) -> None:
        """Right after a step frame is handed to Gradio: pause the model briefly so the server's
        event loop sends the frame now. On a CPU the next step's decoding otherwise holds the
        interpreter, and two steps reached the page in one burst (seen in the browser test)."""
        self.clock.enter("display", time.perf_counter())
        time.sleep(SETTLE_S)

    def on_step(self, event: StepDecoded) -> dict:
        steps = self.base_steps if event.base else self.steps
        steps.append(dataclasses.asdict(event.step))
        self.pace()
        tokens = event.step.token_end or 0
        self.enter("generate", tokens / max(self.request.max_new_tokens, 1))
        who = "Base model: generating" if event.base else "Generating"
        return self.frame(f"{who}: step {len(steps)} decoded\u2026")

    def on_answer(self, event: AnswerDecoded) -> dict:
        decoded = {"text": event.answer.text, "choice": event.answer.choice}
        if event.base:
            self.base_answer = decoded
        else:
            self.answer = decoded
        self.enter("answer")
        return self.frame(
            "Answer decoded; scoring\u2026" if self.request.perturbations else "Answer decoded\u2026"
        )

    def done(self, stored: dict, desk: dict | None, annotator: str | None, order: str) -> dict:
        """The trace is saved: the status says what each phase took; the label view opens it."""
        self.stored = stored
        now = time.perf_counter()
        self.clock.stop(now)
        self.fraction = 1.0
        text = workspace.done_text(self.clock.total(now), self.clock.seconds)
        text += f". Trace {stored['id']} saved: label its steps in the Label tab."
        if stored["model"].get("tiny"):
            text += " Tiny demo model: its text is meaningless."
        self.done_text = text
        view = self.h.studio.view(stored["id"], annotator, True)
        out = self.h.trace_outputs(view, annotator, order, desk, 0)
        message = text if stored["steps"] else f"{text} The model gave no steps."
        return {
            **out,
            self.p.status: self.status(text),
            self.p.stream_view: render.stream_html(
                stored["steps"],
                stored["answer"],
                stored.get("reference_answer"),
                spans=render.step_spans(stored),
            ),
            self.p.label_status: message,
            self.p.base_view: render.base_html(status="Running the base model (adapter off) next\u2026")
            if self.request.compare_base
            else render.base_html(),
        }


class ModelHandlers(Handlers):
    """The page's handlers, with those that run the model."""

    def prompt_kind_changed(self, kind: str):
        """SynthDec has a fixed question and no options."""
        free = kind != "synthdec"
        hint = "" if free else "SynthDec asks a fixed question: is the video AI-generated? (YES / NO)"
        return {
            self.page.question: gr.update(interactive=free, placeholder=hint or "Ask about the clip"),
            self.page.options: gr.update(interactive=free),
        }

    def analysis_request(self, video, question, options, reference, prompt_kind, settings) -> AnalysisRequest:
        kind = prompt_kind or "reasoning"
        question, parsed, reference = workspace.check_question(kind, question, options, reference)
        (max_new_tokens, do_sample, temperature, top_p, seed, top_t, perturbations, attention, compare) = (
            settings
        )
        return AnalysisRequest(
            video=video or "",
            question=question,
            options=parsed,
            prompt_kind=kind,
            reference_answer=reference,
            max_new_tokens=int(max_new_tokens),
            do_sample=bool(do_sample),
            temperature=float(temperature),
            top_p=float(top_p),
            seed=int(seed or 0),
            perturbations=tuple(perturbations or ()),
            top_t=int(top_t),
            attention=bool(attention),
            compare_base=bool(compare),
        )

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
        typed: str | None = None,
        order: str | None = None,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """Stream an analysis: status, then each step as it is decoded, the answer, the scores;
        the saved trace then opens in the label view. With ``compare_base`` (an adapter loaded)
        the base model's run follows in its own panel."""
        p = self.page
        settings = (
            max_new_tokens,
            do_sample,
            temperature,
            top_p,
            seed,
            top_t,
            perturbations,
            attention,
            compare_base,
        )
        run = None
        desk = None if desk is None else workspace.new_desk()
        try:
            req = self.analysis_request(video, question, options, reference, prompt_kind, settings)
            self.studio.check_request(req)
            run = AnalysisRun(self, req)
            run.enter("decode")
            yield {
                **self.cleared("An analysis runs: its trace opens here when it is saved."),
                p.desk: desk,
                p.started: time.time(),
                p.scores_plot: plot(figures.scores_figure([])),
                p.kl_plot: plot(figures.kl_figure([])),
                **run.frame("Decoding the clip\u2026"),
            }
            yield from self._run(run, desk, self._maybe_annotator(request, profile, typed), order)
        except Exception as exc:
            error = _as_gradio_error(exc)
            failed = {**self.cleared("The analysis failed: nothing to label."), p.desk: desk}
            failed[p.status] = render.status_html(f"Failed: {error.message}", None, failed=True)
            failed[p.stream_view] = render.stream_html(
                [], None, empty_message="Nothing to show: the analysis failed."
            )
            yield failed
            raise error from exc

    def _run(self, run: AnalysisRun, desk: dict | None, annotator: str | None, order: str):
        media = self.studio.load_media(run.request.video)
        for event in self.studio.reason(media, run.request):
            if isinstance(event, Stage):
                run.enter(event.name)
                yield run.frame(event.message + "\u2026")
            elif isinstance(event, StepDecoded):
                yield run.on_step(event)
                run.settle()
            elif isinstance(event, AnswerDecoded):
                yield run.on_answer(event)
            elif isinstance(event, Finished) and event.base:
                base = self.studio.save_trace(event.trace, media)
                run.done_text += f" The base model's trace {base['id']} is shown beside it."
                yield {
                    self.page.trace_id: run.stored["id"],
                    self.page.status: run.status(run.done_text),
                    self.page.base_view: render.base_html(base),
                }
            elif isinstance(event, Finished):
                run.enter("store")
                yield run.frame("Saving the trace\u2026")
                stored = self.studio.save_trace(event.trace, media)
                yield run.done(stored, desk, annotator, order)
        if run.stored is None:
            raise AppError("the analysis ended without a result; see the server log")

    # ------------------------------------------------------------------ alternatives, rollouts

    def _alternatives_outputs(
        self, trace_id: str, annotator: str | None, k: int, message: str, rollouts=None
    ):
        view = self.studio.view(trace_id, annotator, True)
        alts = [a for a in view.trace["alternatives"] if a["step_index"] == k]
        p = self.page
        return {
            p.alternatives_view: render.alternatives_html(alts, view.preferences, rollouts),
            p.alternative: gr.update(choices=render.alternative_choices(alts), value=None),
            p.label_status: message,
        }

    @shown_errors
    def sample_alternatives(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        n: float,
        seed: float,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """Sample N replacements of the current step from its prefix (stored as model
        alternatives); the message counts new ones, repeats and empty samples."""
        annotator = self.annotator(request, profile, typed)
        trace_id = workspace.check_shown(workspace.shown_trace(desk), trace_id)
        k, n = int(step_index or 0), int(n)
        before = {a["id"] for a in self.studio.view(trace_id, annotator, True).trace["alternatives"]}
        added = self.studio.sample_alternatives(annotator, trace_id, k, n, int(seed or 0))
        message = workspace.sampled_message(n, [a["id"] for a in added], before, k)
        return self._alternatives_outputs(trace_id, annotator, k, message)

    def _prefer(self, chosen, typed, trace_id, step_index, alternative_id, desk, request, profile):
        annotator = self.annotator(request, profile, typed)
        trace_id = workspace.check_shown(workspace.shown_trace(desk), trace_id)
        if alternative_id in (None, ""):
            raise AppError("pick an alternative first")
        k = int(step_index or 0)
        self.studio.prefer(annotator, trace_id, k, int(alternative_id), chosen)
        which = f"alternative #{int(alternative_id)}" if chosen == "alternative" else "original"
        return self._alternatives_outputs(trace_id, annotator, k, f"Step {k + 1}: you prefer the {which}")

    @shown_errors
    def prefer_alternative(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        alternative_id: Any,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """The chosen alternative is better than the original step (a preference pair)."""
        return self._prefer(
            "alternative", typed, trace_id, step_index, alternative_id, desk, request, profile
        )

    @shown_errors
    def prefer_original(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        alternative_id: Any,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """The original step is better than the chosen alternative."""
        return self._prefer("original", typed, trace_id, step_index, alternative_id, desk, request, profile)

    @shown_errors
    def save_correction(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        text: str,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """Store my rewrite of the step, preferred over the original; the text box is emptied."""
        annotator = self.annotator(request, profile, typed)
        trace_id = workspace.check_shown(workspace.shown_trace(desk), trace_id)
        k = int(step_index or 0)
        alt = self.studio.add_correction(annotator, trace_id, k, workspace.check_correction(text))
        message = f"Correction #{alt['id']} saved for step {k + 1}"
        return {**self._alternatives_outputs(trace_id, annotator, k, message), self.page.correction: ""}

    @shown_errors
    def rollouts(
        self,
        typed: str,
        trace_id: str,
        step_index: float,
        n: float,
        reference: str,
        desk: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """Expected correctness of the step and its alternatives by N rollouts each."""
        annotator = self._maybe_annotator(request, profile, typed)
        trace_id = workspace.check_shown(workspace.shown_trace(desk), trace_id)
        k = int(step_index or 0)
        trace = self.studio.view(trace_id, None, True).trace
        reference = workspace.check_reference(trace["prompt_kind"], trace["options"] or (), reference)
        result = self.studio.rollouts(trace_id, k, int(n), reference)
        p = result["results"][0]["expected_correctness"]
        message = f"Step {k + 1}: p(correct) = {p:.2f} over {int(n)} rollouts"
        return self._alternatives_outputs(trace_id, annotator, k, message, rollouts=result)
