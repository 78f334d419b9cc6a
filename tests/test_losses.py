"""Pure loss functions against hand-worked numbers and the papers' limiting cases."""

import math

import pytest
import torch

from posttrain.training.preference import dpo_loss, preference_accuracy
from posttrain.training.sft import sft_loss


def test_sft_loss_uniform_logits_is_log_vocab():
    V = 7
    logits = torch.zeros(2, 5, V)
    ids = torch.randint(V, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.long)
    assert sft_loss(logits, ids, mask).item() == pytest.approx(math.log(V))


def test_sft_loss_hand_worked_and_masked():
    # Vocabulary of 2; sequence [0, 1, 0]. Position 0 predicts token 1 with p = e^2/(e^0+e^2);
    # position 1 predicts token 0 with p = 1/2. Only the last target is in the loss mask.
    logits = torch.tensor([[[0.0, 2.0], [0.0, 0.0], [5.0, 5.0]]])
    ids = torch.tensor([[0, 1, 0]])
    mask_all = torch.tensor([[0, 1, 1]])
    p1 = math.exp(2) / (1 + math.exp(2))
    assert sft_loss(logits, ids, mask_all).item() == pytest.approx(-(math.log(p1) + math.log(0.5)) / 2)
    mask_last = torch.tensor([[0, 0, 1]])
    assert sft_loss(logits, ids, mask_last).item() == pytest.approx(math.log(2))


def test_dpo_loss_is_ln2_when_policy_equals_reference():
    logps = torch.tensor([-3.0, -10.0, -0.5])
    losses, c, r = dpo_loss(logps, logps - 1, logps, logps - 1, beta=0.1)
    assert torch.allclose(losses, torch.full((3,), math.log(2)))
    assert torch.all(c == 0) and torch.all(r == 0)


def test_dpo_loss_hand_worked():
    # beta 0.1; chosen log-ratio +1, rejected log-ratio -1 -> margin 0.2 -> loss log(1 + e^-0.2)
    losses, c, r = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.1)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-0.2)))
    assert c.item() == pytest.approx(0.1) and r.item() == pytest.approx(-0.1)


def test_dpo_loss_limits_and_gradient_direction():
    big = dpo_loss(torch.tensor([0.0]), torch.tensor([-500.0]), torch.tensor([-1.0]), torch.tensor([-1.0]), 0.1)[0]
    assert big.item() < 1e-20
    wrong = dpo_loss(torch.tensor([-500.0]), torch.tensor([0.0]), torch.tensor([-1.0]), torch.tensor([-1.0]), 0.1)[0]
    assert wrong.item() == pytest.approx(0.1 * 500, rel=1e-3)  # -log sigma(-z) -> z
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-2.0], requires_grad=True)
    dpo_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)[0].sum().backward()
    # d/dpc = -beta * sigma(-0) = -0.25: raising the chosen log-prob lowers the loss.
    assert pc.grad.item() == pytest.approx(-0.25) and pr.grad.item() == pytest.approx(0.25)


def test_preference_accuracy_counts_ties_as_half():
    acc = preference_accuracy(torch.tensor([1.0, 0.0, -1.0, 2.0]), torch.tensor([0.0, 0.0, 0.0, 3.0]))
    assert acc.item() == pytest.approx((1 + 0.5 + 0 + 0) / 4)
