"""Configuration of the video-SALMONN-o1 port: what comes from the checkpoint, what from elsewhere.

The released checkpoint's ``config.json`` describes the LLM (Qwen2) and the connector settings.
The encoders' architectures are NOT in it: the official inference builds SigLIP from the hub id
``google/siglip-so400m-patch14-384``, the Whisper encoder from ``whisper_path`` and the Q-Former
from ``bert-base-uncased``'s config (see shared/reference/official_tiny/NOTES.md), then loads the
checkpoint's tensors over them. We carry those three configs built in (their published values),
each overridable by a local folder holding a ``config.json`` or a hub id (``openai/whisper-large-v3``,
read from the hub cache or downloaded: config.json only); a checkpoint may also embed them
under ``vision_config`` / ``speech_config`` / ``qformer_config`` (our tiny checkpoint does, so it
needs nothing from outside). Order: explicit override > embedded in config.json > built in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# google/siglip-so400m-patch14-384 (vision part). The official code drops the LAST layer
# (siglip_encoder_flash.py:835), so 26 of these 27 layers are used.
SIGLIP_SO400M: dict[str, Any] = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 384,
    "patch_size": 14,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "attention_dropout": 0.0,
}

# openai/whisper-large-v3, encoder part.
WHISPER_LARGE_V3: dict[str, Any] = {
    "d_model": 1280,
    "encoder_layers": 32,
    "encoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "decoder_layers": 32,
    "decoder_attention_heads": 20,
    "decoder_ffn_dim": 5120,
    "num_mel_bins": 128,
    "max_source_positions": 1500,
    "activation_function": "gelu",
    "scale_embedding": False,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "vocab_size": 51866,
}

# bert-base-uncased, as the official init_speech_Qformer reads it (then 2 layers, 1 query,
# cross-attention in every layer: videosalmonno1.py:43-55).
BERT_BASE_UNCASED: dict[str, Any] = {
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}

RELEASED_CHECKPOINT = "BrianatCambridge/video-SALMONN-o1"


@dataclass(frozen=True)
class ConnectorSettings:
    """Structural settings the official inference forces at run time, whatever config.json
    says (inference.py:331-345, 383-387; NOTES.md section 4)."""

    pool_stride: int = 2  # mm_spatial_pool_stride, 27x27 -> 13x13 by max-pool (mode forced "max")
    whisper_frames_per_window: int = 10  # second_per_window 0.2 s at Whisper's 50 frames/s
    whisper_frames_per_stride: int = 10  # second_stride 0.2 s: windows do not overlap
    qformer_layers: int = 2  # init_speech_Qformer(num_hidden_layers=2)
    speech_queries: int = 1  # num_speech_query_token: one LLM token per 0.2 s window
    max_audio_chunks: int = 200  # sinusoidal_position(200, d): the segment table's size


@dataclass(frozen=True)
class ComponentSources:
    """Local folders or hub ids (each with a config.json) that replace the built-in encoder configs."""

    vision: str | None = None
    whisper: str | None = None
    qformer: str | None = None


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def source_folder(source: str, component: str) -> Path:
    """A component source as a folder holding config.json: the folder itself, or a hub snapshot."""
    from inference.model.hub import CheckpointError, hub_snapshot, looks_like_hub_id

    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise CheckpointError(
                f"{path} has no config.json; point the {component} source at a model folder"
            )
        return path
    if looks_like_hub_id(source):
        folder = hub_snapshot(source, None, ["config.json"], what=f"{component} source")
        if not (folder / "config.json").exists():
            raise CheckpointError(f"{component} source {source} has no config.json on the hub")
        return folder
    raise CheckpointError(f"{component} source {source!r} is neither a folder nor a hub id like owner/name")


def resolve_component_configs(
    checkpoint_config: dict[str, Any], sources: ComponentSources
) -> dict[str, dict[str, Any]]:
    """The three encoder configs as plain dicts, by the order in the module docstring."""
    resolved = {}
    for name, embedded_key, override, builtin in (
        ("vision", "vision_config", sources.vision, SIGLIP_SO400M),
        ("whisper", "speech_config", sources.whisper, WHISPER_LARGE_V3),
        ("qformer", "qformer_config", sources.qformer, BERT_BASE_UNCASED),
    ):
        if override:
            cfg = read_json(source_folder(override, name) / "config.json")
            # A full SiglipConfig (text + vision) keeps the vision part under "vision_config".
            if name == "vision" and "vision_config" in cfg:
                cfg = cfg["vision_config"]
        elif isinstance(checkpoint_config.get(embedded_key), dict):
            cfg = checkpoint_config[embedded_key]
        else:
            cfg = dict(builtin)
        resolved[name] = cfg
    return resolved
