"""What the page shows, as pure functions: escaping, KL shading, badges, spans, tables, figures."""

from __future__ import annotations

from tests.app.conftest import XSS, make_trace
from ui import figures, render


def step(index, text, **fields):
    return {"index": index, "text": text, **fields}


def test_model_text_comments_and_names_are_escaped_everywhere():
    label = {"verdict": "reject", "error_type": "hallucination", "comment": XSS, "annotator": "me"}
    peer = {"verdict": "accept", "error_type": None, "annotator": "<script>x</script>"}
    html = render.steps_html([step(0, XSS)], 0, mine={0: label}, peers={0: [peer]})
    assert "<img" not in html and "<script" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") == 2  # the text and the comment
    assert "&lt;script&gt;x&lt;/script&gt;: \u2713 accept" in html
    answer = render.answer_html({"text": XSS, "choice": "A"}, "A")
    assert "<img" not in answer and "&lt;img" in answer
    alternatives = render.alternatives_html(
        [{"id": 3, "text": XSS, "source": "human", "created_by": "<b>x</b>"}]
    )
    assert "<img" not in alternatives and "<b>x" not in alternatives


def test_token_shading_wraps_each_token_and_escapes_it():
    s = step(0, "a <b>", kl_tokens=["a", " <", "b>"], token_kl=[0.0, 0.5, 1.0])
    html = render.shaded_text(s, scale=1.0)
    assert html == (
        '<span class="kl0" title="KL 0">a</span>'
        '<span class="kl4" title="KL 0.5"> &lt;</span>'
        '<span class="kl9" title="KL 1">b&gt;</span>'
    )
    assert ".step-text .kl9 { background-color: rgba(198,40,40,0.600); }" in render.kl_shade_css()


def test_token_shading_falls_back_to_plain_text_when_tokens_do_not_spell_it():
    s = step(0, "abc <x>", kl_tokens=["ab", "x"], token_kl=[0.1, 0.2])
    assert render.shaded_text(s, 1.0) == "abc &lt;x&gt;"
    assert render.shaded_text(step(0, "no kl"), 1.0) == "no kl"


def test_step_row_shows_scores_top_t_span_and_labels():
    steps = [
        step(0, "one", score=0.25, scores={"noise": 0.25, "mute": 0.5}, top_t=True),
        step(1, "two", score=None),
    ]
    html = render.steps_html(
        steps, 1, mine={1: {"verdict": "unsure", "error_type": "other"}}, spans=[(1.5, 2.0), None]
    )
    first, second = html.split('data-step="1"')
    # the score as a bar and a share of the trace's highest, the raw value on hover
    assert 'title="contrastive score (mean token KL): 0.25; 100% of the highest in this trace"' in first
    assert '<span style="width:100%"></span></span> 100%' in first
    assert "noise 0.25" in first and "mute 0.5" in first
    assert 'class="badge top-t"' in first
    assert 'data-seek="1.500" data-end="2.000"' in first and "1.5\u20132.0 s" in first
    assert '<span class="badge unlabeled">unlabeled</span>' in first
    assert "step current labeled-unsure" in html
    assert "? unsure \u00b7 other" in second and "data-seek" not in second


def test_scores_read_as_shares_of_the_highest():
    assert render.score_cell(None, 1.0) == ""
    cell = render.score_cell(2.594e-05, 1.0376e-04)
    assert 'title="contrastive score (mean token KL): 2.594e-05; 25% of the highest in this trace"' in cell
    assert cell.endswith("</span></span> 25%</span>")
    assert [render.fmt_score(v) for v in (2.594e-05, 0.01234, 12.34, 0)] == [
        "2.59e-05",
        "0.0123",
        "12.3",
        "0",
    ]


def test_top_t_flags_at_most_a_third_of_the_steps():
    """Top-T = 3 on 4 steps marked 3 of them; the page marks the highest-scored third (at least one)."""
    four = [step(k, "s", score=v, top_t=v > 0.1) for k, v in enumerate([0.1, 0.5, 0.3, 0.2])]
    assert render.flagged_steps(four) == {1}
    nine = [step(k, "s", score=k / 10, top_t=k >= 6) for k in range(9)]
    assert render.flagged_steps(nine) == {6, 7, 8}
    assert render.flagged_steps([step(0, "s", score=None, top_t=True)]) == set()
    html = render.steps_html(four)
    assert html.count('class="badge top-t"') == 1


def test_zero_length_spans_get_the_frames_time():
    trace = make_trace("t", ["a", "b"])
    trace["clip"]["frame_times_s"] = [0.0, 0.5, 1.0, 1.5]
    trace["clip"]["duration_s"] = 1.8
    trace["scoring"]["frame_attention"]["spans"] = [[0.5, 0.5], [1.5, 1.5]]
    assert render.step_spans(trace) == [(0.5, 1.0), (1.5, 1.8)]


def test_empty_and_streaming_lists():
    assert "No trace open" in render.steps_html([])
    assert "An analysis runs" in render.steps_html([], empty_message="An analysis runs")
    assert "Generating the first step" in render.steps_html([], streaming=True)
    assert render.steps_html([step(0, "x")], streaming=True).endswith(
        '<div class="step pending">\u2026</div></div>'
    )


def test_spans_come_from_the_trace_scoring():
    trace = make_trace("t", ["a", "b", "c"])
    assert render.step_spans(trace) == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5)]
    trace["scoring"] = None
    assert render.step_spans(trace) == [None, None, None]


def test_answer_says_right_or_wrong_against_the_reference():
    assert 'badge right">right (reference B)' in render.answer_html({"text": "B.", "choice": "B"}, "b")
    assert 'badge wrong">wrong (reference A)' in render.answer_html({"text": "B.", "choice": "B"}, "A")
    assert (
        render.answer_html({"text": "", "choice": None}) == '<div class="answer empty">No answer yet.</div>'
    )


def test_step_info_line():
    steps = [step(0, "a"), step(1, "b")]
    assert render.step_info(steps, 1, None) == "Step 2 of 2 \u00b7 not labeled by you yet"
    label = {"verdict": "reject", "error_type": "reasoning_logic"}
    assert render.step_info(steps, 0, label) == "Step 1 of 2 \u00b7 your label: reject (reasoning / logic)"


def test_tables_are_whole_rows():
    item = {
        "trace_id": "t1",
        "clip_name": "c.mp4",
        "question": "Q?",
        "n_steps": 3,
        "max_score": 0.123456789,
        "labeled_by_me": 1,
        "n_annotators": 2,
    }
    assert render.queue_rows([item]) == [["t1", "Q?", "c.mp4", 3, "1/3", 2, "0.123"]]
    assert len(render.QUEUE_HEADERS) == len(render.QUEUE_WIDTHS) == 7
    progress = {"annotators": {"ann": {"labels": 4, "steps_labeled": 3, "traces_done": 1, "time_s": 90.0}}}
    assert render.progress_rows(progress) == [["ann", 4, 3, 1, 1.5]]
    stats = {"agreement": {"pairs": [{"annotators": ["a", "b"], "items": 5, "kappa": 0.41666}]}}
    assert render.agreement_rows(stats) == [["a & b", 5, 0.417]]


def test_scores_figure_colours_bars_by_my_label_and_outlines_top_t():
    steps = [step(0, "a", score=0.1), step(1, "b", score=0.4, top_t=True), step(2, "c", score=0.2)]
    fig = figures.scores_figure(steps, {0: {"verdict": "accept"}, 1: {"verdict": "reject"}})
    (bar,) = fig["data"]
    assert (bar["type"], bar["x"], bar["y"]) == ("bar", [1, 2, 3], [0.1, 0.4, 0.2])
    assert bar["marker"]["color"] == ["#2e7d32", "#c62828", "#9e9e9e"]
    assert bar["marker"]["line"]["color"] == ["rgba(0,0,0,0)", "#000", "rgba(0,0,0,0)"]
    assert bar["hovertext"][0] == "a<br>accept"


def test_scores_figure_marks_each_perturbation_when_there_are_several():
    steps = [step(0, "<a>", score=0.1, scores={"noise": 0.1, "mute": 0.3})]
    fig = figures.scores_figure(steps)
    assert [(t["name"], t["y"]) for t in fig["data"][1:]] == [("mute", [0.3]), ("noise", [0.1])]
    assert fig["data"][0]["hovertext"] == ["&lt;a&gt;<br>unlabeled"]


def test_kl_figure_runs_along_the_reasoning_coloured_by_step():
    steps = [
        step(0, "a", token_kl=[0.1, 0.2], kl_tokens=["x", "<y>"]),
        step(1, "b"),
        step(2, "c", token_kl=[0.3]),
    ]
    (line,) = figures.kl_figure(steps)["data"]
    assert (line["x"], line["y"]) == ([0, 1, 2], [0.1, 0.2, 0.3])
    assert line["marker"]["color"] == [
        figures.STEP_COLOURS[0],
        figures.STEP_COLOURS[0],
        figures.STEP_COLOURS[2],
    ]
    assert line["hovertext"] == ["step 1: x", "step 1: &lt;y&gt;", "step 3: "]
    assert figures.kl_figure([step(0, "a")])["layout"]["annotations"][0]["text"] == "no token KL (not scored)"


def test_calibration_figure_plots_reject_rate_per_decile():
    stats = {
        "calibration": {
            "auroc": 0.75,
            "deciles": [
                {
                    "decile": 1,
                    "steps": 2,
                    "min_score": 0.1,
                    "max_score": 0.2,
                    "rejects": 0,
                    "reject_rate": 0.0,
                },
                {
                    "decile": 2,
                    "steps": 2,
                    "min_score": 0.3,
                    "max_score": 0.4,
                    "rejects": 1,
                    "reject_rate": 0.5,
                },
            ],
        }
    }
    fig = figures.calibration_figure(stats)
    (bar,) = fig["data"]
    assert (bar["x"], bar["y"], bar["text"]) == ([1, 2], [0.0, 0.5], ["0/2", "1/2"])
    assert fig["layout"]["title"]["text"] == (
        "Reject rate by score decile (1 = lowest scores) \u00b7 AUROC 0.75 over 4 steps (1 rejected)"
    )
    # the axis runs 1..10 like the title says, whatever the number of bins with steps
    assert fig["layout"]["xaxis"]["tickvals"] == list(range(1, 11))
    assert fig["layout"]["xaxis"]["range"] == [0.5, 10.5]
    assert figures.calibration_figure({})["data"] == []
    assert render.calibration_line(stats) == (
        "Score vs verdict over **4** scored steps with a majority verdict: **1** rejected (25%); "
        "AUROC **0.75** (few steps: read it loosely)."
    )


def test_figures_are_valid_plotly():
    import plotly.graph_objects as go

    steps = [step(0, "a", score=0.1, scores={"noise": 0.1, "mute": 0.2}, token_kl=[0.1], kl_tokens=["a"])]
    for fig in (figures.scores_figure(steps), figures.kl_figure(steps), figures.calibration_figure({})):
        go.Figure(fig)  # raises on any field plotly does not know


def test_trace_card_shows_the_traces_own_question_options_and_reference():
    trace = make_trace("t", ["a"])
    trace["question"] = XSS
    card = render.trace_card(trace)
    assert "&lt;img src=x onerror=alert(1)&gt;" in card and "<img" not in card
    assert "<li><b>A.</b> the ball</li><li><b>B.</b> the square</li>" in card
    assert "reference <b>A</b>" in card and 'badge right">right (reference A)' in card
    assert render.trace_card(None) == '<div class="trace-card empty">No trace open.</div>'


def test_alternatives_are_listed_once_and_chosen_by_number():
    alts = [{"id": 7, "text": "A long alternative text.", "source": "model"}]
    assert render.alternative_choices(alts) == [("#7 (model)", 7)]
    assert render.alternatives_html(alts).count("A long alternative text.") == 1


def test_status_has_a_progress_bar_and_escapes_its_text():
    assert render.status_html("<b>x</b>", 0.42) == (
        '<div class="status"><div class="progress" title="42%"><span style="width:42%"></span></div>'
        '<span class="status-text">&lt;b&gt;x&lt;/b&gt;</span></div>'
    )
    assert render.status_html("Failed: no", None, failed=True) == (
        '<div class="status failed"><span class="status-text">Failed: no</span></div>'
    )
