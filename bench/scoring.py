"""Benchmark: contrastive step scores vs generating the trace, and vs the official per-step method.

    python bench/scoring.py                       # official tiny checkpoint, ../shared nextqa_1.mp4
    python bench/scoring.py --checkpoint DIR --device cuda --quantization 4bit   # on a GPU

What it does, all in one process on the same clip and the same trace:

1. generation: ``run_reasoning`` (encode, prefill, ``steps * tokens_per_step`` greedy tokens,
   the answer pass). A random-weight model never writes ``<end_of_step>``, so the generated ids
   are then cut into ``steps`` equal pieces, which become the trace's steps (same token count
   as a real 10-step trace; the scorer re-tokenizes them the official way with markers);
2. ours: ``score_trace`` with the paper's noise, standalone (re-encodes the clean clip) and
   with the clean ``EncodedMedia`` shared from generation; also with noise,mute,shuffle;
3. official: for every step, the clean and the noisy pass over prompt + previous steps + step,
   each re-encoding the clip (and drawing fresh noise) and making float32 logits over the whole
   sequence, as ``llava_trainer.contrast_probs`` does; plus the same per-step passes with logits
   only at the step's tokens, on the same fixed noisy block as ours (its KLs must equal ours).

Peak memory is the process's peak RSS above the RSS at the start of each phase (Linux
``/proc/self/clear_refs`` resets the peak) on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
Prints a markdown table to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OFFICIAL_TINY = REPO.parent / "shared" / "reference" / "official_tiny"
DEFAULT_CLIP = REPO.parent / "shared" / "clips" / "nextqa_1.mp4"  # 30.4 s: 60 frames, 2 audio chunks


def clock(device: str) -> float:
    """Seconds to time a phase by: on CPU the process's CPU time (the 2-core VM is shared with
    other jobs, whose load makes wall time swing by 2-10x), on CUDA wall time."""
    return time.perf_counter() if device == "cuda" else time.process_time()


class Peak:
    """Time (``clock``) and peak memory of a phase, in MiB above where it started."""

    def __init__(self, device: str) -> None:
        self.device = device

    def __enter__(self) -> Peak:
        gc.collect()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.start = _status_kib("VmRSS") * 1024
        self.t0, self.wall0 = clock(self.device), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _status_kib("VmHWM") * 1024
        self.seconds = clock(self.device) - self.t0
        self.wall = time.perf_counter() - self.wall0
        self.mib = max(peak - self.start, 0) / 2**20


class Measured:
    def __init__(self, seconds: float, mib: float, wall: float) -> None:
        self.seconds, self.mib, self.wall = seconds, mib, wall


def measure(fn, device: str, repeats: int, setup=None) -> Measured:
    """Shortest time (``clock``) and wall time, and largest peak memory, of ``repeats`` runs."""
    times, peaks, walls = [], [], []
    for _ in range(repeats):
        kwargs = setup() if setup else {}
        with Peak(device) as peak:
            fn(**kwargs)
        times.append(peak.seconds)
        peaks.append(peak.mib)
        walls.append(peak.wall)
    return Measured(min(times), max(peaks), min(walls))


def query_len(query) -> int:
    return int(query.position_ids[0, 0]) + 1  # the root sits at prompt_len - 1


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def load(args):
    from inference.model.config import ComponentSources
    from inference.model.loading import LoadSettings, load_model

    if args.checkpoint:
        sources = ComponentSources()
        checkpoint = args.checkpoint
    else:
        stand_ins = OFFICIAL_TINY / "hub_stand_ins"
        checkpoint = str(OFFICIAL_TINY / "checkpoint")
        sources = ComponentSources(
            vision=str(stand_ins / "google" / "siglip-so400m-patch14-384"),
            whisper=str(stand_ins / "whisper-large-v3"),
            qformer=str(stand_ins / "bert-base-uncased"),
        )
    return load_model(
        LoadSettings(
            checkpoint=checkpoint, device=args.device, quantization=args.quantization, sources=sources
        )
    )


def media_for(args):
    from inference.reasoning.perturb import AVTensors

    video = Path(args.video)
    if video.exists():
        from inference.media import load_media

        media = load_media(video)
        return (
            media,
            f"{video.name} ({media.real_time:.1f} s, {media.n_frames} frames, {media.n_chunks} chunk(s))",
        )
    g = torch.Generator().manual_seed(0)  # no shared clips: tensors of a 30 s clip's shape
    media = AVTensors(
        torch.rand(60, 3, 384, 384, generator=g) * 2 - 1, torch.randn(1, 128, 3000, generator=g), 30.0
    )
    return media, "synthetic tensors of a 30 s clip (60 frames, 1 chunk)"


def make_steps(tokenizer, ids: list[int], n_steps: int) -> list[str]:
    size = max(len(ids) // n_steps, 1)
    texts = []
    for k in range(n_steps):
        piece = ids[k * size : (k + 1) * size] if k < n_steps - 1 else ids[k * size :]
        text = tokenizer.decode(piece).replace("<end_of_step>", "").replace("<|im_end|>", "").strip()
        texts.append(text or f"step {k}")
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="default: shared/reference/official_tiny/checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quantization", default="none")
    parser.add_argument("--video", default=str(DEFAULT_CLIP))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens-per-step", type=int, default=30, help="generated tokens per step")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per timing of generation and ours (shortest kept)"
    )
    parser.add_argument("--skip-official", action="store_true", help="skip the slow official baseline")
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args()

    from inference.reasoning.generate import DecodingSettings, ReasoningRequest, run_reasoning
    from inference.reasoning.perturb import get_perturbation, perturb
    from inference.reasoning.scoring import (
        as_av_tensors,
        official_step_kls,
        perturbed_block,
        score_trace,
        step_kls,
        trace_prompt_ids,
    )

    torch.manual_seed(0)
    loaded = load(args)
    model, tokenizer = loaded.model, loaded.tokenizer
    media, media_desc = media_for(args)
    clean = as_av_tensors(media)
    request = ReasoningRequest(
        question="What is happening in the video?",
        options=["cooking", "running", "swimming"],
        decoding=DecodingSettings(max_new_tokens=args.steps * args.tokens_per_step),
    )
    run_reasoning(loaded, media, request)  # warm-up (first calls allocate)

    trace = None

    def generate():
        nonlocal trace
        trace = run_reasoning(loaded, media, request)

    gen = measure(generate, args.device, args.repeats)
    generated = trace.decoding["generated_ids"]
    texts = make_steps(tokenizer, generated, args.steps)
    from studio_trace import Step

    trace.steps = [Step(index=k, text=t) for k, t in enumerate(texts)]
    n_step_tokens = sum(len(tokenizer(t).input_ids) for t in texts)
    encoded = model.encode_media(clean.pixel_values, clean.spectrogram, clean.real_time)
    prompt_ids = trace_prompt_ids(tokenizer, trace)
    av_len = encoded.av_block.shape[0]

    figures = {
        "device": args.device,
        "model": loaded.model_id,
        "clip": media_desc,
        "repeats": args.repeats,
        "prompt_tokens": len(prompt_ids) - 1 + av_len,
        "steps": len(texts),
        "step_tokens": n_step_tokens,
        "generated_tokens": len(generated),
        "clock": "wall" if args.device == "cuda" else "process CPU time",
        "generation_s": gen.seconds,
        "generation_wall_s": gen.wall,
        "generation_timings": {k: v for k, v in trace.timings.items() if k != "score_s"},
        "generation_peak_mib": gen.mib,
    }
    from inference.reasoning.generate import Decoder

    def with_generation_cache():
        decoder = Decoder(model)  # the prompt cache generation already holds: built, not timed
        decoder.feed_embeds(model.embed_prompt(prompt_ids, [encoded.av_block]))
        return {"clean_cache": decoder.cache}

    score_trace(loaded, media, trace)  # warm-up
    variants = {
        "ours": ((), {}, None),
        "ours_shared": ((), {"encoded": encoded}, None),
        "ours_cache": ((), {"encoded": encoded}, with_generation_cache),
        "ours_three": ((), {"encoded": encoded, "perturbations": ("noise", "mute", "shuffle")}, None),
    }
    for key, (_, kwargs, setup) in variants.items():
        result = measure(
            lambda kwargs=kwargs, **extra: score_trace(loaded, media, trace, seed=0, **kwargs, **extra),
            args.device,
            args.repeats,
            setup,
        )
        figures[f"{key}_s"], figures[f"{key}_peak_mib"] = result.seconds, result.mib
        figures[f"{key}_wall_s"] = result.wall

    # where our time goes (one noise perturbation, clean encoding shared)
    from inference.reasoning.scoring import build_tree_query, kl_rows, plan_steps, prefill, query_hidden_rows

    plan = plan_steps(tokenizer, texts)
    query = build_tree_query(plan, len(prompt_ids) - 1 + av_len)
    parts = {}
    t0 = clock(args.device)
    noisy = perturb("noise", clean, 0)
    t1 = clock(args.device)
    model.encode_frames(noisy.pixel_values)
    t2 = clock(args.device)
    noisy_av = perturbed_block(
        model, encoded.av_block, encoded.layout, noisy, get_perturbation("noise").changes
    )
    t3 = clock(args.device)
    noisy_cache, root = prefill(model, prompt_ids, noisy_av)
    t4 = clock(args.device)
    rows = query_hidden_rows(model, noisy_cache, root, query, query_len(query))
    t5 = clock(args.device)
    kl_rows(model.llm, rows, rows)
    t6 = clock(args.device)
    parts["draw noise"] = t1 - t0
    parts["encode noisy frames"] = t2 - t1
    parts["prefill (per input)"] = t4 - t3
    parts["tree query (per input)"] = t5 - t4
    parts["logits + KL"] = t6 - t5
    figures["breakdown_s"] = parts
    del noisy_av, noisy_cache

    noisy_block = perturbed_block(
        model, encoded.av_block, encoded.layout, perturb("noise", clean, 0), get_perturbation("noise").changes
    )
    ours_kls = step_kls(model, tokenizer, prompt_ids, texts, encoded.av_block, {"noise": noisy_block})[
        "noise"
    ]
    if not args.skip_official:
        with Peak(args.device) as per_step:
            reference = official_step_kls(model, tokenizer, prompt_ids, texts, encoded.av_block, noisy_block)
        figures["max_abs_kl_diff_vs_per_step"] = max(
            abs(a - b)
            for xs, ys in zip(ours_kls, reference, strict=True)
            for a, b in zip(xs, ys, strict=True)
        )
        figures.update(per_step_steplogits_s=per_step.seconds, per_step_steplogits_peak_mib=per_step.mib)
        figures["per_step_steplogits_wall_s"] = per_step.wall
        del noisy_block
        generator = torch.Generator().manual_seed(0)

        def clean_block():
            return model.encode_media(clean.pixel_values, clean.spectrogram, clean.real_time).av_block

        def fresh_noisy_block():  # official: fresh randn and a full re-encode on every call
            noisy = get_perturbation("noise").apply(clean, generator)
            return model.encode_media(noisy.pixel_values, noisy.spectrogram, noisy.real_time).av_block

        with Peak(args.device) as official:
            official_step_kls(
                model, tokenizer, prompt_ids, texts, clean_block, fresh_noisy_block, full_logits=True
            )
        figures.update(
            official_s=official.seconds, official_peak_mib=official.mib, official_wall_s=official.wall
        )

    print_table(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


def print_table(f: dict) -> None:
    gen = f["generation_s"]
    print(f"device {f['device']}, model {f['model']}, clip {f['clip']}; times are {f['clock']}")
    timings = ", ".join(f"{k} {v:.2f}" for k, v in f["generation_timings"].items())
    print(
        f"prompt {f['prompt_tokens']} tokens; trace {f['steps']} steps, {f['step_tokens']} step tokens "
        f"({f['generated_tokens']} generated); generation {gen:.2f} s ({f['generation_wall_s']:.2f} s wall; "
        f"last run, wall: {timings})"
    )
    print()
    print(
        "| method | time (s) | wall (s) | x generation time | speed-up vs official | peak MiB above start |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    official = f.get("official_s")
    rows = [
        ("ours, noise (encodes the clean clip again)", "ours"),
        ("ours, noise, clean encoding shared with generation", "ours_shared"),
        ("ours, noise, clean encoding + prompt cache shared with generation", "ours_cache"),
        ("ours, noise + mute + shuffle, clean encoding shared", "ours_three"),
    ]
    if official is not None:
        rows += [
            ("per-step passes, logits at the step's tokens only", "per_step_steplogits"),
            ("official per-step (re-encode + full float32 logits per pass)", "official"),
        ]
    for name, key in rows:
        seconds = f[f"{key}_s"]
        speedup = f"{official / seconds:.1f}x" if official else "-"
        print(
            f"| {name} | {seconds:.2f} | {f[f'{key}_wall_s']:.2f} | {seconds / gen:.3f} | {speedup} "
            f"| {f[f'{key}_peak_mib']:.0f} |"
        )
    print("\nwhere our time goes (s): " + ", ".join(f"{k} {v:.2f}" for k, v in f["breakdown_s"].items()))
    if "max_abs_kl_diff_vs_per_step" in f:
        print(f"max |KL ours - KL per-step| over all step tokens: {f['max_abs_kl_diff_vs_per_step']:.2e}")


if __name__ == "__main__":
    raise SystemExit(main())
