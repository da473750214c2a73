"""Base and adapter side by side (issue 9): with ``--adapter DIR`` the Analyze tab can run the same
clip through the LLM with its LoRA layers on, then off; both traces are stored, the adapter's is
shown for labeling and the base model's in a panel of its own."""

from __future__ import annotations

import html
import re

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.app.conftest import analyze_args, base_config, serve, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapter_dir(tiny_checkpoint, tmp_path_factory):
    """A LoRA adapter of the tiny LLM with random (non-zero) A and B, saved as peft saves one:
    the model's output with it differs from the base model's."""
    import torch
    from peft import LoraConfig, get_peft_model

    from inference.model.loading import LoadSettings, load_model

    loaded = load_model(LoadSettings(checkpoint=str(tiny_checkpoint), device="cpu", quantization="none"))
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    out = tmp_path_factory.mktemp("adapter") / "lora"
    get_peft_model(loaded.model.llm, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapter_app(tiny_checkpoint, adapter_dir, tmp_path_factory):
    running = serve(
        base_config(
            tmp_path_factory.mktemp("adapter-app"), checkpoint=str(tiny_checkpoint), adapter=str(adapter_dir)
        )
    )
    yield running
    stop(running)


@pytest.fixture(scope="module")
def compared(adapter_app, clip):
    """One analysis with the base model beside the adapter: (client, streamed updates, final).
    The client leaves out the State output (when labeling started): the base panel is [10]."""
    client = adapter_app.client()
    job = client.submit(*analyze_args(handle_file(str(clip)), compare_base=True), api_name="/analyze")
    updates = [tuple(u) for u in job]
    return client, updates, tuple(job.result())


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def base_trace_of(studio, adapter_trace_id: str) -> dict:
    traces = [
        studio.store.get_trace(t["trace_id"]).to_dict()
        for t in studio.store.queue("\u2014", unlabeled_only=False)
    ]
    (base,) = [t for t in traces if t["model"].get("compared_with") == adapter_trace_id]
    return base


def test_both_runs_are_stored_with_the_model_that_made_them(adapter_app, adapter_dir, compared):
    _, _, final = compared
    studio = adapter_app.studio
    tuned = studio.store.get_trace(final[1]).to_dict()
    base = base_trace_of(studio, tuned["id"])
    assert tuned["model"]["adapter"] == str(adapter_dir)
    assert base["model"]["adapter"] is None and base["id"] != tuned["id"]
    for key in ("question", "options", "reference_answer", "prompt"):
        assert base[key] == tuned[key]
    outputs = ("generated_ids", "followup_prompt")  # what each model wrote, not its settings
    settings = [{k: v for k, v in t["decoding"].items() if k not in outputs} for t in (base, tuned)]
    assert settings[0] == settings[1]
    assert base["clip"]["sha256"] == tuned["clip"]["sha256"]
    # both scored and given clip spans, like any analysis
    assert base["steps"] and all(step["score"] is not None for step in base["steps"])
    assert base["scoring"]["frame_attention"]["spans"]
    # the adapter changes what the model writes
    assert [s["text"] for s in base["steps"]] != [s["text"] for s in tuned["steps"]]


def test_the_base_run_is_the_model_without_the_adapter(adapter_app, compared, clip, tiny_model):
    """The base trace is what the checkpoint alone generates and scores on the same clip."""
    from inference.media import load_media
    from inference.reasoning.generate import DecodingSettings, ReasoningRequest, run_reasoning
    from inference.reasoning.scoring import score_trace

    _, _, final = compared
    base = base_trace_of(adapter_app.studio, final[1])
    media = load_media(str(clip))
    request = ReasoningRequest(
        question=base["question"],
        options=base["options"],
        decoding=DecodingSettings(max_new_tokens=48, do_sample=False, seed=0),
    )
    alone = run_reasoning(tiny_model, media, request)
    score_trace(tiny_model, media, alone, perturbations=("noise", "mute"), top_t=2, seed=0)
    assert [s["text"] for s in base["steps"]] == [s.text for s in alone.steps]
    assert base["answer"]["text"] == alone.answer.text
    for stored, fresh in zip(base["steps"], alone.steps, strict=True):
        assert stored["score"] == pytest.approx(fresh.score, rel=1e-4, abs=1e-6)


def test_the_page_shows_the_adapter_trace_for_labeling_and_the_base_beside_it(adapter_app, compared):
    _, updates, final = compared
    base = base_trace_of(adapter_app.studio, final[1])
    panel = final[10]
    assert "Base model (adapter off)" in panel and base["id"] in panel
    for step in base["steps"]:
        assert step["text"].strip() in text_of(panel)
    assert "data-step" not in panel  # a click there must not select a step of the labeled trace
    # the adapter's trace is labelable before the base model starts: its id is already set
    base_started = [i for i, u in enumerate(updates) if "Base model: Generating" in text_of(u[10] or "")]
    assert base_started, "the base model's progress is shown in its panel"
    shown = [u for u in updates[: base_started[0]] if u[1] == final[1]]
    assert shown and 'data-step="0"' in shown[-1][3] and "step current" in shown[-1][3]
    # while the base model runs, the labeled trace's steps are left alone (the annotator may be
    # labeling them): those updates change only the status, the trace id and the base panel
    assert all(isinstance(u[3], dict) for u in updates[base_started[0] :])


def test_the_adapter_is_back_on_after_the_comparison(adapter_app, compared, clip):
    client, _, final = compared
    tuned = adapter_app.studio.store.get_trace(final[1]).to_dict()
    again = client.predict(*analyze_args(handle_file(str(clip))), api_name="/analyze")
    repeat = adapter_app.studio.store.get_trace(again[1]).to_dict()
    assert repeat["model"]["adapter"] == tuned["model"]["adapter"]
    assert [s["text"] for s in repeat["steps"]] == [s["text"] for s in tuned["steps"]]
    assert "saved" not in again[10] and "Also run the base model" in again[10]  # cleared: a hint


def test_comparing_without_an_adapter_says_how_to_load_one(app, clip):
    with pytest.raises(AppError, match="--adapter DIR"):
        app.client().predict(*analyze_args(handle_file(str(clip)), compare_base=True), api_name="/analyze")
