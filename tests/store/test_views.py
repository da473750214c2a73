"""The readable views (migration m006), queried as people browse the file: through datasette."""

from __future__ import annotations

import asyncio

import pytest


def test_labels_and_preferences_in_context_through_datasette(store, make_trace):
    datasette = pytest.importorskip("datasette.app")
    store.add_trace(
        make_trace(
            "t1",
            ["The man runs.", "He is cooking."],
            alternatives=[{"step_index": 1, "text": "He keeps running."}],
        )
    )
    store.set_label("alice", "t1", 1, "reject", error_type="visual_misperception", comment="no stove")
    store.set_label("bob", "t1", 1, "accept", alternative_id=1)
    store.record_preference("bob", "t1", 1, 1, "alternative")
    path = str(store.path)
    store.close()

    async def query(sql: str) -> list[dict]:
        ds = datasette.Datasette([path], immutables=[])
        response = await ds.client.get("/annotations.json", params={"sql": sql, "_shape": "array"})
        assert response.status_code == 200, response.text
        return response.json()

    labels = asyncio.run(
        query(
            "SELECT clip, question, trace_id, step_index, step_text, alternative_text, annotator, verdict, "
            "error_type, comment FROM labels_in_context ORDER BY label_id"
        )
    )
    common = {"clip": "clip.mp4", "question": "What does the man do?", "trace_id": "t1", "step_index": 1}
    assert labels == [
        {
            **common,
            "step_text": "He is cooking.",
            "alternative_text": None,
            "annotator": "alice",
            "verdict": "reject",
            "error_type": "visual_misperception",
            "comment": "no stove",
        },
        {
            **common,
            "step_text": "He is cooking.",
            "alternative_text": "He keeps running.",
            "annotator": "bob",
            "verdict": "accept",
            "error_type": None,
            "comment": "",
        },
    ]
    prefs = asyncio.run(
        query("SELECT trace_id, step_index, alternative_text, annotator, chosen FROM preferences_in_context")
    )
    assert prefs == [
        {
            "trace_id": "t1",
            "step_index": 1,
            "alternative_text": "He keeps running.",
            "annotator": "bob",
            "chosen": "alternative",
        }
    ]
