"""The pDPO objective (paper section 3; shared/reference/video-salmonn-o1.md "pDPO").

For a pair with a shared prefix, preferred s and dispreferred s' on the same clip and question::

    r(s)  = beta * (log pi_theta(s | prefix, AV) - log pi_ref(s | prefix, AV))
    loss  = -[ a * log sigma(r(s) - r(s')) + (1 - a) * log sigma(r(s') - r(s)) ]

``a`` is the hard label 1 or the soft label max(0.5, sigma((p(s) - p(s')) / mu)) from rollout
correctness: the human decided s over s', so rollouts set how hard to push, never the direction
(``training.data``, "Labels").
With a = 1 this is DPO's loss; with the adapter off (pi_theta = pi_ref) every pair costs log 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PairLosses:
    """Per-pair values of one batch, all (B,) tensors."""

    loss: torch.Tensor
    chosen_reward: torch.Tensor  # r(s)
    rejected_reward: torch.Tensor  # r(s')

    @property
    def margin(self) -> torch.Tensor:
        return self.chosen_reward - self.rejected_reward


def pdpo_losses(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
) -> PairLosses:
    """Summed log-probs of each candidate under the policy and the reference, (B,) each, and the
    labels a (B,) -> per-pair loss and rewards. Computed in float32 (logsigmoid is stable)."""
    chosen = beta * (policy_chosen.float() - ref_chosen.float())
    rejected = beta * (policy_rejected.float() - ref_rejected.float())
    logits = chosen - rejected
    a = labels.to(logits.dtype)
    loss = -(a * F.logsigmoid(logits) + (1 - a) * F.logsigmoid(-logits))
    return PairLosses(loss, chosen, rejected)


def pdpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """The mean pDPO loss of a batch (a scalar)."""
    return pdpo_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, labels, beta).loss.mean()


def preference_accuracy(margins: torch.Tensor) -> float:
    """Share of pairs whose implicit reward prefers the export's chosen candidate: r(s) > r(s').
    A tie is not a success, so the base model (every r = 0) scores 0."""
    return float((margins > 0).float().mean()) if margins.numel() else 0.0
