"""Command-line flags that choose and load the model, shared by every command that runs it.

With no ``--checkpoint``: on a CUDA machine the released checkpoint (4-bit); elsewhere the tiny
demo checkpoint (built offline on first use), announced on stderr because its output is
meaningless.
"""

from __future__ import annotations

import argparse
import os
import sys

from inference.model.config import RELEASED_CHECKPOINT, ComponentSources


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--checkpoint",
        default=os.environ.get("STUDIO_CHECKPOINT"),
        help=f"hub id or local folder (default: {RELEASED_CHECKPOINT} on a GPU, the tiny demo model elsewhere; "
        "env STUDIO_CHECKPOINT); 'tiny' forces the tiny model",
    )
    group.add_argument("--revision", default=os.environ.get("STUDIO_REVISION"), help="hub revision")
    group.add_argument(
        "--quantization",
        choices=["auto", "4bit", "8bit", "none"],
        default=os.environ.get("STUDIO_QUANTIZATION", "auto"),
        help="LLM weights: 4-bit NF4 (default on CUDA), 8-bit, or none (default on CPU)",
    )
    group.add_argument("--device", default=os.environ.get("STUDIO_DEVICE", "auto"), help="cuda, cpu or auto")
    group.add_argument(
        "--compute-dtype",
        choices=["auto", "bfloat16", "float16", "float32"],
        default=os.environ.get("STUDIO_COMPUTE_DTYPE", "auto"),
        help="encoders' and 4-bit compute dtype: auto = bfloat16 on GPUs of compute capability >= 8.0, "
        "float16 below (T4), float32 on the CPU (env STUDIO_COMPUTE_DTYPE)",
    )
    group.add_argument("--adapter", default=os.environ.get("STUDIO_ADAPTER"), help="LoRA adapter folder")
    group.add_argument(
        "--vision-source", help="local folder with SigLIP's config.json (overrides the built-in)"
    )
    group.add_argument("--whisper-source", help="local folder with Whisper's config.json")
    group.add_argument("--qformer-source", help="local folder with the Q-Former's BERT config.json")


def choose_checkpoint(checkpoint: str | None, device: str, log=None) -> str:
    """The checkpoint to load: the one asked for, else by the machine (module docstring)."""
    from inference.model.loading import resolve_device

    if checkpoint and checkpoint != "tiny":
        return checkpoint
    if checkpoint != "tiny" and resolve_device(device).startswith("cuda"):
        return RELEASED_CHECKPOINT
    from inference.tiny import default_tiny_checkpoint

    path = str(default_tiny_checkpoint(log=log or (lambda m: print(m, file=sys.stderr))))
    (log or (lambda m: print(m, file=sys.stderr)))(
        f"note: using the tiny demo model at {path}: random weights, its output is meaningless"
    )
    return path


def load_from_args(args: argparse.Namespace):
    from inference.model.loading import LoadSettings, load_model

    checkpoint = choose_checkpoint(args.checkpoint, args.device)
    settings = LoadSettings(
        checkpoint=checkpoint,
        revision=args.revision,
        quantization=args.quantization,
        device=args.device,
        dtype=getattr(args, "compute_dtype", "auto"),
        adapter=args.adapter,
        sources=ComponentSources(
            vision=args.vision_source, whisper=args.whisper_source, qformer=args.qformer_source
        ),
    )
    return load_model(settings)
