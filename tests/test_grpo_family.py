"""GRPO family (grpo, dr-grpo, dapo, gspo, cispo, sapo): advantage estimators and policy losses with
hand-worked numbers and the papers' limiting cases. Parity with TRL's code: tests/test_rl_parity.py."""

import math

import pytest
import torch

from posttrain.rl.group import clipped_surrogate, group_advantages, k3_kl
from posttrain_plugins.grpo import grpo_loss

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


# --- dr-grpo --------------------------------------------------------------------------------------

from posttrain_plugins.dr_grpo import dr_grpo_loss, mean_centred_advantages  # noqa: E402


def test_mean_centred_advantages_hand_worked_and_equal_rewards():
    assert torch.allclose(
        mean_centred_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]])), torch.tensor([[0.75, -0.25, -0.25, -0.25]])
    )
    assert torch.equal(mean_centred_advantages(torch.full((2, 3), 0.7)), torch.zeros(2, 3))


def test_dr_grpo_loss_constant_normaliser_no_length_bias():
    """Every real token gets the same gradient weight A_i / (N * L_max), whatever the length."""
    logps = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    loss, _ = dr_grpo_loss(logps, logps.detach(), None, torch.tensor([1.0, 1.0]), mask, 0.2, 0.0, max_length=8)
    assert torch.allclose(loss, torch.tensor(-5 / 16))  # -(4 + 1) tokens x A=1 / (2 x 8)
    loss.backward()
    assert torch.allclose(logps.grad, -mask / 16)


def test_dr_grpo_loss_clipped_equals_unclipped_inside_region():
    logps = torch.log(torch.tensor([[0.55, 0.45]]))
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    loss, stats = dr_grpo_loss(logps, old, None, torch.tensor([2.0]), torch.ones(1, 2), 0.2, 0.0, max_length=2)
    assert torch.allclose(loss, -(torch.tensor(1.1 + 0.9) * 2.0) / 2) and stats["clip_ratio"] == 0


# --- dapo -----------------------------------------------------------------------------------------

from posttrain.rl.rollout import Rollout  # noqa: E402
from posttrain_plugins.dapo import dapo_loss, dynamic_sample, informative_groups, overlong_penalty  # noqa: E402


def test_informative_groups():
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    assert informative_groups(rewards).tolist() == [False, True, False]


def test_overlong_penalty_hand_worked():
    got = overlong_penalty(torch.tensor([10, 16, 18, 20, 25]), max_length=20, buffer=4)
    assert torch.allclose(got, torch.tensor([0.0, 0.0, -0.5, -1.0, -1.0]))


def test_dapo_clip_higher_is_asymmetric():
    logps = torch.log(torch.tensor([[1.25, 1.35]]))  # ratios 1.25 (inside [0.8, 1.28]) and 1.35 (above)
    loss, stats = dapo_loss(logps, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), 0.2, 0.28)
    assert torch.allclose(loss, -torch.tensor((1.25 + 1.28) / 2))
    assert stats["clip_ratio"] == 0.5


def test_dapo_token_level_weights_long_completions_by_length():
    logps = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    loss, _ = dapo_loss(logps, logps.detach(), torch.tensor([1.0, 1.0]), mask, 0.2, 0.28)
    loss.backward()
    assert torch.allclose(logps.grad, -mask / 5)  # every token 1 / (total tokens = 5)


def _fake_rollout(rewards: list[list[float]]) -> Rollout:
    p, g = len(rewards), len(rewards[0])
    n = p * g
    return Rollout(
        records=[{"prompt": str(i // g)} for i in range(n)],
        num_generations=g,
        input_ids=torch.arange(n).view(n, 1).repeat(1, 3),
        attention_mask=torch.ones(n, 3, dtype=torch.long),
        prompt_width=2,
        completion_mask=torch.ones(n, 1),
        texts=[str(i) for i in range(n)],
        truncated=torch.zeros(n, dtype=torch.bool),
        rewards=torch.tensor(rewards).flatten(),
    )


def test_dynamic_sampling_drops_and_refills():
    rounds = [[[1.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]]  # one informative group per round
    calls = []

    def sample(prompts):
        calls.append(prompts)
        return _fake_rollout(rounds[len(calls) - 1])

    out = dynamic_sample(lambda k: [k], sample, groups=2, rounds=4)
    assert len(calls) == 2 and len(out) == 4
    assert out.rewards.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert out.stats == {"dynamic_sampling/rounds": 2.0, "dynamic_sampling/filled_share": 0.0}


def test_dynamic_sampling_fills_with_equal_groups_when_rounds_run_out():
    out = dynamic_sample(lambda k: [k], lambda p: _fake_rollout([[1.0, 1.0], [0.0, 1.0]]), groups=2, rounds=1)
    assert out.rewards.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert out.stats["dynamic_sampling/filled_share"] == 0.5


# --- gspo -----------------------------------------------------------------------------------------

from posttrain_plugins.gspo import gspo_loss, sequence_ratio  # noqa: E402


def test_sequence_ratio_is_length_normalised():
    logps = torch.tensor([[math.log(2.0), 0.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert torch.allclose(sequence_ratio(logps, torch.zeros(1, 3), mask), torch.tensor([math.sqrt(2.0)]))
    assert torch.allclose(sequence_ratio(logps, logps, mask), torch.ones(1))


def test_gspo_clipped_equals_unclipped_inside_region_and_clips_outside():
    old = torch.zeros(2, 2)
    mask = torch.ones(2, 2)
    inside = torch.full((2, 2), math.log(1.0002))
    loss, stats = gspo_loss(inside, old, None, torch.tensor([1.0, -1.0]), mask, 3e-4, 4e-4)
    assert torch.allclose(loss, torch.tensor(0.0), atol=1e-7) and stats["clip_ratio"] == 0
    outside = torch.full((2, 2), math.log(1.5))
    loss, stats = gspo_loss(outside, old, None, torch.tensor([1.0, -1.0]), mask, 3e-4, 4e-4)
    # A=+1: min(1.5, 1.0004) = 1.0004; A=-1: min(-1.5, -1.0004) = -1.5
    assert torch.allclose(loss, -torch.tensor((1.0004 - 1.5) / 2)) and stats["clip_ratio"] == 0.5


def test_gspo_gradient_at_ratio_one_weights_tokens_by_inverse_length():
    logps = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    loss, _ = gspo_loss(logps, logps.detach(), None, torch.tensor([1.0, -1.0]), mask, 3e-4, 4e-4)
    loss.backward()
    expected = torch.tensor([[-1 / 8] * 4, [1 / 4, 1 / 4, 0.0, 0.0]])  # -A_i / (N |o_i|)
    assert torch.allclose(logps.grad, expected)


# --- cispo ----------------------------------------------------------------------------------------

from posttrain_plugins.cispo import cispo_loss, clipped_is_weight  # noqa: E402


def test_cispo_weight_is_clipped_and_carries_no_gradient():
    logps = torch.log(torch.tensor([[0.5, 1.0, 3.0]])).requires_grad_(True)
    weight, clipped = clipped_is_weight(logps, torch.zeros(1, 3), None, 1.0)  # no lower bound, cap 2
    assert torch.allclose(weight, torch.tensor([[0.5, 1.0, 2.0]])) and clipped.tolist() == [[False, False, True]]
    assert not weight.requires_grad  # sg(.): the weight only scales grad log pi
    weight, _ = clipped_is_weight(logps, torch.zeros(1, 3), 0.2, 1.0)
    assert torch.allclose(weight, torch.tensor([[0.8, 1.0, 2.0]]))


def test_cispo_hand_worked_keeps_the_gradient_of_a_token_outside_the_trust_region():
    # one completion, ratios [3, 1], A = 1, cap 1 + 1 = 2: loss -(2 log 3 + 1 * 0) / 2 = -log 3,
    # gradient -(weight * A) / 2 per token = [-1, -0.5]
    logps = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)
    loss, stats = cispo_loss(logps, torch.zeros(1, 2), None, torch.tensor([1.0]), torch.ones(1, 2), None, 1.0)
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(3.0))
    assert torch.allclose(logps.grad, torch.tensor([[-1.0, -0.5]]))
    assert stats["clip_ratio"] == 0.5
    # the PPO clip drops that token's gradient entirely (the paper's motivation)
    ppo = logps.detach().clone().requires_grad_(True)
    dapo_loss(ppo, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), 0.2, 0.2)[0].backward()
    assert ppo.grad[0, 0] == 0


def test_cispo_on_policy_gradient_is_the_token_level_policy_gradient():
    # r = 1: the weight is 1 and the gradient equals DAPO's token-level surrogate at ratio 1
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(3, 4, generator=g)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, -0.5, 2.0])
    a = old.clone().requires_grad_(True)
    cispo_loss(a, old, None, adv, mask, None, 4.0)[0].backward()
    b = old.clone().requires_grad_(True)
    dapo_loss(b, old, adv, mask, 0.2, 0.28)[0].backward()
    assert torch.allclose(a.grad, b.grad) and torch.allclose(a.grad, -adv[:, None] * mask / 7)


def test_cispo_inside_the_cap_is_the_importance_weighted_policy_gradient():
    # no clipping active: d/dlogp of -(r A) / T is -r A / T, what CISPO's sg(r) A grad log pi gives
    old = torch.zeros(1, 3)
    logps = torch.log(torch.tensor([[0.7, 1.0, 1.4]])).requires_grad_(True)
    cispo_loss(logps, old, None, torch.tensor([-2.0]), torch.ones(1, 3), None, 4.0)[0].backward()
    assert torch.allclose(logps.grad, torch.tensor([[0.7, 1.0, 1.4]]) * 2.0 / 3)


# --- sapo -----------------------------------------------------------------------------------------

from posttrain_plugins.sapo import sapo_loss, soft_gate  # noqa: E402


def test_soft_gate_hand_worked():
    ratio = torch.tensor([[1.0, 1.0 + math.log(3.0)]])
    # tau 1: f(1) = 4 sigmoid(0) = 2; f(1 + ln 3) = 4 * 3/4 = 3. A <= 0 uses tau_neg 2: f(1) = 2 sigmoid(0) * 2 = 1
    assert torch.allclose(soft_gate(ratio, torch.tensor([[1.0]]), 1.0, 2.0), torch.tensor([[2.0, 3.0]]))
    assert soft_gate(torch.tensor([[1.0]]), torch.tensor([[-1.0]]), 1.0, 2.0).item() == pytest.approx(1.0)
    assert soft_gate(torch.tensor([[1.0]]), torch.tensor([[0.0]]), 1.0, 2.0).item() == pytest.approx(1.0)


def test_sapo_hand_worked_gradient_weight():
    # one token, r = 1 + ln 3, A = 1, tau 1: loss -f(r) = -3; d/dlogp = -f'(r) r = -4 (3/4)(1/4) r
    r = 1.0 + math.log(3.0)
    logps = torch.tensor([[math.log(r)]], requires_grad=True)
    loss, stats = sapo_loss(logps, torch.zeros(1, 1), None, torch.tensor([1.0]), torch.ones(1, 1), 1.0, 1.05)
    loss.backward()
    assert loss.item() == pytest.approx(-3.0)
    assert logps.grad.item() == pytest.approx(-0.75 * r)
    assert stats["gate_weight"].item() == pytest.approx(0.75)


def test_sapo_on_policy_gradient_is_grpos_whatever_the_temperatures():
    g = torch.Generator().manual_seed(1)
    old = -torch.rand(3, 4, generator=g)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, -0.5, 2.0])
    b = old.clone().requires_grad_(True)
    grpo_loss(b, old, None, adv, mask, 0.2, 0.0)[0].backward()
    for tau_pos, tau_neg in [(1.0, 1.05), (0.1, 5.0)]:
        a = old.clone().requires_grad_(True)
        sapo_loss(a, old, None, adv, mask, tau_pos, tau_neg)[0].backward()
        assert torch.allclose(a.grad, b.grad)


def test_sapo_small_temperature_is_the_unclipped_surrogate_and_large_damps_off_policy_tokens():
    old = torch.zeros(2, 2)
    mask = torch.ones(2, 2)
    adv = torch.tensor([1.0, -1.0])
    moved = torch.log(torch.tensor([[1.5, 0.6], [1.5, 0.6]]))
    unclipped = moved.clone().requires_grad_(True)
    grpo_loss(unclipped, old, None, adv, mask, 1e9, 0.0)[0].backward()  # no clip: -r A / (N |o|)
    soft = moved.clone().requires_grad_(True)
    sapo_loss(soft, old, None, adv, mask, 1e-4, 1e-4)[0].backward()
    assert torch.allclose(soft.grad, unclipped.grad, atol=1e-6)
    # a hotter gate damps more but never to zero, unlike the hard clip at 0.2
    hot = moved.clone().requires_grad_(True)
    sapo_loss(hot, old, None, adv, mask, 1.0, 3.0)[0].backward()
    assert torch.all(hot.grad.abs() < unclipped.grad.abs()) and torch.all(hot.grad != 0)
    clipped = moved.clone().requires_grad_(True)
    grpo_loss(clipped, old, None, adv, mask, 0.2, 0.0)[0].backward()
    assert (clipped.grad == 0).sum() == 2  # r 1.5 with A > 0, r 0.6 with A < 0
    # negative advantages use tau_neg: with tau_neg > tau_pos their tokens are damped more
    assert hot.grad[1, 0].abs() < hot.grad[0, 0].abs()


# --- gmpo -----------------------------------------------------------------------------------------

from posttrain_plugins.gmpo import clipped_log_ratio, geometric_mean_ratio, gmpo_loss  # noqa: E402


def test_gmpo_clip_is_one_sided_by_the_advantage_sign():
    log_ratio = torch.tensor([[0.6, -0.6, 0.1], [0.6, -0.6, 0.1]])
    clipped, where = clipped_log_ratio(log_ratio, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), 0.4, 0.4)
    assert torch.allclose(clipped, torch.tensor([[0.4, -0.6, 0.1], [0.6, -0.4, 0.1]]))
    assert where.tolist() == [[True, False, False], [False, True, False]]


def test_geometric_mean_hand_worked_and_below_the_arithmetic_mean():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    log_ratio = torch.log(torch.tensor([[2.0, 8.0, 100.0]]))  # the third token is padding
    assert torch.allclose(geometric_mean_ratio(log_ratio, mask), torch.tensor([4.0]))  # sqrt(16); arithmetic: 5


def test_gmpo_with_equal_token_ratios_equals_the_arithmetic_mean_objective():
    # every token ratio r (inside the clip range): geometric mean = arithmetic mean = r, so the loss is
    # -mean_i(A_i r), GRPO's unclipped objective with no KL
    r = 1.2
    logps = torch.full((2, 3), math.log(r))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([1.0, -0.5])
    loss, stats = gmpo_loss(logps, torch.zeros(2, 3), None, adv, mask, 0.4, 0.4)
    assert loss.item() == pytest.approx(-(1.0 * r - 0.5 * r) / 2)
    grpo, _ = grpo_loss(logps, torch.zeros(2, 3), None, adv, mask, 0.4, 0.0)  # 1.2 is inside (0.6, 1.4)
    assert loss.item() == pytest.approx(grpo.item())
    assert stats["clip_ratio"] == 0 and stats["geometric_mean_ratio"].item() == pytest.approx(r)


def test_gmpo_hand_worked_clips_an_outlier_token_and_drops_its_gradient():
    # one completion, A = 1, log ratios [1.0, 0.2]: 1.0 > eps_high 0.4 is clipped to 0.4,
    # loss = -exp((0.4 + 0.2) / 2) = -e^0.3; only the unclipped token has a gradient: -e^0.3 / 2
    logps = torch.tensor([[1.0, 0.2]], requires_grad=True)
    loss, stats = gmpo_loss(logps, torch.zeros(1, 2), None, torch.tensor([1.0]), torch.ones(1, 2), 0.4, 0.4)
    loss.backward()
    assert loss.item() == pytest.approx(-math.exp(0.3))
    assert torch.allclose(logps.grad, torch.tensor([[0.0, -math.exp(0.3) / 2]]))
    assert stats["clip_ratio"] == 0.5


def test_gmpo_gradient_at_ratio_one_is_the_sequence_mean_policy_gradient():
    logps = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    loss, _ = gmpo_loss(logps, logps.detach(), None, torch.tensor([1.0, -1.0]), mask, 0.4, 0.4)
    loss.backward()
    expected = torch.tensor([[-1 / 8] * 4, [1 / 4, 1 / 4, 0.0, 0.0]])  # -A_i / (N |o_i|), as GSPO and GRPO
    assert torch.allclose(logps.grad, expected)
