"""A random checkpoint with the released model's widths, a few layers deep, laid out as the hub
stores large checkpoints.

    python -m inference.model.realwidth OUT_DIR [--llm-layers 1]

writes, under ``OUT_DIR``:

    checkpoint/                       config.json (the released fields, real widths, N layers),
                                      model-0000k-of-0000n.safetensors + model.safetensors.index.json,
                                      generation_config.json, the Qwen2 tokenizer files
    google/siglip-so400m-patch14-384/ config.json (SiglipModel format: text + vision parts)
    openai/whisper-large-v3/          config.json
    google-bert/bert-base-uncased/    config.json

The three component folders stand in for the hub repos the official inference reads the encoder
architectures from (the released config.json does not carry them); pass them as the loader's
``ComponentSources`` (or lay them out as a hub cache and pass their hub ids). Widths, heads and
vocabulary are the released ones (Qwen2-7B, SigLIP so400m, Whisper large-v3, BERT base); only
the depth is cut, so what is measured per layer scales to the full model (``bench/realwidth.py``).

Memory: every tensor is drawn straight in bfloat16 and written shard by shard, so the build holds
one shard at a time (``shard_mb``), never the model: the two 152064 x 3584 tables alone are 2.2 GB
in bf16. Weights are N(0, 0.02) as transformers initialises them, norms 1, so activations have
the scale of a freshly initialised model (nothing here is trained: the output is meaningless).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inference.model.config import RELEASED_CHECKPOINT, ComponentSources

SIGLIP_ID = "google/siglip-so400m-patch14-384"
WHISPER_ID = "openai/whisper-large-v3"
BERT_ID = "google-bert/bert-base-uncased"


@dataclass(frozen=True)
class WidthRecipe:
    """The released widths (defaults) and a cut depth. The layer counts are those of the
    checkpoint; SigLIP's last layer is dropped on load, as the official tower does."""

    vocab: int = 152064  # Qwen2-7B's embedding rows (the tokenizer uses the first 151646)
    llm_hidden: int = 3584
    llm_heads: int = 28
    llm_kv_heads: int = 4
    llm_intermediate: int = 18944
    llm_layers: int = 1  # released: 28
    vision_hidden: int = 1152
    vision_heads: int = 16
    vision_intermediate: int = 4304
    vision_layers: int = 2  # released: 27 (26 used)
    whisper_width: int = 1280
    whisper_heads: int = 20
    whisper_ffn: int = 5120
    whisper_layers: int = 1  # released: 32
    qformer_hidden: int = 768
    qformer_heads: int = 12
    qformer_intermediate: int = 3072
    shard_mb: int = 1024  # the hub's shards are ~4-5 GB; smaller here so there are several
    std: float = 0.02
    seed: int = 0


# The depth of the released model, for scaling what a cut model measures.
RELEASED_DEPTH = {"llm_layers": 28, "vision_layers": 27, "whisper_layers": 32}


def checkpoint_config(r: WidthRecipe) -> dict[str, Any]:
    """config.json with the released checkpoint's fields (official_tiny/checkpoint/config.json's
    format), at the recipe's sizes. No encoder configs: the released file has none."""
    return {
        "architectures": ["videoSALMONNo1ForCausalLM"],
        "model_type": "videosalmonno1",
        "add_time_token": True,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "hidden_size": r.llm_hidden,
        "intermediate_size": r.llm_intermediate,
        "initializer_range": r.std,
        "max_position_embeddings": 32768,
        "max_window_layers": 28,
        "mm_hidden_size": r.vision_hidden,
        "mm_newline_position": "grid",
        "mm_patch_merge_type": "spatial_unpad",
        "mm_pooling_position": "before",
        "mm_projector_type": "mlp2x_gelu",
        "mm_spatial_pool_mode": "max",
        "mm_spatial_pool_stride": 2,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": SIGLIP_ID,
        "num_attention_heads": r.llm_heads,
        "num_hidden_layers": r.llm_layers,
        "num_key_value_heads": r.llm_kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "tokenizer_model_max_length": 32768,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": r.vocab,
        "model_args": {
            "whisper_path": "whisper-large-v3",
            "vision_tower": SIGLIP_ID,
            "num_speech_query_token": 1,
        },
        "studio_realwidth": asdict(r),  # what built it; the loader ignores it
    }


def component_configs(r: WidthRecipe) -> dict[str, dict[str, Any]]:
    """The three hub configs in their own repos' formats, at the recipe's sizes."""
    siglip = {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "text_config": {"hidden_size": r.vision_hidden, "model_type": "siglip_text_model"},
        "vision_config": {
            "hidden_size": r.vision_hidden,
            "image_size": 384,
            "intermediate_size": r.vision_intermediate,
            "model_type": "siglip_vision_model",
            "num_attention_heads": r.vision_heads,
            "num_hidden_layers": r.vision_layers,
            "patch_size": 14,
        },
    }
    whisper = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "d_model": r.whisper_width,
        "encoder_layers": r.whisper_layers,
        "encoder_attention_heads": r.whisper_heads,
        "encoder_ffn_dim": r.whisper_ffn,
        "decoder_layers": r.whisper_layers,
        "decoder_attention_heads": r.whisper_heads,
        "decoder_ffn_dim": r.whisper_ffn,
        "num_mel_bins": 128,
        "max_source_positions": 1500,
        "max_target_positions": 448,
        "activation_function": "gelu",
        "scale_embedding": False,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "vocab_size": 51866,
        "pad_token_id": 50256,
        "bos_token_id": 50257,
        "eos_token_id": 50257,
        "decoder_start_token_id": 50258,
        "torch_dtype": "float16",
    }
    bert = {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "hidden_size": r.qformer_hidden,
        "num_attention_heads": r.qformer_heads,
        "intermediate_size": r.qformer_intermediate,
        "num_hidden_layers": 12,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "type_vocab_size": 2,
        "vocab_size": 30522,
        "pad_token_id": 0,
    }
    return {SIGLIP_ID: siglip, WHISPER_ID: whisper, BERT_ID: bert}


def official_shapes(r: WidthRecipe) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint, by its official name, built on the meta device (no memory)."""
    import torch
    from transformers import Qwen2ForCausalLM

    from inference.model.config import resolve_component_configs
    from inference.model.loading import qwen2_config
    from inference.model.modeling import VideoSalmonnO1, port_to_official_key

    config = checkpoint_config(r)
    components = component_configs(r)
    resolved = resolve_component_configs(
        {
            "vision_config": components[SIGLIP_ID]["vision_config"],
            "speech_config": components[WHISPER_ID],
            "qformer_config": components[BERT_ID],
        },
        ComponentSources(),
    )
    with torch.device("meta"):
        model = VideoSalmonnO1(
            llm=Qwen2ForCausalLM(qwen2_config(config, "sdpa")),
            vision_config=resolved["vision"],
            whisper_config=resolved["whisper"],
            qformer_config=resolved["qformer"],
            mm_hidden_size=r.vision_hidden,
            hidden_size=r.llm_hidden,
        )
    shapes = {port_to_official_key(k): tuple(t.shape) for k, t in model.state_dict().items()}
    shapes["speech_Qformer.bert.embeddings.position_ids"] = (1, 512)
    return shapes


def random_tensor(key: str, shape: tuple[int, ...], r: WidthRecipe, generator):
    """bf16, drawn in place: norms' weights 1 and biases 0, the newline N(0, 1/hidden) as the
    official init, everything else N(0, std)."""
    import torch

    if key.endswith("position_ids"):
        return torch.arange(shape[-1]).unsqueeze(0)
    tensor = torch.empty(shape, dtype=torch.bfloat16)
    is_norm = any(part in key.lower() for part in ("norm", "ln_speech", "layer_norm"))
    if is_norm and key.endswith(".weight"):
        return tensor.fill_(1.0)
    if is_norm and key.endswith(".bias"):
        return tensor.zero_()
    std = r.llm_hidden**-0.5 if key == "model.image_newline" else r.std
    return tensor.normal_(0.0, std, generator=generator)


def plan_shards(shapes: dict[str, tuple[int, ...]], shard_bytes: int) -> list[list[str]]:
    """Keys in order, cut into shards of at most ``shard_bytes`` (a bigger tensor sits alone)."""
    import math

    shards: list[list[str]] = [[]]
    size = 0
    for key, shape in shapes.items():
        nbytes = 2 * math.prod(shape)
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    return shards


def write_checkpoint(folder: Path, r: WidthRecipe, log=print) -> None:
    import torch
    from safetensors.torch import save_file

    from inference.model.tokenizer import save_qwen2_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(r.seed)
    shapes = official_shapes(r)
    shards = plan_shards(shapes, r.shard_mb * 2**20)
    weight_map, total = {}, 0
    for number, keys in enumerate(shards, 1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        tensors = {k: random_tensor(k, shapes[k], r, generator) for k in keys}
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        del tensors  # one shard in memory at a time
        weight_map.update(dict.fromkeys(keys, name))
        log(f"realwidth: wrote {name} ({len(keys)} tensors)")
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (folder / "config.json").write_text(json.dumps(checkpoint_config(r), indent=2) + "\n")
    generation = {"bos_token_id": 151643, "eos_token_id": 151645, "do_sample": False}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    save_qwen2_tokenizer(folder)


@dataclass(frozen=True)
class RealWidthFolders:
    root: Path
    checkpoint: Path

    @property
    def sources(self) -> ComponentSources:
        return ComponentSources(
            vision=str(self.root / SIGLIP_ID),
            whisper=str(self.root / WHISPER_ID),
            qformer=str(self.root / BERT_ID),
        )

    def component(self, hub_id: str) -> Path:
        return self.root / hub_id


def build_realwidth(out_dir: str | Path, recipe: WidthRecipe = WidthRecipe(), log=print) -> RealWidthFolders:
    """Write the checkpoint and the three component configs under ``out_dir`` (module docstring)."""
    root = Path(out_dir)
    for hub_id, config in component_configs(recipe).items():
        (root / hub_id).mkdir(parents=True, exist_ok=True)
        (root / hub_id / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_checkpoint(root / "checkpoint", recipe, log=log)
    return RealWidthFolders(root, root / "checkpoint")


REALWIDTH_FORMAT_VERSION = 1  # bump when the recipe or layout changes, so cached builds are rebuilt


def cached_realwidth(recipe: WidthRecipe = WidthRecipe(), log=print) -> RealWidthFolders:
    """The build for ``recipe``, kept under the studio cache (``STUDIO_CACHE``) and made on first
    use (about 3 GB on disk at the default depth). A build goes to a staging folder renamed into
    place, so a crash never leaves a half-written checkpoint behind."""
    import hashlib
    import os
    import shutil

    from inference.tiny import cache_root

    digest = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()[:10]
    target = cache_root() / f"realwidth-v{REALWIDTH_FORMAT_VERSION}-{digest}"
    if (target / "checkpoint" / "model.safetensors.index.json").exists():
        return RealWidthFolders(target, target / "checkpoint")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"{target.name}.building-{os.getpid()}"
    build_realwidth(staging, recipe, log=log)
    try:
        staging.rename(target)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    return RealWidthFolders(target, target / "checkpoint")


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(description=f"random checkpoint at {RELEASED_CHECKPOINT}'s widths")
    parser.add_argument("out_dir")
    parser.add_argument("--llm-layers", type=int, default=WidthRecipe.llm_layers)
    parser.add_argument("--shard-mb", type=int, default=WidthRecipe.shard_mb)
    args = parser.parse_args(argv)
    recipe = WidthRecipe(llm_layers=args.llm_layers, shard_mb=args.shard_mb)
    folders = build_realwidth(args.out_dir, recipe, log=lambda m: print(m, file=sys.stderr))
    print(folders.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
