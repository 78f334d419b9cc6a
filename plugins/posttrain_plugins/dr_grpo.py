"""Dr. GRPO: GRPO without its length and difficulty biases.

Paper: Liu, Chen, Li, Qi, Pang, Du, Lee, Lin, 2025, "Understanding R1-Zero-Like Training: A
Critical Perspective", arXiv:2503.20783, §3.2 (Eq. 3 vs Eq. 2). Catalog entry:
catalog/methods/dr-grpo.yaml.

    catalog run dr-grpo                                # embedded tiny model + addition prompts
    catalog run dr-grpo --model ./my-model --dataset prompts.jsonl --set max_completion_length=1024

Two changes to GRPO (posttrain_plugins.grpo):
- the advantage is the reward minus the group mean, A_i = r_i - mean(r), not divided by the
  group's std (which up-weights too easy and too hard questions);
- token losses are summed and divided by a constant, the generation budget L_max
  (``max_completion_length``) times the number of completions, instead of by each completion's
  own length |o_i| (which shrinks the per-token penalty of long wrong answers).

Token-level options (GroupConfig, all off by default; as in posttrain_plugins.grpo): ``sampler_correction``,
``top_entropy_fraction``, ``clip_cov_fraction`` and ``kl_cov_fraction`` reweight or mask each token's clipped
surrogate (or subtract KL-Cov's penalty from it) before the constant normaliser; the KL term is unchanged.

Deviations from the paper:
1. Learning rate, group size and step count are sized for the embedded tiny model (paper:
   Qwen2.5-Math-1.5B, lr 1e-6, 8 samples per question, 128 questions per rollout).
2. beta = 0 as in the paper's runs (no KL term); setting beta > 0 adds GRPO's k3 KL, summed with
   the same constant normaliser.
3. One optimizer update per rollout by default (the paper's oat setup also updates on-policy).
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
from posttrain.rl.rollout import Rollout
from posttrain.rl.rollout_config import GroupConfig


class Config(GroupConfig):
    learning_rate: float = Field(
        5e-5, gt=0, description="Peak learning rate of AdamW (sized for the embedded model; paper 1e-6)."
    )
    epsilon: float = Field(0.2, gt=0, description="epsilon, clipping range of the ratio (paper: 0.2, as GRPO).")
    beta: float = Field(0.0, ge=0, description="beta, coefficient of the k3 KL to the reference (paper: 0).")


# --- advantage and loss (paper Eq. 3) ------------------------------------------------------------


def mean_centred_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(P, G) -> (P, G): r - mean(r) within each group, no std division.

    Rewards [1, 0, 0, 0] give [0.75, -0.25, -0.25, -0.25]; equal rewards give zeros.
    """
    return rewards - rewards.mean(-1, keepdim=True)


def dr_grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    beta: float,
    max_length: int,
    shaping: TokenShaping | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-(1 / (N * L_max)) sum_i sum_t [clipped surrogate - beta * k3 KL]; (N, C) inputs, advantages (N,).

    Every token of every completion has the same weight 1 / (N L_max), whatever its length.
    ``shaping`` (the token-level options, posttrain.rl.group) reweights the surrogate per token; the
    KL term and the constant normaliser stay as they are.
    """
    per_token, stats = clipped_token_objective(
        logps, old_logps, ref_logps, advantages, mask, epsilon, epsilon, beta, shaping
    )
    return -(per_token * mask).sum() / (mask.shape[0] * max_length), stats


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def advantages(rollout: Rollout) -> torch.Tensor:
        return mean_centred_advantages(rollout.grouped(rollout.rewards)).reshape(-1)

    def objective(sampling: Sampling) -> Objective:
        limit = sampling.max_new_tokens
        return lambda logps, old, ref, adv, mask, **options: dr_grpo_loss(
            logps, old, ref, adv, mask, cfg.epsilon, cfg.beta, limit, **options
        )

    return train_group_policy(cfg, ctx, "dr-grpo", advantages, objective, beta=cfg.beta)


plugin = Plugin(
    id="dr-grpo",
    config=Config,
    run=run,
    summary="Dr. GRPO: mean-centred group advantages and a constant loss normaliser (no length or std bias).",
    smoke=SMOKE,
)
