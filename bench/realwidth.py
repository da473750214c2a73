"""The released model's widths on the CPU, and what they predict for a GPU.

    python bench/realwidth.py [--clip PATH] [--frames 8] [--tokens 8]

Builds (once, cached) a random checkpoint with the released widths and vocabulary but one LLM
layer, two SigLIP layers (one used) and one Whisper layer (``inference.model.realwidth``), loads
it through the app's loader in NF4 (LLM linears 4-bit, bfloat16 compute; encoders, projectors,
embeddings and lm_head bfloat16, as the loader places them on a GPU), runs a real clip end to end
(steps, scores), compares its logits with the same weights unquantised, checks float16 stays
finite, and prints one block for bench/RESULTS.md.

The GPU prediction (4-bit, a 30 s clip = 60 frames) is not a guess at totals: the weights are the
bytes of the tensors the loader actually produced, per part, with the per-layer bytes of the LLM,
SigLIP and Whisper multiplied out to the released depths (28, 26 used of 27, 32). On top come the
activations a 30 s prefill needs (stated formulas: the KV cache of 28 layers, one layer's MLP
working set, one NF4 weight dequantised for the prefill matmul, the encoders' largest
intermediate), plus CUDA's context (~0.5 GiB, outside torch's count). The CPU's peak RSS is printed
beside it as a check of the weights' share only: CPU and GPU allocators differ.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.realwidth import end_to_end, load, logits_agreement, prompt_logits, short_clip  # noqa: E402

GIB = 2**30
CUDA_CONTEXT_BYTES = int(0.5 * GIB)  # the CUDA context and kernels: outside torch's allocator
TARGET_GIB = 10.0  # the target: a 30 s clip fits 10 GiB


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tensor_bytes(module) -> int:
    """Bytes held by a module: parameters, buffers, and bitsandbytes' 4-bit quantisation states
    (absmax and their own second-level states with double quant), each storage counted once."""
    seen, total = set(), 0

    def add(t) -> None:
        nonlocal total
        if t is None or t.device.type == "meta":
            return
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()

    for tensor in list(module.parameters()) + list(module.buffers()):
        add(tensor)
        state = getattr(tensor, "quant_state", None)
        while state is not None:
            add(state.absmax)
            add(getattr(state, "code", None))
            state = getattr(state, "state2", None)
    return total


def part_bytes(model) -> dict[str, int]:
    """The loaded model's bytes by part; ``*_layer`` is one layer (the first)."""
    llm = model.llm.model
    vision = getattr(model.vision_tower, "vision_model", model.vision_tower)  # transformers 4 vs 5
    whisper = model.speech_encoder
    parts = {
        "llm_layer": tensor_bytes(llm.layers[0]),
        "llm_rest": tensor_bytes(model.llm) - sum(tensor_bytes(layer) for layer in llm.layers),
        "vision_layer": tensor_bytes(vision.encoder.layers[0]),
        "vision_rest": tensor_bytes(vision) - sum(tensor_bytes(layer) for layer in vision.encoder.layers),
        "whisper_layer": tensor_bytes(whisper.layers[0]),
        "whisper_rest": tensor_bytes(whisper) - sum(tensor_bytes(layer) for layer in whisper.layers),
    }
    beside = [
        c for name, c in model.named_children() if name not in ("llm", "vision_tower", "speech_encoder")
    ]
    parts["connectors"] = sum(tensor_bytes(c) for c in beside) + sum(
        p.numel() * p.element_size() for p in model.parameters(recurse=False)
    )
    return parts


def clip_tokens(frames: int, chunks: int) -> int:
    """AV block length: 182 visual tokens per frame, 150 audio tokens per 30 s chunk."""
    return frames * 182 + chunks * 150


def predict_gpu_bytes(parts: dict[str, int], config: dict, prompt_tokens: int = 120) -> dict[str, int]:
    """The released model in 4-bit on a GPU, for a 30 s clip (60 frames, one audio chunk)."""
    weights = (
        parts["llm_rest"]
        + 28 * parts["llm_layer"]
        + parts["vision_rest"]
        + 26 * parts["vision_layer"]
        + parts["whisper_rest"]
        + 32 * parts["whisper_layer"]
        + parts["connectors"]
    )
    tokens = clip_tokens(60, 1) + prompt_tokens
    half = 2  # bytes per bfloat16 / float16 value
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    kv_cache = 28 * 2 * tokens * config["num_key_value_heads"] * head_dim * half
    # one decoder layer's prefill working set: gate, up and their product (L x intermediate each)
    # beside the residual stream, its norm and the attention output (L x hidden each)
    mlp = tokens * (3 * config["intermediate_size"] + 3 * config["hidden_size"]) * half
    dequantised = config["intermediate_size"] * config["hidden_size"] * half  # one NF4 weight as bf16
    # SigLIP on 60 frames at once: 60 x 729 tokens x its MLP width (4304), twice (fc1 out, gelu)
    vision = 60 * 729 * 4304 * half * 2
    activations = kv_cache + max(mlp + dequantised, vision)
    return {
        "weights": weights,
        "kv_cache": kv_cache,
        "activations": activations,
        "cuda_context": CUDA_CONTEXT_BYTES,
        "total": weights + activations + CUDA_CONTEXT_BYTES,
        "tokens": tokens,
    }


def default_clip() -> Path:
    real = REPO.parent / "shared" / "clips" / "nextqa_1.mp4"
    if real.exists():
        return real
    raise SystemExit("no clip: pass --clip (../shared/clips/nextqa_1.mp4 is absent)")


def report(rows: dict, prediction: dict[str, int]) -> str:
    gib = {k: v / GIB for k, v in prediction.items() if k != "tokens"}
    fits = "fits" if gib["total"] <= TARGET_GIB else "does NOT fit"
    lines = [
        "## Real widths on the CPU (random weights; bench/realwidth.py)",
        f"Checkpoint: released widths and vocabulary, {rows['depth']}; clip {rows['clip']} "
        f"({rows['frames']} frames, {rows['av_tokens']} AV tokens); torch {rows['torch']}, CPU.",
        "",
        "| run | load s | generate s | score s | steps | peak RSS GiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in rows["runs"]:
        lines.append(
            f"| {run['name']} | {run['load_s']:.1f} | {run['generate_s']:.1f} | {run['score_s']:.1f} | "
            f"{run['steps']} | {run['peak_rss'] / GIB:.2f} |"
        )
    agreement = rows["agreement"]
    lines += [
        "",
        f"NF4 vs unquantised (both bfloat16 compute), first-token logits: relative L2 error "
        f"{agreement['relative_l2']:.3f}, cosine {agreement['cosine']:.4f}, same top-1: "
        f"{'yes' if agreement['same_top1'] else 'no'}.",
        f"float16 compute (NF4): every logit finite: {'yes' if rows['fp16_finite'] else 'NO'}; "
        f"vs bfloat16 relative L2 {rows['fp16_vs_bf16']:.4f}.",
        "",
        f"Predicted GPU memory, released depth in 4-bit, 30 s clip ({prediction['tokens']} tokens): "
        f"weights {gib['weights']:.2f} GiB + activations {gib['activations']:.2f} GiB "
        f"(KV cache {gib['kv_cache']:.2f}) + CUDA context {gib['cuda_context']:.2f} = "
        f"**{gib['total']:.2f} GiB**: {fits} the {TARGET_GIB:g} GiB target.",
        "Per part (bytes the loader produced): "
        + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in rows["parts"].items()),
    ]
    return "\n".join(lines)


def timed_run(name: str, folders, quantization: str, dtype: str, media, tokens: int) -> tuple[dict, object]:
    started = time.perf_counter()
    loaded = load(folders, quantization, dtype)
    load_s = time.perf_counter() - started
    trace, generate_s, score_s = end_to_end(loaded, media, tokens)
    run = {
        "name": name,
        "load_s": load_s,
        "generate_s": generate_s,
        "score_s": score_s,
        "steps": len(trace.steps),
        "peak_rss": peak_rss_bytes(),
    }
    print(f"realwidth: {run}", file=sys.stderr)
    return run, loaded


def main(argv: list[str] | None = None) -> None:
    import gc

    import torch

    from inference.model.realwidth import WidthRecipe, cached_realwidth

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--frames", type=int, default=8, help="frames sampled from the clip (60 = 30 s)")
    parser.add_argument("--tokens", type=int, default=8, help="max new tokens (random weights never stop)")
    args = parser.parse_args(argv)
    recipe = WidthRecipe()
    folders = cached_realwidth(recipe, log=lambda m: print(m, file=sys.stderr))
    media = short_clip(args.clip or default_clip(), args.frames)

    nf4, loaded = timed_run("NF4, bfloat16 compute", folders, "4bit", "bfloat16", media, args.tokens)
    parts = part_bytes(loaded.model)
    config = loaded.model.llm.config.to_dict()
    nf4_logits, _ = prompt_logits(loaded, media)
    del loaded
    gc.collect()
    fp16, loaded = timed_run("NF4, float16 compute", folders, "4bit", "float16", media, args.tokens)
    fp16_logits, _ = prompt_logits(loaded, media)
    del loaded
    gc.collect()
    full, loaded = timed_run("unquantised, bfloat16", folders, "none", "bfloat16", media, args.tokens)
    full_logits, encoded = prompt_logits(loaded, media)
    rows = {
        "depth": f"{recipe.llm_layers} LLM layer, {recipe.vision_layers - 1} SigLIP layer used, "
        f"{recipe.whisper_layers} Whisper layer",
        "clip": (args.clip or default_clip()).name,
        "frames": media.n_frames,
        "av_tokens": int(encoded.av_block.shape[0]),
        "torch": torch.__version__,
        "runs": [nf4, fp16, full],
        "agreement": logits_agreement(full_logits, nf4_logits),
        "fp16_finite": bool(torch.isfinite(fp16_logits).all()),
        "fp16_vs_bf16": logits_agreement(nf4_logits, fp16_logits)["relative_l2"],
        "parts": parts,
    }
    print(report(rows, predict_gpu_bytes(parts, config)))


if __name__ == "__main__":
    main()
