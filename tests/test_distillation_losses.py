"""Distillation losses with hand-worked numbers and the papers' limiting cases."""

import math

import pytest
import torch

from posttrain_plugins.gkd import generalized_jsd, on_policy_step
from posttrain_plugins.kd import kd_loss, soft_target_loss


def _kl(p: torch.Tensor, q: torch.Tensor) -> float:
    return float((p * (p / q).log()).sum())


def test_soft_target_loss_hand_worked_t1():
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # p_T = (0.75, 0.25)
    student = torch.zeros(1, 2)  # p_S = (0.5, 0.5)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # 0.130812
    assert soft_target_loss(student, teacher, 1.0).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.130812, abs=1e-6)


def test_soft_target_loss_t2_includes_t_squared():
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # at T=2: p_T = (√3, 1) / (√3 + 1)
    student = torch.zeros(1, 2)
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    kl = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))  # 0.03634
    assert soft_target_loss(student, teacher, 2.0).item() == pytest.approx(4 * kl, abs=1e-6)
    assert 4 * kl == pytest.approx(0.14537, abs=1e-4)


def test_soft_target_loss_zero_when_equal():
    logits = torch.randn(5, 7)
    assert soft_target_loss(logits, logits.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_high_temperature_gradient_is_logit_matching():
    """Hinton §2.1: for zero-mean logits and T >> 1, d(T² KL)/dz_s → (z_s − z_t) / V."""
    torch.manual_seed(0)
    v = 6
    student = torch.randn(1, v)
    teacher = torch.randn(1, v)
    student, teacher = student - student.mean(), teacher - teacher.mean()
    student.requires_grad_(True)
    soft_target_loss(student, teacher, 1000.0).backward()
    assert torch.allclose(student.grad, (student.detach() - teacher) / v, atol=1e-3)  # O(1/T) + float32


def test_kd_loss_mixes_soft_and_hard():
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    student = torch.zeros(1, 2)
    labels = torch.tensor([0])
    total, soft, hard = kd_loss(student, teacher, labels, temperature=1.0, alpha=0.25)
    assert hard.item() == pytest.approx(math.log(2), abs=1e-6)
    assert total.item() == pytest.approx(0.25 * 0.130812 + 0.75 * math.log(2), abs=1e-5)
    only_hard, _, _ = kd_loss(student, teacher, labels, temperature=1.0, alpha=0.0)
    assert only_hard.item() == pytest.approx(math.log(2), abs=1e-6)


def test_generalized_jsd_hand_worked_symmetric_case():
    """β = 0.5 is the ordinary Jensen-Shannon divergence; p = (1, 0)-ish vs uniform worked by hand."""
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # (0.75, 0.25)
    student = torch.zeros(1, 2)  # (0.5, 0.5)
    p, q = torch.tensor([0.75, 0.25]), torch.tensor([0.5, 0.5])
    m = 0.5 * p + 0.5 * q  # (0.625, 0.375)
    expected = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    assert generalized_jsd(student, teacher, 0.5).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.0338, abs=1e-4)


def test_generalized_jsd_endpoints_are_forward_and_reverse_kl():
    torch.manual_seed(1)
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    ps, pt = student.softmax(-1), teacher.softmax(-1)
    forward = float((pt * (pt / ps).log()).sum(-1).mean())
    reverse = float((ps * (ps / pt).log()).sum(-1).mean())
    assert generalized_jsd(student, teacher, 0.0).item() == pytest.approx(forward, rel=1e-5)
    assert generalized_jsd(student, teacher, 1.0).item() == pytest.approx(reverse, rel=1e-5)


def test_generalized_jsd_limits_scaled():
    """JSD(β)/β → KL(p_T || p_S) as β → 0 and JSD(β)/(1 − β) → KL(p_S || p_T) as β → 1."""
    torch.manual_seed(2)
    student, teacher = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    forward = generalized_jsd(student, teacher, 0.0).item()
    reverse = generalized_jsd(student, teacher, 1.0).item()
    beta = 1e-4
    assert generalized_jsd(student, teacher, beta).item() / beta == pytest.approx(forward, rel=1e-2)
    assert generalized_jsd(student, teacher, 1 - beta).item() / beta == pytest.approx(reverse, rel=1e-2)


def test_generalized_jsd_zero_for_equal_and_temperature_flattens():
    logits = torch.randn(2, 6)
    for beta in (0.0, 0.3, 1.0):
        assert generalized_jsd(logits, logits.clone(), beta).item() == pytest.approx(0.0, abs=1e-6)
    student, teacher = torch.zeros(1, 3), torch.tensor([[4.0, 0.0, 0.0]])
    assert generalized_jsd(student, teacher, 0.5, temperature=10.0) < generalized_jsd(student, teacher, 0.5)


def test_on_policy_share_follows_lambda():
    draws = [on_policy_step(0, step, 0, 0.3) for step in range(2000)]
    assert sum(draws) / len(draws) == pytest.approx(0.3, abs=0.04)
    assert not any(on_policy_step(0, s, 0, 0.0) for s in range(100))
    assert all(on_policy_step(0, s, 0, 1.0) for s in range(100))
    assert on_policy_step(3, 7, 1, 0.5) == on_policy_step(3, 7, 1, 0.5)


# --- on-policy-distillation -----------------------------------------------------------------------

from posttrain_plugins.on_policy_distillation import on_policy_distillation_loss, reverse_kl_advantage  # noqa: E402


def test_reverse_kl_advantage_hand_worked():
    student = torch.log(torch.tensor([[0.5, 0.2]])).requires_grad_(True)
    teacher = torch.log(torch.tensor([[0.25, 0.2]]))
    advantage = reverse_kl_advantage(student, teacher)
    assert torch.allclose(advantage, torch.tensor([[-math.log(2.0), 0.0]]))  # over-weighted token: negative
    assert not advantage.requires_grad


def test_on_policy_distillation_loss_hand_worked_on_policy():
    # two sampled tokens (third is padding), student/teacher probs (0.5, 0.25) and (0.1, 0.4):
    # A = [-log 2, log 4]; loss = -(sum A) / 2; gradient of token t = -A_t / 2; reverse_kl = -mean A
    logps = torch.log(torch.tensor([[0.5, 0.1, 0.3]])).requires_grad_(True)
    teacher = torch.log(torch.tensor([[0.25, 0.4, 0.9]]))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, stats = on_policy_distillation_loss(logps, logps.detach(), None, teacher, mask)
    loss.backward()
    a = torch.tensor([-math.log(2.0), math.log(4.0)])
    assert loss.item() == pytest.approx(-a.sum().item() / 2)
    assert torch.allclose(logps.grad, torch.tensor([[-a[0] / 2, -a[1] / 2, 0.0]]))
    assert stats["reverse_kl"].item() == pytest.approx(-a.mean().item())


def test_on_policy_distillation_expected_gradient_is_the_reverse_kl_gradient():
    # One position, every vocabulary token weighted by its student probability (the exact expectation
    # over the student's samples): the expected gradient equals the gradient of KL(p_S || p_T), i.e. of
    # GKD's generalized JSD at beta = 1 (lambda = 1, fully on-policy).
    torch.manual_seed(0)
    vocab = 6
    student_logits = torch.randn(1, vocab, dtype=torch.float64, requires_grad=True)
    teacher_logits = torch.randn(1, vocab, dtype=torch.float64)
    s_logp = torch.log_softmax(student_logits, -1)
    t_logp = torch.log_softmax(teacher_logits, -1)
    # each token is one "sampled" completion of length 1; weight = its probability under the student
    per_sample = [
        on_policy_distillation_loss(
            s_logp[:, y : y + 1],
            s_logp[:, y : y + 1].detach(),
            None,
            t_logp[:, y : y + 1],
            torch.ones(1, 1, dtype=torch.float64),
        )[0]
        for y in range(vocab)
    ]
    expected_loss = sum(p * loss for p, loss in zip(s_logp.exp().detach()[0], per_sample, strict=True))
    (grad_ours,) = torch.autograd.grad(expected_loss, student_logits)
    s2 = student_logits.detach().clone().requires_grad_(True)
    reverse_kl = generalized_jsd(s2, teacher_logits, 1.0)
    (grad_kl,) = torch.autograd.grad(reverse_kl, s2)
    # generalized_jsd computes in float32: compare at its precision
    assert torch.allclose(grad_ours, grad_kl.to(torch.float64), atol=1e-6)


def test_on_policy_distillation_is_zero_when_the_teacher_is_the_student():
    logps = torch.log(torch.tensor([[0.3, 0.6]])).requires_grad_(True)
    loss, stats = on_policy_distillation_loss(logps, logps.detach(), None, logps.detach(), torch.ones(1, 2))
    loss.backward()
    assert loss.item() == 0 and torch.all(logps.grad == 0) and stats["reverse_kl"] == 0


def test_on_policy_distillation_off_policy_rows_are_importance_weighted():
    # a reused rollout: the policy moved (ratio 2 on the token); A comes from the sampling policy's log-prob
    old = torch.log(torch.tensor([[0.2]]))
    logps = torch.log(torch.tensor([[0.4]])).requires_grad_(True)
    teacher = torch.log(torch.tensor([[0.1]]))
    loss, _ = on_policy_distillation_loss(logps, old, None, teacher, torch.ones(1, 1))
    loss.backward()
    a = math.log(0.1 / 0.2)
    assert loss.item() == pytest.approx(-2.0 * a)
    assert logps.grad.item() == pytest.approx(-2.0 * a)  # d/dlogp of ratio * A = ratio * A


def test_a_teacher_that_does_not_load_is_named_as_the_teacher_option(tmp_path):
    from posttrain import sources
    from posttrain.errors import UserError
    from posttrain.hf import load_tokenizer
    from posttrain.interface import RunContext
    from posttrain.training.distill import load_teacher

    student_tokenizer = load_tokenizer(sources.model_source_for(None))
    missing = str(tmp_path / "no-such-teacher")
    with pytest.raises(UserError, match=r"^--set teacher=.*no-such-teacher: could not load the tokenizer"):
        load_teacher(RunContext(output_dir=tmp_path), missing, student_tokenizer)
