"""The page's structure: every shortcut has its button, the API names exist, model events are in
the GPU group and labeling events are not, label-only mode has no model events."""

from __future__ import annotations

import pytest

from tests.app.conftest import base_config
from ui import review_keys, shortcuts
from ui.layout import build_app, launch_kwargs
from ui.services import Studio


@pytest.fixture
def built(tmp_path):
    def build(**changes):
        config = base_config(tmp_path, **changes)
        studio = Studio(config)
        return config, studio, build_app(config, studio)

    return build


def elem_ids(demo) -> set[str]:
    return {block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)}


def events(demo) -> dict[str, object]:
    return {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}


def test_every_shortcut_clicks_a_button_on_the_page(built):
    _, _, demo = built(checkpoint="tiny")
    ids = elem_ids(demo)
    for _, _, elem_id in shortcuts.SHORTCUTS:
        assert elem_id in ids
    assert {shortcuts.STEP_INPUT_ID, shortcuts.GO_BUTTON_ID, shortcuts.PLAYER_ID} <= ids
    script = shortcuts.script()
    for key, what, elem_id in shortcuts.SHORTCUTS:
        assert f'"{key}": "{elem_id}"' in script
        assert f"<kbd>{key}</kbd> {what}" in shortcuts.help_markdown()


def test_model_events_share_one_gpu_slot_and_labels_do_not_wait(built):
    config, _, demo = built(checkpoint="tiny")
    fns = events(demo)
    for name in ("analyze", "alternatives", "rollouts"):
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("gpu", 1)
    for name in (
        "accept",
        "reject",
        "unsure",
        "undo",
        "show_step",
        "queue",
        "open_trace",
        "export",
        "dashboard",
    ):
        assert fns[name].concurrency_id != "gpu"
        assert fns[name].concurrency_limit == config.label_concurrency


def test_label_only_mode_has_no_model_events_and_says_so(built):
    _, studio, demo = built(label_only=True)
    fns = events(demo)
    assert not {"analyze", "alternatives", "rollouts"} & set(fns)
    assert {"accept", "queue", "export", "correct", "prefer"} <= set(fns)
    assert studio.models is None
    banner = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "banner")
    assert "Label-only mode" in banner.value


def test_tiny_model_banner_says_the_output_is_meaningless(built, tiny_checkpoint):
    _, _, demo = built(checkpoint=str(tiny_checkpoint))
    banner = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "banner")
    assert "meaningless" in banner.value


def test_gradio_queue_summary_is_not_rebuilt_after_every_event(built, monkeypatch):
    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    _, _, demo = built(label_only=True)
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == 1000  # sic: gradio's spelling
    assert demo._queue.ANALYTICS_MAX_EVENTS == 1000


def test_launch_settings(built):
    config, studio, _ = built(label_only=True, max_upload_mb=3)
    kwargs = launch_kwargs(config, studio)
    assert kwargs["max_file_size"] == 3 * 1024 * 1024
    assert kwargs["js"] == review_keys.script(shortcuts.script()) and ".step.current" in kwargs["css"]
    assert str(config.media_root.resolve()) in kwargs["allowed_paths"]
    assert "auth" not in kwargs


def test_verdict_handlers_are_one_function_each_with_its_api_name(built):
    _, _, demo = built(label_only=True)
    fns = events(demo)
    for verdict in ("accept", "reject", "unsure"):
        assert fns[verdict].fn.__name__ == verdict
        assert fns[verdict].fn.__code__ is fns["accept"].fn.__code__  # the same wrapped handler


def test_the_server_refuses_a_label_for_a_trace_the_page_does_not_show(built):
    """The page's session state names the trace it shows; a label, undo or note for another
    trace (a stale page, a key pressed mid-analysis) is refused and nothing is stored."""
    import gradio as gr

    from tests.app.conftest import make_trace
    from ui import workspace

    _, studio, demo = built(label_only=True)
    studio.store.add_traces([make_trace("shown", ["a", "b"]), make_trace("other", ["c", "d"])])
    fns = events(demo)
    desk = workspace.new_desk("shown")
    with pytest.raises(gr.Error, match="this page shows trace shown, not other: nothing was saved"):
        fns["accept"].fn("zoe", "other", 0, "", "", True, None, desk, None, None)
    with pytest.raises(gr.Error, match="this page shows no trace now"):
        fns["reject"].fn("zoe", "shown", 0, "other", "", True, None, workspace.new_desk(), None, None)
    with pytest.raises(gr.Error, match="this page shows trace shown, not other"):
        fns["undo"].fn("zoe", "other", 0, True, desk, None, None)
    assert studio.store.labels_for_trace("other") == [] and studio.store.labels_for_trace("shown") == []
    out = fns["accept"].fn("zoe", "shown", 0, "", "", True, None, desk, None, None)
    assert [x["step_index"] for x in studio.store.labels_for_trace("shown", "zoe")] == [0]
    assert any(value == "step 2 of 2" for value in out.values())  # moved on, position shown
