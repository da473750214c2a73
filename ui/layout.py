"""The page: one ``gr.Blocks`` with its components and the wiring of every event.

Tabs: "Analyze & label" (clip, question, settings, the streamed steps and the label controls),
"Queue" (stored traces by highest step score), "Dashboard" (counts, agreement, calibration) and
"Export". Handlers live in ``ui.handlers``; this module only places components and connects
them. API names (for ``gradio_client``): analyze, show_step, next_step, prev_step, accept,
reject, unsure, undo, open_trace, queue, dashboard, export, alternatives, prefer,
prefer_original, correct, rollouts.

Queueing: model events (analyze, alternatives, rollouts) share the concurrency group "gpu"
with limit 1; every labeling event has its own limit (``AppConfig.label_concurrency``), so
labels never wait behind an analysis.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import gradio as gr

from annotation_db import ERROR_TYPES, FORMATS, QUEUE_ORDERS
from ui import render, shortcuts
from ui.config import AppConfig
from ui.handlers import NO_ERROR_TYPE, Handlers
from ui.services import EXPORT_SUFFIXES, Studio

GPU = {"concurrency_limit": 1, "concurrency_id": "gpu"}
TITLE = "video-SALMONN-o1 Studio"

CSS = """
.steps { display: flex; flex-direction: column; gap: 6px; }
.steps.empty, .alternatives.empty { color: var(--body-text-color-subdued); padding: 8px; }
.step { border: 1px solid var(--border-color-primary); border-left: 5px solid #bdbdbd; border-radius: 6px;
        padding: 6px 10px; cursor: pointer; }
.step.current { outline: 2px solid var(--color-accent); background: var(--background-fill-secondary); }
.step.labeled-accept { border-left-color: #2e7d32; }
.step.labeled-reject { border-left-color: #c62828; }
.step.labeled-unsure { border-left-color: #f9a825; }
.step.pending { color: var(--body-text-color-subdued); cursor: default; }
.step-head { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 0.85em; margin-bottom: 3px; }
.step-no { font-weight: 600; }
.step-text { white-space: pre-wrap; line-height: 1.5; }
.score, .score-extra { font-family: var(--font-mono); }
.badge { border-radius: 9px; padding: 0 7px; font-size: 0.85em; border: 1px solid var(--border-color-primary); }
.badge.top-t { background: #6a1b9a; color: white; border-color: #6a1b9a; }
.badge.verdict-accept { background: #e8f5e9; color: #1b5e20; }
.badge.verdict-reject { background: #ffebee; color: #b71c1c; }
.badge.verdict-unsure { background: #fff8e1; color: #8d6e00; }
.badge.unlabeled { color: var(--body-text-color-subdued); }
.badge.right { background: #e8f5e9; color: #1b5e20; }
.badge.wrong { background: #ffebee; color: #b71c1c; }
button.seek { border: 1px solid var(--border-color-primary); border-radius: 9px; padding: 0 7px;
              background: var(--background-fill-primary); cursor: pointer; font-size: 0.85em; }
.comment { font-size: 0.85em; color: var(--body-text-color-subdued); margin-top: 3px; white-space: pre-wrap; }
.answer { padding: 6px 0; }
.banner { padding: 8px 12px; border-radius: 6px; margin-bottom: 4px; }
.banner.tiny { background: #fff3e0; border: 1px solid #ef6c00; color: #7a3a00; }
.banner.label-only { background: #e3f2fd; border: 1px solid #1565c0; color: #0d3c74; }
.banner.real { background: #e8f5e9; border: 1px solid #2e7d32; color: #1b5e20; }
.banner.read-only { background: #ffebee; border: 1px solid #c62828; color: #7f0000; }
.alternatives li { margin-bottom: 6px; }
.alt-meta { font-size: 0.85em; color: var(--body-text-color-subdued); }
.alt-text { white-space: pre-wrap; }
kbd { border: 1px solid var(--border-color-primary); border-radius: 3px; padding: 0 4px; font-family: var(--font-mono); }
""" + render.kl_shade_css()


def banner_html(config: AppConfig, studio: Studio) -> str:
    from ui.storage import storage_banner

    return storage_banner(config) + read_only_banner(studio) + model_banner(config, studio)


def read_only_banner(studio: Studio) -> str:
    """Said before anyone labels: a database that cannot be written refuses every label."""
    if not studio.store.read_only:
        return ""
    return (
        f'<div class="banner read-only"><b>Read-only database:</b> {render.esc(studio.store.path)} cannot be '
        f"written ({render.esc(studio.store.read_only)}), so labels are not saved. Browse, review and export "
        "work; to label, make the file and its folder writable and restart the app.</div>"
    )


def model_banner(config: AppConfig, studio: Studio) -> str:
    if config.label_only:
        return (
            '<div class="banner label-only"><b>Label-only mode:</b> no model is loaded. Open stored traces '
            "in the Queue tab and label them.</div>"
        )
    if studio.models is not None and studio.models.expected_tiny():
        return (
            '<div class="banner tiny"><b>Demo model:</b> no GPU here, so the app runs a tiny random-weight model '
            "of the same architecture. <b>Its reasoning, answers and scores are meaningless</b>; everything else "
            "(streaming, scoring, labeling, export) works as with the real model.</div>"
        )
    from inference.model.config import RELEASED_CHECKPOINT

    name = render.esc(config.checkpoint or RELEASED_CHECKPOINT)
    return f'<div class="banner real">Model: <b>{name}</b> ({render.esc(config.quantization)} quantization).</div>'


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


def build_app(config: AppConfig, studio: Studio) -> gr.Blocks:
    """The Blocks (not launched). ``launch_kwargs(config, studio)`` gives what launch() needs."""
    for name, value in GRADIO_QUEUE_ENV.items():
        os.environ.setdefault(name, value)
    _fail_fast_on_absent_matplotlib()
    h = Handlers(studio, config)
    label_only = config.label_only
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.HTML(banner_html(config, studio), elem_id="banner")
        with gr.Row(equal_height=True):
            annotator = gr.Textbox(
                label="Annotator",
                placeholder="your name (this browser remembers it)",
                visible=not config.auth_on,
                elem_id="annotator",
                scale=2,
            )
            if config.oauth:
                gr.LoginButton(scale=1)
            who = gr.Markdown(h.who_line(None), elem_id="who")
            blind = gr.Checkbox(
                value=True, label="Blind mode: hide others' labels of a step until I have labeled it", scale=2
            )
        saved_name = gr.BrowserState("", storage_key="studio-annotator")

        with gr.Tabs(selected="work") as tabs:
            with gr.Tab("Analyze & label", id="work"):
                # Created first, placed below: the examples under the player fill them.
                question = gr.Textbox(
                    label="Question",
                    placeholder="Ask about the clip",
                    visible=not label_only,
                    render=False,
                    elem_id="question",
                )
                options = gr.Textbox(
                    label="Options (one per line; leave empty for an open question)",
                    lines=3,
                    elem_id="options",
                    visible=not label_only,
                    render=False,
                )
                reference = gr.Textbox(
                    label="Reference answer (optional: the right letter, for rollouts and the right/wrong badge)",
                    max_lines=1,
                    visible=not label_only,
                    render=False,
                )
                with gr.Row():
                    with gr.Column(scale=2):
                        player = gr.Video(
                            label="Clip",
                            sources=["upload"],
                            elem_id="player",
                            interactive=not label_only,
                            height=300,
                        )
                        if not label_only:
                            gr.Examples(
                                examples_table(),
                                inputs=[player, question, options, reference],
                                label="Examples (generated clips): click one, then Analyze",
                                cache_examples=False,
                                examples_per_page=3,
                            )
                    with gr.Column(scale=3):
                        if label_only:
                            gr.Markdown("Open a trace from the **Queue** tab to label it.")
                        prompt_kind = gr.Radio(
                            ["reasoning", "direct", "synthdec"],
                            value="reasoning",
                            label="Prompt (synthdec: is the video AI-generated?)",
                            visible=not label_only,
                        )
                        question.render()
                        options.render()
                        reference.render()
                        with gr.Accordion("Settings", open=False, visible=not label_only):
                            with gr.Row():
                                max_new_tokens = gr.Slider(
                                    16, 1024, value=512, step=16, label="Max new tokens"
                                )
                                seed = gr.Number(value=0, precision=0, label="Seed")
                            with gr.Row():
                                do_sample = gr.Checkbox(value=False, label="Sample (top-p) instead of greedy")
                                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                                top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
                            with gr.Row():
                                top_t = gr.Slider(
                                    0, 10, value=3, step=1, label="Top-T (steps flagged for checking)"
                                )
                                perturbations = gr.CheckboxGroup(
                                    ["noise", "mute", "shuffle"],
                                    value=["noise"],
                                    label="Perturbations (noise = the paper's score; none = no scores)",
                                )
                                attention = gr.Checkbox(
                                    value=True, label="Find the clip span each step attends to"
                                )
                        compare_base = gr.Checkbox(
                            value=False,
                            label="Also run the base model (adapter off) and show it side by side",
                            elem_id="compare-base",
                            visible=bool(config.adapter) and not label_only,
                        )
                        model_status = gr.HTML(elem_id="model-status", visible=not label_only)
                        analyze_btn = gr.Button(
                            "Analyze", variant="primary", elem_id="btn-analyze", visible=not label_only
                        )
                        status = gr.HTML(elem_id="status")
                gr.Markdown(shortcuts.help_markdown(), elem_id="shortcut-help")
                with gr.Row():
                    with gr.Column(scale=3):
                        if config.adapter:  # the adapter's run and the base model's, side by side
                            with gr.Row(equal_height=False):
                                with gr.Column(scale=1, min_width=320):
                                    gr.Markdown(f"### With the adapter `{Path(config.adapter).name}`")
                                    answer = gr.HTML(render.answer_html(None), elem_id="answer")
                                    steps = gr.HTML(render.steps_html([]), elem_id="steps")
                                with gr.Column(scale=1, min_width=320):
                                    base_view = gr.HTML(render.base_html(), elem_id="base-compare")
                        else:
                            answer = gr.HTML(render.answer_html(None), elem_id="answer")
                            steps = gr.HTML(render.steps_html([]), elem_id="steps")
                            base_view = gr.HTML("", elem_id="base-compare", visible=False)
                    with gr.Column(scale=2):
                        step_info = gr.Markdown("No step selected.", elem_id="step-info")
                        with gr.Row():
                            trace_id = gr.Textbox(
                                label="Trace", interactive=False, elem_id="trace-id", scale=3
                            )
                            step_index = gr.Number(
                                value=0,
                                precision=0,
                                minimum=0,
                                label="Step (0-based)",
                                elem_id=shortcuts.STEP_INPUT_ID,
                                scale=1,
                            )
                            go_btn = gr.Button("Go", elem_id=shortcuts.GO_BUTTON_ID, visible="hidden")
                        with gr.Row():
                            prev_btn = gr.Button("\u2190 Previous (k)", elem_id="btn-prev", size="sm")
                            next_btn = gr.Button("Next (j) \u2192", elem_id="btn-next", size="sm")
                        with gr.Row():
                            accept_btn = gr.Button("Accept (a)", elem_id="btn-accept", variant="primary")
                            reject_btn = gr.Button("Reject (r)", elem_id="btn-reject", variant="stop")
                            unsure_btn = gr.Button("Unsure (u)", elem_id="btn-unsure")
                            undo_btn = gr.Button("Undo (z)", elem_id="btn-undo")
                        error_type = gr.Dropdown(
                            [("\u2014 none \u2014", NO_ERROR_TYPE)]
                            + [(render.ERROR_TYPE_NAMES[e], e) for e in ERROR_TYPES],
                            value=NO_ERROR_TYPE,
                            label="Error type (for reject / unsure)",
                            elem_id="error-type",
                        )
                        comment = gr.Textbox(label="Comment", lines=2, elem_id="comment")
                        label_status = gr.Markdown(elem_id="label-status")
                        with gr.Accordion("Alternatives, corrections and rollouts", open=False):
                            with gr.Row():
                                n_alternatives = gr.Slider(
                                    1, 8, value=3, step=1, label="Alternatives to sample"
                                )
                                sample_btn = gr.Button("Sample alternatives", interactive=not label_only)
                            alternatives_view = gr.HTML(render.alternatives_html([]), elem_id="alternatives")
                            alternative = gr.Radio(choices=[], label="Alternative", elem_id="alternative")
                            with gr.Row():
                                prefer_alt_btn = gr.Button("Alternative is better", size="sm")
                                prefer_orig_btn = gr.Button("Original is better", size="sm")
                            correction = gr.Textbox(label="Or write a correction of this step", lines=2)
                            correct_btn = gr.Button(
                                "Save correction (preferred over the original)", size="sm"
                            )
                            with gr.Row():
                                n_rollouts = gr.Slider(1, 12, value=6, step=1, label="Rollouts per candidate")
                                rollouts_btn = gr.Button("Rollouts", interactive=not label_only)
                        scores_plot = gr.Plot(label="Step scores", elem_id="scores-plot")
                        kl_plot = gr.Plot(label="Per-token KL", elem_id="kl-plot")
                started = gr.State(None)

            with gr.Tab("Queue", id="queue") as queue_tab:
                with gr.Row():
                    unlabeled_only = gr.Checkbox(value=True, label="Unlabeled by me only")
                    order = gr.Dropdown(list(QUEUE_ORDERS), value="max_score", label="Order")
                    queue_btn = gr.Button("Refresh", elem_id="btn-queue")
                queue_table = gr.Dataframe(
                    headers=render.QUEUE_HEADERS,
                    interactive=False,
                    wrap=True,
                    elem_id="queue-table",
                    label="Traces (click a row to open it)",
                )
                with gr.Row():
                    open_id = gr.Textbox(label="Trace id", elem_id="open-id", scale=3)
                    open_btn = gr.Button("Open", elem_id="btn-open", scale=1)
                progress_table = gr.Dataframe(
                    headers=render.PROGRESS_HEADERS, interactive=False, label="Progress per annotator"
                )

            with gr.Tab("Dashboard", id="dashboard") as dashboard_tab:
                dashboard_btn = gr.Button("Refresh")
                stats_md = gr.Markdown()
                with gr.Row():
                    agreement_table = gr.Dataframe(
                        headers=render.AGREEMENT_HEADERS, interactive=False, label="Agreement per pair"
                    )
                    dashboard_progress = gr.Dataframe(
                        headers=render.PROGRESS_HEADERS, interactive=False, label="Progress per annotator"
                    )
                calibration_plot = gr.Plot(label="Calibration")

            with gr.Tab("Export", id="export"):
                with gr.Row():
                    export_format = gr.Dropdown(list(FORMATS), value="pdpo", label="Format")
                    export_suffix = gr.Radio(list(EXPORT_SUFFIXES), value="jsonl", label="File type")
                    min_agreement = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Minimum agreement")
                with gr.Row():
                    export_annotators = gr.Textbox(
                        label="Only these annotators (comma-separated; empty = all)"
                    )
                    export_since = gr.Textbox(label="Labeled since (ISO date, e.g. 2025-01-31; empty = all)")
                export_btn = gr.Button("Export", variant="primary", elem_id="btn-export")
                export_status = gr.Markdown()
                export_file = gr.File(label="Download", elem_id="export-file")
                backup_btn = gr.Button("Download a database backup", elem_id="btn-backup")

        # ---- wiring ------------------------------------------------------------------------
        label_limit = {"concurrency_limit": config.label_concurrency}
        who_inputs = [annotator]
        nav_inputs = [annotator, trace_id, step_index, blind]
        step_outputs = [steps, step_info, step_index, player, started, error_type, comment, label_status]
        # A move to another step also brings its alternatives; a label also the score chart.
        nav_outputs = [*step_outputs, alternatives_view, alternative]
        label_outputs = [*nav_outputs, scores_plot]

        demo.load(h.on_load, [saved_name], [annotator, who], api_visibility="private")
        annotator.blur(h.remember_name, who_inputs, [saved_name, who], api_visibility="private")
        annotator.submit(h.remember_name, who_inputs, [saved_name, who], api_visibility="private")

        if not label_only:
            # The model's phase and time left, every second while it is on its way; Analyze waits.
            model_timer = gr.Timer(1.0, active=False)
            model_outputs = [model_status, analyze_btn, model_timer]
            model_tick = lambda: model_updates(studio)  # noqa: E731
            demo.load(model_tick, None, model_outputs, api_visibility="private", queue=False)
            model_timer.tick(model_tick, None, model_outputs, api_visibility="private", queue=False)
            prompt_kind.change(
                h.prompt_kind_changed, [prompt_kind], [question, options], api_visibility="private"
            )
            analyze_btn.click(
                h.analyze,
                [
                    player,
                    question,
                    options,
                    reference,
                    prompt_kind,
                    max_new_tokens,
                    do_sample,
                    temperature,
                    top_p,
                    seed,
                    top_t,
                    perturbations,
                    attention,
                    compare_base,
                ],
                [
                    status,
                    trace_id,
                    step_index,
                    steps,
                    answer,
                    step_info,
                    scores_plot,
                    kl_plot,
                    started,
                    alternatives_view,
                    alternative,
                    base_view,
                ],
                api_name="analyze",
                show_progress="minimal",
                **GPU,
            )

        go_btn.click(h.show_step, nav_inputs, nav_outputs, api_name="show_step", **label_limit)
        step_index.submit(h.show_step, nav_inputs, nav_outputs, api_visibility="private", **label_limit)
        next_btn.click(h.next_step, nav_inputs, nav_outputs, api_name="next_step", **label_limit)
        prev_btn.click(h.prev_step, nav_inputs, nav_outputs, api_name="prev_step", **label_limit)
        label_inputs = [annotator, trace_id, step_index, error_type, comment, blind, started]
        for button, handler in ((accept_btn, h.accept), (reject_btn, h.reject), (unsure_btn, h.unsure)):
            button.click(
                handler,
                label_inputs,
                label_outputs,
                api_name=handler.__name__,
                show_progress="hidden",
                **label_limit,
            )
        undo_btn.click(
            h.undo, nav_inputs, label_outputs, api_name="undo", show_progress="hidden", **label_limit
        )

        open_outputs = [tabs, trace_id, answer, status, scores_plot, kl_plot, *nav_outputs]
        open_btn.click(
            h.open_trace, [annotator, open_id, blind], open_outputs, api_name="open_trace", **label_limit
        )
        queue_table.select(h.queue_pick, None, [open_id], api_visibility="private").then(
            h.open_trace, [annotator, open_id, blind], open_outputs, api_visibility="private", **label_limit
        )
        queue_inputs = [annotator, unlabeled_only, order]
        queue_btn.click(h.queue, queue_inputs, [queue_table, progress_table], api_name="queue", **label_limit)
        queue_tab.select(
            h.queue, queue_inputs, [queue_table, progress_table], api_visibility="private", **label_limit
        )
        unlabeled_only.change(h.queue, queue_inputs, [queue_table, progress_table], api_visibility="private")
        order.change(h.queue, queue_inputs, [queue_table, progress_table], api_visibility="private")

        dashboard_outputs = [stats_md, agreement_table, calibration_plot, dashboard_progress]
        dashboard_btn.click(h.dashboard, None, dashboard_outputs, api_name="dashboard", **label_limit)
        dashboard_tab.select(h.dashboard, None, dashboard_outputs, api_visibility="private", **label_limit)
        export_btn.click(
            h.export,
            [export_format, export_suffix, min_agreement, export_annotators, export_since],
            [export_file, export_status],
            api_name="export",
            **label_limit,
        )
        backup_btn.click(h.backup, None, [export_file, export_status], api_name="backup", **label_limit)

        alt_inputs = [annotator, trace_id, step_index]
        alt_outputs = [alternatives_view, alternative, label_status]
        if not label_only:
            sample_btn.click(
                h.sample_alternatives,
                [*alt_inputs, n_alternatives, seed],
                alt_outputs,
                api_name="alternatives",
                **GPU,
            )
            rollouts_btn.click(
                h.rollouts, [*alt_inputs, n_rollouts, reference], alt_outputs, api_name="rollouts", **GPU
            )
        prefer_alt_btn.click(
            h.prefer_alternative, [*alt_inputs, alternative], alt_outputs, api_name="prefer", **label_limit
        )
        prefer_orig_btn.click(
            h.prefer_original,
            [*alt_inputs, alternative],
            alt_outputs,
            api_name="prefer_original",
            **label_limit,
        )
        correct_btn.click(
            h.save_correction,
            [*alt_inputs, correction],
            [*alt_outputs, correction],
            api_name="correct",
            **label_limit,
        )
    demo.queue(default_concurrency_limit=config.label_concurrency)
    return demo


def launch_kwargs(config: AppConfig, studio: Studio) -> dict[str, Any]:
    """What ``demo.launch`` takes for this configuration (theme, css and js go there in Gradio 6)."""
    kwargs: dict[str, Any] = {
        "server_name": config.host,
        "server_port": config.port,
        "css": CSS,
        "js": shortcuts.script(),
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
