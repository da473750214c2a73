"""Everything a GPU should show, in one command and one block for bench/RESULTS.md.

    python bench/gpu.py                      # on a CUDA machine: the released sizes, random weights
    python bench/gpu.py --tiny --cpu         # the same code path on the tiny model (CI runs this)

On CUDA (target: under 8 minutes, nothing downloaded): builds the full-size model with random
weights directly on the GPU (``real_size_model``: Qwen2-7B in NF4, SigLIP so400m and Whisper
large-v3 encoders in the card's dtype: bfloat16 from compute capability 8.0, float16 below), then on a 30 s clip (``../shared/clips/nextqa_1.mp4``, else a generated one)
measures: peak GPU memory; time to the first streamed step (random weights never write
``<end_of_step>``, so the first step is the whole ``--tokens`` reasoning: this is an upper bound;
time to the first token is printed beside it); decode tokens/s; scoring time (one noise
perturbation) as a fraction of the generation time; batch clips per minute (``--batch-clips``
clips, each decoded, reasoned and scored in turn, model loaded once); pDPO pairs/s and peak
memory (``bench/train.py``'s run in its own process: LoRA on the NF4 LLM, a 30 s AV block).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MINUTES_BUDGET = 8


def load_model_for(args) -> object:
    """(LoadedModel, description) for the run: the tiny checkpoint, or the random real-size model."""
    if args.tiny:
        from inference.model.loading import LoadSettings, load_model
        from inference.tiny import default_tiny_checkpoint

        device = "cpu" if args.cpu else "cuda"
        loaded = load_model(LoadSettings(checkpoint=str(default_tiny_checkpoint()), device=device))
        return loaded, f"tiny checkpoint, {device}, {loaded.quantization}"
    from inference.model.loading import LoadedModel, choose_dtype
    from inference.model.tokenizer import build_qwen2_tokenizer

    dtype = choose_dtype(args.compute_dtype, "cuda")
    model = real_size_model(dtype)
    loaded = LoadedModel(
        model, build_qwen2_tokenizer(), Path("."), "random-real-size", None, "4bit", "cuda", {}
    )
    return loaded, f"released sizes, random weights, LLM NF4 + encoders {str(dtype).removeprefix('torch.')}"


def real_size_model(dtype):
    """The released sizes with random weights, built on the GPU: the LLM one layer at a time with
    every projection quantised to NF4 as it lands (``bench/train.py``), the encoders and
    connectors initialised on the GPU in ``dtype``. Nothing is downloaded."""
    import torch

    from bench.train import QWEN2_7B, random_nf4_llm
    from inference.model.config import BERT_BASE_UNCASED, SIGLIP_SO400M, WHISPER_LARGE_V3
    from inference.model.modeling import VideoSalmonnO1

    torch.manual_seed(0)
    llm = random_nf4_llm(QWEN2_7B, "cuda", dtype)
    with torch.device("cuda"):
        model = VideoSalmonnO1(
            torch.nn.Identity(), SIGLIP_SO400M, WHISPER_LARGE_V3, BERT_BASE_UNCASED, 1152, 3584
        )
    model = model.to(dtype)
    model.segment_table = model.segment_table.float()  # float32, as the loader keeps it
    model.llm = llm
    return model.eval()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def analyse(loaded, media, tokens: int) -> dict[str, float]:
    """One clip as the app does it: stream the reasoning, then score it. Wall times in seconds."""
    from inference.reasoning.generate import (
        DecodingSettings,
        DoneEvent,
        ReasoningRequest,
        StepEvent,
        stream_reasoning,
    )
    from inference.reasoning.scoring import score_trace

    request = ReasoningRequest(
        question="What happens in the video?",
        options=["Someone talks", "Someone runs", "Nothing happens"],
        decoding=DecodingSettings(max_new_tokens=tokens, answer_max_new_tokens=8),
    )
    started = time.perf_counter()
    first_step = trace = None
    for event in stream_reasoning(loaded, media, request):
        if isinstance(event, StepEvent) and first_step is None:
            sync(loaded.device)
            first_step = time.perf_counter() - started
        if isinstance(event, DoneEvent):
            trace = event.trace
    sync(loaded.device)
    reasoning_s = time.perf_counter() - started
    started = time.perf_counter()
    score_trace(loaded, media, trace, perturbations=("noise",))
    sync(loaded.device)
    score_s = time.perf_counter() - started
    timings = trace.timings
    generated = len(trace.decoding["generated_ids"])
    return {
        "first_token_s": timings["encode_s"] + timings["prefill_s"],
        "first_step_s": first_step if first_step is not None else float("nan"),
        "decode_tok_per_s": generated / timings["generate_s"] if timings["generate_s"] else float("nan"),
        "generated": generated,
        "reasoning_s": reasoning_s,
        "score_s": score_s,
        "score_fraction": score_s / reasoning_s,
    }


def batch_rate(loaded, clip: Path, n: int, tokens: int) -> float:
    """Clips per minute: each clip decoded from the file, reasoned about and scored, in turn."""
    from inference.media import load_media

    started = time.perf_counter()
    for _ in range(n):
        analyse(loaded, load_media(clip), tokens)
    return 60 * n / (time.perf_counter() - started)


def pdpo(args, tmp: Path, clip: Path) -> dict:
    """bench/train.py's measured run, in a process of its own (its own peak memory)."""
    from bench.train import spawn

    common = {"grouped": True, "batch_pairs": args.pairs, "steps": args.pair_steps, "tmp": str(tmp)}
    if args.tiny:
        spec = {**common, "model": "tiny", "quantization": "none", "device": "cpu", "label": "tiny"}
        spec["clip"] = str(clip)
    else:
        spec = {**common, "model": "real", "quantization": "4bit", "device": "cuda", "label": "real"}
        spec["av_tokens"] = 60 * 182 + 150  # a 30 s clip's AV block
    return spawn(spec)


def report(what: str, machine: str, figures: dict, clips_per_min: float, train: dict, total_s: float) -> str:
    train_cell = (
        f"{train['pairs_per_s']:.2f} pairs/s, peak {train['peak_mb'] / 1024:.2f} GiB"
        if "error" not in train
        else f"error: {train['error']}"
    )
    rows = [
        ("peak memory (inference)", f"{figures['peak_gib']:.2f} GiB ({figures['peak_kind']})"),
        ("time to first token (encode + prefill)", f"{figures['first_token_s']:.2f} s"),
        ("time to first streamed step", f"{figures['first_step_s']:.2f} s ({figures['generated']} tokens)"),
        ("decode", f"{figures['decode_tok_per_s']:.1f} tokens/s"),
        ("scoring / generation time", f"{figures['score_fraction']:.2f} ({figures['score_s']:.2f} s)"),
        ("batch", f"{clips_per_min:.2f} clips/min"),
        ("pDPO (LoRA on the LLM)", train_cell),
    ]
    lines = [
        f"## bench/gpu.py -- {machine}",
        f"Model: {what}. Clip: {figures['clip']} ({figures['frames']} frames). Whole run {total_s / 60:.1f} min.",
        "",
        "| measure | value |",
        "| --- | --- |",
        *[f"| {name} | {value} |" for name, value in rows],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny checkpoint instead of the released sizes"
    )
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (with --tiny: what CI runs)")
    parser.add_argument(
        "--clip", type=Path, help="default: nextqa_1.mp4 from ../shared/clips, else a 30 s clip"
    )
    parser.add_argument("--tokens", type=int, default=64, help="reasoning tokens per clip")
    parser.add_argument("--batch-clips", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=4, help="pDPO pairs per step")
    parser.add_argument("--pair-steps", type=int, default=3, help="pDPO steps measured (after one warm-up)")
    parser.add_argument("--compute-dtype", default="auto", choices=["auto", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    if args.cpu and not args.tiny:
        parser.error("--cpu runs the tiny model only (the released sizes need a GPU): add --tiny")
    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --tiny --cpu for the CPU path", file=sys.stderr)
        return 2

    from bench.model import a_30s_clip, peak_rss_mb
    from inference.media import load_media

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or a_30s_clip(Path(tmp))
        if not args.cpu:
            torch.cuda.reset_peak_memory_stats()
        loaded, what = load_model_for(args)
        media = load_media(clip)
        figures = analyse(loaded, media, args.tokens)
        clips_per_min = batch_rate(loaded, clip, args.batch_clips, args.tokens)
        if args.cpu:
            figures.update(peak_gib=peak_rss_mb() / 1024, peak_kind="peak RSS of the process")
        else:
            figures.update(peak_gib=torch.cuda.max_memory_allocated() / 2**30, peak_kind="torch allocated")
        figures.update(clip=clip.name, frames=media.n_frames)
        del loaded
        if not args.cpu:
            torch.cuda.empty_cache()
        train = pdpo(args, Path(tmp), clip)
    machine = (
        "CPU"
        if args.cpu
        else f"{torch.cuda.get_device_name()} (capability {torch.cuda.get_device_capability()})"
    )
    total_s = time.perf_counter() - started
    print(report(what, f"{machine}, torch {torch.__version__}", figures, clips_per_min, train, total_s))
    if not args.tiny and total_s > MINUTES_BUDGET * 60:
        print(f"note: the run took longer than the {MINUTES_BUDGET}-minute target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
