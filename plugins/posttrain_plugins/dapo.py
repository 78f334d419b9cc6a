"""DAPO: Decoupled Clip and Dynamic sAmpling Policy Optimization.

Paper: Yu, Zhang, Zhu, Yuan, Zuo, Yue, Dai, Fan, Liu, Liu, et al., 2025, "DAPO: An Open-Source LLM
Reinforcement Learning System at Scale", arXiv:2503.14476, §3 (Eq. 8-13) and Algorithm 1.
Catalog entry: catalog/methods/dapo.yaml.

    catalog run dapo                                   # embedded tiny model + addition prompts
    catalog run dapo --model ./my-model --dataset prompts.jsonl --set max_completion_length=2048

GRPO (posttrain_plugins.grpo) with four changes, each a function below:
1. clip-higher: the ratio is clipped to [1 - eps_low, 1 + eps_high] with eps_high > eps_low, so
   low-probability tokens can grow (against entropy collapse);
2. dynamic sampling: groups whose rewards are all equal (zero advantage, no gradient) are dropped
   and more prompts are sampled until the rollout holds ``prompts_per_step`` informative groups;
3. token-level loss: the clipped surrogate is averaged over all tokens of the batch, not per
   completion first, so long completions weigh by their length;
4. overlong reward shaping: a completion longer than L_max - L_cache loses up to 1 reward
   linearly, reaching -1 at L_max (the generation limit).
There is no KL term (beta = 0), as in the paper.

Token-level options (GroupConfig, all off by default; as in posttrain_plugins.grpo): ``sampler_correction``,
``top_entropy_fraction``, ``clip_cov_fraction`` and ``kl_cov_fraction`` reweight or mask each token's
clip-higher surrogate (or subtract KL-Cov's penalty from it); the token-level average is unchanged.

Deviations from the paper:
1. Learning rate, group size, prompts per rollout and step count are sized for the embedded tiny
   model (paper: lr 1e-6, 16 samples x 512 prompts, 16 updates per rollout). As in the paper a
   rollout feeds several updates, here 2 (64 completions in micro-batches of 32), so the second
   is off-policy and clip-higher acts; max_steps 400 = 200 rollouts. With 4 updates of 16
   completions (2 prompts each) the tiny model's updates were too noisy to raise exact match.
2. Dynamic sampling stops after ``max_sampling_rounds`` rounds; if fewer informative groups were
   found, the rollout is completed with all-equal groups (zero advantage, so no gradient) and the
   share of such filler is logged as ``dynamic_sampling/filled_share``. The paper samples until full.
3. The token-level average is over the tokens of each micro-batch; with grad_accum > 1 this
   differs from the paper's average over the whole mini-batch.
4. The overlong buffer L_cache defaults to 1/5 of max_completion_length (paper: 4096 of 20480).
5. Groups are filtered on the total reward after overlong shaping (the paper filters on accuracy):
   with shaping, a group of equally correct answers of different lengths still carries signal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.errors import UserError
from posttrain.generation.sampler import Sampling
from posttrain.rl.group import (
    SMOKE,
    Objective,
    TokenShaping,
    clipped_token_objective,
    group_advantages,
    train_group_policy,
)
from posttrain.rl.policy_gradient import masked_mean
from posttrain.rl.rollout import Rollout, concat_rollouts, sampling_from_config
from posttrain.rl.rollout_config import GroupConfig


class Config(GroupConfig):
    learning_rate: float = Field(
        5e-5, gt=0, description="Peak learning rate of AdamW (sized for the embedded model; paper 1e-6)."
    )
    epsilon_low: float = Field(0.2, gt=0, description="eps_low, lower clip range of the ratio (§3.1: 0.2).")
    epsilon_high: float = Field(0.28, gt=0, description="eps_high, upper clip range (§3.1 clip-higher: 0.28).")
    batch_size: int = Field(
        32, ge=1, description="Completions per micro-batch: 2 optimizer steps per 64-completion rollout."
    )
    max_steps: int = Field(400, ge=1, description="Optimizer steps (2 per rollout: 200 rollouts).")
    max_sampling_rounds: int = Field(
        4, ge=1, description="Dynamic sampling: most sampling rounds per rollout before filling with all-equal groups."
    )
    overlong_buffer: int | None = Field(
        None,
        ge=1,
        description="L_cache, soft overlong punishment interval in tokens (default max_completion_length / 5).",
    )
    overlong_penalty: float = Field(1.0, ge=0, description="Scale of the overlong penalty (§3.4: 1).")
    std_epsilon: float = Field(1e-4, gt=0, description="Added to the group std in the advantage denominator.")


# --- DAPO's pieces (paper Eq. 8-13) ------------------------------------------------------------------


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """(P, G) -> (P,) bool: groups whose rewards are not all equal (Eq. 11's 0 < |correct| < G)."""
    return rewards.max(-1).values > rewards.min(-1).values


def overlong_penalty(lengths: torch.Tensor, max_length: int, buffer: int) -> torch.Tensor:
    """Eq. 13: 0 up to L_max - L_cache tokens, then ((L_max - L_cache) - |y|) / L_cache, -1 beyond L_max.

    L_max 20, L_cache 4: lengths 16, 18, 20, 25 -> 0, -0.5, -1, -1.
    """
    free = max_length - buffer
    return ((free - lengths.float()) / buffer).clamp(min=-1.0, max=0.0)


def dapo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    shaping: TokenShaping | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-(1 / sum_i |o_i|) sum_i sum_t min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) (Eq. 8-10).

    ``shaping`` (the token-level options, posttrain.rl.group) reweights the surrogate per token; the
    token-level average stays over all real tokens, kept or not."""
    per_token, stats = clipped_token_objective(
        logps, old_logps, None, advantages, mask, eps_low, eps_high, shaping=shaping
    )
    return -masked_mean(per_token, mask), stats


def dynamic_sample(
    prompts_for: Callable[[int], list[dict]], sample: Callable[[list[dict]], Rollout], groups: int, rounds: int
) -> Rollout:
    """Sample rounds of prompts until ``groups`` informative groups are found (or ``rounds`` run out),
    then complete with uninformative groups; logs rounds used and the filler share."""
    kept: list[Rollout] = []
    spare: list[Rollout] = []
    found, used = 0, 0
    for used in range(1, rounds + 1):
        rollout = sample(prompts_for(used - 1))
        useful = informative_groups(rollout.grouped(rollout.rewards))
        kept.append(rollout.select_groups(useful.nonzero().flatten().tolist()))
        spare.append(rollout.select_groups((~useful).nonzero().flatten().tolist()))
        found += int(useful.sum())
        if found >= groups:
            break
    filled = max(0, groups - found)
    parts = [r for r in kept if len(r)] + ([concat_rollouts([r for r in spare if len(r)])] if filled else [])
    merged = concat_rollouts(parts).select_groups(list(range(groups)))
    merged.stats = {"dynamic_sampling/rounds": float(used), "dynamic_sampling/filled_share": filled / groups}
    return merged


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def advantages(rollout: Rollout) -> torch.Tensor:
        return group_advantages(rollout.grouped(rollout.rewards), cfg.std_epsilon).reshape(-1)

    def objective(sampling: Sampling) -> Objective:
        return lambda logps, old, ref, adv, mask, **options: dapo_loss(
            logps, old, adv, mask, cfg.epsilon_low, cfg.epsilon_high, **options
        )

    limit = sampling_from_config(cfg, ctx.dataset is None, ctx.device).max_new_tokens
    buffer = cfg.overlong_buffer or max(1, limit // 5)
    if buffer > limit:
        raise UserError(f"overlong_buffer {buffer}: must not exceed max_completion_length ({limit})")

    def make_rollout(prompts_for, sample) -> Rollout:
        def shaped(prompts: list[dict]) -> Rollout:
            rollout = sample(prompts)
            penalty = cfg.overlong_penalty * overlong_penalty(rollout.lengths, limit, buffer)
            rollout.rewards = rollout.rewards + penalty
            rollout.reward_components["overlong"] = penalty
            return rollout

        return dynamic_sample(prompts_for, shaped, cfg.prompts_per_step, cfg.max_sampling_rounds)

    return train_group_policy(cfg, ctx, "dapo", advantages, objective, beta=0.0, make_rollout=make_rollout)


plugin = Plugin(
    id="dapo",
    config=Config,
    run=run,
    summary="DAPO: clip-higher, dynamic sampling, token-level loss and overlong reward shaping on top of GRPO.",
    smoke={**SMOKE, "batch_size": 8},
)
