"""The pDPO objective against hand-computed values."""

from __future__ import annotations

import math

import torch

from training.loss import pdpo_loss, pdpo_losses, preference_accuracy


def test_loss_of_two_pairs_equals_the_hand_computed_value():
    # pair 1, hard label 1: r(s) = 0.1 * (-10 - -11) = 0.1, r(s') = 0.1 * (-12 - -11.5) = -0.05
    #   loss = -log sigma(0.15) = log(1 + e^-0.15) = 0.62095705
    # pair 2, soft label 0.7: r(s) = 0.1 * (-20 - -20.5) = 0.05, r(s') = 0.1 * (-17 - -18) = 0.1
    #   loss = -(0.7 log sigma(-0.05) + 0.3 log sigma(0.05)) = 0.7 * 0.71846 + 0.3 * 0.66846 = 0.70345965
    # mean = 0.66220835
    args = (
        torch.tensor([-10.0, -20.0]),
        torch.tensor([-12.0, -17.0]),
        torch.tensor([-11.0, -20.5]),
        torch.tensor([-11.5, -18.0]),
        torch.tensor([1.0, 0.7]),
    )
    out = pdpo_losses(*args, beta=0.1)
    torch.testing.assert_close(out.chosen_reward, torch.tensor([0.1, 0.05]))
    torch.testing.assert_close(out.rejected_reward, torch.tensor([-0.05, 0.1]))
    torch.testing.assert_close(out.loss, torch.tensor([0.62095705, 0.70345965]))
    assert math.isclose(float(pdpo_loss(*args, beta=0.1)), 0.66220835, abs_tol=1e-6)
    # the same by the formula, spelled out
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = (-math.log(sig(0.15)) - (0.7 * math.log(sig(-0.05)) + 0.3 * math.log(sig(0.05)))) / 2
    assert math.isclose(float(pdpo_loss(*args, beta=0.1)), expected, abs_tol=1e-6)


def test_equal_policy_and_reference_cost_log_2_whatever_the_label():
    logp = torch.tensor([-3.0, -40.0, -7.5])
    out = pdpo_losses(logp, logp - 2, logp, logp - 2, torch.tensor([1.0, 0.5, 0.9]), beta=0.1)
    torch.testing.assert_close(out.loss, torch.full((3,), math.log(2)))
    assert out.margin.tolist() == [0.0, 0.0, 0.0]


def test_a_label_of_zero_prefers_the_other_candidate():
    args = (torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), torch.tensor([-1.0]))
    one = pdpo_losses(*args, torch.tensor([1.0]), beta=1.0).loss
    zero = pdpo_losses(*args, torch.tensor([0.0]), beta=1.0).loss
    assert float(one) < math.log(2) < float(zero)  # margin +2: right for a = 1, wrong for a = 0


def test_preference_accuracy_counts_ties_as_wrong():
    assert preference_accuracy(torch.tensor([0.0, 0.0, 0.0])) == 0.0
    assert preference_accuracy(torch.tensor([0.5, -0.1, 0.0, 2.0])) == 0.5
