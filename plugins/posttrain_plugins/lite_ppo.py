"""Lite PPO: the vanilla PPO loss without a critic, plus two tricks only.

Paper: Liu, Liu, He, Wang, Liu, Pan, Hu, Xiong, Huang, Hu, Huang, et al., 2025, "Part I: Tricks or
Traps? A Deep Dive into RL for LLM Reasoning", arXiv:2508.08221, §5 (Lite PPO: the group-mean
advantage of Eq. 5 over the batch std of Eq. 6, §4.1.2, and the token-level loss of §4.3; checked
against a full-text copy, not the arXiv page).
Catalog entry: catalog/methods/lite-ppo.yaml.

    catalog run lite-ppo                               # embedded tiny model + addition prompts
    catalog run lite-ppo --model ./my-base-model --dataset prompts.jsonl --set max_completion_length=2048

The paper reproduces the common RL-for-reasoning tricks one at a time and keeps two, on top of the
clipped PPO surrogate with outcome rewards and no value model:

1. advantage normalisation with the group's mean and the batch's standard deviation:
   A_i = (r_i - mean(r of the prompt's group)) / (std(r of the whole rollout batch) + eps);
2. token-level loss aggregation: the per-token surrogate is averaged over every token of the
   batch, so each token weighs the same whatever the length of its completion:

    J = (1 / sum_i |o_i|) sum_i sum_t min(rho_{i,t} A_i, clip(rho_{i,t}, 1 - eps, 1 + eps) A_i).

GRPO (posttrain_plugins.grpo) divides by the group's std instead, which blows up the advantages of
a group whose rewards are nearly equal, and averages per completion first (1/|o_i|), which gives a
long completion's tokens less weight. Everything else (clip-higher, dynamic sampling, overlong
shaping) is left out on purpose. TRL 1.16's GRPOConfig spells the two tricks ``scale_rewards="batch"``
(group mean, batch std, 1e-4 added) and ``loss_type="bnpo"`` (token mean of the micro-batch): the loss
and gradients match it to 1e-6 (tests/test_lite_ppo.py). The GRPO token-level options
(``sampler_correction``, ``top_entropy_fraction``, ``clip_cov_fraction``, ``kl_cov_fraction``;
site/docs/user-guide.md) apply to the surrogate. At its defaults held-out exact match rises
significantly over 3 seeds on the embedded task (reports/runs/lite-ppo.json, catalog/methods/lite-ppo.yaml).

Deviations from the paper:
1. Learning rate, group size, prompts per rollout and step count are those of posttrain_plugins.grpo,
   sized for the embedded tiny model (paper: Qwen3-4B and -8B, base and aligned; per reading notes,
   128 prompts x 8 responses, lr 1e-6, temperature 0.99, top_p 0.99, top_k 100). One update per
   rollout (64 completions in one micro-batch), so the ratio is 1 and the clip does not act unless
   ``batch_size`` or ``policy_epochs`` make later updates off-policy.
2. The batch std is that of the rollout's rewards (the batch the advantages are computed on), the
   unbiased sample std, with ``std_epsilon`` 1e-4 added (TRL's value; the authors' ROLL framework adds
   1e-6). The paper's epsilon, and its clip range, were not verified; eps = 0.2 is PPO's and ROLL's
   documented ``pg_clip``.
3. No KL term by default (beta = 0): the method is the PPO loss plus the two tricks. ROLL's LitePPO
   example configuration adds a KL loss with coefficient 0.001; ``beta`` > 0 adds GRPO's k3 KL,
   averaged over the batch's tokens like the surrogate.
4. The token-level average is over the tokens of each micro-batch; with grad_accum > 1 this differs
   from the paper's average over the whole batch (as in posttrain_plugins.dapo).
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.sampler import Sampling
from posttrain.rl.group import (
    SMOKE,
    Objective,
    TokenShaping,
    clipped_token_objective,
    train_group_policy,
)
from posttrain.rl.policy_gradient import masked_mean
from posttrain.rl.rollout import Rollout
from posttrain.rl.rollout_config import GroupConfig


class Config(GroupConfig):
    learning_rate: float = Field(
        5e-5, gt=0, description="Peak learning rate of AdamW (sized for the embedded model, as grpo's)."
    )
    epsilon: float = Field(0.2, gt=0, description="epsilon, clipping range of the ratio (PPO's 0.2).")
    beta: float = Field(
        0.0, ge=0, description="beta, coefficient of an optional k3 KL to the reference (Lite PPO: none)."
    )
    std_epsilon: float = Field(1e-4, gt=0, description="Added to the batch std in the advantage denominator.")


# --- advantage and loss (the paper's two tricks) -------------------------------------------------------


def group_mean_batch_std_advantages(rewards: torch.Tensor, std_epsilon: float = 1e-4) -> torch.Tensor:
    """(P, G) -> (P, G): (r - mean of the prompt's group) / (std of all P * G rewards + eps).

    Rewards [[1, 0, 0, 0], [1, 1, 1, 0]]: group means 0.25 and 0.75, batch std (unbiased, 8 rewards)
    0.5345, advantages [1.403, -0.468, -0.468, -0.468] and [0.468, 0.468, 0.468, -1.403] (up to eps);
    GRPO's group std would give +-1.5 and -0.5 / +0.5. One prompt: the batch is the group, GRPO's.
    Equal rewards within a group give zero advantages.
    """
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std() if rewards.numel() > 1 else torch.zeros((), dtype=rewards.dtype)
    return (rewards - mean) / (std + std_epsilon)


def token_level_ppo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    beta: float = 0.0,
    shaping: TokenShaping | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-(1 / sum_i |o_i|) sum_i sum_t [clipped surrogate - beta * k3 KL]; (N, C) inputs, advantages (N,).

    Every real token of the micro-batch weighs 1 / (its number of tokens): completions of 1 and 3
    tokens give weights 1/4 each, where GRPO's per-completion mean gives 1/2 and 1/6. With equal
    lengths the two coincide. ``shaping`` (GroupConfig's token-level options) reweights the surrogate.
    """
    per_token, stats = clipped_token_objective(
        logps, old_logps, ref_logps, advantages, mask, epsilon, epsilon, beta, shaping
    )
    return -masked_mean(per_token, mask), stats


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def advantages(rollout: Rollout) -> torch.Tensor:
        rollout.stats["reward_batch_std"] = float(rollout.rewards.std()) if len(rollout) > 1 else 0.0
        return group_mean_batch_std_advantages(rollout.grouped(rollout.rewards), cfg.std_epsilon).reshape(-1)

    def objective(sampling: Sampling) -> Objective:
        return lambda logps, old, ref, adv, mask, **options: token_level_ppo_loss(
            logps, old, ref, adv, mask, cfg.epsilon, cfg.beta, **options
        )

    return train_group_policy(cfg, ctx, "lite-ppo", advantages, objective, beta=cfg.beta)


plugin = Plugin(
    id="lite-ppo",
    config=Config,
    run=run,
    summary="Lite PPO: critic-free PPO loss with group-mean / batch-std advantages and a token-level loss mean.",
    smoke=SMOKE,
)
