"""The app driven through gradio_client, as a program (or the page) uses it: upload a generated
clip, analyse it with the tiny model, label its steps, undo, queue, export, and check the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.app.conftest import XSS, analyze_args, make_trace
from ui import render
from ui.services import page_trace

pytestmark = pytest.mark.slow


STREAM = 11  # /analyze's output holding the Analyze tab's stream (steps so far, then the answer)


def status_text(update) -> str:
    return re.sub(r"<[^>]+>", "", update[0])


def test_analysis_streams_stages_then_steps_then_answer_then_scores(app, analysis):
    _, updates, trace_id = analysis
    statuses = [status_text(u) for u in updates]
    stages = [s.split(":")[0].split("\u2026")[0] for s in statuses]
    # progress for decoding, loading, encoding, generation and scoring, in this order
    for earlier, later in [
        ("Decoding the clip", "Encoding frames and audio"),
        ("Encoding frames and audio", "Generating the reasoning"),
        ("Generating the reasoning", "Scoring every step (noise, mute)"),
    ]:
        assert stages.index(earlier) < stages.index(later)
    stored = app.studio.store.get_trace(trace_id).trace
    n = len(stored.steps)
    assert n >= 1
    # each step appears on its own update before the answer does
    step_updates = [s for s in statuses if s.startswith("Generating: step")]
    assert step_updates == [f"Generating: step {k} decoded\u2026" for k in range(1, n + 1)]
    first_step = next(i for i, s in enumerate(statuses) if s.startswith("Generating: step 1"))
    first_answer = next(i for i, u in enumerate(updates) if "<b>Answer</b>" in u[STREAM])
    assert first_step < first_answer
    assert updates[first_step][STREAM].count('<div class="step">') == 1  # the Analyze tab's stream
    assert statuses[-1].startswith("Done in ") and trace_id in statuses[-1]
    assert "Tiny demo model" in statuses[-1]
    # the progress bar only moves forward, from the start to 100%
    bars = [int(m) for u in updates for m in re.findall(r'progress" title="(\d+)%', u[0])]
    assert bars == sorted(bars) and bars[0] < 10 and bars[-1] == 100
    # the phases add up to the total ("Done in 8.8 s (decode 0.6, ..., other 0.1)")
    total, parts = re.match(r"Done in (\d+\.\d) s \(([^)]*)\)", statuses[-1]).groups()
    seconds = [float(p.rsplit(" ", 1)[1]) for p in parts.split(", ")]
    assert sum(seconds) == pytest.approx(float(total), abs=0.05 * len(seconds) + 0.05)
    assert {p.rsplit(" ", 1)[0] for p in parts.split(", ")} >= {"decode", "encode", "generate", "score"}


def test_analysis_is_stored_with_scores_spans_and_the_kept_clip(app, analysis, clip):
    _, updates, trace_id = analysis
    stored = app.studio.store.get_trace(trace_id).to_dict()
    assert stored["source"] == "live"
    assert stored["model"]["tiny"] is True
    assert stored["question"] == "Which way does the shape move?"
    assert stored["options"] == ["left", "right"]
    assert stored["reference_answer"] == "A"
    assert stored["scoring"]["perturbations"] == ["noise", "mute"]
    for step in stored["steps"]:
        assert set(step["scores"]) == {"noise", "mute"}
        assert step["score"] == step["scores"]["noise"] >= 0
        assert len(step["token_kl"]) == len(step["kl_tokens"])
    assert sum(s["top_t"] for s in stored["steps"]) == min(2, len(stored["steps"]))
    spans = stored["scoring"]["frame_attention"]["spans"]
    times = stored["clip"]["frame_times_s"]
    assert len(spans) == len(stored["steps"])
    assert all(span[0] in times for span in spans)
    kept = app.config.media_root / f"{stored['clip']['sha256']}.mp4"
    assert stored["clip"]["path"] == str(kept.resolve())
    assert kept.read_bytes() == clip.read_bytes()
    final = updates[-1]
    assert final[2] == 0  # the first step is current
    assert "step current" in final[3]
    for step in stored["steps"]:
        assert f'data-step="{step["index"]}"' in final[3]


def test_label_steps_undo_and_time_spent(app, analysis):
    client, _, trace_id = analysis
    store = app.studio.store
    n = len(store.get_trace(trace_id).trace.steps)
    out = client.predict(
        "alice", trace_id, 0, "visual_misperception", "no <b>ball</b>", True, api_name="/reject"
    )
    steps_html, info, index = out[0], out[1], out[2]
    assert index == min(1, n - 1)  # moved on to the next step
    assert info.startswith(f"Step {index + 1} of {n}")
    assert "labeled-reject" in steps_html
    assert "no &lt;b&gt;ball&lt;/b&gt;" in steps_html  # the comment is escaped
    labels = store.labels_for_trace(trace_id, "alice")
    assert [(x["step_index"], x["verdict"], x["error_type"], x["comment"]) for x in labels] == [
        (0, "reject", "visual_misperception", "no <b>ball</b>")
    ]
    assert labels[0]["time_spent_s"] > 0  # measured from when the step was shown
    # accept replaces the verdict and drops the error type; undo brings the reject back
    client.predict("alice", trace_id, 0, "visual_misperception", "", True, api_name="/accept")
    assert [(x["verdict"], x["error_type"]) for x in store.labels_for_trace(trace_id, "alice")] == [
        ("accept", None)
    ]
    out = client.predict("alice", trace_id, 0, True, api_name="/undo")
    assert out[2] == 0 and "Undone on step 1: now reject" in out[6]
    assert [x["verdict"] for x in store.labels_for_trace(trace_id, "alice")] == ["reject"]


def test_navigation_clamps_to_the_steps(app, analysis):
    client, _, trace_id = analysis
    n = len(app.studio.store.get_trace(trace_id).trace.steps)
    assert client.predict("alice", trace_id, n - 1, True, api_name="/next_step")[2] == n - 1
    assert client.predict("alice", trace_id, 0, True, api_name="/prev_step")[2] == 0
    out = client.predict("alice", trace_id, 99, True, api_name="/show_step")
    assert out[2] == n - 1 and out[1].startswith(f"Step {n} of {n}")


@pytest.fixture
def imported(app):
    """Three imported traces with known scores (the queue's order) and the XSS step."""
    store = app.studio.store
    traces = [
        make_trace("q-low", ["A ball.", "It rolls."], [0.1, 0.2]),
        make_trace("q-high", ["A ball.", XSS, "Done."], [0.3, 0.9, 0.1]),
        make_trace("q-none", ["Nothing scored."]),
    ]
    store.add_traces(traces)
    return traces


def queue_ids(client, annotator, unlabeled_only=True):
    table, _ = client.predict(annotator, unlabeled_only, "max_score", api_name="/queue")
    return [row[0] for row in table["data"] if row[0].startswith("q-")]


def test_queue_is_ordered_by_highest_step_score_and_filters_mine(app, imported):
    client = app.client()
    assert queue_ids(client, "carol") == ["q-high", "q-low", "q-none"]
    for k in range(2):
        client.predict("carol", "q-low", k, "", "", True, api_name="/accept")
    assert queue_ids(client, "carol") == ["q-high", "q-none"]
    assert queue_ids(client, "carol", unlabeled_only=False) == ["q-high", "q-low", "q-none"]
    # "next trace to label" follows the queue's order and skips what carol finished
    out = client.predict("carol", "q-high", True, "max_score", api_name="/next_trace")
    full = app.studio.store.queue("carol", unlabeled_only=False)
    after = [i for i in full[[i["trace_id"] for i in full].index("q-high") + 1 :]]
    expected = next(i["trace_id"] for i in after if i["labeled_by_me"] < i["n_steps"])
    assert out[0] == expected and expected != "q-low"
    _, progress = client.predict("carol", True, "max_score", api_name="/queue")
    carol = next(row for row in progress["data"] if row[0] == "carol")
    assert carol[1:4] == [2, 2, 1]  # labels, steps labeled, traces done


def test_open_trace_shows_model_text_escaped(app, imported):
    client = app.client()
    out = client.predict("dave", "q-high", True, api_name="/open_trace")
    # (the client leaves out the tab switch): trace id, answer, status, scores, KL, steps, info, step
    steps_html = out[5]
    assert XSS not in steps_html
    assert "&lt;img src=x onerror=alert(1)&gt;" in steps_html
    assert out[0] == "q-high" and out[7] == 0  # trace id; the first step I have not labeled


def test_blind_mode_hides_others_labels_until_i_label(app, imported):
    client = app.client()
    client.predict("erin", "q-high", 1, "hallucination", "", True, api_name="/reject")
    blind = client.predict("frank", "q-high", 1, True, api_name="/show_step")[0]
    assert "erin" not in blind
    open_view = client.predict("frank", "q-high", 1, False, api_name="/show_step")[0]
    assert "erin: \u2717 reject \u00b7 hallucination" in open_view
    client.predict("frank", "q-high", 1, "", "", True, api_name="/accept")
    shown = client.predict("frank", "q-high", 1, True, api_name="/show_step")[0]
    assert "erin: \u2717 reject \u00b7 hallucination" in shown


def test_export_offers_the_file_and_matches_the_store(app, imported):
    client = app.client()
    client.predict("gina", "q-low", 0, "", "", True, api_name="/accept")
    client.predict("gina", "q-low", 1, "reasoning_logic", "", True, api_name="/reject")
    path, message = client.predict("trl-stepwise", "jsonl", 0, "gina", "", api_name="/export")
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    from annotation_db.export import ExportOptions

    expected = app.studio.store.export_records("trl-stepwise", ExportOptions(annotators=("gina",)))
    assert records == expected
    assert {"completions": ["A ball.", "It rolls."], "labels": [True, False]}.items() <= records[0].items()
    assert message.startswith(f"{len(records)} trl-stepwise records")
    parquet, _ = client.predict("trl-stepwise", "parquet", 0.5, "", "", api_name="/export")
    assert parquet.endswith(".parquet")


def test_export_tab_filters_by_how_each_label_was_decided(app, imported):
    """The Export tab's resolution filters reach the store: one annotator's labels are not enough
    for two, nothing here was adjudicated, and Dawid-Skene is named as the source of the records it decided."""
    client = app.client()
    client.predict("hana", "q-low", 0, "", "", True, api_name="/accept")
    client.predict("hana", "q-low", 1, "reasoning_logic", "", True, api_name="/reject")
    path, _ = client.predict(
        "trl-stepwise", "jsonl", 0, "hana", "", "dawid-skene", 0, False, api_name="/export"
    )
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    assert records and {r["label_source"] for r in records} == {"dawid_skene"}
    for filters in [("majority", 2, False), ("majority", 0, True)]:
        with pytest.raises(AppError, match="no labelled steps match the trl-stepwise export"):
            client.predict("trl-stepwise", "jsonl", 0, "hana", "", *filters, api_name="/export")


def test_dashboard_reports_counts_and_calibration(app, imported):
    client = app.client()
    client.predict("hugo", "q-high", 1, "hallucination", "", True, api_name="/reject")
    client.predict("hugo", "q-high", 0, "", "", True, api_name="/accept")
    stats_md, agreement, calibration, progress = client.predict(api_name="/dashboard")
    stats = app.studio.store.stats()
    assert f"**{stats['labels']}** labels" in stats_md
    assert "| reject |" in stats_md
    assert "hugo" in [row[0] for row in progress["data"]]
    assert "Reject rate by score decile" in json.dumps(calibration)


def test_errors_are_messages_and_the_app_keeps_serving(app, tmp_path, analysis, imported):
    client = app.client()
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are not frames")
    with pytest.raises(AppError, match="is not a video file that can be read"):
        client.predict(*analyze_args(handle_file(str(not_video))), api_name="/analyze")
    with pytest.raises(AppError, match="no clip: upload a video"):
        client.predict(*analyze_args(None), api_name="/analyze")
    with pytest.raises(AppError, match="the question is empty"):
        client.predict(*analyze_args(handle_file(str(not_video)), question=""), api_name="/analyze")
    # every text input has a limit, each refused with one line (nothing is analysed or stored)
    with pytest.raises(AppError, match="the reference answer is one option letter: A, B"):
        client.predict(
            *analyze_args(handle_file(str(not_video)), reference="the left one"), api_name="/analyze"
        )
    with pytest.raises(AppError, match="the question has 30,000 characters; keep it under 1,000"):
        client.predict(*analyze_args(handle_file(str(not_video)), question="q" * 30_000), api_name="/analyze")
    with pytest.raises(AppError, match="the comment has 10,001 characters"):
        client.predict("ivan", "q-high", 0, "", "c" * 10_001, True, api_name="/accept")
    with pytest.raises(AppError, match="the correction has 2,001 characters"):
        client.predict("ivan", "q-high", 0, "c" * 2001, api_name="/correct")
    assert app.studio.store.labels_for_trace("q-high", "ivan") == []
    with pytest.raises(AppError, match="type your name"):
        client.predict("", "q-high", 0, "", "", True, api_name="/accept")
    with pytest.raises(AppError, match="no trace 'nope' is stored"):
        client.predict("ivan", "nope", 0, "", "", True, api_name="/accept")
    with pytest.raises(AppError, match="has no earlier label"):
        client.predict("ivan", analysis[2], 0, True, api_name="/undo")
    with pytest.raises(AppError, match="not in the list of choices|export format must be one of"):
        client.predict("xml", "jsonl", 0, "", "", api_name="/export")
    # an unexpected failure is a short message too, and the next request is served
    original = app.studio.store.stats
    app.studio.store.stats = lambda: 1 / 0
    try:
        with pytest.raises(AppError, match=r"unexpected error \(ZeroDivisionError\)"):
            client.predict(api_name="/dashboard")
    finally:
        app.studio.store.stats = original
    assert client.predict("ivan", analysis[2], 0, True, api_name="/show_step")[2] == 0


def test_alternatives_preference_correction_and_rollouts(app, analysis):
    client, _, trace_id = analysis
    store = app.studio.store
    html, choices, message = client.predict("judy", trace_id, 0, 2, 0, api_name="/alternatives")
    stored = page_trace(store.get_trace(trace_id))["alternatives"]  # with ids and authors
    models = [a for a in stored if a["source"] == "model" and a["step_index"] == 0]
    assert message.startswith(f"Sampled 2: {len(models)} new alternative")
    # each alternative once: its text in the list, its number in the choice to prefer
    assert choices["choices"] == [[f"#{a['id']} (model)", a["id"]] for a in models]
    for alt in models:
        assert html.count(render.esc(alt["text"])) == 1
    for alt in models:
        assert alt["settings"]["top_p"] == 0.9 and alt["created_by"] == "judy"
    correction = "The red ball moves to the right <b>fast</b>."
    out = client.predict("judy", trace_id, 0, correction, api_name="/correct")
    assert out[3] == ""  # the text box is emptied
    assert "&lt;b&gt;fast&lt;/b&gt;" in out[0]
    human = next(a for a in page_trace(store.get_trace(trace_id))["alternatives"] if a["source"] == "human")
    assert human["text"] == correction
    assert [(p["alternative_id"], p["chosen"]) for p in store.preferences_for_trace(trace_id, "judy")] == [
        (human["id"], "alternative")
    ]
    client.predict("judy", trace_id, 0, human["id"], api_name="/prefer_original")
    assert [p["chosen"] for p in store.preferences_for_trace(trace_id, "judy")] == ["original"]
    if models:  # one preference per step: choosing another alternative withdraws the first choice
        client.predict("judy", trace_id, 0, models[0]["id"], api_name="/prefer")
        assert [
            (p["alternative_id"], p["chosen"]) for p in store.preferences_for_trace(trace_id, "judy")
        ] == [(models[0]["id"], "alternative")]
    html, _, message = client.predict("judy", trace_id, 0, 1, "A", api_name="/rollouts")
    assert re.fullmatch(r"Step 1: p\(correct\) = (0\.00|1\.00) over 1 rollouts", message)
    assert "original step: p(correct) =" in html
    # stored: the step's and each alternative's expected correctness feed the soft pDPO labels
    after = store.get_trace(trace_id).to_dict()
    shown = float(message.split("= ")[1].split()[0])
    assert after["steps"][0]["expected_correctness"] == shown
    at_step = [a for a in after["alternatives"] if a["step_index"] == 0]
    assert at_step and all(a["expected_correctness"] in (0.0, 1.0) for a in at_step)


def test_label_only_mode_with_password_login(tmp_path):
    """No model (no /analyze), and every label belongs to the signed-in user whatever name is typed."""
    from tests.app.conftest import base_config, serve, stop
    from ui.config import read_auth_file

    auth = tmp_path / "users.txt"
    auth.write_text("# annotators\nalice:secret\nbob:hunter2\n")
    running = serve(base_config(tmp_path, label_only=True, auth_pairs=read_auth_file(str(auth))))
    try:
        running.studio.store.add_trace(make_trace("lo-1", ["One.", "Two."], [0.2, 0.1]))
        client = running.client(auth=("alice", "secret"))
        assert "/analyze" not in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        client.predict("mallory", "lo-1", 0, "", "", True, api_name="/accept")
        assert [x["annotator"] for x in running.studio.store.labels_for_trace("lo-1")] == ["alice"]
        with pytest.raises(Exception):  # noqa: B017 (the login page refuses: no typed exception)
            running.client(auth=("alice", "wrong"))
    finally:
        stop(running)
