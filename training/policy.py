"""The policy: the loaded model's LLM with LoRA adapters; the reference is the same LLM with the
adapters switched off (``disable_adapter()``), so one model in memory serves both.

QLoRA: the LLM's projections are 4-bit NF4 ``bnb.nn.Linear4bit`` (``inference.model.loading`` loads
them so), the LoRA weights on top are float32, everything else is frozen. We do not call
``peft.prepare_model_for_kbit_training``: it casts every non-quantized weight to float32, which
at real size turns the bf16 embeddings and lm_head (2 x 545M parameters) into 4.4 GB instead of
2.2 GB; bf16 compute is stable without it. Gradient checkpointing is the non-reentrant kind,
which needs no gradient on the inputs (our inputs are embeddings made outside the LLM).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from training.config import LoraSettings


def add_lora(model, settings: LoraSettings, gradient_checkpointing: bool = True):
    """Freeze the whole VideoSalmonnO1 and wrap ``model.llm`` with fresh LoRA adapters (B = 0,
    so the policy starts equal to the reference). Returns the PeftModel (also ``model.llm``).
    Seed torch before calling: A is randomly initialised."""
    from peft import LoraConfig, get_peft_model

    model.requires_grad_(False)
    llm = model.llm
    keep_4bit_trainable(llm)
    if gradient_checkpointing:
        llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model.llm = get_peft_model(llm, lora)
    return model.llm


def keep_4bit_trainable(llm) -> int:
    """Stop bitsandbytes' CPU inference repacking of NF4 weights, and undo it where done.

    On a CPU with AVX512-BF16, ``Linear4bit.forward`` in eval mode without gradients repacks its
    weight into a layout only the inference kernel reads (bitsandbytes 0.50, nn/modules.py:613);
    a later forward with gradients then fails in ``matmul_4bit`` (``result += bias`` on a view).
    The reference and evaluation passes run exactly so, so training must keep the canonical
    layout. Returns the number of 4-bit layers seen."""
    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except ImportError:  # no bitsandbytes: nothing is quantized
        return 0
    n = 0
    for module in llm.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            n += 1
            module.support_avx512bf16_for_cpu = False
            state = getattr(module.weight, "quant_state", None)
            if state is not None and getattr(state, "packing_format_for_cpu", False):
                module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                    module.weight.data, state
                )
    return n


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def _token_logps(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(R, D) hidden states, (R,) target ids -> (R,) float32 log-probs of the targets."""
    logits = head(hidden).float()  # (R, V)
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]


class PairScorer(nn.Module):
    """Log-probs of the scored tokens of a packed group of pairs (training.packing), one LLM pass.

    Only hidden states at the prediction rows reach lm_head, a chunk of rows at a time; with
    gradients on, each chunk is checkpointed, so no (T, V) or even (R, V) float32 logits are kept
    for backward. This module is what ``accelerate`` wraps (DDP sees the forward)."""

    def __init__(self, llm: nn.Module, logits_chunk: int = 128) -> None:
        super().__init__()
        self.llm = llm
        self.logits_chunk = logits_chunk

    def forward(
        self,
        embeds: torch.Tensor,  # (1, T, D) prompt with AV block, then each pair's context and candidates
        position_ids: torch.Tensor,  # (1, T)
        masks: dict[str, torch.Tensor],  # per layer type, (1, 1, T, T) additive
        rows: torch.Tensor,  # (R,) prediction rows
        targets: torch.Tensor,  # (R,) the tokens those rows predict
    ) -> torch.Tensor:
        decoder, head = self.llm.get_decoder(), self.llm.get_output_embeddings()
        hidden = decoder(
            inputs_embeds=embeds, position_ids=position_ids, attention_mask=masks, use_cache=False
        ).last_hidden_state[0]
        picked = hidden[rows]  # (R, D)
        pieces = []
        for start in range(0, picked.shape[0], self.logits_chunk):
            h, t = picked[start : start + self.logits_chunk], targets[start : start + self.logits_chunk]
            if torch.is_grad_enabled():
                pieces.append(checkpoint(_token_logps, head, h, t, use_reentrant=False))
            else:
                pieces.append(_token_logps(head, h, t))
        return torch.cat(pieces)


@contextlib.contextmanager
def reference(llm) -> Iterator[None]:
    """The reference policy: adapters off, no gradients."""
    with torch.no_grad(), llm.disable_adapter():
        yield
