"""The page: one ``gr.Blocks``, built per view, and the wiring of every event.

Views (tabs): "Analyze" (the demo: a clip, a question, Analyze, the steps streamed as they are
decoded), "Label" (the trace being labeled: its own clip, question, options, reference and
answer, read-only; its steps with their scores; the verdict keys; the step's error type and
comment), "Queue" (stored traces in the chosen order), "Dashboard" (counts, agreement,
calibration) and "Export". Handlers live in ``ui.handlers`` and ``ui.streaming`` and return
dicts keyed by the components of ``Page``. API names (for ``gradio_client``): analyze,
show_step, next_step, prev_step, accept, reject, unsure, undo, open_trace, next_trace, queue,
dashboard, export, alternatives, prefer, prefer_original, correct, rollouts.

Queueing: model events (analyze, alternatives, rollouts) share the concurrency group "gpu"
with limit 1; every labeling event has its own limit (``AppConfig.label_concurrency``), so
labels never wait behind an analysis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from annotation_db import ERROR_TYPES, FORMATS
from ui import render, review_keys, review_view, shortcuts, workspace
from ui.banners import banner_html
from ui.config import AppConfig
from ui.gradio_tuning import tune_gradio
from ui.handlers import NO_ERROR_TYPE
from ui.services import EXPORT_SUFFIXES, Studio
from ui.streaming import ModelHandlers
from ui.style import CSS

GPU = {"concurrency_limit": 1, "concurrency_id": "gpu"}
TITLE = "video-SALMONN-o1 Studio"
SUBTITLE = (
    "Ask a question about a clip: the model reasons step by step, each step gets a score (how much it "
    "depends on the clip), and you label the steps right or wrong to make training data."
)


def model_updates(studio: Studio) -> tuple[str, Any, gr.Timer]:
    """The model status line, Analyze (off while the model builds or loads) and the timer that
    polls them (on only until then). Before a first analysis loads it, Analyze stays on."""
    status = studio.models.status()
    building = status.phase == "building"
    bar = f'<progress value="{status.fraction:.2f}"></progress> ' if building else ""
    html = (
        f'<div class="model-status {status.phase.replace(" ", "-")}">{bar}{render.esc(status.message)}</div>'
    )
    return html, gr.update(interactive=not status.busy), gr.Timer(active=status.busy)


def examples_table() -> list[list[Any]]:
    """[clip, question, options, reference] per example (the clips are made if missing)."""
    from examples.make_examples import QUESTIONS, ensure_examples

    paths = ensure_examples()
    records = json.loads(Path(QUESTIONS).read_text(encoding="utf-8"))
    by_file = {p.name: p for p in paths}
    return [
        [str(by_file[r["file"]]), r["question"], "\n".join(r["options"]), r["reference_answer"]]
        for r in records
        if r["file"] in by_file
    ]


class Page:
    """The page's components by name: the handlers return dicts keyed by them."""

    label_controls: list[Any]


def build_app(config: AppConfig, studio: Studio) -> gr.Blocks:
    """The Blocks (not launched). ``launch_kwargs(config, studio)`` gives what launch() needs."""
    tune_gradio()
    h = ModelHandlers(studio, config)
    p = h.page = Page()
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        _header(p, h, config, studio)
        with gr.Tabs(selected="label" if config.label_only else "analyze") as p.tabs:
            if not config.label_only:
                with gr.Tab("Analyze", id="analyze"):
                    _analyze_view(p, config)
            with gr.Tab("Label", id="label"):
                _label_view(p, config)
            with gr.Tab("Queue", id="queue") as p.queue_tab:
                _queue_view(p)
            review_view.review_tab(p, config)
            with gr.Tab("Dashboard", id="dashboard") as p.dashboard_tab:
                _dashboard_view(p)
            with gr.Tab("Export", id="export"):
                _export_view(p)
        p.desk = gr.State(None)  # what this session's page shows (ui.workspace); None: no page
        p.started = gr.State(None)  # when the current step was shown (time spent on it)
        if config.label_only:
            p.status = p.stream_view = p.base_view = gr.HTML(visible=False)
        _wire_identity(demo, p, h)
        if not config.label_only:
            _wire_analysis(p, h)
            _wire_model_status(demo, p, studio)
        _wire_labeling(p, h, config)
        _wire_tables(p, h, config)
        _wire_alternatives(p, h, config)
        review_view.wire(demo, p, h, config, _trace_outputs(p))
    demo.queue(default_concurrency_limit=config.label_concurrency)
    return demo


def _header(p: Page, h: ModelHandlers, config: AppConfig, studio: Studio) -> None:
    gr.HTML(
        f'<div id="title"><h1>{TITLE}</h1><p>{render.esc(SUBTITLE)}</p></div>{banner_html(config, studio)}',
        elem_id="banner",
    )
    with gr.Row(equal_height=False, elem_id="who-row"):  # one low row: the fold is for the work
        p.annotator = gr.Textbox(
            label="Annotator",
            show_label=False,
            container=False,
            placeholder="Annotator: your name (this browser remembers it)",
            visible=not config.auth_on,
            elem_id="annotator",
            scale=2,
            max_length=100,
        )
        if config.oauth:
            gr.LoginButton(scale=1)
        p.who = gr.Markdown(h.who_line(None), elem_id="who")
        p.blind = gr.Checkbox(
            value=True,
            label="Blind mode: hide others' labels of a step until I have labeled it",
            scale=2,
            container=False,
        )
    p.saved_name = gr.BrowserState("", storage_key="studio-annotator")


def _analyze_view(p: Page, config: AppConfig) -> None:
    """The demo: a clip and a question on the left; Analyze, the progress and the streamed steps
    on the right, all above the fold of a 1280x720 screen; the examples below, full width."""
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            p.upload = gr.Video(label="Clip", sources=["upload"], elem_id="upload", height=210)
            p.question = gr.Textbox(
                label="Question",
                placeholder="Ask about the clip",
                elem_id="question",
                lines=1,
                max_lines=3,
            )
            p.options = gr.Textbox(
                label="Options (one per line; empty = an open question)",
                lines=2,
                max_lines=6,
                elem_id="options",
            )
            p.reference = gr.Textbox(
                label="Reference answer (optional: the right letter, or YES / NO for SynthDec)",
                max_lines=1,
                elem_id="reference",
            )
            _settings(p, config)
        with gr.Column(scale=3, min_width=420):
            p.model_status = gr.HTML(elem_id="model-status")  # the model's phase; Analyze waits for it
            p.analyze_btn = gr.Button("Analyze", variant="primary", elem_id="btn-analyze")
            p.status = gr.HTML(
                render.status_html("Pick an example below (or upload a clip), then Analyze."),
                elem_id="status",
            )
            p.stream_view = gr.HTML(render.stream_html([], None), elem_id="stream")
            p.base_view = gr.HTML(
                render.base_html() if config.adapter else "",
                elem_id="base-compare",
                visible=bool(config.adapter),
            )
    gr.Examples(
        examples_table(),
        inputs=[p.upload, p.question, p.options, p.reference],
        label="Examples (generated clips): click one, then Analyze",
        cache_examples=False,
        examples_per_page=5,
    )


def _settings(p: Page, config: AppConfig) -> None:
    with gr.Accordion("Settings", open=False, elem_id="settings"):
        p.prompt_kind = gr.Radio(
            ["reasoning", "direct", "synthdec"],
            value="reasoning",
            label="Prompt (synthdec: is the video AI-generated?)",
        )
        with gr.Row():
            p.max_new_tokens = gr.Slider(16, 1024, value=512, step=16, label="Max new tokens")
            p.seed = gr.Number(value=0, precision=0, label="Seed")
        with gr.Row():
            p.do_sample = gr.Checkbox(value=False, label="Sample (top-p) instead of greedy")
            p.temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
            p.top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
        with gr.Row():
            p.top_t = gr.Slider(
                0, 10, value=3, step=1, label="Top-T (steps flagged; the page marks at most a third)"
            )
            p.perturbations = gr.CheckboxGroup(
                ["noise", "mute", "shuffle"],
                value=["noise"],
                label="Perturbations (noise = the paper's score; none = no scores)",
            )
            p.attention = gr.Checkbox(value=True, label="Find the clip span each step attends to")
        p.compare_base = gr.Checkbox(
            value=False,
            label="Also run the base model (adapter off) and show it side by side",
            elem_id="compare-base",
            visible=bool(config.adapter),
        )


def _label_view(p: Page, config: AppConfig) -> None:
    """Labeling: the trace's own clip, question, options, reference and answer (read-only) on
    the left; its steps, the position, the verdict keys and the step's note on the right."""
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            p.player = gr.Video(label="Clip of this trace", elem_id="player", interactive=False, height=230)
            p.trace_card = gr.HTML(render.trace_card(None), elem_id="trace-card")
            p.answer = gr.HTML(render.answer_html(None), elem_id="answer", visible=False)
            p.scores_plot = gr.Plot(label="Step scores", elem_id="scores-plot")
            p.kl_plot = gr.Plot(label="Per-token KL", elem_id="kl-plot")
        with gr.Column(scale=3, min_width=420):
            with gr.Row(equal_height=True):
                p.position = gr.Markdown("", elem_id="position")
                p.trace_id = gr.Textbox(
                    label="Trace", interactive=False, elem_id="trace-id", scale=1, max_lines=1
                )
                p.step_no = gr.Number(
                    value=1,
                    precision=0,
                    minimum=1,
                    label="Step",
                    elem_id=shortcuts.STEP_INPUT_ID,
                    scale=0,
                    min_width=90,
                )
            p.step_index = gr.Number(value=0, precision=0, visible=False)  # the API's step, from 0
            p.go_btn = gr.Button("Go", elem_id=shortcuts.GO_BUTTON_ID, visible="hidden")
            p.show_btn = gr.Button("Show", visible=False)  # only the API's /show_step
            p.steps = gr.HTML(render.steps_html([]), elem_id="steps")
            p.step_info = gr.Markdown("No step selected.", elem_id="step-info")
            review_view.conflict_slot(p)
            _label_controls(p)
            gr.Markdown(shortcuts.help_markdown(), elem_id="shortcut-help")
            _alternatives_panel(p, config)


def _label_controls(p: Page) -> None:
    with gr.Row():
        p.prev_btn = gr.Button("\u2190 Previous (k)", elem_id="btn-prev", size="sm")
        p.next_btn = gr.Button("Next (j) \u2192", elem_id="btn-next", size="sm")
        p.next_trace_btn = gr.Button("Next trace to label (n)", elem_id="btn-next-trace", size="sm")
    with gr.Row():
        p.accept_btn = gr.Button("Accept (a)", elem_id="btn-accept", variant="primary", interactive=False)
        p.reject_btn = gr.Button("Reject (r)", elem_id="btn-reject", variant="stop", interactive=False)
        p.unsure_btn = gr.Button("Unsure (u)", elem_id="btn-unsure", interactive=False)
        p.undo_btn = gr.Button("Undo (z)", elem_id="btn-undo", interactive=False)
    p.error_type = gr.Radio(
        [("none (0)", NO_ERROR_TYPE)]
        + [(f"{render.ERROR_TYPE_NAMES[e]} ({k})", e) for k, e in enumerate(ERROR_TYPES, start=1)],
        value=NO_ERROR_TYPE,
        label="Error type of this step (keys 1-5; saved at once on a labeled step)",
        elem_id="error-type",
        interactive=False,
    )
    p.comment = gr.Textbox(
        label="Comment on this step (saved when you leave the box)",
        lines=1,
        max_lines=4,
        elem_id="comment",
        interactive=False,
    )
    p.label_status = gr.Markdown(elem_id="label-status")
    p.label_controls = [p.accept_btn, p.reject_btn, p.unsure_btn, p.undo_btn]


def _alternatives_panel(p: Page, config: AppConfig) -> None:
    with gr.Accordion("Alternatives, corrections and rollouts", open=False, elem_id="alternatives-panel"):
        with gr.Row():
            p.n_alternatives = gr.Slider(1, 8, value=3, step=1, label="Alternatives to sample")
            p.sample_btn = gr.Button("Sample alternatives", interactive=not config.label_only)
        p.alternatives_view = gr.HTML(render.alternatives_html([]), elem_id="alternatives")
        p.alternative = gr.Radio(
            choices=[], label="Which alternative do you compare with the step?", elem_id="alternative"
        )
        with gr.Row():
            p.prefer_alt_btn = gr.Button("Alternative is better", size="sm")
            p.prefer_orig_btn = gr.Button("Original is better", size="sm")
        p.correction = gr.Textbox(label="Or write a correction of this step", lines=2)
        p.correct_btn = gr.Button("Save correction (preferred over the original)", size="sm")
        with gr.Row():
            p.n_rollouts = gr.Slider(1, 12, value=6, step=1, label="Rollouts per candidate")
            p.rollout_reference = gr.Textbox(
                label="Reference (empty: the trace's)", max_lines=1, elem_id="rollout-reference"
            )
            p.rollouts_btn = gr.Button("Rollouts", interactive=not config.label_only)


def _queue_view(p: Page) -> None:
    with gr.Row():
        p.unlabeled_only = gr.Checkbox(value=True, label="Unlabeled by me only")
        p.order = gr.Dropdown(
            [(name, key) for key, name in workspace.QUEUE_ORDER_NAMES.items()],
            value="max_score",
            label="Order",
            elem_id="queue-order",
        )
        p.queue_btn = gr.Button("Refresh", elem_id="btn-queue")
    p.queue_table = gr.Dataframe(
        headers=render.QUEUE_HEADERS,
        interactive=False,
        wrap=True,
        column_widths=render.QUEUE_WIDTHS,
        max_chars=render.QUEUE_CELL_CHARS,
        elem_id="queue-table",
        label="Traces (click a row to open it; the Label tab shows its whole question)",
    )
    with gr.Row():
        p.open_id = gr.Textbox(label="Trace id", elem_id="open-id", scale=3)
        p.open_btn = gr.Button("Open", elem_id="btn-open", scale=1)
    p.progress_table = gr.Dataframe(
        headers=render.PROGRESS_HEADERS, interactive=False, label="Progress per annotator"
    )


def _dashboard_view(p: Page) -> None:
    p.dashboard_btn = gr.Button("Refresh")
    p.stats_md = gr.Markdown(elem_id="stats")
    with gr.Row():
        p.agreement_table = gr.Dataframe(
            headers=render.AGREEMENT_HEADERS, interactive=False, label="Agreement per pair"
        )
        p.dashboard_progress = gr.Dataframe(
            headers=render.PROGRESS_HEADERS, interactive=False, label="Progress per annotator"
        )
    p.calibration_plot = gr.Plot(label="Calibration", elem_id="calibration-plot")
    review_view.analysis_section(p)


def _export_view(p: Page) -> None:
    with gr.Row():
        p.export_format = gr.Dropdown(list(FORMATS), value="pdpo", label="Format")
        p.export_suffix = gr.Radio(list(EXPORT_SUFFIXES), value="jsonl", label="File type")
        p.min_agreement = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Minimum agreement")
    with gr.Row():
        p.export_annotators = gr.Textbox(label="Only these annotators (comma-separated; empty = all)")
        p.export_since = gr.Textbox(label="Labeled since (ISO date, e.g. 2025-01-31; empty = all)")
    with gr.Row():  # how each item's verdict is decided (annotation_db.resolution) and which count
        p.export_resolution = gr.Radio(
            ["majority", "dawid-skene"], value="majority", label="Annotators' labels combine by"
        )
        p.export_min_annotators = gr.Number(
            0,
            precision=0,
            minimum=0,
            label="Minimum annotators per item (a reviewer's decision always counts)",
        )
        p.export_adjudicated = gr.Checkbox(False, label="Only items a reviewer decided")
    p.export_btn = gr.Button("Export", variant="primary", elem_id="btn-export")
    p.export_status = gr.Markdown()
    p.export_file = gr.File(label="Download", elem_id="export-file")
    p.backup_btn = gr.Button("Download a database backup", elem_id="btn-backup")


# ---- wiring: which inputs each event reads and which outputs it may change ----------------------


def _step_outputs(p: Page) -> list[Any]:
    """The outputs of a move between steps (the API's order: the first ten are those of before)."""
    return [
        p.steps,
        p.step_info,
        p.step_index,
        p.player,
        p.started,
        p.error_type,
        p.comment,
        p.label_status,
        p.alternatives_view,
        p.alternative,
        p.step_no,
        p.position,
        p.desk,
    ]


def _trace_outputs(p: Page) -> list[Any]:
    """The outputs of showing a whole trace (opened, or analysed and saved)."""
    return [
        p.tabs,
        p.trace_id,
        p.answer,
        p.status,
        p.scores_plot,
        p.kl_plot,
        *_step_outputs(p),
        p.trace_card,
        *p.label_controls,
    ]


def _wire_identity(demo: gr.Blocks, p: Page, h: ModelHandlers) -> None:
    demo.load(h.on_load, [p.saved_name], [p.annotator, p.who, p.desk], api_visibility="private")
    for event in (p.annotator.blur, p.annotator.submit):
        event(h.remember_name, [p.annotator], [p.saved_name, p.who], api_visibility="private")


def _wire_model_status(demo: gr.Blocks, p: Page, studio: Studio) -> None:
    """The model's phase and time left, every second while it is on its way; Analyze waits."""
    timer = gr.Timer(1.0, active=False)
    outputs = [p.model_status, p.analyze_btn, timer]

    def tick():
        return model_updates(studio)

    demo.load(tick, None, outputs, api_visibility="private", queue=False)
    timer.tick(tick, None, outputs, api_visibility="private", queue=False)
    # An analysis may have loaded the model itself (--no-preload): say so once it ends.
    p.analysis_event.then(tick, None, outputs, api_visibility="private", queue=False)


def _wire_analysis(p: Page, h: ModelHandlers) -> None:
    p.prompt_kind.change(
        h.prompt_kind_changed, [p.prompt_kind], [p.question, p.options], api_visibility="private"
    )
    p.upload.change(
        h.clip_changed,
        [p.desk],
        [p.desk, *_cleared_outputs(p)],
        api_visibility="private",
        show_progress="hidden",
    )
    settings = [
        p.max_new_tokens,
        p.do_sample,
        p.temperature,
        p.top_p,
        p.seed,
        p.top_t,
        p.perturbations,
        p.attention,
        p.compare_base,
    ]
    outputs = [
        p.status,
        p.trace_id,
        p.step_index,
        p.steps,
        p.answer,
        p.step_info,
        p.scores_plot,
        p.kl_plot,
        p.started,
        p.alternatives_view,
        p.alternative,
        p.base_view,
        p.stream_view,
        p.desk,
        p.tabs,
        p.trace_card,
        p.player,
        p.position,
        p.step_no,
        p.error_type,
        p.comment,
        p.label_status,
        *p.label_controls,
    ]
    p.analysis_event = p.analyze_btn.click(
        h.analyze,
        [
            p.upload,
            p.question,
            p.options,
            p.reference,
            p.prompt_kind,
            *settings,
            p.annotator,
            p.order,
            p.desk,
        ],
        list(dict.fromkeys(outputs)),
        api_name="analyze",
        show_progress="minimal",
        show_progress_on=[p.stream_view],  # the queue place and a failure's mark, not over the status line
        **GPU,
    )


def _cleared_outputs(p: Page) -> list[Any]:
    return [
        p.trace_id,
        p.step_index,
        p.steps,
        p.step_info,
        p.position,
        p.trace_card,
        p.answer,
        p.alternatives_view,
        p.alternative,
        p.error_type,
        p.comment,
        *p.label_controls,
    ]


def _wire_labeling(p: Page, h: ModelHandlers, config: AppConfig) -> None:
    limit = {"concurrency_limit": config.label_concurrency}
    quiet = {"show_progress": "hidden", **limit}
    note = [p.error_type, p.comment]
    nav_inputs = [p.annotator, p.trace_id, p.step_index, p.blind, *note, p.desk]
    nav = _step_outputs(p)
    p.go_btn.click(
        h.go_to_step,
        [p.annotator, p.trace_id, p.step_no, p.blind, *note, p.desk],
        nav,
        api_visibility="private",
        **quiet,
    )
    p.step_no.submit(
        h.go_to_step,
        [p.annotator, p.trace_id, p.step_no, p.blind, *note, p.desk],
        nav,
        api_visibility="private",
        **quiet,
    )
    # /show_step (0-based, for programs) stays an API name; the page uses go_to_step (from 1)
    p.show_btn.click(h.show_step, nav_inputs, nav, api_name="show_step", **quiet)
    p.next_btn.click(h.next_step, nav_inputs, nav, api_name="next_step", **quiet)
    p.prev_btn.click(h.prev_step, nav_inputs, nav, api_name="prev_step", **quiet)
    labeled = [*nav, p.scores_plot]
    label_inputs = [p.annotator, p.trace_id, p.step_index, *note, p.blind, p.started, p.desk]
    for button, handler in ((p.accept_btn, h.accept), (p.reject_btn, h.reject), (p.unsure_btn, h.unsure)):
        button.click(handler, label_inputs, labeled, api_name=handler.__name__, **quiet)
    undo_inputs = [p.annotator, p.trace_id, p.step_index, p.blind, p.desk]
    p.undo_btn.click(h.undo, undo_inputs, labeled, api_name="undo", **quiet)
    note_inputs = [p.annotator, p.trace_id, p.step_index, *note, p.blind, p.desk]
    p.error_type.input(h.save_note, note_inputs, [*nav, p.scores_plot], api_visibility="private", **quiet)
    p.comment.blur(h.save_note, note_inputs, [*nav, p.scores_plot], api_visibility="private", **quiet)
    trace_inputs = [p.annotator, p.open_id, p.blind, p.order, p.desk]
    p.open_btn.click(h.open_trace, trace_inputs, _trace_outputs(p), api_name="open_trace", **limit)
    p.queue_table.select(h.queue_pick, None, [p.open_id], api_visibility="private").then(
        h.open_trace, trace_inputs, _trace_outputs(p), api_visibility="private", **limit
    )
    p.next_trace_btn.click(
        h.next_trace,
        [p.annotator, p.trace_id, p.blind, p.order, p.desk],
        _trace_outputs(p),
        api_name="next_trace",
        **limit,
    )


def _wire_tables(p: Page, h: ModelHandlers, config: AppConfig) -> None:
    limit = {"concurrency_limit": config.label_concurrency}
    queue_inputs = [p.annotator, p.unlabeled_only, p.order]
    queue_outputs = [p.queue_table, p.progress_table]
    p.queue_btn.click(h.queue, queue_inputs, queue_outputs, api_name="queue", **limit)
    for event in (p.queue_tab.select, p.unlabeled_only.change, p.order.change):
        event(h.queue, queue_inputs, queue_outputs, api_visibility="private", **limit)
    dashboard_outputs = [p.stats_md, p.agreement_table, p.calibration_plot, p.dashboard_progress]
    p.dashboard_btn.click(h.dashboard, None, dashboard_outputs, api_name="dashboard", **limit)
    p.dashboard_tab.select(h.dashboard, None, dashboard_outputs, api_visibility="private", **limit)
    p.export_btn.click(
        h.export,
        [
            p.export_format,
            p.export_suffix,
            p.min_agreement,
            p.export_annotators,
            p.export_since,
            p.export_resolution,
            p.export_min_annotators,
            p.export_adjudicated,
        ],
        [p.export_file, p.export_status],
        api_name="export",
        **limit,
    )
    p.backup_btn.click(h.backup, None, [p.export_file, p.export_status], api_name="backup", **limit)


def _wire_alternatives(p: Page, h: ModelHandlers, config: AppConfig) -> None:
    limit = {"concurrency_limit": config.label_concurrency}
    where = [p.annotator, p.trace_id, p.step_index]
    outputs = [p.alternatives_view, p.alternative, p.label_status]
    if not config.label_only:
        p.sample_btn.click(
            h.sample_alternatives,
            [*where, p.n_alternatives, p.seed, p.desk],
            outputs,
            api_name="alternatives",
            **GPU,
        )
        p.rollouts_btn.click(
            h.rollouts,
            [*where, p.n_rollouts, p.rollout_reference, p.desk],
            outputs,
            api_name="rollouts",
            **GPU,
        )
    p.prefer_alt_btn.click(
        h.prefer_alternative, [*where, p.alternative, p.desk], outputs, api_name="prefer", **limit
    )
    p.prefer_orig_btn.click(
        h.prefer_original, [*where, p.alternative, p.desk], outputs, api_name="prefer_original", **limit
    )
    p.correct_btn.click(
        h.save_correction,
        [*where, p.correction, p.desk],
        [*outputs, p.correction],
        api_name="correct",
        **limit,
    )


def launch_kwargs(config: AppConfig, studio: Studio) -> dict[str, Any]:
    """What ``demo.launch`` takes for this configuration (theme, css and js go there in Gradio 6)."""
    kwargs: dict[str, Any] = {
        "server_name": config.host,
        "server_port": config.port,
        "css": CSS,
        "js": review_keys.script(shortcuts.script()),
        "allowed_paths": [str(p) for p in (*studio.served_roots, *studio.served_files)],
        "blocked_paths": studio.private_files(),  # wins over allowed_paths
        "max_file_size": int(config.max_upload_mb * 1024 * 1024),
        "show_error": True,
        "ssr_mode": False,  # no Node server: one process, and the page works without it
    }
    if config.auth_pairs:
        kwargs["auth"] = list(config.auth_pairs)
        kwargs["auth_message"] = "Sign in: every label you give is recorded under your name."
    return kwargs
