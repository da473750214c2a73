"""The options that choose and load the model: one type shared by the app, every command that
runs the model (run, alternatives, rollouts, batch) and training.

``MODEL_FLAGS`` is the one table of flags, their environment variables, defaults and help;
``ModelOptions.add_arguments`` puts them on a parser, ``ModelOptions.from_args`` reads them back
and ``ModelOptions.to_load_settings`` is the only place a ``LoadSettings`` is built. Precedence:
a flag on the command line > its environment variable > the default.

With no ``--checkpoint``: on a CUDA machine the released checkpoint (4-bit); elsewhere the tiny
demo checkpoint (built offline on first use), announced on stderr because its output is
meaningless.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from inference.model.config import RELEASED_CHECKPOINT, ComponentSources

QUANTIZATIONS = ("auto", "4bit", "8bit", "none")
COMPUTE_DTYPES = ("auto", "bfloat16", "float16", "float32")  # = inference.model.loading.COMPUTE_DTYPES


@dataclass(frozen=True)
class ModelFlag:
    field: str  # the ModelOptions field it sets
    flag: str
    env: str | None  # the environment variable that sets it when the flag is not given
    help: str
    choices: tuple[str, ...] | None = None


MODEL_FLAGS: tuple[ModelFlag, ...] = (
    ModelFlag(
        "checkpoint",
        "--checkpoint",
        "STUDIO_CHECKPOINT",
        f"hub id or local folder (default: {RELEASED_CHECKPOINT} on a CUDA GPU, the tiny demo model "
        "elsewhere); 'tiny' forces the tiny model",
    ),
    ModelFlag("revision", "--revision", "STUDIO_REVISION", "hub revision"),
    ModelFlag(
        "quantization",
        "--quantization",
        "STUDIO_QUANTIZATION",
        "LLM weights: auto = 4-bit NF4 on CUDA, none on CPU; or 4bit, 8bit, none",
        QUANTIZATIONS,
    ),
    ModelFlag("device", "--device", "STUDIO_DEVICE", "cuda, cpu or auto"),
    ModelFlag(
        "compute_dtype",
        "--compute-dtype",
        "STUDIO_COMPUTE_DTYPE",
        "encoders' and 4-bit compute dtype: auto = bfloat16 on GPUs of compute capability >= 8.0, "
        "float16 below (T4), float32 on the CPU",
        COMPUTE_DTYPES,
    ),
    ModelFlag("adapter", "--adapter", "STUDIO_ADAPTER", "LoRA adapter folder (a pDPO run's output)"),
    ModelFlag(
        "vision_source",
        "--vision-source",
        None,
        "local folder with SigLIP's config.json (overrides the built-in)",
    ),
    ModelFlag("whisper_source", "--whisper-source", None, "local folder with Whisper's config.json"),
    ModelFlag(
        "qformer_source", "--qformer-source", None, "local folder with the Q-Former's BERT config.json"
    ),
)


@dataclass(frozen=True)
class ModelOptions:
    checkpoint: str | None = None  # None: released model on CUDA, tiny demo model elsewhere
    revision: str | None = None
    quantization: str = "auto"  # auto = 4-bit NF4 on CUDA, none on CPU
    device: str = "auto"
    compute_dtype: str = "auto"  # auto: from the device's capability (inference.model.loading.choose_dtype)
    adapter: str | None = None
    vision_source: str | None = None
    whisper_source: str | None = None
    qformer_source: str | None = None

    @staticmethod
    def add_arguments(
        parser: argparse.ArgumentParser | Any,
        environ: Mapping[str, str] | None = None,
        only: Sequence[str] | None = None,
    ) -> None:
        """Add the model flags (all, or the fields named in ``only``) to ``parser`` (a parser or
        an argument group), each defaulting to its environment variable in ``environ``."""
        environ = os.environ if environ is None else environ
        defaults = ModelOptions()
        group = parser.add_argument_group("model") if isinstance(parser, argparse.ArgumentParser) else parser
        for spec in MODEL_FLAGS:
            if only is not None and spec.field not in only:
                continue
            default = getattr(defaults, spec.field)
            if spec.env and environ.get(spec.env):
                default = environ[spec.env]
            help_text = spec.help + (f" (env {spec.env})" if spec.env else "")
            group.add_argument(
                spec.flag, dest=spec.field, default=default, choices=spec.choices, help=help_text
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelOptions:
        """The options parsed by a parser that ``add_arguments`` filled (fields it left out keep
        their defaults)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    def with_checkpoint(
        self, device: str | None = None, log: Callable[[str], None] | None = None
    ) -> ModelOptions:
        """A copy naming the checkpoint that will be loaded (module docstring)."""
        return replace(self, checkpoint=choose_checkpoint(self.checkpoint, device or self.device, log=log))

    def to_load_settings(
        self,
        device: str | None = None,
        quantization: str | None = None,
        dtype: str | None = None,
        log: Callable[[str], None] | None = None,
    ):
        """The LoadSettings of these options; ``device`` / ``quantization`` override the
        options' (a batch process's GPU, a training accelerator's device, training's dtype)."""
        from inference.model.loading import LoadSettings

        device = device or self.device
        return LoadSettings(
            checkpoint=choose_checkpoint(self.checkpoint, device, log=log),
            revision=self.revision,
            quantization=quantization or self.quantization,
            device=device,
            dtype=dtype or self.compute_dtype,
            adapter=self.adapter,
            sources=ComponentSources(
                vision=self.vision_source, whisper=self.whisper_source, qformer=self.qformer_source
            ),
        )

    def load(self, device: str | None = None, log: Callable[[str], None] | None = None):
        """The LoadedModel."""
        from inference.model.loading import load_model

        return load_model(self.to_load_settings(device=device, log=log))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def choose_checkpoint(checkpoint: str | None, device: str, log: Callable[[str], None] | None = None) -> str:
    """The checkpoint to load: the one asked for, else by the machine (module docstring)."""
    from inference.model.loading import resolve_device

    log = log or _stderr
    if checkpoint and checkpoint != "tiny":
        return checkpoint
    if checkpoint != "tiny" and resolve_device(device).startswith("cuda"):
        return RELEASED_CHECKPOINT
    from inference.tiny import default_tiny_checkpoint

    path = str(default_tiny_checkpoint(log=log))
    log(f"note: using the tiny demo model at {path}: random weights, its output is meaningless")
    return path
