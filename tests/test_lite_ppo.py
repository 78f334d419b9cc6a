"""Lite PPO's two tricks (posttrain_plugins.lite_ppo): group-mean / batch-std advantages and the
token-level PPO loss, on hand-worked numbers, their limiting cases (one prompt: GRPO's advantages;
equal lengths: GRPO's per-completion mean), and the loss against TRL 1.16's GRPOTrainer
(``loss_type="bnpo"`` and ``"dapo"``, the token mean over the batch) on the random tensors of
tests/test_rl_parity.py. TRL's ``scale_rewards="batch"`` advantages are computed inside
``_generate_and_score_completions`` (a model and generation needed), so they are checked here by
hand-worked numbers with TRL's epsilon, 1e-4."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.rl.group import TokenShaping, group_advantages
from posttrain_plugins.grpo import grpo_loss
from posttrain_plugins.lite_ppo import Config, group_mean_batch_std_advantages, token_level_ppo_loss

# --- advantages -----------------------------------------------------------------------------------


def test_group_mean_batch_std_hand_worked():
    rewards = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.float64)
    # batch mean 0.5, every deviation +-0.5: unbiased variance 8 * 0.25 / 7 = 2/7
    std = math.sqrt(2 / 7)
    expected = torch.tensor([[0.75, -0.25, -0.25, -0.25], [0.25, 0.25, 0.25, -0.75]], dtype=torch.float64) / (
        std + 1e-4
    )
    assert torch.allclose(group_mean_batch_std_advantages(rewards, 1e-4), expected, atol=1e-12)
    assert group_mean_batch_std_advantages(rewards, 0.0)[0, 0].item() == pytest.approx(1.40312, abs=1e-5)
    # GRPO divides each group by its own std (0.5): +-1.5 and -+0.5
    assert group_advantages(rewards, 0.0)[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5])


def test_one_prompt_per_batch_gives_grpo_advantages():
    # the batch is the group: batch std = group std, so the advantage equals GRPO's (same epsilon)
    rewards = torch.tensor([[1.0, 0.0, 0.5, 0.0, 1.0]])
    assert torch.equal(group_mean_batch_std_advantages(rewards, 1e-4), group_advantages(rewards, 1e-4))


def test_equal_rewards_give_zero_advantages_without_nan():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # batch std 0.548, each group flat
    assert torch.equal(group_mean_batch_std_advantages(rewards), torch.zeros(2, 3))
    flat = torch.full((2, 3), 0.5)  # batch std 0: 0 / eps
    assert torch.equal(group_mean_batch_std_advantages(flat), torch.zeros(2, 3))
    single = torch.tensor([[1.0]])
    assert torch.equal(group_mean_batch_std_advantages(single), torch.zeros(1, 1))


def test_one_scale_for_the_whole_batch():
    # a nearly-flat group is not blown up: its advantages stay small next to a mixed group's
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.9]])
    lite = group_mean_batch_std_advantages(rewards, 0.0)
    grpo = group_advantages(rewards, 0.0)
    assert lite[1].abs().max() < 0.3 < lite[0].abs().max()
    assert grpo[1].abs().max() > grpo[0].abs().max()  # GRPO: 1.5 for the flat group, 0.87 for the mixed one
    # scaling every reward by c > 0 leaves the advantages unchanged (up to eps); reordering groups too
    assert torch.allclose(group_mean_batch_std_advantages(rewards * 7, 0.0), lite, atol=1e-6)
    assert torch.equal(group_mean_batch_std_advantages(rewards.flip(0), 0.0), lite.flip(0))


# --- loss -------------------------------------------------------------------------------------------


def ragged(lengths: list[int], width: int) -> torch.Tensor:
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).to(torch.float64)


def test_token_level_loss_hand_worked_on_policy():
    # ratio 1: the surrogate is A on every token. Lengths 1 and 3, A = [2, -1]:
    # token mean -(2 * 1 - 1 * 3) / 4 = 0.25; GRPO's per-completion mean -(2 - 1) / 2 = -0.5
    mask = ragged([1, 3], 3)
    logps = torch.full((2, 3), -1.0, dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    loss, stats = token_level_ppo_loss(logps, logps.detach(), None, adv, mask, 0.2)
    assert loss.item() == pytest.approx(0.25)
    grpo, _ = grpo_loss(logps, logps.detach(), None, adv, mask, 0.2, 0.0)
    assert grpo.item() == pytest.approx(-0.5)
    # every real token gets the same weight 1/4: d loss / d log pi = -A_i / 4, 0 off the mask
    loss.backward()
    expected = torch.tensor([[-0.5, 0, 0], [0.25, 0.25, 0.25]], dtype=torch.float64)
    assert torch.allclose(logps.grad, expected)
    assert stats["clip_ratio"].item() == 0 and stats["kl"].item() == 0


def test_equal_lengths_token_mean_is_grpo_sequence_mean():
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(4, 5, generator=g, dtype=torch.float64) * 2
    logps = old + (torch.rand(4, 5, generator=g, dtype=torch.float64) - 0.5)  # off-policy: the clip acts
    ref = old + (torch.rand(4, 5, generator=g, dtype=torch.float64) - 0.5) * 0.3
    adv = torch.randn(4, generator=g, dtype=torch.float64)
    mask = ragged([3, 3, 3, 3], 5)  # equal lengths, padded
    for beta in (0.0, 0.04):
        lite, lite_stats = token_level_ppo_loss(logps, old, ref, adv, mask, 0.2, beta)
        grpo, grpo_stats = grpo_loss(logps, old, ref, adv, mask, 0.2, beta)
        assert lite.item() == pytest.approx(grpo.item(), abs=1e-12)
        assert lite_stats["clip_ratio"].item() == pytest.approx(grpo_stats["clip_ratio"].item())
    assert lite_stats["clip_ratio"].item() > 0


def test_clip_and_kl_hand_worked():
    # one token, A = 1, ratio e^0.5 = 1.65 > 1.2: the surrogate is clipped to 1.2 and has no gradient
    logps = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 1, dtype=torch.float64)
    ref = torch.tensor([[1.5]], dtype=torch.float64)  # log(pi_ref / pi) = 1: k3 = e - 2
    mask = torch.ones(1, 1, dtype=torch.float64)
    loss, stats = token_level_ppo_loss(logps, old, ref, torch.tensor([1.0], dtype=torch.float64), mask, 0.2, 0.1)
    assert loss.item() == pytest.approx(-(1.2 - 0.1 * (math.e - 2)))
    assert stats["clip_ratio"].item() == 1 and stats["kl"].item() == pytest.approx(math.e - 2)


def test_token_options_reweight_the_surrogate_only():
    g = torch.Generator().manual_seed(1)
    old = -torch.rand(3, 4, generator=g, dtype=torch.float64)
    logps = (old + 0.1).requires_grad_(True)
    ref = old - 0.2
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    mask = ragged([4, 2, 3], 4)
    ones = TokenShaping(weights=torch.ones_like(old), penalty=torch.zeros_like(old), stats={})
    plain, _ = token_level_ppo_loss(logps, old, ref, adv, mask, 0.2, 0.04)
    shaped, _ = token_level_ppo_loss(logps, old, ref, adv, mask, 0.2, 0.04, shaping=ones)
    assert shaped.item() == plain.item()
    # a zero weight on the first completion's tokens leaves them only the KL gradient
    weights = torch.ones_like(old)
    weights[0] = 0
    dropped = TokenShaping(weights=weights, penalty=torch.zeros_like(old), stats={})
    loss, _ = token_level_ppo_loss(logps, old, ref, adv, mask, 0.2, 0.04, shaping=dropped)
    loss.backward()
    kl_only = logps.detach().clone().requires_grad_(True)
    (0.04 * (torch.exp(ref - kl_only) - (ref - kl_only) - 1)[0].sum() / mask.sum()).backward()
    assert torch.allclose(logps.grad[0], kl_only.grad[0])


def test_config_takes_the_grpo_token_options():
    cfg = Config(top_entropy_fraction=0.2, sampler_correction="tis")
    assert cfg.beta == 0.0 and cfg.epsilon == 0.2 and cfg.std_epsilon == 1e-4


# --- parity with TRL 1.16 -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("loss_type", ["bnpo", "dapo"])
def test_token_level_loss_matches_trl(seed, beta, loss_type):
    # bnpo: token mean of the micro-batch; dapo: tokens of the whole generation batch, the same
    # batch here (one process, no accumulation). Both with TRL's symmetric clip 0.2.
    pytest.importorskip("trl")
    from test_rl_parity import assert_same, ours, rl_inputs, trl_loss

    x = rl_inputs(seed)
    theirs = trl_loss(x, loss_type, beta)
    mine = ours(x, token_level_ppo_loss, 0.2, beta)
    assert_same(theirs, mine)
    assert mine[2]["clip_ratio"] > 0.1  # the clip acts on these inputs
    assert abs(theirs[2]["clip_ratio/region_mean"] - mine[2]["clip_ratio"]) < 1e-6
    if beta:
        assert abs(theirs[2]["kl"] - mine[2]["kl"]) < 1e-6


# --- the recipe -------------------------------------------------------------------------------------


@pytest.mark.smoke
def test_runs_with_a_grpo_token_option_and_logs_the_batch_std(tmp_path):
    import json

    from posttrain.runs.runner import execute, prepare

    prepared = prepare("lite-ppo", output_dir=tmp_path, smoke=True, device="cpu", extra={"top_entropy_fraction": 0.2})
    execute(prepared, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert rows and all(math.isfinite(r["loss"]) and 0 < r["entropy_kept"] <= 0.5 for r in rows)
    assert all(r["reward_batch_std"] >= 0 for r in rows)
