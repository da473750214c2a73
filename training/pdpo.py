"""``python -m training.pdpo``: train a LoRA adapter with pDPO on the store's pDPO export.

    python -m training.pdpo --pairs pairs.jsonl --checkpoint CKPT --out adapters/run1 \\
        [--eval-pairs held_out.jsonl] [--video-root DIR] [--beta 0.1] [--epochs 1] ...
    accelerate launch -m training.pdpo --pairs ... (several GPUs: each takes every N-th pair)

Loads the checkpoint (the LLM in 4-bit NF4 on CUDA, unquantized on the CPU unless asked),
adds LoRA adapters to the LLM's attention and MLP projections, caches every clip's AV block
(``--feature-cache``), trains, and writes to ``--out``:

- ``adapter_config.json``, ``adapter_model.safetensors``: the peft adapter (``python app.py
  --adapter OUT`` or ``python -m inference run --adapter OUT`` serve base + adapter);
- ``training_config.json``: every setting, the checkpoint, the pairs file's sha256 and counts,
  the base and final held-out figures, library versions, timings;
- ``log.jsonl``: one record per optimizer step (loss, preference accuracy, reward margin, grad
  norm, lr, pairs/s) and per evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from inference.options import ModelOptions
from training.config import PAIR_TYPES, LoraSettings, PDPOConfig

FORMAT_VERSION = 1  # of training_config.json
# Training starts from the base checkpoint (no --adapter: it makes the adapter).
TRAINING_MODEL_FLAGS = (
    "checkpoint",
    "revision",
    "quantization",
    "device",
    "vision_source",
    "whisper_source",
    "qformer_source",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d, lora = PDPOConfig(), LoraSettings()
    parser.add_argument("--pairs", required=True, help="pdpo export (.jsonl or .parquet) to train on")
    parser.add_argument("--out", required=True, help="folder for the adapter, settings and log")
    parser.add_argument("--eval-pairs", help="held-out pdpo export: preference accuracy before and after")
    # The model flags and their STUDIO_* variables, as every command that loads the model has them.
    ModelOptions.add_arguments(parser, only=TRAINING_MODEL_FLAGS)
    parser.add_argument(
        "--video-root",
        action="append",
        default=[],
        help="folder that relative video paths are under (repeatable; default: the working folder, "
        "then the pairs file's folder)",
    )
    parser.add_argument(
        "--feature-cache",
        default=None,
        help="folder for cached AV blocks (default: $STUDIO_CACHE/features); 'none' keeps them in RAM only",
    )
    parser.add_argument("--beta", type=float, default=d.beta)
    parser.add_argument("--labels", choices=["soft", "hard"], default=d.labels, help="a: soft_label or 1")
    parser.add_argument(
        "--pair-types", default=",".join(d.pair_types), help=f"comma-separated, of {', '.join(PAIR_TYPES)}"
    )
    parser.add_argument(
        "--drop-rollout-conflicts",
        action="store_true",
        help="leave out pairs whose rollouts favour the rejected candidate (the export's rollout_conflict)",
    )
    parser.add_argument("--lr", type=float, default=d.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-pairs", type=int, default=d.batch_pairs, help="pairs per optimizer step")
    parser.add_argument(
        "--no-group-by-clip",
        action="store_true",
        help="batches of pairs drawn from all clips (slower: one pass over a clip per pair)",
    )
    parser.add_argument(
        "--pack-pairs", type=int, default=None, help="at most this many pairs per forward pass (memory)"
    )
    parser.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--lora-r", type=int, default=lora.r)
    parser.add_argument("--lora-alpha", type=int, default=lora.alpha)
    parser.add_argument("--lora-dropout", type=float, default=lora.dropout)
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--log-every", type=int, default=d.log_every)


def config_from_args(args: argparse.Namespace) -> PDPOConfig:
    return PDPOConfig(
        beta=args.beta,
        labels=args.labels,
        pair_types=tuple(t.strip() for t in args.pair_types.split(",") if t.strip()),
        drop_rollout_conflicts=args.drop_rollout_conflicts,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_pairs=args.batch_pairs,
        group_by_clip=not args.no_group_by_clip,
        pack_pairs=args.pack_pairs,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        quantization=args.quantization,
        device=args.device,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        log_every=args.log_every,
        lora=LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout),
    )


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    out["accelerate"] = accelerate.__version__
    try:
        import bitsandbytes

        out["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:  # only needed for 4/8-bit
        pass
    return out


def load_for_training(model: ModelOptions, config: PDPOConfig, accelerator):
    """The model on this process's device: NF4 + bf16 on CUDA by default, float32 on the CPU."""
    from inference.model.loading import load_model

    device = str(accelerator.device)
    cuda = device.startswith("cuda")
    quantization = config.quantization
    if quantization == "auto":
        quantization = "4bit" if cuda else "none"
    # dtype from the options: auto follows the card (bfloat16 from compute capability 8.0, float16 below)
    settings = model.to_load_settings(device=device, quantization=quantization)
    return load_model(settings)


def offload_encoders(model) -> None:
    """Move everything but the LLM to the CPU (their AV blocks are cached; frees ~2 GB of GPU)."""
    for name, child in model.named_children():
        if name != "llm":
            child.to("cpu")
    for param in model.parameters(recurse=False):
        param.data = param.data.to("cpu")
    model.segment_table = model.segment_table.to("cpu")


def run(args: argparse.Namespace) -> int:
    import torch
    from accelerate import Accelerator

    from inference.errors import UserError
    from inference.tiny import cache_root
    from training.data import load_pairs
    from training.features import FeatureCache
    from training.trainer import PDPOTrainer

    try:
        config = config_from_args(args)
        config.check()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    out = Path(args.out)
    if (out / "adapter_config.json").exists():
        raise UserError(f"{out} already holds an adapter; choose a new --out folder")
    accelerator = Accelerator(cpu=config.device == "cpu")
    say = print if accelerator.is_main_process else (lambda *a, **k: None)
    started = datetime.now(UTC).isoformat()
    t0 = time.perf_counter()
    loaded = load_for_training(ModelOptions.from_args(args), config, accelerator)
    say(
        f"model {loaded.model_id} ({loaded.quantization}, {loaded.device}) loaded in {time.perf_counter() - t0:.1f} s"
    )
    drop = config.drop_rollout_conflicts
    train_set = load_pairs(
        args.pairs, loaded.tokenizer, config.labels, config.pair_types, drop_rollout_conflicts=drop
    )
    eval_set = (
        load_pairs(
            args.eval_pairs, loaded.tokenizer, config.labels, config.pair_types, drop_rollout_conflicts=drop
        )
        if args.eval_pairs
        else None
    )
    say(f"pairs: {json.dumps(train_set.describe())}")

    roots = [Path(r) for r in args.video_root] or [Path.cwd(), Path(args.pairs).resolve().parent]
    cache_dir = (
        None if args.feature_cache == "none" else Path(args.feature_cache or cache_root() / "features")
    )
    features = FeatureCache(loaded.model, cache_dir, config.memory_clips, roots, log=say)
    clips = {p.video_sha256: p.video_path for p in [*train_set.pairs, *(eval_set.pairs if eval_set else [])]}
    t1 = time.perf_counter()
    features.warm(clips)
    say(f"AV blocks of {len(clips)} clips ready in {time.perf_counter() - t1:.1f} s ({features.stats})")
    if config.offload_encoders and loaded.device.startswith("cuda"):
        offload_encoders(loaded.model)
        torch.cuda.empty_cache()

    out.mkdir(parents=True, exist_ok=True)
    log_file = out / "log.jsonl"
    if accelerator.is_main_process and log_file.exists():
        log_file.unlink()
    trainer = PDPOTrainer(loaded, config, features, accelerator, log=say, log_file=log_file)
    try:
        summary = trainer.train(train_set.pairs, eval_set.pairs if eval_set else ())
    except ValueError as exc:  # e.g. fewer pairs than processes
        raise UserError(str(exc)) from exc
    trainer.save(out)
    if accelerator.is_main_process:
        record = {
            "format": FORMAT_VERSION,
            "objective": "pdpo",
            "pairs": train_set.describe(),
            "eval_pairs": eval_set.describe() if eval_set else None,
            "model": {**loaded.describe(), "checkpoint_dir": str(loaded.checkpoint_dir)},
            "config": config.to_dict(),
            "processes": accelerator.num_processes,
            "feature_fingerprint": features.fingerprint,
            "summary": summary,
            "versions": _versions(),
            "started_at": started,
            "finished_at": datetime.now(UTC).isoformat(),
            "command": sys.argv,
        }
        (out / "training_config.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        say(
            f"adapter saved to {out} ({summary['pairs_per_s']:.2f} pairs/s, peak {summary['peak_memory_mb']:.0f} MiB)"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    from inference.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m training.pdpo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
