"""PRIME's pure functions with hand-worked numbers and limiting cases, the online PRM update on a tiny
model, the prompt filter, and the clear refusals (outcome rewards outside [0, 1], --resume).
The 2-step smoke run is tests/test_smoke.py -k prime."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.errors import UserError
from posttrain.interface import RunContext
from posttrain.rl.rollout import Rollout
from posttrain_plugins.prime import (
    Config,
    accuracy_in_range,
    discounted_returns,
    filtered_rollout,
    implicit_prm_loss,
    implicit_process_rewards,
    leave_one_out,
    outcome_labels,
    prime_advantages,
    prime_policy_loss,
    run,
    update_prm,
    whiten,
)


def close(actual: torch.Tensor, expected) -> bool:
    return torch.allclose(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-6)


# --- process rewards and the PRM's cross-entropy -----------------------------------------------------


def test_process_reward_is_beta_times_the_log_ratio_on_real_tokens():
    prm = torch.log(torch.tensor([[0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    rewards = implicit_process_rewards(prm, ref, torch.tensor([[1.0, 0.0]]), beta=0.05)
    assert close(rewards, [[0.05 * math.log(2), 0.0]])  # 0.0347, and 0 off the mask


def test_prm_equal_to_reference_or_beta_to_zero_gives_no_process_reward():
    logps = torch.randn(3, 5)
    mask = torch.ones(3, 5)
    assert torch.equal(implicit_process_rewards(logps, logps, mask, 0.05), torch.zeros(3, 5))
    tiny = implicit_process_rewards(logps, torch.randn(3, 5), mask, 1e-9)
    assert tiny.abs().max() < 1e-8
    # ...so the PRM's cross-entropy is log 2 whatever the label
    assert implicit_prm_loss(tiny, torch.tensor([1.0, 0.0, 1.0]), mask).tolist() == pytest.approx([math.log(2)] * 3)


def test_prm_cross_entropy_by_hand():
    half = math.log(3) / 2  # two tokens whose rewards sum to log 3: sigma = 3/4
    rewards = torch.tensor([[half, half, 5.0], [half, half, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # the third token is padding and ignored
    loss = implicit_prm_loss(rewards, torch.tensor([1.0, 0.0]), mask)
    assert loss.tolist() == pytest.approx([-math.log(0.75), math.log(4)])  # 0.2877, 1.3863


def test_prm_cross_entropy_pushes_the_sequence_reward_towards_the_label():
    rewards = torch.zeros(2, 3, requires_grad=True)
    implicit_prm_loss(rewards, torch.tensor([1.0, 0.0]), torch.ones(2, 3)).sum().backward()
    # d/ds CE = sigma(s) - r_o = -0.5 for the correct one (raise its rewards), +0.5 for the wrong one
    assert close(rewards.grad, [[-0.5] * 3, [0.5] * 3])


# --- leave-one-out, returns, advantages -----------------------------------------------------------------


def test_leave_one_out_by_hand_and_with_k_2():
    assert close(leave_one_out(torch.tensor([[1.0, 0.0, 0.0, 0.0]])), [[1, -1 / 3, -1 / 3, -1 / 3]])
    assert leave_one_out(torch.tensor([[3.0, 1.0]])).tolist() == [[2.0, -2.0]]  # K = 2: [a - b, b - a]
    assert torch.equal(leave_one_out(torch.full((2, 4), 0.7)), torch.zeros(2, 4))


def test_discounted_returns_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert discounted_returns(rewards, mask, 0.5).tolist() == [[2.75, 3.5, 3.0], [2.0, 2.0, 0.0]]
    assert discounted_returns(rewards, mask, 1.0).tolist() == [[6.0, 5.0, 3.0], [3.0, 2.0, 0.0]]


# One prompt, K = 2: the first completion is correct (2 tokens + padding), the second wrong (3 tokens).
OUTCOME = torch.tensor([1.0, 0.0])
PROCESS = torch.tensor([[0.2, 0.4, 0.0], [0.3, 0.0, -0.3]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])


def test_prime_advantages_by_hand_gamma_1():
    # process: average token rewards 0.3 and 0.0; each baseline is the other's: [0.2, 0.4] - 0 and
    # [0.3, 0, -0.3] - 0.3 = [0, -0.3, -0.6]; returns [0.6, 0.4] and [-0.9, -0.9, -0.6].
    # outcome: RLOO 1 - 0 = 1 and -1 on every token.
    adv = prime_advantages(OUTCOME, PROCESS, MASK, k=2, gamma=1.0)
    assert close(adv, [[1.6, 1.4, 0.0], [-1.9, -1.9, -1.6]])


def test_prime_advantages_by_hand_gamma_half():
    # outcome on the last real token, discounted back: [0.5, 1] and [-0.25, -0.5, -1];
    # process returns [0.2 + 0.5 * 0.4, 0.4] = [0.4, 0.4] and [-0.3, -0.6, -0.6].
    adv = prime_advantages(OUTCOME, PROCESS, MASK, k=2, gamma=0.5)
    assert close(adv, [[0.9, 1.4, 0.0], [-0.55, -1.1, -1.6]])


def test_prm_equal_to_reference_gives_rloo_advantages():
    outcome = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    mask = torch.tensor([[1.0, 1.0, 0.0]] * 4 + [[1.0, 0.0, 0.0]] * 4)
    no_process = implicit_process_rewards(torch.zeros(8, 3), torch.zeros(8, 3), mask, 0.05)
    adv = prime_advantages(outcome, no_process, mask, k=4, gamma=1.0)
    rloo = torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0.0, 0.0, 0.0, 0.0])  # r_i - mean of the other 3
    assert torch.allclose(adv, rloo[:, None] * mask)


def test_a_group_with_equal_rewards_and_equal_token_rewards_has_zero_advantage():
    process = torch.full((2, 3), 0.1)
    adv = prime_advantages(torch.tensor([1.0, 1.0]), process, torch.ones(2, 3), k=2, gamma=1.0)
    assert torch.allclose(adv, torch.zeros(2, 3))


def test_whiten_gives_mean_0_and_std_1_on_real_tokens():
    adv = torch.tensor([[1.0, 3.0, 100.0]])
    out = whiten(adv, torch.tensor([[1.0, 1.0, 0.0]]))
    assert close(out, [[-1.0, 1.0, 0.0]])


def test_policy_loss_on_policy_is_minus_the_mean_token_advantage():
    logps = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([[1.0, 2.0, 9.0], [-1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, stats = prime_policy_loss(logps, logps.detach(), adv, mask, 0.2)
    assert float(loss.detach()) == pytest.approx(-(1 + 2 - 1) / 5)
    loss.backward()
    assert torch.allclose(logps.grad, -adv * mask / 5)
    assert float(stats["clip_ratio"]) == 0.0


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(1, 1)
    logps = torch.log(torch.tensor([[1.5]]))  # ratio 1.5 > 1 + eps: the positive advantage is clipped at 1.2
    loss, stats = prime_policy_loss(logps, old, torch.tensor([[1.0]]), torch.ones(1, 1), 0.2)
    assert float(loss) == pytest.approx(-1.2) and float(stats["clip_ratio"]) == 1.0


# --- the prompt filter and the labels ------------------------------------------------------------------


def test_accuracy_range():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert accuracy_in_range(rewards, 0.2, 0.8).tolist() == [True, False, True, False]


def _fake_rollout(rewards: list[list[float]], width: int = 3) -> Rollout:
    p, g = len(rewards), len(rewards[0])
    n = p * g
    return Rollout(
        records=[{"prompt": str(i // g)} for i in range(n)],
        num_generations=g,
        input_ids=torch.randint(3, 30, (n, 2 + width)),
        attention_mask=torch.ones(n, 2 + width, dtype=torch.long),
        prompt_width=2,
        completion_mask=torch.ones(n, width),
        texts=[str(i) for i in range(n)],
        truncated=torch.zeros(n, dtype=torch.bool),
        rewards=torch.tensor(rewards).flatten(),
    )


def test_filter_resamples_then_fills_with_zero_weight():
    rounds = [[[1.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]  # one prompt in range in two rounds
    cfg = Config(prompts_per_step=2, num_generations=2, filter_rounds=2)
    calls = []

    def sample(prompts):
        calls.append(prompts)
        return _fake_rollout(rounds[len(calls) - 1])

    rollout, weights = filtered_rollout(lambda k: [k], sample, cfg)
    assert len(calls) == 2 and len(rollout) == 4
    assert rollout.rewards.tolist() == [0.0, 1.0, 1.0, 1.0]  # the in-range prompt first, then filler
    assert weights.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert rollout.stats["filter/filled_share"] == 0.5


def test_outcome_rewards_outside_0_1_are_refused_in_one_line():
    assert outcome_labels(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]
    with pytest.raises(UserError, match=r"must lie in \[0, 1\].*got 1.5"):
        outcome_labels(torch.tensor([0.0, 1.5]))


def test_low_above_high_is_a_config_error():
    with pytest.raises(ValueError, match="filter_low"):
        Config(filter_low=0.9, filter_high=0.1)


def test_resume_is_refused_before_loading_anything(tmp_path):
    with pytest.raises(UserError, match="--resume: prime does not checkpoint its implicit PRM"):
        run(Config(), RunContext(output_dir=tmp_path, resume=True))


def test_torchrun_is_refused_before_loading_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="not synchronised across processes"):
        run(Config(), RunContext(output_dir=tmp_path))


# --- the online PRM update on a tiny model ---------------------------------------------------------------


def _tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
    )
    return LlamaForCausalLM(config)


def test_prm_update_changes_the_prm_and_learns_the_labels():
    from posttrain.hf import frozen_reference

    prm = _tiny_lm()
    reference = frozen_reference(prm)
    before = {n: p.detach().clone() for n, p in prm.named_parameters()}
    cfg = Config(num_generations=2, prompts_per_step=1, batch_size=2, prm_learning_rate=1e-2, beta=0.5)
    optimizer = torch.optim.AdamW(prm.parameters(), lr=cfg.prm_learning_rate)
    rollout = _fake_rollout([[1.0, 0.0]], width=4)
    weights = torch.ones(2)

    process, stats = update_prm(prm, reference, optimizer, rollout, weights, cfg)
    # scored before the step, by a PRM equal to the reference: no process reward, CE log 2
    assert torch.allclose(process, torch.zeros_like(process), atol=1e-6)
    assert stats["prm/loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert any(not torch.equal(before[n], p) for n, p in prm.named_parameters()), "the PRM did not change"
    assert all(not p.requires_grad for p in reference.parameters())

    for _ in range(10):
        process, stats = update_prm(prm, reference, optimizer, rollout, weights, cfg)
    scores = process.sum(-1)
    assert scores[0] > 0 > scores[1]  # the correct completion's sequence reward rose, the wrong one's fell
    assert stats["prm/accuracy"] == 1.0 and stats["prm/loss"] < math.log(2)


def test_filler_rows_do_not_train_the_prm():
    from posttrain.hf import frozen_reference

    prm = _tiny_lm()
    before = {n: p.detach().clone() for n, p in prm.named_parameters()}
    cfg = Config(num_generations=2, prompts_per_step=1, batch_size=2)
    optimizer = torch.optim.AdamW(prm.parameters(), lr=1e-2)
    update_prm(prm, frozen_reference(prm), optimizer, _fake_rollout([[1.0, 0.0]]), torch.zeros(2), cfg)
    assert all(torch.equal(before[n], p) for n, p in prm.named_parameters())
