"""TRL 1.16's DPO options that have their own plugin here: f-DPO (``f_divergence_type``: fdpo-forward-kl,
fdpo-js, fdpo-alpha) and MPO (``loss_type=["sigmoid", "bco_pair", "sft"]`` with ``loss_weights``):
hand-worked numbers and limits, and parity with TRL's own loss code on identical random inputs
(loss, gradients w.r.t. the policy log-probs, logged reward metrics within 1e-6 in float64; the
harness is test_preference_trl_losses's). Skips the parity tests when TRL is not installed.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_preference_trl_losses import assert_parity, random_inputs, trl_dpo

from posttrain.preference import PairLogps, chosen_nll_per_token, dpo_loss, reward_metrics
from posttrain_plugins.f_dpo import MAX_EXPONENT, alpha_loss, forward_kl_loss, js_loss, power_scores
from posttrain_plugins.mpo import mpo_pair_loss

t = torch.tensor


# --- f-DPO: hand-worked numbers and limits ----------------------------------------------------


def test_every_f_dpo_loss_is_ln_two_at_the_reference():
    pc, pr = t([-3.0, -7.0]), t([-4.0, -1.0])
    for losses, c, r in (
        forward_kl_loss(pc, pr, pc, pr, 0.1),
        js_loss(pc, pr, pc, pr, 0.1),
        alpha_loss(pc, pr, pc, pr, 0.1, 0.5),
    ):
        assert torch.allclose(losses, torch.full((2,), math.log(2))) and torch.all(c == 0) and torch.all(r == 0)


def test_f_dpo_hand_worked():
    # beta 1, log-ratios ln 2 (chosen) and -ln 2 (rejected): u_w = 2, u_l = 1/2
    args = (t([math.log(2)]), t([-math.log(2)]), t([0.0]), t([0.0]), 1.0)
    softplus = lambda x: math.log1p(math.exp(-x))  # noqa: E731  -log sigmoid(x)
    # forward KL: (1 - 1/2) - (1 - 2) = 1.5
    assert forward_kl_loss(*args)[0].item() == pytest.approx(softplus(1.5))
    # JS: log(4/3) - log(2/3) = log 2
    assert js_loss(*args)[0].item() == pytest.approx(softplus(math.log(2)))
    # alpha 1/2: (1 - 2^-1/2)/0.5 - (1 - 2^1/2)/0.5 = 2 (2^1/2 - 2^-1/2) = 2^1/2
    assert alpha_loss(*args, 0.5)[0].item() == pytest.approx(softplus(math.sqrt(2)))
    # rewards are DPO's beta * log-ratio, as TRL logs
    assert forward_kl_loss(*args)[1].item() == pytest.approx(math.log(2))


def test_alpha_divergence_spans_reverse_and_forward_kl():
    pc, pr, rc, rr = t([-1.0, -5.0]), t([-2.0, -3.0]), t([-1.5, -4.0]), t([-2.5, -2.0])
    pc, pr, rc, rr = (x.double() for x in (pc, pr, rc, rr))
    assert torch.allclose(alpha_loss(pc, pr, rc, rr, 0.1, 1.0)[0], forward_kl_loss(pc, pr, rc, rr, 0.1)[0])
    assert torch.allclose(alpha_loss(pc, pr, rc, rr, 0.1, 1e-7)[0], dpo_loss(pc, pr, rc, rr, 0.1)[0], atol=1e-6)


def test_power_scores_stay_finite_far_below_the_reference():
    scores = power_scores(t([-1e4], requires_grad=True), 1.0)
    scores.sum().backward()
    assert torch.isfinite(scores).all() and scores.item() == pytest.approx(-math.expm1(MAX_EXPONENT))


# --- MPO: hand-worked numbers -----------------------------------------------------------------


def test_mpo_at_the_reference_and_hand_worked():
    pc, pr = t([-3.0]), t([-4.0])
    assert mpo_pair_loss(pc, pr, pc, pr, 0.1, 0.8, 0.2)[0].item() == pytest.approx(1.2 * math.log(2))
    # beta 1, r_w = 1, r_l = -1: 0.8 log(1 + e^-2) + 0.2 * 2 log(1 + e^-1)
    got = mpo_pair_loss(t([1.0]), t([-1.0]), t([0.0]), t([0.0]), 1.0, 0.8, 0.2)[0].item()
    assert got == pytest.approx(0.8 * math.log1p(math.exp(-2)) + 0.4 * math.log1p(math.exp(-1)))


# --- TRL parity -------------------------------------------------------------------------------


@pytest.mark.parametrize(("beta", "seed"), [(0.1, 7), (0.5, 3)])
def test_trl_parity_f_dpo_forward_kl_and_js(beta, seed):
    forward = lambda pc, pr, rc, rr, lc, lr: forward_kl_loss(pc, pr, rc, rr, beta)  # noqa: E731
    js = lambda pc, pr, rc, rr, lc, lr: js_loss(pc, pr, rc, rr, beta)  # noqa: E731
    assert_parity("sigmoid", forward, beta=beta, seed=seed, f_divergence_type="forward_kl")
    assert_parity("sigmoid", js, beta=beta, seed=seed, f_divergence_type="js_divergence")


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.9])
def test_trl_parity_f_dpo_alpha(alpha):
    """TRL's alpha-divergence casts to float32 and knows no float64 cap, so this parity runs in
    float32 (relative tolerance 1e-5); TRL's coefficient is 1 − α."""
    pytest.importorskip("trl")
    pc, pr, rc, rr, lc, lr = (x.float() if x.is_floating_point() else x for x in random_inputs(seed=11))
    theirs_pc, theirs_pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    theirs, logged = trl_dpo(
        "sigmoid",
        theirs_pc,
        theirs_pr,
        rc,
        rr,
        lc,
        lr,
        0.1,
        f_divergence_type="alpha_divergence",
        f_alpha_divergence_coef=1 - alpha,
    )
    theirs.backward()
    ours_pc, ours_pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    losses, c_rew, r_rew = alpha_loss(ours_pc, ours_pr, rc, rr, 0.1, alpha)
    losses.mean().backward()
    assert losses.mean().item() == pytest.approx(theirs.item(), rel=1e-5)
    assert torch.allclose(ours_pc.grad, theirs_pc.grad, rtol=1e-5, atol=1e-7)
    assert torch.allclose(ours_pr.grad, theirs_pr.grad, rtol=1e-5, atol=1e-7)
    mine = reward_metrics(c_rew, r_rew, PairLogps(ours_pc, ours_pr, lc, lr))
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert mine[name] == pytest.approx(logged[name], rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize(("weights", "seed"), [((0.8, 0.2, 1.0), 7), ((0.5, 1.5, 0.3), 3)])
def test_trl_parity_mpo(weights, seed):
    preference, quality, generation = weights

    def ours(pc, pr, rc, rr, lc, lr):
        losses, c_rew, r_rew = mpo_pair_loss(pc, pr, rc, rr, 0.1, preference, quality)
        # the generation loss is one batch number (RPO's term); added to every pair it adds to the mean
        nll = chosen_nll_per_token(PairLogps(pc, pr, lc, lr))
        return losses + generation * nll, c_rew, r_rew

    assert_parity(
        "sigmoid", ours, seed=seed, loss_types=["sigmoid", "bco_pair", "sft"], loss_weights=list(weights)
    )
