"""The Review tab and the error-analysis dashboard through gradio_client, as a program (or the
page) uses them: a reviewer sees every annotator's label side by side, decides, sends back and
undoes; an annotator is refused; the dashboard's charts and bar lists count a seeded history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from tests.app.conftest import base_config, make_trace, serve, stop

pytestmark = pytest.mark.slow

USERS = {"rita": "pw-r", "alice": "pw-a", "bob": "pw-b"}
AUTH_FILE = "rita:pw-r:reviewer\nalice:pw-a\nbob:pw-b:annotator\n"  # the roles the app stores at start
TABLE, ITEM, TRACE, STEP, ALT, ERROR, NOTE, STATUS = range(8)  # the review events' outputs


def seed(store) -> None:
    """Four traces, each with one disagreement (alice accepts, bob rejects with a comment) on
    step 2 and one agreed step."""
    for name in ("decide", "refuse", "undo", "back"):
        store.add_trace(
            make_trace(f"rv-{name}", ["The ball rolls.", "It is <b>red</b>.", "It stops."], [0.4, 0.1, 0.3])
        )
        store.set_label("alice", f"rv-{name}", 0, "accept")
        store.set_label("bob", f"rv-{name}", 0, "accept")
        store.set_label("alice", f"rv-{name}", 1, "accept", comment="looks red to me")
        store.set_label(
            "bob", f"rv-{name}", 1, "reject", error_type="visual_misperception", comment="it is blue"
        )


def signed_in_config(tmp: Path):
    """A label-only app's config with login, its users and roles read from an auth file as
    ``--auth-file`` reads it (rita is a reviewer there)."""
    from ui.config import parse_config

    users = tmp / "users.txt"
    users.write_text(AUTH_FILE, encoding="utf-8")
    auth = parse_config(["--auth-file", str(users)], {})
    return base_config(
        tmp, label_only=True, auth_file=str(users), auth_pairs=auth.auth_pairs, auth_roles=auth.auth_roles
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from annotation_db import Store

    tmp = tmp_path_factory.mktemp("review")
    with Store.open(tmp / "annotations.db") as store:
        seed(store)
    running = serve(signed_in_config(tmp))
    yield running
    stop(running)


def as_user(site, name: str):
    return site.client(auth=(name, USERS[name]))


def queue(client, include: bool = False, trace_id: str = "", step: int = 0):
    return client.predict("", include, 0.0, trace_id, step, "", api_name="/review_queue")


def test_reviewer_sees_every_label_side_by_side_in_context(site):
    out = queue(as_user(site, "rita"))
    rows = out[TABLE]["data"]
    assert [r[:4] for r in rows] == [
        [f"rv-{n}", 2, "original", "verdicts differ"] for n in ("decide", "refuse", "undo", "back")
    ]
    assert rows[0][4:] == ["alice: accept; bob: reject (visual misperception)", "open"]
    assert (out[TRACE], out[STEP], out[ALT], out[STATUS]) == ("rv-decide", 1, "", "4 items to review")
    html = out[ITEM]
    # the question, the previous step and the step itself (model text escaped), both labels
    assert "What moves?" in html and "The ball rolls." in html and "It is &lt;b&gt;red&lt;/b&gt;." in html
    assert (
        "looks red to me" in html
        and "it is blue" in html
        and "Item 1 of 4 \u00b7 trace rv-decide \u00b7 step 2" in html
    )
    # the error type is preset to the rejecting annotator's
    assert out[ERROR] == "visual_misperception"


def test_reviewer_adjudicates_and_moves_on(site):
    client = as_user(site, "rita")
    out = client.predict(
        "", "rv-decide", 1, "", "reject", "hallucination", "not red", False, 0.0, api_name="/adjudicate"
    )
    assert out[STATUS] == "Step 2 of rv-decide: reject (hallucination), final \u2713"
    assert (out[TRACE], out[STEP]) == ("rv-refuse", 1)  # the next item waiting
    assert "rv-decide" not in [r[0] for r in out[TABLE]["data"]]
    decided = next(
        r for r in site.studio.store.resolved_labels() if (r["trace_id"], r["step_index"]) == ("rv-decide", 1)
    )
    assert (decided["verdict"], decided["error_type"], decided["adjudicated"], decided["reviewer"]) == (
        "reject",
        "hallucination",
        True,
        "rita",
    )
    # listed again with the reviewed items, with its review
    again = queue(client, include=True, trace_id="rv-decide", step=1)
    assert again[TABLE]["data"][0] == [
        "rv-decide",
        2,
        "original",
        "reviewed",
        "alice: accept; bob: reject (visual misperception)",
        "reject by rita (hallucination)",
    ]
    assert "not red" in again[ITEM] and again[NOTE] == "not red"


def test_an_annotator_is_refused_every_review_call(site):
    client = as_user(site, "alice")
    calls = [
        lambda: queue(client),
        lambda: client.predict("", "rv-refuse", 1, "", "accept", "", "", False, 0.0, api_name="/adjudicate"),
        lambda: client.predict("", "rv-refuse", 1, "", "look again", False, 0.0, api_name="/send_back"),
        lambda: client.predict("", "rv-refuse", 1, "", False, 0.0, api_name="/undo_review"),
        lambda: client.predict("", False, 0.0, "rv-refuse", 1, "", api_name="/review_next"),
    ]
    for call in calls:
        with pytest.raises(
            AppError, match="^alice is an annotator; only reviewers and admins can review; ask an admin$"
        ):
            call()
    assert not any(
        r["adjudicated"] or r["status"] == "sent_back"
        for r in site.studio.store.resolved_labels()
        if r["trace_id"] == "rv-refuse"
    )


def test_undo_takes_the_decision_back(site):
    client = as_user(site, "rita")
    client.predict("", "rv-undo", 1, "", "accept", "", "", False, 0.0, api_name="/adjudicate")
    out = client.predict("", "rv-refuse", 1, "", False, 0.0, api_name="/undo_review")
    # the page's last change is undone (rv-undo), whatever item is shown now
    assert out[STATUS] == "Undone on step 2 of rv-undo: now open"
    assert (out[TRACE], out[STEP]) == ("rv-undo", 1)
    assert site.studio.store.review_item("rita", "rv-undo", 1)["review"] is None
    with pytest.raises(AppError, match="no earlier review state"):
        client.predict("", "rv-undo", 1, "", False, 0.0, api_name="/undo_review")


def test_send_back_needs_a_note_and_reaches_the_annotators(site):
    client = as_user(site, "rita")
    with pytest.raises(AppError, match="needs a note"):
        client.predict("", "rv-back", 1, "", "  ", False, 0.0, api_name="/send_back")
    out = client.predict("", "rv-back", 1, "", "check the colour at 0:01", False, 0.0, api_name="/send_back")
    assert out[STATUS] == "Step 2 of rv-back: sent back with the note"
    assert "rv-back" not in [r[0] for r in out[TABLE]["data"]]
    [note] = site.studio.store.sent_back_notes("rv-back")
    assert (note["step_index"], note["note"], note["reviewer"]) == (1, "check the colour at 0:01", "rita")


def test_an_alternative_is_reviewed_by_its_id(site):
    store = site.studio.store
    store.add_trace(make_trace("rv-alt", ["The ball rolls.", "It stops."], [0.2, 0.3]))
    alt = store.add_alternative("alice", "rv-alt", 1, "It rolls <on>.")
    store.set_label("alice", "rv-alt", 1, "accept", alternative_id=alt["id"])
    store.set_label("bob", "rv-alt", 1, "reject", alternative_id=alt["id"], error_type="hallucination")
    client = as_user(site, "rita")
    out = client.predict("", False, 0.0, "rv-alt", 1, str(alt["id"]), api_name="/review_queue")
    assert [r[:3] for r in out[TABLE]["data"] if r[0] == "rv-alt"] == [
        ["rv-alt", 2, f"alternative {alt['id']}"]
    ]
    assert (out[TRACE], out[STEP], out[ALT]) == ("rv-alt", 1, str(alt["id"]))
    assert f"Alternative {alt['id']}:</b> It rolls &lt;on&gt;." in out[ITEM]
    client.predict("", "rv-alt", 1, str(alt["id"]), "accept", "", "", False, 0.0, api_name="/adjudicate")
    [resolved] = [r for r in store.resolved_labels() if r["trace_id"] == "rv-alt"]
    assert (resolved["alternative_id"], resolved["verdict"], resolved["adjudicated"]) == (
        alt["id"],
        "accept",
        True,
    )


# ---- the dashboard on the seeded synthetic history (tests/store/test_analysis.py) ---------------


@pytest.fixture(scope="module")
def history_site(tmp_path_factory):
    from annotation_db import Store
    from tests.store.conftest import _make_trace
    from tests.store.test_analysis import _history

    tmp = tmp_path_factory.mktemp("history")
    with Store.open(tmp / "annotations.db") as store:
        _history(store, _make_trace)
    running = serve(base_config(tmp, label_only=True))
    yield running
    stop(running)


def figure(value) -> dict:
    """A gr.Plot output as gradio_client returns it: the plotly JSON."""
    plot = value["plot"] if isinstance(value, dict) else value
    return json.loads(plot) if isinstance(plot, str) else plot


def test_dashboard_charts_count_the_history(history_site):
    out = history_site.client().predict("", api_name="/analysis")
    types = figure(out[0])["data"][0]
    assert dict(zip([x.replace("<br>", " ") for x in types["x"]], types["y"], strict=True)) == {
        "visual misperception": 20,
        "audio misperception": 30,
        "hallucination": 0,
        "reasoning / logic": 0,
        "other": 0,
        "unspecified": 0,
    }
    kinds = figure(out[1])["data"][0]
    assert dict(zip(kinds["x"], kinds["text"], strict=True)) == {
        "lecture": "25/160",
        "standup": "25/160",
        "synthetic": "0/10",
    }
    mute = next(s for s in figure(out[3])["data"] if s["name"] == "mute")
    by_type = dict(zip(mute["customdata"], mute["y"], strict=True))
    assert by_type["perturbation|mute:audio_misperception"] == pytest.approx(0.85)
    assert mute["text"][list(by_type).index("perturbation|mute:audio_misperception")] == "30/280"
    models = figure(out[4])["data"]
    assert [(s["name"], s["x"], s["text"]) for s in models] == [
        ("reject rate", ["base", "pdpo-v1"], ["40/160", "10/170"]),
        ("accuracy", ["base", "pdpo-v1"], ["10/20", "17/21"]),
    ]
    quality = {row[0]: row for row in out[6]["data"]}
    assert quality["alice"][1:3] == ["annotator", 330] and quality["rita"][1] == "reviewer"


def test_a_bar_lists_its_steps(history_site):
    table, caption = history_site.client().predict("error_type|audio_misperception", api_name="/bar_steps")
    rows = table["data"]
    assert caption == "**30 steps** of the bar error_type: audio_misperception"
    assert len(rows) == 30 and {(r[2], r[3]) for r in rows} == {("reject", "audio misperception")}
    # audio errors sit in the second half of each trace
    assert {r[5] for r in rows} <= {"50-75%", "75-100%"}
    with pytest.raises(AppError, match="pick a bar of a chart"):
        history_site.client().predict("nonsense|x", api_name="/bar_steps")


def test_annotator_quality_rows_follow_the_role(site):
    everyone = {row[0] for row in as_user(site, "rita").predict("", api_name="/analysis")[6]["data"]}
    assert everyone >= {"alice", "bob", "rita"}
    # an annotator sees their own figures only
    assert [row[0] for row in as_user(site, "bob").predict("", api_name="/analysis")[6]["data"]] == ["bob"]
