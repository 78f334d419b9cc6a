"""Group Sequence Policy Optimization (GSPO).

Paper: Zheng, Liu, Li, Chen, Yu, Gao, Dang, Liu, Men, Yang, Zhou, Lin, 2025, "Group Sequence Policy
Optimization", arXiv:2507.18071, §4 (Eq. 5-7). Catalog entry: catalog/methods/gspo.yaml.

    catalog run gspo                                   # embedded tiny model + addition prompts
    catalog run gspo --model ./my-model --dataset prompts.jsonl --set lora=true

GRPO (posttrain_plugins.grpo) with the importance ratio and clipping moved from tokens to whole
responses: s_i = (pi(o_i|q) / pi_old(o_i|q))^(1/|o_i|) = exp(mean_t log rho_{i,t}), and the loss is
-(1/G) sum_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i), with GRPO's group-normalised
advantages. The unit of optimisation (a response) then matches the unit of reward.

Token-level options (GroupConfig, all off by default; as in posttrain_plugins.grpo): with
``sampler_correction``, ``top_entropy_fraction``, ``clip_cov_fraction`` or ``kl_cov_fraction`` on, the
loss is computed in the paper's token form, GSPO-token with every token's advantage A_i:
s_{i,t} = sg[s_i] pi(y_t) / sg[pi(y_t)] has the value s_i (so clipping still acts per response) and the
gradient of token t alone. A token's weight multiplies its share of the response's gradient (0: the token
gives none; the response's other tokens keep theirs), and KL-Cov's penalty is subtracted per token before
the 1/|o_i| average. With every weight 1 the token form has GSPO's value and gradient.

Deviations from the paper:
1. Learning rate, group size, prompts per rollout and step count are sized for the embedded tiny
   model (paper: Qwen3 models; it does not publish the learning rate). Each rollout is split into
   2 mini-batches (64 completions, micro-batches of 32; the paper uses 4), so the second update is
   off-policy and the sequence-level clipping acts; max_steps 400 = 200 rollouts. With 4
   mini-batches of 16 (2 prompts each) the tiny model's updates were too noisy to raise held-out
   exact match; with 2 it rises (reports/runs/gspo.json).
2. No KL term by default (beta = 0; the paper's objective has none); beta > 0 adds GRPO's
   per-token k3 KL averaged per response.
3. eps_low / eps_high default to the paper's 3e-4 / 4e-4, which are tuned for long responses of
   large models: they are kept, though the tiny model's sequence ratios move further per update,
   so many responses are clipped after the first mini-batch (see ``clip_ratio``).
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.rl.group import (
    SMOKE,
    TokenShaping,
    clipped_surrogate,
    reference_kl,
    sequence_mean,
    shape_surrogate,
    train_with_group_advantages,
)
from posttrain.rl.rollout_config import GroupConfig


class Config(GroupConfig):
    learning_rate: float = Field(
        5e-5,
        gt=0,
        description="Peak learning rate of AdamW (sized for the embedded model; the paper does not publish it).",
    )
    epsilon_low: float = Field(3e-4, gt=0, description="eps_low, lower clip range of s_i (§5.1: 3e-4).")
    epsilon_high: float = Field(4e-4, gt=0, description="eps_high, upper clip range of s_i (§5.1: 4e-4).")
    batch_size: int = Field(
        32, ge=1, description="Completions per micro-batch: 2 mini-batches per 64-completion rollout (§5.1: 4)."
    )
    max_steps: int = Field(400, ge=1, description="Optimizer steps (2 per rollout: 200 rollouts).")
    beta: float = Field(0.0, ge=0, description="beta, coefficient of an optional k3 KL to the reference (paper: none).")
    std_epsilon: float = Field(1e-4, gt=0, description="Added to the group std in the advantage denominator.")


# --- ratio and loss (paper Eq. 5-7) ------------------------------------------------------------------


def sequence_ratio(logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """s_i = exp(mean over the response's tokens of log pi - log pi_old), (N, C) -> (N,).

    Token log-ratios [log 2, 0] (two tokens) give s = sqrt(2); s = 1 when the policy is the old policy.
    """
    lengths = mask.sum(-1).clamp(min=1)
    return torch.exp(((logps - old_logps) * mask).sum(-1) / lengths)


def gspo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    beta: float = 0.0,
    shaping: TokenShaping | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-(1/N) sum_i [min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i) - beta * KL_i]; advantages (N,).

    With ``shaping`` (the token-level options) the loss is computed in its token form
    (``gspo_token_loss``), where each token has a term to weight."""
    if shaping is not None:
        return gspo_token_loss(logps, old_logps, ref_logps, advantages, mask, eps_low, eps_high, beta, shaping)
    ratio = sequence_ratio(logps, old_logps, mask)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * advantages
    objective = torch.minimum(unclipped, clipped)
    lengths = mask.sum(-1).clamp(min=1)
    kl = reference_kl(logps, ref_logps)
    seq_kl = (kl * mask).sum(-1) / lengths
    loss = -(objective - beta * seq_kl).mean()
    stats = {"kl": seq_kl.mean(), "clip_ratio": (clipped < unclipped).float().mean(), "sequence_ratio": ratio.mean()}
    return loss, stats


def token_log_ratio(logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log s_{i,t} of GSPO-token: log sg[s_i] + log pi(y_t) - sg[log pi(y_t)], (N, C).

    Its value is log s_i on every token; its gradient is that of the token's own log-prob, so
    d s_{i,t} / d log pi(y_t) = s_i, and (1/|o_i|) sum_t s_{i,t} has GSPO's gradient s_i / |o_i| per token.
    """
    lengths = mask.sum(-1).clamp(min=1)
    log_s = ((logps.detach() - old_logps) * mask).sum(-1) / lengths  # log s_i, no exp/log round trip
    return log_s[:, None] + logps - logps.detach()


def gspo_token_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    beta: float,
    shaping: TokenShaping,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GSPO in the paper's token form (GSPO-token with A_{i,t} = A_i), shaped per token:
    -(1/N) sum_i (1/|o_i|) sum_t [w_t min(s_{i,t} A_i, clip(s_{i,t}) A_i) - p_t - beta * k3 KL].

    s_{i,t} has the value s_i, so the clip acts per response as in ``gspo_loss``; with weights w = 1
    and penalty p = 0 it has the same value and gradient as ``gspo_loss`` (up to rounding); w_t = 0
    removes token t's share of the response's gradient.
    """
    log_ratio = token_log_ratio(logps, old_logps, mask)
    surrogate, _ = clipped_surrogate(log_ratio, torch.zeros_like(log_ratio), advantages[:, None], eps_low, eps_high)
    kl = reference_kl(logps, ref_logps)
    per_token = shape_surrogate(surrogate, shaping) - beta * kl
    loss = -sequence_mean(per_token, mask)
    ratio = sequence_ratio(logps.detach(), old_logps, mask)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * advantages < ratio * advantages
    stats = {
        "kl": sequence_mean(kl, mask),
        "clip_ratio": clipped.float().mean(),
        "sequence_ratio": ratio.mean(),
    }
    return loss, stats


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_group_advantages(cfg, ctx, "gspo", gspo_loss, cfg.epsilon_low, cfg.epsilon_high, cfg.beta)


plugin = Plugin(
    id="gspo",
    config=Config,
    run=run,
    summary="GSPO: sequence-level, length-normalised importance ratio and clipping with group advantages.",
    smoke={**SMOKE, "batch_size": 8},
)
