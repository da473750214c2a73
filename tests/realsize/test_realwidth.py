"""The released model's widths and vocabulary (one LLM layer, one SigLIP layer used, one Whisper
layer; random weights) through the app's loader on the CPU: NF4 end to end on a real clip, its
logits against the same weights unquantised, and float16 compute kept finite.

Bounds, on the first-token logits (152064 of them) of a 4-frame clip: NF4 (bfloat16 compute)
against the unquantised bfloat16 model within a relative L2 error of 0.4 and a cosine of at least
0.9. NF4 gives a Gaussian weight ~10% relative error; it compounds through q/k/v/o and
gate/up/down, and a random layer's output dominates the residual stream, so the logits of this
random model move by about a quarter (bench/RESULTS.md, 8 frames: relative L2 0.26, cosine 0.966,
same top-1). A broken quantisation (wrong compute dtype, a layer read as zeros or garbage) moves
them by ~1; the bound sits between, with room for other clips.
"""

from __future__ import annotations

import gc
import json
import math

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.shared_clips]


@pytest.fixture(scope="module")
def realwidth():
    import os

    os.environ.setdefault("STUDIO_CACHE", str(REPO / ".cache" / "studio"))
    from inference.model.realwidth import cached_realwidth

    return cached_realwidth(log=lambda m: None)


@pytest.fixture(scope="module")
def clip(shared_clips):
    from testkit.realwidth import short_clip

    return short_clip(shared_clips / "nextqa_1.mp4", frames=4)


def test_checkpoint_is_laid_out_as_the_hub_stores_large_ones(realwidth):
    from inference.model.loading import safetensors_files

    folder = realwidth.checkpoint
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]) == (
        3584,
        28,
        4,
    )
    assert (config["intermediate_size"], config["vocab_size"]) == (18944, 152064)
    assert "vision_config" not in config and "speech_config" not in config  # as released
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    files = safetensors_files(folder)
    assert len(files) > 1 and {f.name for f in files} == set(index["weight_map"].values())
    assert index["weight_map"]["lm_head.weight"].startswith("model-")
    siglip = json.loads((realwidth.component("google/siglip-so400m-patch14-384") / "config.json").read_text())
    whisper = json.loads((realwidth.component("openai/whisper-large-v3") / "config.json").read_text())
    bert = json.loads((realwidth.component("google-bert/bert-base-uncased") / "config.json").read_text())
    assert (siglip["vision_config"]["hidden_size"], siglip["vision_config"]["num_attention_heads"]) == (
        1152,
        16,
    )
    assert (whisper["d_model"], whisper["num_mel_bins"], whisper["encoder_attention_heads"]) == (
        1280,
        128,
        20,
    )
    assert bert["hidden_size"] == 768


def test_nf4_end_to_end_and_close_to_unquantised(realwidth, clip):
    import torch

    from testkit.realwidth import end_to_end, load, logits_agreement, prompt_logits

    nf4 = load(realwidth, "4bit", "bfloat16")
    up_proj = nf4.model.llm.model.layers[0].mlp.up_proj
    assert type(up_proj).__name__ == "Linear4bit" and up_proj.weight.quant_type == "nf4"
    assert nf4.model.vision_tower.dtype == torch.bfloat16  # encoders as the loader places them
    trace, _, _ = end_to_end(nf4, clip, max_new_tokens=3)
    assert len(trace.steps) >= 1 and trace.decoding["generated_ids"]
    assert all(math.isfinite(step.scores["noise"]) for step in trace.steps)
    assert trace.model["quantization"] == "4bit"
    nf4_logits, _ = prompt_logits(nf4, clip)
    del nf4, trace
    gc.collect()

    full = load(realwidth, "none", "bfloat16")
    full_logits, encoded = prompt_logits(full, clip)
    assert encoded.av_block.shape[-1] == 3584
    del full
    gc.collect()
    agreement = logits_agreement(full_logits, nf4_logits)
    assert nf4_logits.shape == (152064,)
    assert agreement["relative_l2"] < 0.4 and agreement["cosine"] > 0.9, agreement


def test_float16_compute_stays_finite_at_real_width(realwidth, clip):
    """What a T4 computes in (no native bfloat16): NF4 with float16 compute and encoders."""
    import torch

    from testkit.realwidth import load, prompt_logits

    fp16 = load(realwidth, "4bit", "float16")
    assert fp16.model.speech_encoder.conv1.weight.dtype == torch.float16
    logits, encoded = prompt_logits(fp16, clip)
    assert bool(torch.isfinite(encoded.av_block).all()) and bool(torch.isfinite(logits).all())
