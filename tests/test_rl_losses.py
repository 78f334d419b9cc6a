"""Pure functions of ppo, rloo, reinforce-pp, remax, reinforce and scst against hand-worked numbers
and the papers' limiting cases."""

import pytest
import torch

from posttrain.rl.policy_gradient import clipped_policy_loss, masked_mean, whiten
from posttrain_plugins.ppo import clipped_value_loss, gae_advantages, kl_penalized_rewards
from posttrain_plugins.reinforce import moving_average_baseline, reinforce_loss
from posttrain_plugins.reinforce_pp import group_mean_baseline, kl_shaped_returns
from posttrain_plugins.remax import remax_advantages, remax_loss, remax_token_weights
from posttrain_plugins.rloo import kl_regularized_scores, policy_gradient_loss, rloo_advantages
from posttrain_plugins.scst import scst_loss, self_critical_advantages


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def v(*values):
    return torch.tensor(values, dtype=torch.float32)


# --- PPO: GAE -------------------------------------------------------------------------------------


def test_gae_hand_worked():
    # gamma 1, lambda 0.5, rewards [0, 0, 1], values [0.5, 0.2, 0.4]; terminal value 0.
    # delta = [0 + 0.2 - 0.5, 0 + 0.4 - 0.2, 1 + 0 - 0.4] = [-0.3, 0.2, 0.6]
    # A_2 = 0.6; A_1 = 0.2 + 0.5 * 0.6 = 0.5; A_0 = -0.3 + 0.5 * 0.5 = -0.05
    adv, ret = gae_advantages(t([0, 0, 1]), t([0.5, 0.2, 0.4]), t([1, 1, 1]), gamma=1.0, lam=0.5)
    assert torch.allclose(adv, t([-0.05, 0.5, 0.6]))
    assert torch.allclose(ret, t([0.45, 0.7, 1.0]))


def test_gae_padding_is_terminal_and_zero():
    # Row of length 2 padded to 3: the value after the last real token is 0, whatever sits in the pad.
    # delta_1 = 2 + 0 - 0.5 = 1.5; delta_0 = 0 + 0.9 * 0.5 - 1 = -0.55; A_0 = -0.55 + 0.9 * 0.5 * 1.5 = 0.125
    adv, ret = gae_advantages(t([0, 2, 7]), t([1, 0.5, 9]), t([1, 1, 0]), gamma=0.9, lam=0.5)
    assert torch.allclose(adv, t([0.125, 1.5, 0.0]))
    assert torch.allclose(ret, t([1.125, 2.0, 0.0]))


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_gae_lambda_one_is_monte_carlo_return_minus_value(gamma):
    torch.manual_seed(0)
    rewards, values = torch.randn(4, 6), torch.randn(4, 6)
    mask = t([1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5, [1] * 5 + [0])
    adv, ret = gae_advantages(rewards, values, mask, gamma=gamma, lam=1.0)
    for i in range(4):
        n = int(mask[i].sum())
        for s in range(n):
            mc = sum(gamma ** (k - s) * rewards[i, k].item() for k in range(s, n))
            assert adv[i, s].item() == pytest.approx(mc - values[i, s].item(), abs=1e-5)
            assert ret[i, s].item() == pytest.approx(mc, abs=1e-5)


def test_gae_lambda_zero_is_td_error():
    rewards, values = t([1, 2, 3]), t([0.5, -1, 2])
    adv, _ = gae_advantages(rewards, values, t([1, 1, 1]), gamma=0.5, lam=0.0)
    assert torch.allclose(adv, t([1 + 0.5 * -1 - 0.5, 2 + 0.5 * 2 + 1, 3 - 2]))


# --- PPO: rewards, whitening -------------------------------------------------------------------------


def test_kl_penalized_rewards_hand_worked():
    logps = t([-1.0, -2.0, -0.5], [-1.0, -1.0, 0.0])
    ref = t([-1.5, -2.0, -1.0], [-2.0, -1.0, -3.0])
    mask = t([1, 1, 1], [1, 1, 0])
    rewards, kl = kl_penalized_rewards(v(2.0, -1.0), logps, ref, mask, kl_coef=0.1)
    assert torch.allclose(kl, t([0.5, 0.0, 0.5], [1.0, 0.0, 0.0]))
    # The score lands on the last real token of each row, the penalty on every token.
    assert torch.allclose(rewards, t([-0.05, 0.0, 1.95], [-0.1, -1.0, 0.0]))
    # Summed, the rewards are r - beta * log(pi/pi_ref) of the whole sequence.
    assert torch.allclose(rewards.sum(-1), v(2.0 - 0.1 * 1.0, -1.0 - 0.1 * 1.0))


def test_kl_penalized_rewards_no_penalty_when_policy_is_reference():
    logps = torch.randn(3, 4)
    rewards, kl = kl_penalized_rewards(v(1.0, 2.0, 3.0), logps, logps.clone(), torch.ones(3, 4), 0.5)
    assert torch.all(kl == 0)
    assert torch.allclose(rewards, t([0, 0, 0, 1.0], [0, 0, 0, 2.0], [0, 0, 0, 3.0]))


def test_whiten_hand_worked_and_keeps_padding_zero():
    # mean 2, population variance 2/3 over the three real tokens; the 100 in the padding is ignored.
    out = whiten(t([1, 2, 3, 100]), t([1, 1, 1, 0]))
    s = (2 / 3) ** 0.5
    assert torch.allclose(out, t([-1 / s, 0, 1 / s, 0]), atol=1e-5)
    assert torch.allclose(whiten(t([1, 2, 3, 100]), t([1, 1, 1, 0]), shift_mean=False), t([2 - 1 / s, 2, 2 + 1 / s, 0]))
    assert masked_mean(out, t([1, 1, 1, 0])).abs().item() < 1e-6


# --- PPO: losses ------------------------------------------------------------------------------------


def test_clipped_objective_equals_unclipped_inside_trust_region():
    torch.manual_seed(0)
    old = torch.randn(3, 5)
    logps = (old + torch.empty(3, 5).uniform_(-0.15, 0.15)).requires_grad_()  # ratio in [0.86, 1.16]
    adv, mask = torch.randn(3, 5), torch.ones(3, 5)
    loss, clip_fraction = clipped_policy_loss(logps, old, adv, mask, clip_eps=0.2)
    unclipped = -masked_mean(torch.exp(logps - old) * adv, mask)
    assert loss.item() == pytest.approx(unclipped.item()) and clip_fraction.item() == 0
    (g1,) = torch.autograd.grad(loss, logps)
    (g2,) = torch.autograd.grad(unclipped, logps)
    assert torch.allclose(g1, g2)


def test_clipped_objective_hand_worked_outside_trust_region():
    # eps 0.2. ratio 1.5, A=+1 -> min(1.5, 1.2) = 1.2 (clipped, no gradient);
    # ratio 0.5, A=+1 -> min(0.5, 0.8) = 0.5 (unclipped); ratio 0.5, A=-1 -> min(-0.5, -0.8) = -0.8 (clipped);
    # ratio 1.5, A=-1 -> min(-1.5, -1.2) = -1.5 (unclipped: a harmful move is always penalised).
    ratio = t([1.5, 0.5, 0.5, 1.5])
    old = torch.zeros(1, 4)
    logps = torch.log(ratio).requires_grad_()
    adv = t([1.0, 1.0, -1.0, -1.0])
    loss, clip_fraction = clipped_policy_loss(logps, old, adv, torch.ones(1, 4), clip_eps=0.2)
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 0.8 - 1.5) / 4)
    assert clip_fraction.item() == pytest.approx(0.5)
    loss.backward()
    # d/dlogp of -(ratio * A)/4 = -ratio*A/4 on unclipped tokens, 0 on clipped ones.
    assert torch.allclose(logps.grad, t([0.0, -0.5 / 4, 0.0, 1.5 / 4]))


def test_clipped_policy_loss_at_ratio_one_is_the_policy_gradient():
    logps = t([-1.0, -2.0, -3.0]).requires_grad_()
    adv = t([2.0, -1.0, 0.5])
    loss, _ = clipped_policy_loss(logps, logps.detach(), adv, t([1, 1, 0]), clip_eps=0.2)
    assert loss.item() == pytest.approx(-(2 - 1) / 2)
    loss.backward()
    assert torch.allclose(logps.grad, t([-1.0, 0.5, 0.0]))  # -A/n on real tokens, 0 on padding


def test_clipped_value_loss_hand_worked():
    # clip 0.2: V=1.5 from V_old=1.0 clips to 1.2; R=2: max(0.25, 0.64) = 0.64 -> 0.32.
    # V=1.1 (inside): both 0.81 -> 0.405. Mean over the two tokens.
    loss, frac = clipped_value_loss(t([1.5, 1.1]), t([1.0, 1.0]), t([2.0, 2.0]), t([1, 1]), clip_range=0.2)
    assert loss.item() == pytest.approx((0.32 + 0.405) / 2)
    assert frac.item() == pytest.approx(0.5)


def test_clipped_value_loss_without_clipping_is_half_mse():
    torch.manual_seed(1)
    v, old, ret = torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4)
    mask = t([1, 1, 1, 1], [1, 1, 0, 0])
    loss, _ = clipped_value_loss(v, old, ret, mask, clip_range=1e6)
    assert loss.item() == pytest.approx(0.5 * masked_mean((v - ret) ** 2, mask).item(), rel=1e-5)


# --- RLOO -------------------------------------------------------------------------------------------


def test_rloo_hand_worked():
    # k = 4, rewards [1, 0, 0, 1]: baselines (2 - r_i)/3 = [1/3, 2/3, 2/3, 1/3]
    adv = rloo_advantages(v(1.0, 0.0, 0.0, 1.0), k=4)
    assert torch.allclose(adv, v(2 / 3, -2 / 3, -2 / 3, 2 / 3))


def test_rloo_limits():
    r = v(3.0, 3.0, 3.0, 0.0, 1.0, 5.0)
    adv = rloo_advantages(r, k=3)
    assert torch.all(adv[:3] == 0)  # equal rewards in a group: no signal
    assert adv[3:].sum().abs().item() < 1e-6  # sums to zero per group
    assert torch.allclose(adv[3:], 3 / 2 * (r[3:] - r[3:].mean()))  # k/(k-1) (r - mean)
    assert torch.allclose(rloo_advantages(v(1.0, 0.0), k=2), v(1.0, -1.0))  # k=2: r_i - r_j
    with pytest.raises(ValueError):
        rloo_advantages(r, k=1)


def test_kl_regularized_scores_and_policy_gradient_loss():
    scores = kl_regularized_scores(v(1.0, 0.0), v(-2.0, -3.0), v(-3.0, -3.0), kl_coef=0.1)
    assert torch.allclose(scores, v(0.9, 0.0))
    logps = v(-1.0, -2.0).requires_grad_()
    loss = policy_gradient_loss(logps, v(1.0, -1.0))
    assert loss.item() == pytest.approx(-(-1.0 + 2.0) / 2)
    loss.backward()
    assert torch.allclose(logps.grad, v(-0.5, 0.5))  # raise the good sample, lower the bad one


# --- REINFORCE++ ------------------------------------------------------------------------------------


def test_reinforce_pp_returns_hand_worked():
    # beta 0.1, KL per token [0.5, 0, 0.5], score 1: rewards [-0.05, 0, 0.95] -> rewards-to-go [0.9, 0.95, 0.95]
    # row 2 (length 2, score 0, KL [0.2, 0.3]): rewards [-0.02, -0.03] -> [-0.05, -0.03]
    old = t([-1.0, -2.0, -0.5], [-1.0, -1.0, 5.0])
    ref = t([-1.5, -2.0, -1.0], [-1.2, -1.3, 0.0])
    returns = kl_shaped_returns(v(1.0, 0.0), old, ref, t([1, 1, 1], [1, 1, 0]), kl_coef=0.1)
    assert torch.allclose(returns, t([0.9, 0.95, 0.95], [-0.05, -0.03, 0.0]))


def test_reinforce_pp_without_kl_every_token_gets_the_score_and_batch_normalisation():
    mask = t([1, 1, 0], [1, 1, 1])
    logps = torch.randn(2, 3)
    returns = kl_shaped_returns(v(1.0, 0.0), logps, logps, mask, kl_coef=0.1)
    assert torch.allclose(returns, t([1, 1, 0], [0, 0, 0]))
    # Global normalisation over the 5 tokens: mean 0.4, std sqrt(0.24).
    adv = whiten(returns, mask)
    s = 0.24**0.5
    assert torch.allclose(adv, t([0.6 / s, 0.6 / s, 0], [-0.4 / s, -0.4 / s, -0.4 / s]), atol=1e-5)


def test_reinforce_pp_group_mean_baseline():
    assert torch.allclose(group_mean_baseline(v(1.0, 0.0, 2.0, 2.0), k=2), v(0.5, -0.5, 0.0, 0.0))


# --- ReMax, SCST, REINFORCE -------------------------------------------------------------------------


def test_remax_hand_worked_and_zero_when_sample_is_greedy():
    adv = remax_advantages(v(1.0, 0.0, 1.0, 9.0), v(0.0, 1.0, 1.0, 0.0), clip=5.0)
    assert torch.allclose(adv, v(1.0, -1.0, 0.0, 5.0))  # the last difference (9) is clipped to c = 5
    # beta 0.1: token weights = A - beta * (logp - ref) on each token, 0 on padding.
    logps, ref = t([-1.0, -2.0], [-1.0, -1.0]), t([-2.0, -2.0], [-1.0, -3.0])
    weights = remax_token_weights(v(1.0, 0.0), logps, ref, t([1, 1], [1, 0]), kl_coef=0.1)
    assert torch.allclose(weights, t([0.9, 1.0], [0.0, 0.0]))
    token_logps = t([-1.0, -2.0], [-1.0, -1.0]).requires_grad_()
    loss = remax_loss(token_logps, weights, t([1, 1], [1, 0]))
    assert loss.item() == pytest.approx(-(0.9 * -1.0 + 1.0 * -2.0) / 3)
    loss.backward()
    assert torch.allclose(token_logps.grad, t([-0.3, -1 / 3], [0.0, 0.0]))


def test_remax_without_kl_weights_every_token_by_the_advantage():
    logps = torch.randn(2, 3)
    weights = remax_token_weights(v(0.5, -1.0), logps, logps + 1.0, torch.ones(2, 3), kl_coef=0.0)
    assert torch.allclose(weights, t([0.5] * 3, [-1.0] * 3))


def test_scst_loss_is_token_averaged():
    adv = self_critical_advantages(v(1.0, 0.0), v(0.0, 0.0))
    assert torch.allclose(adv, v(1.0, 0.0))
    token_logps = t([-1.0, -2.0, -9.0], [-1.0, -1.0, -1.0]).requires_grad_()
    mask = t([1, 1, 0], [1, 1, 1])
    loss = scst_loss(token_logps, adv, mask)
    assert loss.item() == pytest.approx(-(1.0 * (-3.0)) / 5)
    loss.backward()
    assert torch.allclose(token_logps.grad, t([-0.2, -0.2, 0.0], [0.0, 0.0, 0.0]))


def test_reinforce_baseline_and_loss():
    b = moving_average_baseline(None, v(1.0, 0.0), decay=0.9)
    assert b == pytest.approx(0.5)
    b = moving_average_baseline(b, v(1.0, 1.0), decay=0.9)
    assert b == pytest.approx(0.55)
    logps = v(-1.0, -3.0).requires_grad_()
    loss = reinforce_loss(logps, v(1.0, 0.0), baseline=0.5)
    assert loss.item() == pytest.approx(-(0.5 * -1.0 + -0.5 * -3.0) / 2)
    loss.backward()
    assert torch.allclose(logps.grad, v(-0.25, 0.25))
    # No baseline and all rewards equal to b: no gradient at all.
    assert reinforce_loss(logps, v(0.5, 0.5), baseline=0.5).item() == 0
