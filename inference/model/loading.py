"""Load video-SALMONN-o1 from the released checkpoint (hub id or local folder).

The LLM part of the official state dict (``model.layers.*``, ``model.embed_tokens``,
``model.norm``, ``lm_head``) already has ``Qwen2ForCausalLM``'s names, so transformers loads it
directly, quantized by bitsandbytes when asked (NF4 + double quant). The compute dtype follows
the device (``choose_dtype``): bfloat16 on a GPU that has it natively (compute capability 8.0 and
up), float16 on older cards such as the T4 (7.5), float32 on the CPU; ``--compute-dtype``
overrides it. Every other tensor (SigLIP, projector, newline, Whisper, Q-Former, connectors) is read
from the same safetensors and copied key by key after a fixed renaming. A missing or unexpected
weight is an error that names it: a silently random layer would make every output meaningless.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.model.config import (
    RELEASED_CHECKPOINT,
    ComponentSources,
    ConnectorSettings,
    read_json,
    resolve_component_configs,
)
from inference.model.hub import CheckpointError, hub_snapshot

__all__ = ["CheckpointError", "LoadSettings", "LoadedModel", "load_model"]

log = logging.getLogger(__name__)

LLM_PREFIXES = ("model.layers.", "model.embed_tokens.", "model.norm.", "lm_head.")
QUANTIZATIONS = ("4bit", "8bit", "none")
COMPUTE_DTYPES = ("auto", "bfloat16", "float16", "float32")
# Files a snapshot needs: config, tokenizer and safetensors (never the .bin or .pt duplicates).
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


@dataclass(frozen=True)
class LoadSettings:
    checkpoint: str = RELEASED_CHECKPOINT  # hub id or local folder in the released layout
    revision: str | None = None  # hub revision (branch, tag or commit); None = main
    quantization: str = "auto"  # "4bit" | "8bit" | "none"; auto = 4bit on CUDA, none elsewhere
    device: str = "auto"  # "cuda", "cpu" or "auto" (CUDA when present)
    dtype: str = "auto"  # encoders' and 4-bit compute dtype (COMPUTE_DTYPES): auto = choose_dtype
    adapter: str | None = None  # a peft LoRA folder applied on top of the LLM (pDPO output)
    sources: ComponentSources = field(default_factory=ComponentSources)
    connector: ConnectorSettings = field(default_factory=ConnectorSettings)
    attn_implementation: str = "sdpa"  # "eager" reproduces the official numbers bit-closer


@dataclass
class LoadedModel:
    """The model with everything needed to describe it in a Trace."""

    model: Any  # VideoSalmonnO1
    tokenizer: Any
    checkpoint_dir: Path
    model_id: str
    revision: str | None
    quantization: str
    device: str
    generation_config: dict[str, Any]
    is_tiny: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "revision": self.revision,
            "quantization": self.quantization,
            "device": self.device,
            "adapter": getattr(self, "adapter", None),
            "tiny": self.is_tiny,
        }


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def choose_dtype(requested: str, device: str):
    """The encoders' and the 4-bit compute dtype. ``auto``: float32 on the CPU (exact, and fast
    enough there); on CUDA bfloat16 where the card computes it natively (compute capability 8.0
    and up: A10G, L4, A100, H100) and float16 below (T4 7.5, V100 7.0), where bfloat16 is
    emulated at a fraction of the speed or not supported by the kernels at all."""
    import torch

    if requested not in COMPUTE_DTYPES:
        raise CheckpointError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, not {requested!r}")
    if requested != "auto":
        return getattr(torch, requested)
    if not device.startswith("cuda"):
        return torch.float32
    major, _minor = torch.cuda.get_device_capability(torch.device(device))
    return torch.bfloat16 if major >= 8 else torch.float16


def resolve_checkpoint_dir(checkpoint: str, revision: str | None) -> Path:
    """A local folder as it is, or a hub snapshot (config, tokenizer and safetensors only)."""
    path = Path(checkpoint).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise CheckpointError(f"{path} has no config.json; point --checkpoint at a checkpoint folder")
        return path
    if "/" not in checkpoint or checkpoint.count("/") > 1:
        raise CheckpointError(f"checkpoint {checkpoint!r} is neither a folder nor a hub id like owner/name")
    local = hub_snapshot(checkpoint, revision, SNAPSHOT_PATTERNS, what="checkpoint")
    if not (local / "config.json").exists():
        raise CheckpointError(
            f"{checkpoint} (revision {revision or 'main'}) has no config.json; is it a checkpoint?"
        )
    return local


def safetensors_files(checkpoint_dir: Path) -> list[Path]:
    index = checkpoint_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        absent = [s for s in shards if not (checkpoint_dir / s).exists()]
        if absent:
            raise CheckpointError(
                f"{checkpoint_dir} lacks {len(absent)} of the {len(shards)} weight files its index names "
                f"({absent[0]}{', ...' if len(absent) > 1 else ''}); download the checkpoint again"
            )
        return [checkpoint_dir / s for s in shards]
    single = checkpoint_dir / "model.safetensors"
    if single.exists():
        return [single]
    raise CheckpointError(f"{checkpoint_dir} holds no model.safetensors (or index); is it a checkpoint?")


def read_non_llm_tensors(files: list[Path]) -> dict[str, Any]:
    """Every tensor outside the LLM, renamed to this port's module names."""
    from safetensors import safe_open

    from inference.model.modeling import official_to_port_key

    tensors = {}
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith(LLM_PREFIXES):
                    continue
                port_key = official_to_port_key(key)
                if port_key is not None:
                    tensors[port_key] = fh.get_tensor(key)
    return tensors


def qwen2_config(config: dict[str, Any], attn_implementation: str):
    from transformers import Qwen2Config

    keys = [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_act",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_theta",
        "tie_word_embeddings",
        "attention_dropout",
        "bos_token_id",
        "eos_token_id",
        "use_sliding_window",
        "sliding_window",
        "max_window_layers",
    ]
    qcfg = Qwen2Config(**{k: config[k] for k in keys if k in config})
    qcfg._attn_implementation = attn_implementation
    return qcfg


def quantization_config(quantization: str, compute_dtype):
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise CheckpointError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")


def load_llm(checkpoint_dir: Path, config: dict[str, Any], settings: LoadSettings, device: str, dtype):
    from transformers import Qwen2ForCausalLM

    qconf = quantization_config(settings.quantization, dtype)
    # The encoders' tensors in the same file are "unexpected" to Qwen2ForCausalLM: we read them
    # ourselves below, so silence transformers' report of them and check the LLM keys here.
    with _quiet_transformers():
        llm, info = Qwen2ForCausalLM.from_pretrained(
            str(checkpoint_dir),
            config=qwen2_config(config, settings.attn_implementation),
            dtype=dtype,
            quantization_config=qconf,
            device_map={"": device},
            output_loading_info=True,
        )
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("rotary_emb.inv_freq")]
    unexpected = [k for k in info.get("unexpected_keys", []) if k.startswith(LLM_PREFIXES)]
    if missing or unexpected:
        raise CheckpointError(
            f"LLM weights do not match: missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )
    return llm


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*You are using a model of type.*")
            yield
    finally:
        hf_logging.set_verbosity(previous)


def load_model(settings: LoadSettings = LoadSettings()) -> LoadedModel:
    """Build the model from a checkpoint in the released layout (see module docstring)."""
    device = resolve_device(settings.device)
    quant = settings.quantization
    if quant == "auto":
        quant = "4bit" if device.startswith("cuda") else "none"
    if quant not in QUANTIZATIONS:
        raise CheckpointError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quant!r}")
    dtype = choose_dtype(settings.dtype, device)
    settings = LoadSettings(**{**settings.__dict__, "quantization": quant})

    checkpoint_dir = resolve_checkpoint_dir(settings.checkpoint, settings.revision)
    try:
        config = read_json(checkpoint_dir / "config.json")
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {checkpoint_dir / 'config.json'}: {exc}") from exc
    files = safetensors_files(checkpoint_dir)
    components = resolve_component_configs(config, settings.sources)

    llm = load_llm(checkpoint_dir, config, settings, device, dtype)
    model = build_beside_llm(config, components, settings.connector, read_non_llm_tensors(files))
    model.llm = llm
    model.to(device=device, dtype=dtype) if quant == "none" else _move_encoders(model, device, dtype)
    model.eval()
    if settings.adapter:
        model.llm = apply_adapter(model.llm, settings.adapter)

    loaded = LoadedModel(
        model=model,
        tokenizer=load_tokenizer(checkpoint_dir),
        checkpoint_dir=checkpoint_dir,
        model_id=settings.checkpoint,
        revision=settings.revision,
        quantization=quant,
        device=device,
        generation_config=read_json(checkpoint_dir / "generation_config.json")
        if (checkpoint_dir / "generation_config.json").exists()
        else {},
        is_tiny=bool(config.get("studio_tiny", False)),
    )
    loaded.adapter = settings.adapter
    return loaded


def build_beside_llm(config: dict[str, Any], components: dict, connector: ConnectorSettings, tensors: dict):
    """Everything but the LLM (an Identity placeholder), built without memory and filled with
    ``tensors``, which must match its weights exactly in names and shapes."""
    import torch
    from accelerate import init_empty_weights

    from inference.model.modeling import VideoSalmonnO1

    with init_empty_weights(include_buffers=False):
        model = VideoSalmonnO1(
            llm=torch.nn.Identity(),  # placeholder: the caller attaches the real LLM
            vision_config=components["vision"],
            whisper_config=components["whisper"],
            qformer_config=components["qformer"],
            mm_hidden_size=config.get("mm_hidden_size", components["vision"]["hidden_size"]),
            connector=connector,
            hidden_size=config["hidden_size"],
        )
    state = model.state_dict()
    expected = {k for k in state if not k.startswith("llm.")}
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint weights do not match the model: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}"
        )
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(state[key].shape):
            raise CheckpointError(
                f"weight {key} has shape {tuple(tensor.shape)}, expected {tuple(state[key].shape)}"
            )
    model.load_state_dict(tensors, strict=False, assign=True)
    return model


def load_tokenizer(checkpoint_dir: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(checkpoint_dir))
    except Exception as exc:
        raise CheckpointError(f"cannot load the tokenizer from {checkpoint_dir}: {exc}") from exc


def _move_encoders(model, device: str, dtype) -> None:
    """With a quantized LLM, move and cast only what sits beside it (the LLM is placed already)."""
    for name, child in model.named_children():
        if name != "llm":
            child.to(device=device, dtype=dtype)
    for param in model.parameters(recurse=False):
        param.data = param.data.to(device=device, dtype=dtype)
    model.segment_table = model.segment_table.to(device)


def apply_adapter(llm, adapter_dir: str):
    """Wrap the LLM with a LoRA adapter saved by peft (e.g. by ``training.pdpo``)."""
    from peft import PeftModel

    path = Path(adapter_dir)
    if not (path / "adapter_config.json").exists():
        raise CheckpointError(f"{path} is not a LoRA adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(llm, str(path), is_trainable=False)
