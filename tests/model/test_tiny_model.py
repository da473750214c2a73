"""The port on the project's own tiny checkpoint: token counts, interleaving, loading paths,
LoRA, NF4 on the CPU, streaming, and the ``run`` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inference.model.layout import av_layout

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inference", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_tokens_per_frame_and_per_second_of_audio(tiny_model):
    model = tiny_model.model
    with torch.no_grad():
        video = model.encode_frames(torch.zeros(3, 3, 384, 384))
        audio = model.encode_audio(torch.zeros(2, 128, 3000))
    assert video.shape[:2] == (3, 182)  # 13 rows x (13 patches + newline)
    assert audio.shape[0] == 2 * 150  # 5 tokens per second of each 30 s chunk


def test_each_row_of_a_frame_ends_with_the_newline(tiny_model):
    model = tiny_model.model
    with torch.no_grad():
        video = model.encode_frames(torch.rand(2, 3, 384, 384))
    rows = video.view(2, 13, 14, -1)
    torch.testing.assert_close(rows[:, :, 13], model.image_newline.expand(2, 13, -1))


def marker_tokens(n: int, offset: float) -> torch.Tensor:
    return (torch.arange(n, dtype=torch.float32) + offset).unsqueeze(-1)


@pytest.mark.parametrize(
    ("n_frames", "n_audio", "real_time"),
    [(12, 150, 6.006), (7, 300, 45.6), (60, 300, 45.6), (2, 150, 1.0), (1, 150, 0.5)],
)
def test_interleaving_order_matches_layout(n_frames, n_audio, real_time):
    from inference.model.modeling import VideoSalmonnO1

    video = marker_tokens(n_frames * 182, 0).view(n_frames, 182, 1)
    audio = marker_tokens(n_audio, 100_000)
    block = VideoSalmonnO1.interleave(video, audio, real_time)[:, 0]
    layout = av_layout(n_frames, n_audio, real_time)
    assert block.shape[0] == layout.length
    front = min(round(real_time * 50), n_audio)
    for f, span in enumerate(layout.frames):
        assert block[span.video[0] : span.video[1]].tolist() == list(range(f * 182, (f + 1) * 182))
        shares = block[span.audio[0] : span.audio[1]] - 100_000
        # nearest interpolation keeps order and only repeats tokens of the interleaved part
        assert shares.tolist() == sorted(shares.tolist())
        assert all(0 <= s < front for s in shares.tolist())
    back = block[layout.length - layout.back_audio_tokens :] - 100_000
    assert back.tolist() == list(range(front, n_audio))[: layout.back_audio_tokens]
    if real_time >= 3:
        assert layout.back_audio_tokens == 0


def test_nf4_load_on_cpu_generates(tiny_checkpoint):
    import bitsandbytes as bnb

    from inference.model.loading import LoadSettings, load_model
    from inference.reasoning.generate import Decoder, DecodingSettings, TokenPicker

    loaded = load_model(LoadSettings(checkpoint=str(tiny_checkpoint), device="cpu", quantization="4bit"))
    assert loaded.quantization == "4bit"
    proj = loaded.model.llm.model.layers[0].self_attn.q_proj
    assert isinstance(proj, bnb.nn.Linear4bit) and proj.weight.quant_type == "nf4"
    model = loaded.model
    encoded = model.encode_media(torch.rand(2, 3, 384, 384) * 2 - 1, torch.zeros(1, 128, 3000), 3.0)
    decoder = Decoder(model)
    logits = decoder.feed_embeds(model.embed_prompt([151644, -200, 198], [encoded.av_block]))
    ids = list(decoder.generate(logits, TokenPicker(DecodingSettings()), 4, stop_ids=[151645]))
    assert 1 <= len(ids) <= 4 and all(0 <= i < 151646 for i in ids)


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_weights(checkpoint: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(checkpoint / "model.safetensors"))
    edit(state)
    save_file(state, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})


def test_missing_weight_is_an_error_that_names_it(tiny_checkpoint, tmp_path):
    from inference.model.loading import CheckpointError, LoadSettings, load_model

    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    rewrite_weights(ckpt, lambda s: s.pop("speech_llama_proj.weight"))
    with pytest.raises(CheckpointError, match="missing.*speech_llama_proj.weight"):
        load_model(LoadSettings(checkpoint=str(ckpt), device="cpu"))


def test_missing_llm_weight_is_an_error(tiny_checkpoint, tmp_path):
    from inference.model.loading import CheckpointError, LoadSettings, load_model

    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    rewrite_weights(ckpt, lambda s: s.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(LoadSettings(checkpoint=str(ckpt), device="cpu"))


def test_unexpected_weight_is_an_error_that_names_it(tiny_checkpoint, tmp_path):
    from inference.model.loading import CheckpointError, LoadSettings, load_model

    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    rewrite_weights(ckpt, lambda s: s.update({"speech_extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="unexpected.*speech_extra.weight"):
        load_model(LoadSettings(checkpoint=str(ckpt), device="cpu"))


def test_unreachable_hub_checkpoint_says_what_to_do(monkeypatch):
    from inference.model.loading import CheckpointError, resolve_checkpoint_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="pass --checkpoint with a local folder"):
        resolve_checkpoint_dir("nobody-here/not-a-model", None)


def test_lora_adapter_on_top_changes_the_logits(tiny_checkpoint, tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    from inference.model.loading import LoadSettings, load_model, qwen2_config

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    base = Qwen2ForCausalLM(qwen2_config(config, "sdpa"))
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    for name, param in lora.named_parameters():
        if "lora_B" in name:  # B starts at zero; make the adapter do something
            torch.nn.init.normal_(param, std=0.5)
    lora.save_pretrained(tmp_path / "adapter")

    adapted = load_model(
        LoadSettings(
            checkpoint=str(tiny_checkpoint),
            device="cpu",
            quantization="none",
            adapter=str(tmp_path / "adapter"),
        )
    )
    ids = torch.tensor([[151644, 872, 198, 3838, 374]])
    with torch.no_grad():
        base_logits = tiny_model.model.llm(input_ids=ids).logits
        adapted_logits = adapted.model.llm(input_ids=ids).logits
        with adapted.model.llm.disable_adapter():
            disabled_logits = adapted.model.llm(input_ids=ids).logits
    assert not torch.allclose(base_logits, adapted_logits, atol=1e-3)
    torch.testing.assert_close(disabled_logits, base_logits)
    assert adapted.describe()["adapter"] == str(tmp_path / "adapter")


def test_streaming_yields_steps_in_order_then_answer_then_trace(tiny_model, example_clips):
    from inference.media import load_media
    from inference.reasoning.generate import (
        AnswerEvent,
        DoneEvent,
        ReasoningRequest,
        StepEvent,
        stream_reasoning,
    )

    media = load_media(example_clips["red_ball_chirp.mp4"])
    request = ReasoningRequest(question="Which way does the ball move?", options=["Left", "Right", "Up"])
    events = list(stream_reasoning(tiny_model, media, request))
    kinds = [type(e).__name__ for e in events]
    n_steps = kinds.count("StepEvent")
    assert n_steps >= 2, "the tiny model was trained to emit several delimited steps"
    assert kinds == ["StepEvent"] * n_steps + ["AnswerEvent", "DoneEvent"]
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert [s.index for s in steps] == list(range(n_steps))
    trace = events[-1].trace
    assert isinstance(events[-1], DoneEvent) and isinstance(events[-2], AnswerEvent)
    assert [s.text for s in trace.steps] == [s.text for s in steps]
    assert all("<end_of_step>" not in s.text for s in steps)
    spans = [(s.token_start, s.token_end) for s in steps]
    assert all(a < b for a, b in spans) and all(spans[i][1] <= spans[i + 1][0] for i in range(n_steps - 1))
    assert trace.clip.sha256 == media.clip.sha256 and trace.model["tiny"] is True
    assert trace.prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")


def test_same_seed_same_sampled_trace(tiny_model, example_clips):
    from inference.media import load_media
    from inference.reasoning.generate import DecodingSettings, ReasoningRequest, run_reasoning

    media = load_media(example_clips["silent_shapes.mp4"])

    def sample(seed: int):
        decoding = DecodingSettings(do_sample=True, seed=seed, max_new_tokens=48)
        trace = run_reasoning(tiny_model, media, ReasoningRequest(question="What moves?", decoding=decoding))
        return trace.decoding["generated_ids"]

    assert sample(3) == sample(3)


def test_run_command_on_a_generated_clip(tiny_checkpoint, example_clips):
    clip = example_clips["blue_square_beeps.mp4"]
    result = run_cli(
        "run",
        "--video",
        str(clip),
        "--question",
        "How many beeps?",
        "--options",
        "3",
        "5",
        "7",
        "--checkpoint",
        str(tiny_checkpoint),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["schema_version"] == 1 and trace["options"] == ["3", "5", "7"]
    assert len(trace["steps"]) >= 2 and trace["clip"]["path"] == str(clip)


def test_run_command_without_checkpoint_uses_tiny_model_and_says_so(tiny_checkpoint, example_clips):
    env = {"STUDIO_CACHE": str(tiny_checkpoint.parent), "CUDA_VISIBLE_DEVICES": ""}
    result = run_cli(
        "run", "--video", str(example_clips["silent_shapes.mp4"]), "--question", "What?", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "tiny demo model" in result.stderr
    assert result.stdout.startswith("Q: What?")


def test_run_command_bad_input_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = run_cli("run", "--video", str(empty), "--question", "What?")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


@pytest.mark.shared_clips
@pytest.mark.parametrize("name", ["standup_1.mp4", "synth_1.mp4"])
def test_run_command_on_real_clips(shared_clips, tiny_checkpoint, name):
    entry = next(
        json.loads(line)
        for line in (shared_clips / "manifest.jsonl").read_text().splitlines()
        if name in line
    )
    args = ["run", "--video", str(shared_clips / name), "--checkpoint", str(tiny_checkpoint), "--json"]
    if entry["options"]:
        args += ["--question", entry["question"], "--options", *entry["options"]]
    else:
        args += ["--prompt", "synthdec"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["clip"]["has_audio"] is (name != "synth_1.mp4")
    assert len(trace["clip"]["frame_times_s"]) == (60 if name == "standup_1.mp4" else 14)
    assert trace["steps"], "a real clip gets reasoning steps too"


def test_a_build_reports_its_progress_from_zero_to_one(tmp_path):
    """What the page's "building the tiny demo model, N% done, about S s left" is made of."""
    from inference.tiny import TinyRecipe, build_tiny_checkpoint

    heard = []
    recipe = TinyRecipe(train_steps=3)
    out = build_tiny_checkpoint(
        tmp_path / "tiny", recipe, log=lambda m: None, progress=lambda f, m: heard.append((f, m))
    )
    fractions = [f for f, _ in heard]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert [m for _, m in heard] == [
        "preparing",
        "training step 1 of 3",
        "training step 2 of 3",
        "training step 3 of 3",
        "saving",
        "built",
    ]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_importing_the_light_modules_loads_no_torch():
    code = (
        "import sys, inference, studio_trace, inference.cli, inference.model.layout, inference.model.config, "
        "annotation_db; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
