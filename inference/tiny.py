"""A tiny video-SALMONN-o1 checkpoint, built offline, in exactly the released layout.

``python -m inference tiny-checkpoint OUT_DIR`` writes ``config.json`` (model_type
``videosalmonno1``), ``model.safetensors`` (bf16, the official key names), ``generation_config.json``
and the real Qwen2 tokenizer files. ``inference.model.loading.load_model`` reads it by the same code path
as the released checkpoint; the only extras are the encoder configs embedded in config.json
(``vision_config`` / ``speech_config`` / ``qformer_config``), which the released model takes
from the hub instead, and ``"studio_tiny": true`` so the app can warn that its output is
meaningless.

Random weights never emit ``<end_of_step>``, so the LLM gets a brief seeded training (about
25 CPU seconds on one core; bench/first_run.py) on template reasoning in the paper's format: a few steps, each
ending with ``<end_of_step>\\n``, then ``<|im_end|>``; and the second pass's "The answer is X."
Its attention is limited to a 256-token sliding window (Qwen2's own ``use_sliding_window``):
it trains on short audio-visual blocks and then behaves the same on a 60-frame clip, whose
11k-token block it would otherwise never have seen. Encoders and connectors stay random.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

TINY_FORMAT_VERSION = 3  # bump when the recipe changes, so cached builds are rebuilt


@dataclass(frozen=True)
class TinyRecipe:
    """Dimensions all differ, so a wiring mistake is a shape error, not a silent bug."""

    llm_hidden: int = 64
    llm_layers: int = 2
    llm_heads: int = 4
    llm_kv_heads: int = 2  # GQA like Qwen2-7B
    llm_intermediate: int = 128
    sliding_window: int = 256  # see module docstring
    vision_hidden: int = 48
    vision_layers: int = 3  # one is dropped on load, as the official tower does
    vision_heads: int = 3
    whisper_width: int = 40
    qformer_hidden: int = 24
    # ~0.1 CPU s each. 200 steps at 2e-2 write the steps and answer the SynthDec prompt with
    # YES/NO on the example and shared clips; 100-150 steps did not (letters for YES/NO).
    train_steps: int = 200
    learning_rate: float = 2e-2
    batch_size: int = 8
    negatives: int = 4096  # random output rows pushed down per step (sampled softmax)
    seed: int = 0


def tiny_configs(recipe: TinyRecipe) -> dict:
    from inference.model.tokenizer import VOCAB_SIZE

    vision = {
        "hidden_size": recipe.vision_hidden,
        "intermediate_size": recipe.vision_hidden * 2,
        "num_hidden_layers": recipe.vision_layers,
        "num_attention_heads": recipe.vision_heads,
        "num_channels": 3,
        "image_size": 384,
        "patch_size": 14,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
    }
    speech = {
        "d_model": recipe.whisper_width,
        "encoder_layers": 2,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": recipe.whisper_width * 2,
        "decoder_layers": 1,
        "decoder_attention_heads": 2,
        "decoder_ffn_dim": recipe.whisper_width * 2,
        "num_mel_bins": 128,
        "max_source_positions": 1500,
        "activation_function": "gelu",
        "vocab_size": 128,
        # token ids inside the (unused) decoder's tiny vocabulary, as the official stand-in has
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 1,
    }
    qformer = {
        "hidden_size": recipe.qformer_hidden,
        "num_attention_heads": 2,
        "intermediate_size": recipe.qformer_hidden * 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
    }
    config = {
        "architectures": ["videoSALMONNo1ForCausalLM"],
        "model_type": "videosalmonno1",
        "studio_tiny": True,
        "studio_tiny_format": TINY_FORMAT_VERSION,
        "vocab_size": VOCAB_SIZE,
        "hidden_size": recipe.llm_hidden,
        "intermediate_size": recipe.llm_intermediate,
        "num_hidden_layers": recipe.llm_layers,
        "num_attention_heads": recipe.llm_heads,
        "num_key_value_heads": recipe.llm_kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "use_sliding_window": True,
        "sliding_window": recipe.sliding_window,
        "max_window_layers": 0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "torch_dtype": "bfloat16",
        # connector settings as the official config.json spells them
        "mm_hidden_size": recipe.vision_hidden,
        "mm_projector_type": "mlp2x_gelu",
        "mm_newline_position": "grid",
        "mm_spatial_pool_mode": "max",
        "mm_spatial_pool_stride": 2,
        "mm_pooling_position": "before",
        "mm_patch_merge_type": "spatial_unpad",
        "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "add_time_token": True,
        "vision_config": vision,
        "speech_config": speech,
        "qformer_config": qformer,
    }
    return config


# ---- template reasoning in the paper's format ---------------------------------------------
SUBJECTS = ["a man", "a woman", "a child", "a dog", "a red circle", "a blue square", "the speaker", "a car"]
ACTIONS = [
    "walks across the room",
    "moves to the left",
    "talks to the audience",
    "runs quickly",
    "stands still",
    "turns around",
    "jumps over a box",
    "holds a cup",
]
SOUNDS = ["a steady tone", "people laughing", "a voice speaking", "music playing", "a short beep", "silence"]
PLACES = ["on a stage", "in a kitchen", "outdoors", "in front of a wall", "on a street"]


def template_reasoning(rng: random.Random, n_options: int) -> tuple[list[str], str]:
    """(steps, answer letter or YES/NO) in the paper's style. The order of the steps is fixed
    (what is seen, what happens, what is heard, the conclusion) and only the slots vary, so a
    two-layer model learns it in a few dozen updates and greedy decoding follows it."""
    subject = rng.choice(SUBJECTS)
    steps = [
        f"The video shows {subject} {rng.choice(PLACES)}.",
        f"In the video, {rng.choice(SUBJECTS)} {rng.choice(ACTIONS)}.",
        f"The audio contains {rng.choice(SOUNDS)}.",
    ]
    answer = chr(ord("A") + rng.randrange(n_options)) if n_options else rng.choice(["YES", "NO"])
    steps.append(f"Therefore, the answer is {answer}.")
    return steps, answer


def training_examples(tokenizer, rng: random.Random, n: int):
    """(prompt ids with the AV placeholder, target ids) pairs for both decoding passes."""
    from inference.model.prompts import FOLLOWUP_TEXT, build_prompt

    examples = []
    for _ in range(n):
        kind = rng.choice(["reasoning", "reasoning", "reasoning", "synthdec"])
        n_options = rng.randint(2, 5) if kind == "reasoning" else 0
        options = [f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)}" for _ in range(n_options)]
        question = f"What does {rng.choice(SUBJECTS)} do {rng.choice(PLACES)}?" if kind == "reasoning" else ""
        prompt = build_prompt(tokenizer, kind, question, options or None)
        steps, answer = template_reasoning(rng, n_options)
        reasoning = "".join(f"{s}<end_of_step>\n" for s in steps[:-1]) + steps[-1] + "<|im_end|>"
        reasoning_ids = list(tokenizer(reasoning).input_ids)
        examples.append((list(prompt.ids), reasoning_ids))
        # the official second pass: prompt + reasoning + follow-up turn -> "The answer is X."
        followup = list(prompt.ids) + reasoning_ids + list(tokenizer(FOLLOWUP_TEXT).input_ids)
        examples.append((followup, list(tokenizer(f"The answer is {answer}.<|im_end|>").input_ids)))
    return examples


def synthetic_frames(rng, n_frames: int):
    """(F,3,384,384) frames in [-1,1] of one of several kinds (noise, flat colour, gradient,
    boxes on a plain background), so that the trained text does not hinge on one look."""
    import torch

    kind = rng.choice(["noise", "flat", "gradient", "boxes"])
    if kind == "noise":
        return torch.rand(n_frames, 3, 384, 384) * 2 - 1
    frames = torch.ones(n_frames, 3, 384, 384) * torch.tensor([rng.uniform(-1, 1) for _ in range(3)]).view(
        1, 3, 1, 1
    )
    if kind == "gradient":
        frames = frames * torch.linspace(-1, 1, 384).view(1, 1, 1, 384)
    if kind == "boxes":
        for f in range(n_frames):
            y, x, size = rng.randrange(300), rng.randrange(300), rng.randrange(20, 84)
            frames[f, :, y : y + size, x : x + size] = torch.tensor(
                [rng.uniform(-1, 1) for _ in range(3)]
            ).view(3, 1, 1)
    return frames


def synthetic_spectrogram(rng):
    """(1,128,3000) log-mel of silence, a tone or noise, made by the media pipeline's own
    feature extractor so it looks like what the model will be fed."""
    import numpy as np

    from inference.media import log_mel

    t = np.arange(16000 * 30, dtype=np.float32) / 16000
    kind = rng.choice(["silence", "tone", "noise"])
    if kind == "silence":
        wave = np.zeros_like(t)
    elif kind == "tone":
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t).astype(np.float32)
    else:
        wave = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 0.1, t.shape).astype(np.float32)
    return log_mel(wave)[:1]


def context_blocks(model, recipe: TinyRecipe, rng: random.Random) -> list:
    """The tails of real AV blocks made by the (random) encoders from synthetic clips.

    With attention limited to ``sliding_window`` tokens, text never sees further back than
    that, so the last window-and-a-bit of each block is all the context training needs, and
    it has the structure of a real clip's block (frames, then each frame's audio share).
    """
    import torch

    blocks = []
    with torch.no_grad():
        for n_frames, seconds in ((12, 6.0), (16, 8.0), (30, 15.0), (60, 30.0)) * 3:
            pixels = synthetic_frames(rng, min(n_frames, 4))
            pixels = pixels.repeat((n_frames + 3) // 4, 1, 1, 1)[:n_frames]
            block = model.encode_media(pixels, synthetic_spectrogram(rng), seconds).av_block
            blocks.append(block[-(recipe.sliding_window + 64) :])
    return blocks


def train_llm(model, tokenizer, recipe: TinyRecipe, log=print, progress=None) -> None:
    """Teach the LLM the step format (see module docstring); padded batches, loss on targets.
    ``progress(steps_done)`` is called after every update."""
    import torch

    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    examples = training_examples(tokenizer, rng, 400)
    blocks = context_blocks(model, recipe, rng)
    llm = model.llm
    llm.train()
    # Random input embeddings serve a template as well as trained ones; freezing the 151k-row
    # table saves most of the optimizer's work.
    llm.get_input_embeddings().weight.requires_grad_(False)
    # Sampled softmax: the template's own tokens plus fresh random negatives each step. Only the
    # template's few hundred output rows are trained (a small parameter written back at the end):
    # the hidden state learns to point away from the random negatives, and the optimizer never
    # touches the other 151k rows, which keep their small random logits, far below the trained
    # ones. (Training the whole table doubled the cost of a step for nothing.)
    head = llm.lm_head.weight
    head.requires_grad_(False)
    template_vocab = torch.tensor(sorted({t for _, target in examples for t in target}))
    template_rows = torch.nn.Parameter(head[template_vocab].clone())
    vocab_size = head.shape[0]
    trained = [p for p in llm.parameters() if p.requires_grad] + [template_rows]
    optimizer = torch.optim.Adam(trained, lr=recipe.learning_rate)
    # linear decay to zero: the last updates settle the greedy path instead of shaking it
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0 - i / recipe.train_steps)
    t0 = time.perf_counter()
    for step in range(recipe.train_steps):
        batch = rng.sample(examples, recipe.batch_size)
        rows, targets = [], []
        for prompt_ids, target_ids in batch:
            block = blocks[rng.randrange(len(blocks))]
            rows.append(model.embed_prompt(prompt_ids + target_ids, [block])[0])
            targets.append(target_ids)
        length = max(r.shape[0] for r in rows)
        embeds = torch.zeros(len(rows), length, rows[0].shape[-1])
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            embeds[i, : r.shape[0]], mask[i, : r.shape[0]] = r, 1
        hidden = llm.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        picked, labels = [], []
        for i, (r, t) in enumerate(zip(rows, targets, strict=True)):
            end = r.shape[0]  # positions end-len(t)-1 .. end-2 predict the targets
            picked.append(hidden[i, end - len(t) - 1 : end - 1])
            labels.extend(t)
        negatives = torch.randint(0, vocab_size, (recipe.negatives,))
        subset = torch.unique(torch.cat([template_vocab, negatives]))
        weight = head[subset].index_put((torch.searchsorted(subset, template_vocab),), template_rows)
        logits = torch.cat(picked) @ weight.T
        remapped = torch.searchsorted(subset, torch.tensor(labels))
        loss = torch.nn.functional.cross_entropy(logits, remapped)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1)
        if step % 20 == 0 or step == recipe.train_steps - 1:
            log(f"tiny-checkpoint: step {step:4d} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)")
    with torch.no_grad():
        head[template_vocab] = template_rows
    llm.eval()


# What each part of a build costs, in CPU seconds on one core (bench/first_run.py prints the
# real figures), so that a build's progress moves with its work rather than with its phases.
PREPARE_COST_S = 4.0  # the tokenizer, the random model, the synthetic clips' AV blocks
STEP_COST_S = 0.1  # one training step
SAVE_COST_S = 1.0  # bf16 weights and tokenizer files


def build_cost_s(recipe: TinyRecipe) -> float:
    """The CPU seconds a build of ``recipe`` takes on one idle core, roughly."""
    return PREPARE_COST_S + recipe.train_steps * STEP_COST_S + SAVE_COST_S


def build_tiny_checkpoint(
    out_dir: str | Path, recipe: TinyRecipe = TinyRecipe(), log=print, progress=None
) -> Path:
    """Write the tiny checkpoint into ``out_dir`` (created) and return it. ``progress(fraction,
    message)``, when given, hears how far the build is (0 to 1, by the costs above)."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2ForCausalLM

    from inference.model.loading import qwen2_config
    from inference.model.modeling import VideoSalmonnO1, port_to_official_key
    from inference.model.tokenizer import build_qwen2_tokenizer, save_qwen2_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    config = tiny_configs(recipe)
    llm = Qwen2ForCausalLM(qwen2_config(config, "sdpa"))
    model = VideoSalmonnO1(
        llm=llm,
        vision_config=config["vision_config"],
        whisper_config=config["speech_config"],
        qformer_config=config["qformer_config"],
        mm_hidden_size=config["mm_hidden_size"],
        hidden_size=config["hidden_size"],
    )
    with torch.no_grad():  # the official init of the newline: randn / sqrt(hidden)
        model.image_newline.copy_(torch.randn(config["hidden_size"]) / config["hidden_size"] ** 0.5)
        model.speech_query_tokens.normal_(0.0, 0.02)
    model.eval()
    report = progress or (lambda fraction, message: None)
    total = build_cost_s(recipe)
    report(0.0, "preparing")
    tokenizer = build_qwen2_tokenizer()

    def step_done(done: int) -> None:
        fraction = (PREPARE_COST_S + done * STEP_COST_S) / total
        report(fraction, f"training step {done} of {recipe.train_steps}")

    train_llm(model, tokenizer, recipe, log=log, progress=step_done)
    report((total - SAVE_COST_S) / total, "saving")

    state = {}
    for key, tensor in model.state_dict().items():
        state[port_to_official_key(key)] = tensor.detach().to(torch.bfloat16).contiguous()
    max_positions = config["qformer_config"]["max_position_embeddings"]
    state["speech_Qformer.bert.embeddings.position_ids"] = torch.arange(max_positions).unsqueeze(0)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"bos_token_id": 151643, "eos_token_id": 151645, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    save_qwen2_tokenizer(out)
    report(1.0, "built")
    return out


def cache_root() -> Path:
    """Where built artefacts are kept between runs (``STUDIO_CACHE`` overrides)."""
    root = os.environ.get("STUDIO_CACHE") or Path.home() / ".cache" / "video-salmonn-o1-studio"
    return Path(root)


def tiny_checkpoint_path() -> Path:
    """Where the current recipe's build is cached (it may not exist yet)."""
    return cache_root() / f"tiny-v{TINY_FORMAT_VERSION}"


def default_tiny_checkpoint(log=print, progress=None) -> Path:
    """The cached tiny checkpoint, built on first use (``progress`` as in build_tiny_checkpoint).
    A build goes to a temporary folder and is renamed into place, so a crash never leaves a
    half-written checkpoint behind."""
    target = tiny_checkpoint_path()
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"{target.name}.building-{os.getpid()}"
    build_tiny_checkpoint(staging, log=log, progress=progress)
    try:
        staging.rename(target)
    except OSError:  # another process finished first: keep theirs
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder to write the checkpoint into")
    parser.add_argument("--steps", type=int, default=TinyRecipe.train_steps, help="training steps")
    parser.add_argument("--seed", type=int, default=TinyRecipe.seed)


def run(args: argparse.Namespace) -> int:
    import sys

    recipe = TinyRecipe(train_steps=args.steps, seed=args.seed)
    out = build_tiny_checkpoint(args.out_dir, recipe, log=lambda m: print(m, file=sys.stderr))
    print(out)
    return 0
