"""Geometric-Mean Policy Optimization (GMPO).

Paper: Zhao, Liu, Liu, Chen, Wu, Hao, Lv, Huang, Cui, Ye, Wan, Wei, 2025, "Geometric-Mean Policy
Optimization", arXiv:2507.20673 (the GMPO objective and its clip range). Catalog entry:
catalog/methods/gmpo.yaml.

    catalog run gmpo                                   # embedded tiny model + addition prompts
    catalog run gmpo --model ./my-model --dataset prompts.jsonl --set lora=true

GRPO (posttrain_plugins.grpo) takes the arithmetic mean over a response's tokens of rho_t A; GMPO
takes their geometric mean, which a few tokens with outlying ratios cannot dominate:

    J = (1/G) sum_i A_i exp((1/|o_i|) sum_t l~_{i,t}),   l_{i,t} = log pi(o_t) - log pi_old(o_t),
    l~ = min(l, clip(l, -eps_low, eps_high)) if A_i > 0, else max(l, clip(l, -eps_low, eps_high)).

The clip is per token, in log space, before the mean, and one-sided by the advantage's sign (PPO's
min written for log ratios): a token whose ratio already moved in the advantage's direction past
the range loses its gradient; one that moved the other way keeps it. The paper's range is
(e^-0.4, e^0.4), wider than GRPO's (0.8, 1.2): the geometric mean tolerates it.

TRL 1.16's experimental GMPOTrainer (trl.experimental.gmpo, epsilon 0.4 in log space) computes the
same loss and gradients (tests/test_rl_parity.py).

Token-level options (GroupConfig, all off by default; as in posttrain_plugins.grpo): GMPO's objective
is per response, so with ``sampler_correction``, ``top_entropy_fraction``, ``clip_cov_fraction`` or
``kl_cov_fraction`` on the loss is written per token (``gmpo_token_loss``, in the manner of GSPO-token):
token t's term has the value A_i G_i and the gradient A_i G_i grad l~_t / |o_i| after the 1/|o_i| average,
its share of the response's gradient. A token's weight multiplies that share (0: the token gives none), and
KL-Cov's penalty is subtracted per token. With every weight 1 it has GMPO's value and gradient.

Deviations from the paper:
1. Learning rate, group size, prompts per rollout and step count are sized for the embedded tiny
   model (paper: Qwen2.5-Math-7B and others). As in posttrain_plugins.gspo and cispo a rollout
   feeds 2 updates (64 completions, micro-batches of 32), so the second is off-policy and the clip
   acts; max_steps 400 = 200 rollouts. At these defaults held-out exact match does not rise
   significantly; with one on-policy update per rollout (batch_size=64) it does, but there the clip
   never acts and the gradient is GRPO's (catalog/methods/gmpo.yaml, reports/runs/gmpo*.json).
2. No KL term by default (beta = 0; TRL's default too); beta > 0 adds GRPO's per-token k3 KL
   averaged per response, as TRL's GMPOTrainer does.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.rl.group import (
    SMOKE,
    TokenShaping,
    reference_kl,
    sequence_mean,
    shape_surrogate,
    train_with_group_advantages,
)
from posttrain.rl.rollout_config import GroupConfig


class Config(GroupConfig):
    learning_rate: float = Field(
        5e-5, gt=0, description="Peak learning rate of AdamW (sized for the embedded model, as gspo's)."
    )
    epsilon_low: float = Field(
        0.4, gt=0, description="eps_low in log space: token ratios are clipped from below at e^-eps (paper: 0.4)."
    )
    epsilon_high: float = Field(
        0.4, gt=0, description="eps_high in log space: token ratios are clipped from above at e^eps (paper: 0.4)."
    )
    batch_size: int = Field(
        32, ge=1, description="Completions per micro-batch: 2 optimizer steps per 64-completion rollout."
    )
    max_steps: int = Field(400, ge=1, description="Optimizer steps (2 per rollout: 200 rollouts).")
    beta: float = Field(0.0, ge=0, description="beta, coefficient of an optional k3 KL to the reference (paper: none).")
    std_epsilon: float = Field(1e-4, gt=0, description="Added to the group std in the advantage denominator.")


# --- clipped log ratio and loss ---------------------------------------------------------------------


def clipped_log_ratio(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log ratio clipped to [-eps_low, eps_high] on the advantage's side only, and where it was
    (never on a zero-advantage row, which carries no gradient either way).

    A > 0: min(l, clip(l)) caps gains above eps_high, keeps l below -eps_low; A < 0 the mirror image.
    Log ratios [0.6, -0.6] with A = +1 and eps 0.4 -> [0.4, -0.6]; with A = -1 -> [0.6, -0.4].
    ``advantages`` (N,) broadcasts over tokens.
    """
    log_ratio = logps - old_logps
    bounded = torch.clamp(log_ratio, min=-eps_low, max=eps_high)
    positive = advantages[:, None] > 0
    clipped = torch.where(positive, torch.minimum(log_ratio, bounded), torch.maximum(log_ratio, bounded))
    return clipped, (clipped != log_ratio) & (advantages[:, None] != 0)


def geometric_mean_ratio(clipped_log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(prod_t rho~_t)^(1/|o|) = exp(mean over the response's tokens of the clipped log ratio), (N, C) -> (N,).

    Log ratios [log 2, log 8] give 4 (the arithmetic mean of the ratios would be 5); equal ratios r give r.
    """
    lengths = mask.sum(-1).clamp(min=1)
    return torch.exp((clipped_log_ratio * mask).sum(-1) / lengths)


def gmpo_loss(
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
    """-(1/N) sum_i [A_i * geometric_mean_ratio_i - beta * KL_i]; (N, C) inputs, advantages (N,).

    At ratio 1 the gradient of a token is -A_i grad log pi / (|o_i| N): GRPO's sequence-mean gradient.
    With ``shaping`` (the token-level options) the loss is computed in its token form
    (``gmpo_token_loss``), where each token has a term to weight.
    """
    if shaping is not None:
        return gmpo_token_loss(logps, old_logps, ref_logps, advantages, mask, eps_low, eps_high, beta, shaping)
    log_ratio, clipped = clipped_log_ratio(logps, old_logps, advantages, eps_low, eps_high)
    ratio = geometric_mean_ratio(log_ratio, mask)
    lengths = mask.sum(-1).clamp(min=1)
    kl = reference_kl(logps, ref_logps)
    seq_kl = (kl * mask).sum(-1) / lengths
    loss = -(advantages * ratio - beta * seq_kl).mean()
    tokens = mask.sum().clamp(min=1)
    stats = {
        "kl": (kl * mask).sum() / tokens,
        "clip_ratio": (clipped.to(mask.dtype) * mask).sum() / tokens,
        "geometric_mean_ratio": ratio.detach().mean(),
    }
    return loss, stats


def gmpo_token_loss(
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
    """GMPO written per token, shaped per token:
    -(1/N) sum_i (1/|o_i|) sum_t [w_t A_i sg[G_i] exp(l~_t - sg[l~_t]) - p_t - beta * k3 KL],
    G_i the geometric mean ratio. Each token's term has the value A_i G_i and the gradient
    A_i G_i grad l~_t, its share of d(A_i G_i) = A_i G_i (1/|o_i|) sum_t grad l~_t. With weights w = 1
    and penalty p = 0 it has ``gmpo_loss``'s value and gradient (up to rounding); w_t = 0 removes
    token t's share (a token clipped in l~ has none anyway).
    """
    log_ratio, clipped = clipped_log_ratio(logps, old_logps, advantages, eps_low, eps_high)
    ratio = geometric_mean_ratio(log_ratio.detach(), mask)
    term = advantages[:, None] * ratio[:, None] * torch.exp(log_ratio - log_ratio.detach())
    kl = reference_kl(logps, ref_logps)
    per_token = shape_surrogate(term, shaping) - beta * kl
    loss = -sequence_mean(per_token, mask)
    tokens = mask.sum().clamp(min=1)
    stats = {
        "kl": (kl * mask).sum() / tokens,
        "clip_ratio": (clipped.to(mask.dtype) * mask).sum() / tokens,
        "geometric_mean_ratio": ratio.mean(),
    }
    return loss, stats


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_group_advantages(cfg, ctx, "gmpo", gmpo_loss, cfg.epsilon_low, cfg.epsilon_high, cfg.beta)


plugin = Plugin(
    id="gmpo",
    config=Config,
    run=run,
    summary="GMPO: geometric instead of arithmetic mean of token-level clipped ratios, with a wide log-space clip.",
    smoke={**SMOKE, "batch_size": 8},
)
