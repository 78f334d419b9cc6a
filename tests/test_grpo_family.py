"""GRPO family (grpo, dr-grpo, dapo, gspo): advantage estimators and policy losses with hand-worked
numbers and the papers' limiting cases."""

import math

import pytest
import torch

from posttrain_plugins.grpo import clipped_surrogate, group_advantages, grpo_loss, k3_kl

# --- grpo ---------------------------------------------------------------------------------------


def test_group_advantages_hand_worked():
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), std_epsilon=0.0)
    # mean 0.25; unbiased std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    assert torch.allclose(adv, torch.tensor([[1.5, -0.5, -0.5, -0.5]]))


def test_group_advantages_zero_when_rewards_equal():
    adv = group_advantages(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.3, 0.3, 0.3]]))
    assert torch.equal(adv, torch.zeros(3, 3))


def test_group_advantages_are_per_group():
    adv = group_advantages(torch.tensor([[1.0, 0.0], [5.0, 3.0]]), std_epsilon=0.0)
    s = math.sqrt(0.5)  # unbiased std of two values d apart is d / sqrt(2)
    assert torch.allclose(adv, torch.tensor([[0.5 / s, -0.5 / s], [1.0 / (2 * s), -1.0 / (2 * s)]]))


def test_clipped_equals_unclipped_inside_trust_region():
    logps = torch.log(torch.tensor([[0.5, 0.55, 0.45]]))
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))  # ratios 1.0, 1.1, 0.9: inside [0.8, 1.2]
    for a in (2.0, -3.0):
        obj, clipped = clipped_surrogate(logps, old, torch.tensor([[a]]), 0.2, 0.2)
        assert torch.allclose(obj, torch.exp(logps - old) * a) and not clipped.any()


def test_clipped_surrogate_hand_worked_outside_region():
    logps = torch.log(torch.tensor([[1.5, 0.5]]))
    old = torch.zeros(1, 2)  # ratios 1.5 and 0.5
    obj, clipped = clipped_surrogate(logps, old, torch.tensor([[1.0]]), 0.2, 0.2)
    assert torch.allclose(obj, torch.tensor([[1.2, 0.5]]))  # positive A: capped at 1.2; 0.5 kept (min)
    assert clipped.tolist() == [[True, False]]
    obj, clipped = clipped_surrogate(logps, old, torch.tensor([[-1.0]]), 0.2, 0.2)
    assert torch.allclose(obj, torch.tensor([[-1.5, -0.8]]))  # negative A: floor at 0.8 binds
    assert clipped.tolist() == [[False, True]]


def test_k3_kl_zero_at_reference_and_hand_worked():
    logps = torch.tensor([-1.0, -2.0, -0.3])
    assert torch.equal(k3_kl(logps, logps), torch.zeros(3))
    # log(pi_ref / pi) = 1 -> e - 1 - 1
    assert torch.allclose(k3_kl(torch.tensor([-2.0]), torch.tensor([-1.0])), torch.tensor([math.e - 2]))
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_grpo_loss_at_ratio_one_is_minus_mean_advantage():
    """At the start of an update (rho = 1, policy = reference) the loss is -mean(A) and its gradient
    is the policy gradient of A weighted by 1/|o_i|."""
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, stats = grpo_loss(logps, logps.detach(), logps.detach(), adv, mask, 0.2, 0.04)
    assert torch.allclose(loss, torch.tensor(0.0)) and stats["kl"] == 0 and stats["clip_ratio"] == 0
    loss.backward()
    # d loss / d logp_{i,t} = -A_i / |o_i| / G on real tokens
    assert torch.allclose(logps.grad, torch.tensor([[-0.25, -0.25, 0.0], [0.5, 0.0, 0.0]]))


def test_grpo_loss_length_normalised_per_sequence():
    logps = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    loss, _ = grpo_loss(logps, logps.detach(), None, torch.tensor([1.0, 1.0]), mask, 0.2, 0.0)
    loss.backward()
    assert torch.allclose(logps.grad[0, 0], torch.tensor(-1 / 8)) and torch.allclose(
        logps.grad[1, 0], torch.tensor(-1 / 2)
    )


def test_grpo_loss_kl_term_hand_worked():
    logps = torch.tensor([[-2.0]])
    ref = torch.tensor([[-1.0]])
    loss, stats = grpo_loss(logps, logps, ref, torch.tensor([0.0]), torch.ones(1, 1), 0.2, 0.5)
    assert torch.allclose(loss, torch.tensor(0.5 * (math.e - 2)))
    assert torch.allclose(stats["kl"], torch.tensor(math.e - 2))


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_zero_gradient_when_all_rewards_equal(beta):
    logps = torch.randn(4, 3, requires_grad=True)
    adv = group_advantages(torch.ones(1, 4)).reshape(-1)
    loss, _ = grpo_loss(logps, logps.detach(), logps.detach(), adv, torch.ones(4, 3), 0.2, beta)
    loss.backward()
    assert torch.allclose(logps.grad, torch.zeros(4, 3))
