"""Load video-SALMONN-o1 from the released checkpoint (hub id or local folder).

The LLM part of the official state dict (``model.layers.*``, ``model.embed_tokens``,
``model.norm``, ``lm_head``) already has ``Qwen2ForCausalLM``'s names, so transformers loads it
directly, quantized by bitsandbytes when asked (NF4 + double quant, bf16 compute by default on
CUDA). Every other tensor (SigLIP, projector, newline, Whisper, Q-Former, connectors) is read
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

from inference.errors import UserError
from inference.model.config import (
    RELEASED_CHECKPOINT,
    ComponentSources,
    ConnectorSettings,
    read_json,
    resolve_component_configs,
)

log = logging.getLogger(__name__)

LLM_PREFIXES = ("model.layers.", "model.embed_tokens.", "model.norm.", "lm_head.")
QUANTIZATIONS = ("4bit", "8bit", "none")


class CheckpointError(UserError):
    """The checkpoint cannot be found, read, or does not hold exactly the expected weights."""


@dataclass(frozen=True)
class LoadSettings:
    checkpoint: str = RELEASED_CHECKPOINT  # hub id or local folder in the released layout
    revision: str | None = None  # hub revision (branch, tag or commit); None = main
    quantization: str = "auto"  # "4bit" | "8bit" | "none"; auto = 4bit on CUDA, none elsewhere
    device: str = "auto"  # "cuda", "cpu" or "auto" (CUDA when present)
    dtype: str = "auto"  # encoders/compute dtype: bf16 on CUDA, float32 on CPU (exactness, speed)
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


def resolve_checkpoint_dir(checkpoint: str, revision: str | None) -> Path:
    """A local folder as it is, or a hub snapshot (config, tokenizer and safetensors only)."""
    path = Path(checkpoint).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise CheckpointError(f"{path} has no config.json; point --checkpoint at a checkpoint folder")
        return path
    if "/" not in checkpoint or checkpoint.count("/") > 1:
        raise CheckpointError(f"checkpoint {checkpoint!r} is neither a folder nor a hub id like owner/name")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            checkpoint,
            revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"],
        )
    except Exception as exc:  # offline, unknown repo, no permission: all the same to the user
        raise CheckpointError(
            f"cannot download {checkpoint!r} from the hub ({type(exc).__name__}); "
            "pass --checkpoint with a local folder, or run without one for the tiny demo model"
        ) from exc
    return Path(local)


def safetensors_files(checkpoint_dir: Path) -> list[Path]:
    index = checkpoint_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
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
    import torch
    from transformers import Qwen2ForCausalLM

    quant = settings.quantization
    qconf = quantization_config(quant, torch.bfloat16 if device.startswith("cuda") else dtype)
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
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoTokenizer

    from inference.model.modeling import VideoSalmonnO1

    device = resolve_device(settings.device)
    quant = settings.quantization
    if quant == "auto":
        quant = "4bit" if device.startswith("cuda") else "none"
    if quant not in QUANTIZATIONS:
        raise CheckpointError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quant!r}")
    if settings.dtype == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, settings.dtype)
    settings = LoadSettings(**{**settings.__dict__, "quantization": quant})

    checkpoint_dir = resolve_checkpoint_dir(settings.checkpoint, settings.revision)
    try:
        config = read_json(checkpoint_dir / "config.json")
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {checkpoint_dir / 'config.json'}: {exc}") from exc
    files = safetensors_files(checkpoint_dir)
    components = resolve_component_configs(config, settings.sources)

    llm = load_llm(checkpoint_dir, config, settings, device, dtype)
    with init_empty_weights(include_buffers=False):
        model = VideoSalmonnO1(
            llm=torch.nn.Identity(),  # placeholder: the real LLM is attached below
            vision_config=components["vision"],
            whisper_config=components["whisper"],
            qformer_config=components["qformer"],
            mm_hidden_size=config.get("mm_hidden_size", components["vision"]["hidden_size"]),
            connector=settings.connector,
            hidden_size=config["hidden_size"],
        )
    tensors = read_non_llm_tensors(files)
    expected = {k for k in model.state_dict() if not k.startswith("llm.")}
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint weights do not match the model: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}"
        )
    for key, tensor in tensors.items():
        expected_shape = model.state_dict()[key].shape
        if tuple(tensor.shape) != tuple(expected_shape):
            raise CheckpointError(
                f"weight {key} has shape {tuple(tensor.shape)}, expected {tuple(expected_shape)}"
            )
    model.load_state_dict(tensors, strict=False, assign=True)
    model.llm = llm
    model.to(device=device, dtype=dtype) if quant == "none" else _move_encoders(model, device, dtype)
    model.eval()

    if settings.adapter:
        model.llm = apply_adapter(model.llm, settings.adapter)

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    except Exception as exc:
        raise CheckpointError(f"cannot load the tokenizer from {checkpoint_dir}: {exc}") from exc
    gen_path = checkpoint_dir / "generation_config.json"
    generation_config = read_json(gen_path) if gen_path.exists() else {}
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        checkpoint_dir=checkpoint_dir,
        model_id=settings.checkpoint,
        revision=settings.revision,
        quantization=quant,
        device=device,
        generation_config=generation_config,
        is_tiny=bool(config.get("studio_tiny", False)),
    )
    loaded.adapter = settings.adapter
    return loaded


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
