"""The pDPO training loop: ``batch_pairs`` pairs per optimizer step, ``accelerate``-ready.

Pairs on the same clip and prompt form a group that runs as ONE packed forward (the ~11k-token
prompt + AV block once, every pair a small tree on it: training.packing); with
``group_by_clip`` (the default) each batch is drawn from one clip's pairs, so a step costs about
one pass over its clip instead of one per pair. The reference log-probs (adapter off, no
gradients) are computed once per pair, by group, and kept (they never change). Gradients of
the groups of a batch are accumulated, then one optimizer step.

Under ``accelerate launch`` with N processes each takes every N-th batch of the same seeded
order (equal counts, so every process steps together); ``accelerator.prepare`` wraps the scorer
in DDP, which averages the LoRA gradients. With plain ``python`` on the CPU the same code runs
as one process.
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
from training.packing import Branch, pack, packed_masks, shared_length
from training.policy import PairScorer, add_lora, reference, trainable_parameters


@dataclass(frozen=True)
class GroupInputs:
    """One packed forward's inputs, on the LLM's device."""

    embeds: torch.Tensor  # (1, T, D)
    position_ids: torch.Tensor  # (1, T)
    masks: dict[str, torch.Tensor]  # per layer type, (1, 1, T, T)
    rows: torch.Tensor  # (R,) prediction rows
    targets: torch.Tensor  # (R,) the tokens they predict
    candidate: torch.Tensor  # (R,) which candidate each row scores: 2p (chosen of pair p) or 2p + 1
    n_pairs: int


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated (CUDA) or peak resident set size of the process (CPU), MiB."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def group_key(pair: PairExample) -> tuple:
    """Pairs with the same key share the packed shared part (clip and prompt)."""
    return (pair.video_sha256, pair.prompt_ids)


def reference_key(pair: PairExample) -> tuple:
    """Everything the reference log-probs of a pair depend on (not its index: train and
    held-out files both number their records from 0)."""
    return (pair.video_sha256, pair.prompt_ids, pair.context_ids, pair.chosen_ids, pair.rejected_ids)


def split_groups(pairs: Sequence[PairExample], size: int | None = None) -> list[list[PairExample]]:
    """Pairs by group key (in order of first appearance), each group cut to ``size`` at most."""
    groups: dict[tuple, list[PairExample]] = {}
    for pair in pairs:
        groups.setdefault(group_key(pair), []).append(pair)
    out = []
    for members in groups.values():
        step = size or len(members)
        out.extend(members[i : i + step] for i in range(0, len(members), step))
    return out


def group_inputs(model, features: FeatureCache, pairs: Sequence[PairExample]) -> GroupInputs:
    """The packed sequence of pairs that share one clip and prompt."""
    first = pairs[0]
    if any(group_key(p) != group_key(first) for p in pairs):
        raise ValueError("a packed group needs pairs of one clip and one prompt")
    block = features.get(first.video_sha256, first.video_path)
    group = pack(
        shared_length(first.prompt_ids, block.shape[0]),
        [Branch(p.context_ids, p.chosen_ids, p.rejected_ids) for p in pairs],
    )
    with torch.no_grad():
        embeds = model.embed_prompt([*first.prompt_ids, *group.ids], [block])  # frozen embeddings
    if group.length != embeds.shape[1]:
        raise ValueError(f"packed layout of {group.length} rows does not match {embeds.shape[1]} embeddings")
    device = embeds.device
    candidate = []
    for p, (_, n_chosen, n_rejected) in enumerate(group.spans):
        candidate += [2 * p] * n_chosen + [2 * p + 1] * n_rejected
    return GroupInputs(
        embeds=embeds,
        position_ids=group.position_ids().to(device),
        masks=packed_masks(model.llm.config, group, embeds.dtype, device),
        rows=torch.tensor(group.rows, device=device),
        targets=torch.tensor(group.targets, device=device),
        candidate=torch.tensor(candidate, device=device),
        n_pairs=len(pairs),
    )


def candidate_logps(scorer, inputs: GroupInputs) -> torch.Tensor:
    """(P, 2) log pi of each pair's (chosen, rejected) from one packed pass of ``scorer``."""
    token = scorer(inputs.embeds, inputs.position_ids, inputs.masks, inputs.rows, inputs.targets)
    sums = torch.zeros(2 * inputs.n_pairs, dtype=token.dtype, device=token.device)
    return sums.index_add(0, inputs.candidate, token).view(inputs.n_pairs, 2)


@torch.no_grad()
def adapter_margins(
    model, pairs: Sequence[PairExample], features: FeatureCache, beta: float = 0.1, group_size: int = 8
):
    """pDPO losses and rewards of ``pairs`` under any LoRA-wrapped model (e.g. one loaded with
    ``LoadSettings(adapter=...)``): the policy with the adapter on, the reference with it off."""
    scorer = PairScorer(model.llm)
    values: dict[int, list[float]] = {}
    for group in split_groups(pairs, group_size):
        inputs = group_inputs(model, features, group)
        policy = candidate_logps(scorer, inputs)
        with model.llm.disable_adapter():
            ref = candidate_logps(scorer, inputs)
        for i, pair in enumerate(group):
            values[id(pair)] = [*policy[i].tolist(), *ref[i].tolist()]
    v = torch.tensor([values[id(p)] for p in pairs], dtype=torch.float64)
    labels = torch.tensor([p.label for p in pairs])
    return pdpo_losses(v[:, 0], v[:, 1], v[:, 2], v[:, 3], labels, beta)


class PDPOTrainer:
    """Wraps a loaded model (``inference.model.loading.LoadedModel``) for pDPO. Construction adds the
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
        self._ref: dict[tuple, tuple[float, float]] = {}
        self.step = 0
        self.history: list[dict[str, Any]] = []

    # ---- pieces -------------------------------------------------------------------------------
    @property
    def llm(self):
        """The PeftModel (outside any DDP wrapper)."""
        return self.accelerator.unwrap_model(self.scorer).llm

    def inputs(self, pairs: Sequence[PairExample]) -> GroupInputs:
        return group_inputs(self.model, self.features, pairs)

    def reference_logps(self, pairs: Sequence[PairExample]) -> torch.Tensor:
        """(P, 2) log pi_ref of each pair's (chosen, rejected): the base model, adapters off;
        computed once per pair (by group) and cached."""
        missing = list({reference_key(p): p for p in pairs if reference_key(p) not in self._ref}.values())
        for group in split_groups(missing, self.config.pack_pairs or self.config.batch_pairs):
            with reference(self.llm):
                values = candidate_logps(self.accelerator.unwrap_model(self.scorer), self.inputs(group))
            for pair, (chosen, rejected) in zip(group, values.tolist(), strict=True):
                self._ref[reference_key(pair)] = (chosen, rejected)
        return torch.tensor([self._ref[reference_key(p)] for p in pairs])

    def policy_logps(self, pairs: Sequence[PairExample], grad: bool = True) -> torch.Tensor:
        """(P, 2) log pi_theta of one group's pairs (with a graph when ``grad``)."""
        if grad:
            return candidate_logps(self.scorer, self.inputs(pairs))
        with torch.no_grad():
            return candidate_logps(self.accelerator.unwrap_model(self.scorer), self.inputs(pairs))

    def pair_losses(self, pairs: Sequence[PairExample]):
        """(pDPO losses and rewards, policy log-probs (P, 2)) of ``pairs``, without gradients."""
        policy: dict[int, torch.Tensor] = {}
        for group in split_groups(pairs, self.config.pack_pairs or self.config.batch_pairs):
            for pair, values in zip(group, self.policy_logps(group, grad=False).cpu(), strict=True):
                policy[id(pair)] = values
        logps = torch.stack([policy[id(p)] for p in pairs])
        ref = self.reference_logps(pairs)
        labels = torch.tensor([p.label for p in pairs])
        return pdpo_losses(logps[:, 0], logps[:, 1], ref[:, 0], ref[:, 1], labels, self.config.beta), logps

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
                losses, logps = self.pair_losses(pairs)
            finally:
                llm.train(was_training)
            result = {
                "pairs": len(pairs),
                "loss": float(losses.loss.mean()),
                "accuracy": preference_accuracy(losses.margin),
                "margin": float(losses.margin.mean()),
                "logp_accuracy": float((logps[:, 0] > logps[:, 1]).float().mean()),
            }
        self.accelerator.wait_for_everyone()
        return result

    # ---- training -------------------------------------------------------------------------------
    def schedule(self, pairs: Sequence[PairExample]) -> list[list[PairExample]]:
        """This process's batches over all epochs, in a seeded order. ``group_by_clip``: every
        batch from one clip and prompt (pairs shuffled within it, batches shuffled); else plain
        shuffled pairs. Every process gets the same number of batches."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        size = self.config.batch_pairs
        batches: list[list[PairExample]] = []
        for epoch in range(self.config.epochs):
            rng = random.Random(self.config.seed * 1_000_003 + epoch)
            if self.config.group_by_clip:
                chunks = []
                for members in split_groups(pairs):
                    rng.shuffle(members)
                    chunks.extend(members[i : i + size] for i in range(0, len(members), size))
                rng.shuffle(chunks)
            else:
                order = list(pairs)
                rng.shuffle(order)
                chunks = [order[i : i + size] for i in range(0, len(order), size)]
            batches.extend(chunks[: len(chunks) - len(chunks) % world][rank::world])
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

    def train_step(self, batch: Sequence[PairExample]) -> torch.Tensor:
        """Accumulate the gradients of one batch (group by group); returns this process's
        (loss sum, correct, margin sum, pairs) for the log."""
        ref = self.reference_logps(batch)
        by_pair = {id(p): i for i, p in enumerate(batch)}
        groups = split_groups(batch, self.config.pack_pairs)
        totals = torch.zeros(4, dtype=torch.float64)
        for g, group in enumerate(groups):
            last = g == len(groups) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.scorer)
            with sync:
                logps = self.policy_logps(group, grad=True)
                index = torch.tensor([by_pair[id(p)] for p in group])
                group_ref = ref[index].to(logps.device)
                labels = torch.tensor([p.label for p in group], device=logps.device)
                out = pdpo_losses(
                    logps[:, 0], logps[:, 1], group_ref[:, 0], group_ref[:, 1], labels, self.config.beta
                )
                self.accelerator.backward(out.loss.sum() / len(batch))
            margin = out.margin.detach().double().cpu()
            totals += torch.tensor(
                [float(out.loss.detach().sum()), float((margin > 0).sum()), float(margin.sum()), len(group)],
                dtype=torch.float64,
            )
        return totals

    def train(self, pairs: Sequence[PairExample], eval_pairs: Sequence[PairExample] = ()) -> dict[str, Any]:
        """Run the configured steps; returns the summary (the log holds every step)."""
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
            totals = self.train_step(batch)
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            self.optimizer.step()
            scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            # sums over every process (batches may differ in size between processes)
            loss_sum, correct, margin_sum, n = accelerator.reduce(
                totals.to(accelerator.device), "sum"
            ).tolist()
            seen += int(n)
            record = {
                "event": "step",
                "step": self.step,
                "of": total,
                "loss": loss_sum / n,
                "accuracy": correct / n,
                "margin": margin_sum / n,
                "grad_norm": float(grad_norm),
                "lr": lr,
                "pairs": int(n),
                "groups": len(split_groups(batch, config.pack_pairs)),
                "pairs_per_s": n / (time.perf_counter() - t0),
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
