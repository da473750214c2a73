"""Scoring fixtures: the official tiny checkpoint (golden contrast scores) and its clip tensors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

REAL_TIME = 6.006  # reference.json real_time: 180 frames / (30000/1001) fps
GOLDEN_QUESTION = "What is happening in the video?"
GOLDEN_OPTIONS = ["cooking", "running", "swimming"]
GOLDEN_STEPS = ["The man runs.", "He falls.", "The answer is B."]


@pytest.fixture(scope="session")
def official_loaded(official_tiny):
    """The official tiny checkpoint (float32, CPU), with its hub stand-ins as encoder configs."""
    from inference.model.config import ComponentSources
    from inference.model.loading import LoadSettings, load_model

    stand_ins = official_tiny / "hub_stand_ins"
    return load_model(
        LoadSettings(
            checkpoint=str(official_tiny / "checkpoint"),
            device="cpu",
            quantization="none",
            sources=ComponentSources(
                vision=str(stand_ins / "google" / "siglip-so400m-patch14-384"),
                whisper=str(stand_ins / "whisper-large-v3"),
                qformer=str(stand_ins / "bert-base-uncased"),
            ),
        )
    )


@pytest.fixture(scope="session")
def reference(official_tiny):
    return json.loads((official_tiny / "reference" / "reference.json").read_text())


@pytest.fixture(scope="session")
def golden_media(official_tiny):
    """(clean AVTensors, the official FIXED noisy video as AVTensors)."""
    from inference.reasoning.perturb import AVTensors

    ref = official_tiny / "reference"
    pixels = torch.from_numpy(np.load(ref / "pixel_values.npz")["pixel_values"])
    bits = np.load(ref / "noisy_pixel_values_bf16bits.npz")["bits"]
    noisy = torch.from_numpy((bits.astype(np.uint32) << 16).view(np.float32))
    spectrogram = torch.from_numpy(np.load(ref / "spectrogram.npy"))
    return AVTensors(pixels, spectrogram, REAL_TIME), AVTensors(noisy, spectrogram, REAL_TIME)


@pytest.fixture(scope="session")
def golden_encoded(official_loaded, golden_media):
    clean, _ = golden_media
    return official_loaded.model.encode_media(clean.pixel_values, clean.spectrogram, clean.real_time)


@pytest.fixture(scope="session")
def golden_prompt_ids(official_tiny):
    return np.load(official_tiny / "reference" / "prompt_input_ids.npy")[0].tolist()


@pytest.fixture(scope="session")
def make_trace():
    """``make_trace(step_texts)`` -> a Trace on the golden question, options and reference "B"."""
    from studio_trace import ClipInfo, Step, Trace

    def make(steps, question=GOLDEN_QUESTION, options=GOLDEN_OPTIONS, reference_answer="B"):
        return Trace(
            question=question,
            options=list(options) if options else None,
            clip=ClipInfo(sha256="golden"),
            reference_answer=reference_answer,
            steps=[Step(index=i, text=t) for i, t in enumerate(steps)],
        )

    return make


# A scripted model: the official tiny LLM turned into a bigram table, so that sampling is forced
# (or a fair coin where the script says so) whatever the clip. Each decoder layer is made the
# identity (o_proj and down_proj zeroed: attention and MLP add nothing to the residual), so the
# last hidden state is RMSNorm(embedding of the last token); token i of the script embeds as the
# one-hot e_i and lm_head row b gets 10 at column i for each successor b of token i (logit
# ~57 against 0 for every other token).
SCRIPT = {
    "\n": ["The"],  # the prompt and the follow-up turn both end with "<|im_start|>assistant\n"
    "The": [" answer"],
    " answer": [" is"],
    " is": [" B", " C"],  # a fair coin between the two answers
    " B": ["."],
    " C": ["."],
    ".": ["<|im_end|>"],
    ">\n": ["He"],  # after a step's marker: a new step "He jumps.<end_of_step>\n"
    "He": [" jumps"],
    " jumps": [".<"],
    ".<": ["end"],
    "end": ["_of"],
    "_of": ["_step"],
    "_step": [">\n"],
}


def scripted_copy(loaded, script: dict[str, list[str]]):
    """A copy of ``loaded`` whose LLM follows ``script`` (token text -> successor texts)."""
    import copy

    tokenizer = loaded.tokenizer

    def tid(text: str) -> int:
        ids = tokenizer(text).input_ids
        assert len(ids) == 1, (text, ids)
        return ids[0]

    model = copy.deepcopy(loaded.model)
    llm = model.llm
    with torch.no_grad():
        for layer in llm.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        llm.model.norm.weight.fill_(1.0)
        llm.model.embed_tokens.weight.zero_()
        llm.lm_head.weight.zero_()
        for column, (text, successors) in enumerate(script.items()):
            llm.model.embed_tokens.weight[tid(text), column] = 1.0
            for successor in successors:
                llm.lm_head.weight[tid(successor), column] = 10.0
    twin = copy.copy(loaded)
    twin.model = model
    return twin


@pytest.fixture(scope="session")
def scripted_loaded(official_loaded):
    return scripted_copy(official_loaded, SCRIPT)


@pytest.fixture(scope="session")
def forced_b_loaded(official_loaded):
    """The script with the coin removed: every answer is "The answer is B."."""
    return scripted_copy(official_loaded, {**SCRIPT, " is": [" B"]})
