"""The pDPO training loop: one pair at a time (a real clip is ~11k tokens), gradients accumulated
over ``batch_pairs`` pairs per optimizer step, ``accelerate``-ready.

Per pair: the reference log-probs (adapter off, no gradients) are computed once and kept (they
never change); the policy log-probs come from one packed forward over the shared prompt + AV
block + prefix with both candidates as branches (training.packing), then the pDPO loss
(training.loss). Under ``accelerate launch`` with N processes each takes every N-th pair of the
same seeded order (equal shares, so every process steps together); ``accelerator.prepare``
wraps the scorer in DDP, which averages the LoRA gradients. With plain ``python`` on the CPU
the same code runs as one process.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.config import PDPOConfig
from training.data import PairExample
from training.features import FeatureCache
from training.loss import pdpo_losses, preference_accuracy
from training.packing import PackedLayout, packed_masks, shared_length
from training.policy import PairScorer, add_lora, reference, trainable_parameters


@dataclass(frozen=True)
class PairInputs:
    embeds: torch.Tensor  # (1, T, D)
    position_ids: torch.Tensor  # (1, T)
    masks: dict[str, torch.Tensor]
    rows: torch.Tensor  # (n1 + n2,)
    targets: torch.Tensor  # (n1 + n2,)
    n_chosen: int


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated (CUDA) or peak resident set size of the process (CPU), MiB."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pair_inputs(model, features: FeatureCache, pair: PairExample) -> PairInputs:
    """The packed sequence of one pair (training.packing) on the LLM's device."""
    block = features.get(pair.video_sha256, pair.video_path)
    ids = [*pair.prompt_ids, *pair.context_ids, *pair.chosen_ids, *pair.rejected_ids]
    with torch.no_grad():
        embeds = model.embed_prompt(ids, [block])  # (1, T, D), frozen embeddings
    device = embeds.device
    layout = PackedLayout(
        shared_length(pair.prompt_ids, pair.context_ids, block.shape[0]),
        len(pair.chosen_ids),
        len(pair.rejected_ids),
    )
    if layout.length != embeds.shape[1]:
        raise ValueError(f"packed layout {layout} does not match {embeds.shape[1]} embeddings")
    return PairInputs(
        embeds=embeds,
        position_ids=layout.position_ids().to(device),
        masks=packed_masks(model.llm.config, layout, embeds.dtype, device),
        rows=layout.prediction_rows().to(device),
        targets=torch.tensor([*pair.chosen_ids, *pair.rejected_ids], device=device),
        n_chosen=layout.n_chosen,
    )


def reference_key(pair: PairExample) -> tuple:
    """Everything the reference log-probs of a pair depend on."""
    return (pair.video_sha256, pair.prompt_ids, pair.context_ids, pair.chosen_ids, pair.rejected_ids)


def candidate_logps(scorer, inputs: PairInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(chosen), log pi(rejected)) as 0-d tensors from one packed pass of ``scorer``."""
    token = scorer(inputs.embeds, inputs.position_ids, inputs.masks, inputs.rows, inputs.targets)
    return token[: inputs.n_chosen].sum(), token[inputs.n_chosen :].sum()


@torch.no_grad()
def adapter_margins(model, pairs: Sequence[PairExample], features: FeatureCache, beta: float = 0.1):
    """pDPO losses and rewards of ``pairs`` under any LoRA-wrapped model (e.g. one loaded with
    ``LoadSettings(adapter=...)``): the policy with the adapter on, the reference with it off."""
    scorer = PairScorer(model.llm)
    values = []
    for pair in pairs:
        inputs = pair_inputs(model, features, pair)
        policy = candidate_logps(scorer, inputs)
        with model.llm.disable_adapter():
            ref = candidate_logps(scorer, inputs)
        values.append([float(v) for v in (*policy, *ref)])
    v = torch.tensor(values, dtype=torch.float64)
    labels = torch.tensor([p.label for p in pairs])
    return pdpo_losses(v[:, 0], v[:, 1], v[:, 2], v[:, 3], labels, beta)


class PDPOTrainer:
    """Wraps a loaded model (``inference.loading.LoadedModel``) for pDPO. Construction adds the
    LoRA adapters to ``loaded.model.llm`` in place: load a model for training only."""

    def __init__(
        self,
        loaded,
        config: PDPOConfig = PDPOConfig(),
        features: FeatureCache | None = None,
        accelerator=None,
        log: Callable[[str], None] = print,
        log_file: str | Path | None = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        config.check()
        self.config = config
        self.loaded = loaded
        self.model = loaded.model
        self.accelerator = accelerator or Accelerator(cpu=not str(loaded.device).startswith("cuda"))
        self.device = str(loaded.device)
        self.log = log if self.accelerator.is_main_process else (lambda message: None)
        self.log_file = Path(log_file) if log_file and self.accelerator.is_main_process else None
        set_seed(config.seed)  # random, numpy, torch: LoRA's A init, dropout
        add_lora(self.model, config.lora, config.gradient_checkpointing)
        self.features = features or FeatureCache(self.model, memory_clips=config.memory_clips)
        scorer = PairScorer(self.model.llm, config.logits_chunk)
        optimizer = torch.optim.AdamW(
            trainable_parameters(scorer), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scorer, self.optimizer = self.accelerator.prepare(
            scorer, optimizer, device_placement=[False, False]
        )
        # Keyed by the pair's content (what the log-probs depend on), not its index: train and
        # held-out files both number their records from 0.
        self._ref: dict[tuple, tuple[float, float]] = {}
        self.step = 0
        self.history: list[dict[str, Any]] = []

    # ---- pieces -------------------------------------------------------------------------------
    @property
    def llm(self):
        """The PeftModel (outside any DDP wrapper)."""
        return self.accelerator.unwrap_model(self.scorer).llm

    def inputs(self, pair: PairExample) -> PairInputs:
        return pair_inputs(self.model, self.features, pair)

    def _logps(self, module, inputs: PairInputs) -> tuple[torch.Tensor, torch.Tensor]:
        return candidate_logps(module, inputs)

    def reference_logps(self, pair: PairExample, inputs: PairInputs | None = None) -> tuple[float, float]:
        """log pi_ref of (chosen, rejected): the base model, adapters off; cached per pair."""
        key = reference_key(pair)
        if key not in self._ref:
            inputs = inputs or self.inputs(pair)
            with reference(self.llm):
                chosen, rejected = self._logps(self.accelerator.unwrap_model(self.scorer), inputs)
            self._ref[key] = (float(chosen), float(rejected))
        return self._ref[key]

    def policy_logps(self, pair: PairExample, inputs: PairInputs | None = None, grad: bool = True):
        """log pi_theta of (chosen, rejected) as 0-d tensors (with a graph when ``grad``)."""
        inputs = inputs or self.inputs(pair)
        if grad:
            return self._logps(self.scorer, inputs)
        with torch.no_grad():
            return self._logps(self.accelerator.unwrap_model(self.scorer), inputs)

    def pair_losses(self, pairs: Sequence[PairExample], grad: bool = False):
        """pDPO losses and rewards of ``pairs`` (no gradients unless ``grad``)."""
        pc, pr, rc, rr = [], [], [], []
        for pair in pairs:
            inputs = self.inputs(pair)
            ref = self.reference_logps(pair, inputs)
            chosen, rejected = self.policy_logps(pair, inputs, grad=grad)
            pc.append(chosen)
            pr.append(rejected)
            rc.append(ref[0])
            rr.append(ref[1])
        labels = torch.tensor([p.label for p in pairs])
        return (
            pdpo_losses(
                torch.stack(pc).cpu(),
                torch.stack(pr).cpu(),
                torch.tensor(rc),
                torch.tensor(rr),
                labels,
                self.config.beta,
            ),
            torch.stack(pc).detach().cpu(),
            torch.stack(pr).detach().cpu(),
        )

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, pairs: Sequence[PairExample]) -> dict[str, float]:
        """Held-out figures of the current policy: mean loss, preference accuracy (share with
        r(s) > r(s'); ties count as wrong, so the untrained policy scores 0), mean reward
        margin, and logp_accuracy (share with log pi(s) > log pi(s'), which the base model can
        score too). Main process only; the others wait."""
        result: dict[str, float] = {}
        if self.accelerator.is_main_process and pairs:
            llm = self.llm
            was_training = llm.training
            llm.eval()  # no LoRA dropout
            try:
                losses, chosen, rejected = self.pair_losses(pairs, grad=False)
            finally:
                llm.train(was_training)
            result = {
                "pairs": len(pairs),
                "loss": float(losses.loss.mean()),
                "accuracy": preference_accuracy(losses.margin),
                "margin": float(losses.margin.mean()),
                "logp_accuracy": float((chosen > rejected).float().mean()),
            }
        self.accelerator.wait_for_everyone()
        return result

    # ---- training -------------------------------------------------------------------------------
    def schedule(self, pairs: Sequence[PairExample]) -> list[list[PairExample]]:
        """This process's batches, every epoch in a seeded order; equal counts on every process."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        batches: list[list[PairExample]] = []
        for epoch in range(self.config.epochs):
            order = list(pairs)
            random.Random(self.config.seed * 1_000_003 + epoch).shuffle(order)
            order = order[: len(order) - len(order) % world] if world > 1 else order
            mine = order[rank::world]
            size = self.config.batch_pairs
            batches.extend(mine[i : i + size] for i in range(0, len(mine), size))
        if self.config.max_steps is not None:
            batches = batches[: self.config.max_steps]
        if not batches:
            raise ValueError(f"{len(pairs)} pairs make no batch for {world} processes")
        return batches

    def _write(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def train(self, pairs: Sequence[PairExample], eval_pairs: Sequence[PairExample] = ()) -> dict[str, Any]:
        """Run the configured steps; returns the summary (also the last log records)."""
        config, accelerator = self.config, self.accelerator
        batches = self.schedule(pairs)
        total = len(batches)
        warmup = math.ceil(config.warmup_ratio * total)

        def lr_factor(step: int) -> float:  # linear warmup, then linear decay to 0
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        params = trainable_parameters(self.scorer)
        summary: dict[str, Any] = {"steps": total, "pairs_per_epoch": len(pairs)}
        if eval_pairs:
            summary["base_eval"] = self.evaluate(eval_pairs)
            self._write({"event": "eval", "step": 0, **summary["base_eval"]})
            self.log(_eval_line(0, summary["base_eval"]))
        self.llm.train()
        start = time.perf_counter()
        seen = 0
        for batch in batches:
            t0 = time.perf_counter()
            losses, margins = [], []
            for i, pair in enumerate(batch):
                inputs = self.inputs(pair)
                ref_chosen, ref_rejected = self.reference_logps(pair, inputs)
                last = i == len(batch) - 1
                sync = contextlib.nullcontext() if last else accelerator.no_sync(self.scorer)
                with sync:
                    chosen, rejected = self.policy_logps(pair, inputs, grad=True)
                    out = pdpo_losses(
                        chosen[None],
                        rejected[None],
                        torch.tensor([ref_chosen], device=chosen.device),
                        torch.tensor([ref_rejected], device=chosen.device),
                        torch.tensor([pair.label], device=chosen.device),
                        config.beta,
                    )
                    accelerator.backward(out.loss.sum() / len(batch))
                losses.append(out.loss.detach())
                margins.append(out.margin.detach())
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            self.optimizer.step()
            scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            loss_t = accelerator.gather(torch.cat(losses)).float()
            margin_t = accelerator.gather(torch.cat(margins)).float()
            seen += loss_t.numel()
            record = {
                "event": "step",
                "step": self.step,
                "of": total,
                "loss": float(loss_t.mean()),
                "accuracy": preference_accuracy(margin_t),
                "margin": float(margin_t.mean()),
                "grad_norm": float(grad_norm),
                "lr": lr,
                "pairs": int(loss_t.numel()),
                "pairs_per_s": loss_t.numel() / (time.perf_counter() - t0),
                "elapsed_s": round(time.perf_counter() - start, 3),
            }
            self._write(record)
            if self.step % config.log_every == 0 or self.step == total:
                self.log(
                    f"step {self.step}/{total}  loss {record['loss']:.4f}  acc {record['accuracy']:.2f}  "
                    f"margin {record['margin']:+.4f}  lr {lr:.2e}  {record['pairs_per_s']:.2f} pairs/s"
                )
        elapsed = time.perf_counter() - start
        summary.update(
            {
                "pairs_seen": seen,
                "train_s": round(elapsed, 3),
                "pairs_per_s": seen / elapsed if elapsed else 0.0,
                "peak_memory_mb": round(peak_memory_mb(self.device), 1),
                "features": dict(self.features.stats),
            }
        )
        if eval_pairs:
            summary["eval"] = self.evaluate(eval_pairs)
            self._write({"event": "eval", "step": self.step, **summary["eval"]})
            self.log(_eval_line(self.step, summary["eval"]))
        self.llm.eval()
        return summary

    def save(self, out: str | Path) -> Path:
        """Write the LoRA adapter (peft: adapter_config.json + adapter_model.safetensors)."""
        out = Path(out)
        if self.accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            self.llm.save_pretrained(str(out), safe_serialization=True)
        self.accelerator.wait_for_everyone()
        return out


def _eval_line(step: int, metrics: dict[str, float]) -> str:
    if not metrics:
        return f"eval at step {step}: (other process)"
    return (
        f"eval at step {step}: {metrics['pairs']} pairs  loss {metrics['loss']:.4f}  "
        f"acc {metrics['accuracy']:.2f}  margin {metrics['margin']:+.4f}  "
        f"logp acc {metrics['logp_accuracy']:.2f}"
    )
