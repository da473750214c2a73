"""The Review tab, the dashboard's error-analysis section and the label view's rollout-conflict
badge: their components, handlers and wiring (``ui.layout`` calls the builders).

Review tab (reviewers and admins; shown to them once signed in): the review queue, one item at
a time with every annotator's label side by side in its trace's context; the reviewer accepts
or rejects it for good (with an error type), sends it back with a note, or undoes their last
change. Keys on that tab: a accept, r reject, b send back, z undo, j / k next / previous item
(``ui.review_keys``; they replace the label view's keys while the tab is shown). API names:
review_queue, review_next, review_prev, adjudicate, send_back, undo_review. An annotator calling
them gets the store's one-line refusal (``PermissionDeniedError``).

Dashboard: the error-analysis charts (``ui.analysis_figures``), the annotator quality table and
the model comparison (API name: analysis). A click on a bar lists its steps (API name:
bar_steps, given "chart|group"); a click on a listed step opens it in the label view.

(No ``from __future__ import annotations``: Gradio reads ``gr.Request`` from the annotations.)
"""

from typing import Any

import gradio as gr

from annotation_db import ERROR_TYPES, NothingToUndoError, UnknownTraceError
from annotation_db.roles import can
from ui import analysis_figures as figures
from ui import render
from ui import review_service as rs
from ui.handlers import NO_ERROR_TYPE, plot, shown_errors
from ui.review_keys import (
    BAR_PICK_BUTTON_ID,
    BAR_PICK_ID,
    REVIEW_ERROR_ID,
    REVIEW_PANEL_ID,
    help_markdown,
)
from ui.services import AppError

# ---- layout -------------------------------------------------------------------------------------


def review_tab(p: Any, config: Any) -> None:
    """The Review tab (call inside the page's ``gr.Tabs``); hidden until a reviewer signs in.
    The item and its keys on the left, above the fold; the queue on the right."""
    with gr.Tab("Review", id="review", visible=False) as p.review_tab, gr.Row(elem_id=REVIEW_PANEL_ID):
        with gr.Column(scale=3, min_width=420):
            _review_item(p)
        with gr.Column(scale=2, min_width=320):
            p.rv_refresh = gr.Button("Refresh the review queue", elem_id="btn-review-queue")
            p.rv_include = gr.Checkbox(value=False, label="Also list items already reviewed")
            p.rv_sample = gr.Slider(
                0.0, 1.0, value=0.0, step=0.05, label="Also sample this share of agreed items"
            )
            p.rv_table = gr.Dataframe(
                headers=rs.QUEUE_HEADERS,
                interactive=False,
                wrap=True,
                max_height=520,
                elem_id="review-table",
                label="Review queue (click a row to review it)",
            )
        p.rv_last = gr.State(None)  # the item this page last changed (undo takes it back)


def _review_item(p: Any) -> None:
    with gr.Row():
        p.rv_trace = gr.Textbox(label="Trace", interactive=False, elem_id="review-trace", visible=False)
        p.rv_step = gr.Number(value=0, precision=0, interactive=False, visible=False)  # from 0
        p.rv_alt = gr.Textbox(value="", visible=False)  # "" = the original step, else an alternative id
    p.rv_item = gr.HTML('<p class="review-none">Refresh the queue to start.</p>', elem_id="review-item")
    p.rv_status = gr.Markdown(elem_id="review-status")
    with gr.Row():
        p.rv_accept = gr.Button("Accept (a)", elem_id="btn-review-accept", variant="primary")
        p.rv_reject = gr.Button("Reject (r)", elem_id="btn-review-reject", variant="stop")
        p.rv_send_back = gr.Button("Send back (b)", elem_id="btn-review-send-back")
        p.rv_undo = gr.Button("Undo (z)", elem_id="btn-review-undo")
    p.rv_error = gr.Radio(
        [("none (0)", NO_ERROR_TYPE)]
        + [(f"{render.ERROR_TYPE_NAMES[e]} ({k})", e) for k, e in enumerate(ERROR_TYPES, start=1)],
        value=NO_ERROR_TYPE,
        label="Final error type (with reject)",
        elem_id=REVIEW_ERROR_ID,
    )
    p.rv_note = gr.Textbox(
        label="Note (kept with the decision; a send-back needs one)",
        lines=1,
        max_lines=4,
        elem_id="review-note",
    )
    with gr.Row():
        p.rv_prev = gr.Button("\u2190 Previous (k)", elem_id="btn-review-prev", size="sm")
        p.rv_next = gr.Button("Next (j) \u2192", elem_id="btn-review-next", size="sm")
    p.rv_verdict = gr.Radio(["accept", "reject"], value="accept", visible=False)
    p.rv_decide = gr.Button("Decide", visible=False)  # the API's /adjudicate
    gr.Markdown(help_markdown(), elem_id="review-help")


def analysis_section(p: Any) -> None:
    """The dashboard's error analysis (call inside the Dashboard tab)."""
    gr.Markdown("### Error analysis (resolved labels; click a bar to list its steps)")
    with gr.Row():
        p.chart_error_type = gr.Plot(elem_id=figures.CHARTS["error_type"], label="By error type")
        p.chart_clip_kind = gr.Plot(elem_id=figures.CHARTS["clip_kind"], label="By clip kind")
    with gr.Row():
        p.chart_position = gr.Plot(elem_id=figures.CHARTS["position"], label="By step position")
        p.chart_model = gr.Plot(elem_id=figures.CHARTS["model"], label="By model version")
    p.chart_perturbation = gr.Plot(elem_id=figures.CHARTS["perturbation"], label="AUROC per perturbation")
    p.model_comparison = gr.Markdown(elem_id="model-comparison")
    p.bar_pick = gr.Textbox(elem_id=BAR_PICK_ID, visible="hidden", label="Bar")
    p.bar_pick_btn = gr.Button("List", elem_id=BAR_PICK_BUTTON_ID, visible="hidden")
    p.bar_caption = gr.Markdown(elem_id="bar-caption")
    p.bar_table = gr.Dataframe(
        headers=figures.BAR_STEP_HEADERS,
        interactive=False,
        elem_id="bar-steps",
        label="Steps of the clicked bar (click one to open it in the Label tab)",
    )
    p.quality_table = gr.Dataframe(
        headers=figures.QUALITY_HEADERS, interactive=False, elem_id="quality-table", label="Annotator quality"
    )


def conflict_slot(p: Any) -> None:
    """The label view's flags of the trace: rollout conflicts, notes of items sent back."""
    p.conflicts = gr.HTML("", elem_id="rollout-conflicts")


# ---- handlers -------------------------------------------------------------------------------------


class ReviewHandlers:
    """Handlers of the Review tab and the analysis section; ``h`` is the page's ``Handlers``."""

    def __init__(self, h: Any) -> None:
        self.h = h
        self.store = h.studio.store

    @property
    def page(self) -> Any:
        return self.h.page

    def _reviewer(self, typed, request) -> str:
        login = self.h._maybe_annotator(request, None, typed)
        return rs.check_reviewer(self.store, login, self.h.config.auth_on)

    def _queues(self, reviewer, include, sample) -> tuple[list, list]:
        """(the queue as shown, the queue with every reviewed item: the order of both)."""
        sample = float(sample or 0.0)
        everything = self.store.review_queue(reviewer, include_reviewed=True, sample_rate=sample)
        if include:
            return everything, everything
        return [i for i in everything if i["reasons"] != ["reviewed"]], everything

    def shown(self, reviewer, items, key, status="", last=None) -> dict:
        """The tab showing ``key`` (None: no item) beside the queue ``items``."""
        p = self.page
        out = {p.rv_table: rs.queue_rows(items), p.rv_status: status, p.rv_last: last}
        if key is None:
            return {
                **out,
                p.rv_item: '<p class="review-none">Nothing to review: no disagreement is waiting.</p>',
                p.rv_trace: "",
                p.rv_step: 0,
                p.rv_alt: "",
                p.rv_error: NO_ERROR_TYPE,
                p.rv_note: "",
            }
        item = self.store.review_item(
            reviewer, key.trace_id, key.step_index, alternative_id=key.alternative_id
        )
        trace = self.store.get_trace(key.trace_id).to_dict()
        keys = [rs.ItemKey.of(i) for i in items]
        place = f"Item {keys.index(key) + 1} of {len(keys)}" if key in keys else "Not on the queue"
        place += f" \u00b7 trace {key.trace_id} \u00b7 step {key.step_index + 1}"
        review = item["review"] or {}
        error = (
            review.get("error_type")
            or item["resolution"]["error_type"]
            or rs.proposed_error_type(item["labels"])
        )
        return {
            **out,
            p.rv_item: rs.item_html(item, trace, place),
            p.rv_trace: key.trace_id,
            p.rv_step: key.step_index,
            p.rv_alt: "" if key.alternative_id is None else str(key.alternative_id),
            p.rv_error: error,
            p.rv_note: review.get("note") or "",
        }

    def _key(self, trace_id, step, alt) -> rs.ItemKey | None:
        if not (trace_id or "").strip():
            return None
        return rs.ItemKey(trace_id.strip(), int(step or 0), rs.parse_alternative(alt))

    @shown_errors
    def queue(
        self,
        typed: str,
        include: bool,
        sample: float,
        trace_id: str,
        step: float,
        alt: str,
        last: Any = None,
        request: gr.Request = None,
    ):
        """The review queue (disagreements, returned items, a sample); shows the item on the
        page if it is on the queue, else the first."""
        reviewer = self._reviewer(typed, request)
        items, _ = self._queues(reviewer, include, sample)
        key = self._key(trace_id, step, alt)
        keys = [rs.ItemKey.of(i) for i in items]
        return self.shown(
            reviewer,
            items,
            key if key in keys else rs.neighbour(items, None, 1),
            f"{len(items)} items to review",
            last,
        )

    def _move(self, typed, include, sample, trace_id, step, alt, last, request, by):
        reviewer = self._reviewer(typed, request)
        items, _ = self._queues(reviewer, include, sample)
        key = rs.neighbour(items, self._key(trace_id, step, alt), by)
        if key is None:
            raise AppError("no more items that way on the review queue")
        return self.shown(reviewer, items, key, "", last)

    @shown_errors
    def next_item(
        self,
        typed: str,
        include: bool,
        sample: float,
        trace_id: str,
        step: float,
        alt: str,
        last: Any = None,
        request: gr.Request = None,
    ):
        return self._move(typed, include, sample, trace_id, step, alt, last, request, 1)

    @shown_errors
    def prev_item(
        self,
        typed: str,
        include: bool,
        sample: float,
        trace_id: str,
        step: float,
        alt: str,
        last: Any = None,
        request: gr.Request = None,
    ):
        return self._move(typed, include, sample, trace_id, step, alt, last, request, -1)

    def _after_change(self, reviewer, include, sample, key, status, last) -> dict:
        items, everything = self._queues(reviewer, include, sample)
        nxt = rs.after(everything, items, key) or key
        return self.shown(reviewer, items, nxt, status, last)

    def decide(self, verdict, typed, trace_id, step, alt, error_type, note, include, sample, request) -> dict:
        reviewer = self._reviewer(typed, request)
        key = self._key(trace_id, step, alt)
        if key is None:
            raise AppError("no item is shown: refresh the review queue first")
        error = (error_type or None) if verdict == "reject" else None
        self.store.adjudicate(
            reviewer,
            key.trace_id,
            key.step_index,
            verdict,
            alternative_id=key.alternative_id,
            error_type=error,
            note=note or "",
        )
        what = verdict + (f" ({render.ERROR_TYPE_NAMES.get(error, error)})" if error else "")
        status = f"Step {key.step_index + 1} of {key.trace_id}: {what}, final \u2713"
        return self._after_change(reviewer, include, sample, key, status, _as_state(key))

    @shown_errors
    def adjudicate(
        self,
        typed: str,
        trace_id: str,
        step: float,
        alt: str,
        verdict: str,
        error_type: str,
        note: str,
        include: bool,
        sample: float,
        request: gr.Request = None,
    ):
        """Set the item's final verdict (accept | reject, with an error type for reject and a
        note), then show the next item waiting."""
        return self.decide(verdict, typed, trace_id, step, alt, error_type, note, include, sample, request)

    def verdict_handler(self, verdict: str):
        @shown_errors
        def handler(
            typed: str,
            trace_id: str,
            step: float,
            alt: str,
            error_type: str,
            note: str,
            include: bool,
            sample: float,
            request: gr.Request = None,
        ):
            return self.decide(
                verdict, typed, trace_id, step, alt, error_type, note, include, sample, request
            )

        return handler

    @shown_errors
    def send_back(
        self,
        typed: str,
        trace_id: str,
        step: float,
        alt: str,
        note: str,
        include: bool,
        sample: float,
        request: gr.Request = None,
    ):
        """Send the item back to its annotators with the note (it then has no verdict)."""
        reviewer = self._reviewer(typed, request)
        key = self._key(trace_id, step, alt)
        if key is None:
            raise AppError("no item is shown: refresh the review queue first")
        self.store.send_back(
            reviewer, key.trace_id, key.step_index, note or "", alternative_id=key.alternative_id
        )
        status = f"Step {key.step_index + 1} of {key.trace_id}: sent back with the note"
        return self._after_change(reviewer, include, sample, key, status, _as_state(key))

    @shown_errors
    def undo(
        self,
        typed: str,
        trace_id: str,
        step: float,
        alt: str,
        include: bool,
        sample: float,
        last: Any = None,
        request: gr.Request = None,
    ):
        """Undo the last review change of the item this page last changed (else the one shown)."""
        reviewer = self._reviewer(typed, request)
        key = _from_state(last) or self._key(trace_id, step, alt)
        if key is None:
            raise AppError("no item is shown: refresh the review queue first")
        try:
            item = self.store.undo_review(
                reviewer, key.trace_id, key.step_index, alternative_id=key.alternative_id
            )
        except NothingToUndoError as exc:
            raise AppError(str(exc)) from exc
        items, _ = self._queues(reviewer, include, sample)
        now = rs.review_state(item["review"])
        return self.shown(
            reviewer, items, key, f"Undone on step {key.step_index + 1} of {key.trace_id}: now {now}", None
        )

    def pick(self, evt: gr.SelectData):
        """A click on a queue row: that item's trace and step (the alternative from its Item cell)."""
        row = evt.row_value or []
        if len(row) < 3:
            return {}
        alt = "" if row[2] == "original" else str(row[2]).rsplit(" ", 1)[-1]
        return {self.page.rv_trace: row[0], self.page.rv_step: int(row[1]) - 1, self.page.rv_alt: alt}

    # ---- role-dependent page, dashboard, label view -------------------------------------------------

    def on_load(self, request: gr.Request):
        """Show the Review tab to a signed-in reviewer or admin."""
        login = getattr(request, "username", None) if request is not None else None
        role = rs.role_of(self.store, login, self.h.config.auth_on)
        return {self.page.review_tab: gr.Tab(visible=can(role, "review"))}

    @shown_errors
    def analysis(self, typed: str = "", request: gr.Request = None):
        """The error-analysis charts, the model comparison and the annotator quality table
        (every annotator's row for reviewers and admins, and without a login; else one's own)."""
        p = self.page
        stats = self.store.stats()
        errors = stats["error_analysis"]
        quality = stats["annotator_quality"]
        if self.h.config.auth_on:
            login = self.h._maybe_annotator(request, None, typed)
            if not can(rs.role_of(self.store, login, True), "see_all"):
                quality = {k: v for k, v in quality.items() if k == login}
        return {
            p.chart_error_type: plot(figures.error_type_figure(errors)),
            p.chart_clip_kind: plot(figures.clip_kind_figure(errors)),
            p.chart_position: plot(figures.position_figure(errors)),
            p.chart_perturbation: plot(figures.perturbation_figure(errors)),
            p.chart_model: plot(figures.model_figure(errors)),
            p.model_comparison: figures.comparison_markdown(errors),
            p.quality_table: figures.quality_rows(quality),
        }

    @shown_errors
    def bar_steps(self, key: str):
        """The steps of one bar ("chart|group", the bar's customdata)."""
        chart = (key or "").partition("|")[0]
        if chart not in figures.CHARTS:
            raise AppError(f"pick a bar of a chart (one of {', '.join(figures.CHARTS)}), not {key!r}")
        rows = figures.bar_rows(self.store.analysis_steps(), key)
        noun = "step" if len(rows) == 1 else "steps"
        caption = f"**{len(rows)} {noun}** of the bar {render.esc(key.replace('|', ': '))}"
        return {self.page.bar_table: rows, self.page.bar_caption: caption}

    @shown_errors
    def open_step(
        self, typed: str, blind: bool, order: str, desk: Any, evt: gr.SelectData, request: gr.Request = None
    ):
        """A click on a listed step: the label view at that step of its trace."""
        row = evt.row_value or []
        if len(row) < 2:
            raise AppError("click a row of the steps table")
        view, annotator = self.h._view(request, None, typed, str(row[0]), blind)
        k = min(max(int(row[1]) - 1, 0), len(view.trace["steps"]) - 1)
        return {
            **self.h.trace_outputs(view, annotator, order, desk, k),
            self.page.status: f'<div class="status">Opened step {k + 1} of {render.esc(row[0])}</div>',
        }

    @shown_errors
    def trace_flags(self, trace_id: str):
        """The label view's flags of the trace: steps whose rollouts contradict the human
        decision, and the reviewers' notes on its items sent back."""
        trace_id = (trace_id or "").strip()
        if not trace_id:
            return ""
        try:
            conflicts = self.store.rollout_conflicts(trace_id)
            notes = self.store.sent_back_notes(trace_id)
        except UnknownTraceError:  # a trace id typed but not stored: the open itself says so
            return ""
        return rs.trace_flags_html(conflicts, notes)


def _as_state(key: rs.ItemKey) -> dict:
    return {"trace_id": key.trace_id, "step_index": key.step_index, "alternative_id": key.alternative_id}


def _from_state(value: Any) -> rs.ItemKey | None:
    if not isinstance(value, dict):
        return None
    return rs.ItemKey(value["trace_id"], int(value["step_index"]), value.get("alternative_id"))


# ---- wiring ---------------------------------------------------------------------------------------


def wire(demo: gr.Blocks, p: Any, h: Any, config: Any, trace_outputs: list) -> ReviewHandlers:
    """Connect the Review tab, the analysis section and the conflict badges."""
    r = ReviewHandlers(h)
    limit = {"concurrency_limit": config.label_concurrency, "show_progress": "hidden"}
    demo.load(r.on_load, None, [p.review_tab], api_visibility="private")
    shown = [
        p.rv_table,
        p.rv_item,
        p.rv_trace,
        p.rv_step,
        p.rv_alt,
        p.rv_error,
        p.rv_note,
        p.rv_status,
        p.rv_last,
    ]
    where = [p.annotator, p.rv_include, p.rv_sample, p.rv_trace, p.rv_step, p.rv_alt, p.rv_last]
    p.rv_refresh.click(r.queue, where, shown, api_name="review_queue", **limit)
    p.review_tab.select(r.queue, where, shown, api_visibility="private", **limit)
    p.rv_next.click(r.next_item, where, shown, api_name="review_next", **limit)
    p.rv_prev.click(r.prev_item, where, shown, api_name="review_prev", **limit)
    p.rv_table.select(r.pick, None, [p.rv_trace, p.rv_step, p.rv_alt], api_visibility="private").then(
        r.queue, where, shown, api_visibility="private", **limit
    )
    item = [p.annotator, p.rv_trace, p.rv_step, p.rv_alt]
    tail = [p.rv_include, p.rv_sample]
    p.rv_decide.click(
        r.adjudicate,
        [*item, p.rv_verdict, p.rv_error, p.rv_note, *tail],
        shown,
        api_name="adjudicate",
        **limit,
    )
    for button, verdict in ((p.rv_accept, "accept"), (p.rv_reject, "reject")):
        button.click(
            r.verdict_handler(verdict),
            [*item, p.rv_error, p.rv_note, *tail],
            shown,
            api_visibility="private",
            **limit,
        )
    p.rv_send_back.click(r.send_back, [*item, p.rv_note, *tail], shown, api_name="send_back", **limit)
    p.rv_undo.click(r.undo, [*item, *tail, p.rv_last], shown, api_name="undo_review", **limit)

    charts = [
        p.chart_error_type,
        p.chart_clip_kind,
        p.chart_position,
        p.chart_perturbation,
        p.chart_model,
        p.model_comparison,
        p.quality_table,
    ]
    p.dashboard_btn.click(r.analysis, [p.annotator], charts, api_name="analysis", **limit)
    p.dashboard_tab.select(r.analysis, [p.annotator], charts, api_visibility="private", **limit)
    p.bar_pick_btn.click(
        r.bar_steps, [p.bar_pick], [p.bar_table, p.bar_caption], api_name="bar_steps", **limit
    )
    p.bar_table.select(
        r.open_step, [p.annotator, p.blind, p.order, p.desk], trace_outputs, api_visibility="private", **limit
    )
    p.trace_id.change(r.trace_flags, [p.trace_id], [p.conflicts], api_visibility="private", **limit)
    return r
