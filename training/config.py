"""pDPO training settings: one frozen dataclass per concern, a reason beside every default.

The paper gives the LoRA rank and scaling (r 64, alpha 256); it gives no beta, learning rate or
soft-label temperature, so those defaults are the usual DPO ones and say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PAIR_TYPES = ("step", "full_path")  # annotation_db pdpo export ``pair_type`` values
LABELS = ("soft", "hard")
# Every linear projection of a Qwen2 decoder layer: attention and MLP (the issue's "attention
# and MLP projections"; QLoRA's finding that adapting all of them matches full fine-tuning).
QWEN2_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 64  # paper: LoRA rank 64
    alpha: int = 256  # paper: scaling alpha 256 (alpha / r = 4); the official code's default is 16
    dropout: float = 0.05  # official TrainingArguments.lora_dropout (inference.py:216)
    target_modules: tuple[str, ...] = QWEN2_PROJECTIONS


@dataclass(frozen=True)
class PDPOConfig:
    """Everything that decides a training run (saved beside the adapter)."""

    beta: float = 0.1  # reward scale in r(s) = beta * log(pi/pi_ref); DPO's usual value, paper gives none
    labels: str = (
        "soft"  # "soft": a = the export's soft_label, at least 0.5 (1.0 where no rollouts); "hard": a = 1
    )
    pair_types: tuple[str, ...] = PAIR_TYPES  # paper: step pairs AND full-path pairs, always both
    # Keep pairs whose rollouts favour the rejected candidate: the human decided them, and
    # their soft label is 0.5 (no push either way) in soft mode; drop them to train on
    # human decisions the rollouts agree with only.
    drop_rollout_conflicts: bool = False
    learning_rate: float = 1e-5  # AdamW on the LoRA weights; common for LoRA DPO, paper gives none
    weight_decay: float = 0.0  # LoRA weights start at B = 0: decay would only pull back to the base
    warmup_ratio: float = 0.1  # linear warmup over this share of the steps, then linear decay to 0
    epochs: int = 1  # passes over the pairs; the paper gives none, one pass is the usual DPO recipe
    max_steps: int | None = None  # stop after this many optimizer steps (None: all epochs)
    batch_pairs: int = 8  # pairs per optimizer step (and at most per packed forward)
    group_by_clip: bool = True  # each batch from one clip's pairs: one packed pass over the clip per step
    pack_pairs: int | None = None  # at most this many pairs per packed pass (None: a batch's whole group)
    max_grad_norm: float = 1.0  # clip the LoRA gradient norm: DPO margins can spike early
    seed: int = 0  # seeds LoRA init, pair order and dropout
    quantization: str = "auto"  # "4bit" (QLoRA, default on CUDA) | "8bit" | "none" (default on CPU)
    device: str = "auto"  # "cuda" / "cpu" / "auto"; under ``accelerate launch`` each process's GPU
    gradient_checkpointing: bool = True  # recompute layer activations in backward: 11k-token inputs
    logits_chunk: int = 128  # lm_head rows at a time: 128 x 152k float32 = 78 MB, recomputed in backward
    offload_encoders: bool = True  # once every clip's AV block is cached, move the frozen encoders to CPU
    memory_clips: int = 16  # AV blocks kept in RAM (~80 MB each at real size); the rest on disk
    log_every: int = 1  # optimizer steps between log lines
    lora: LoraSettings = field(default_factory=LoraSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PDPOConfig:
        data = dict(data)
        lora = dict(data.pop("lora", None) or {})  # a copy: the caller keeps its dict
        if "target_modules" in lora:
            lora["target_modules"] = tuple(lora["target_modules"])
        if "pair_types" in data:
            data["pair_types"] = tuple(data["pair_types"])
        return cls(**data, lora=LoraSettings(**lora))

    def check(self) -> None:
        """Raise ValueError for settings that cannot run (the CLI turns it into a one-line error)."""
        if self.beta <= 0:
            raise ValueError("beta must be positive")
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {', '.join(LABELS)}, not {self.labels!r}")
        unknown = set(self.pair_types) - set(PAIR_TYPES)
        if unknown or not self.pair_types:
            raise ValueError(f"pair types must be among {', '.join(PAIR_TYPES)}, not {sorted(unknown)}")
        if self.batch_pairs < 1 or self.epochs < 1 or self.log_every < 1:
            raise ValueError("batch pairs, epochs and log interval must be at least 1")
        if self.pack_pairs is not None and self.pack_pairs < 1:
            raise ValueError("pack pairs must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max steps must be at least 1")
        if self.quantization not in ("auto", "4bit", "8bit", "none"):
            raise ValueError(f"quantization must be auto, 4bit, 8bit or none, not {self.quantization!r}")
        if self.lora.r < 1 or self.lora.alpha <= 0 or not 0 <= self.lora.dropout < 1:
            raise ValueError("LoRA rank must be >= 1, alpha > 0 and dropout in [0, 1)")
