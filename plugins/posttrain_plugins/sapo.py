"""SAPO: Soft Adaptive Policy Optimization.

Paper: Gao, Zheng, Chen, Dang, Liu, Yu, Yang, Bai, Zhou, Lin, 2025, "Soft Adaptive Policy
Optimization", arXiv:2511.20347 (the SAPO objective and its soft gate f_{i,t}). Catalog entry:
catalog/methods/sapo.yaml.

    catalog run sapo                                   # embedded tiny model + addition prompts
    catalog run sapo --model ./my-model --dataset prompts.jsonl --set lora=true

GRPO (posttrain_plugins.grpo) with the hard clip of the token ratio replaced by a smooth,
temperature-controlled gate:

    J = (1/G) sum_i (1/|o_i|) sum_t f_{i,t}(r_{i,t}) A_i,
    f_{i,t}(x) = sigmoid(tau_{i,t} (x - 1)) * 4 / tau_{i,t},  tau = tau_pos if A_i > 0 else tau_neg.

The gradient of a token is w A_i r grad log pi with w = 4 s (1 - s), s = sigmoid(tau (r - 1)): w = 1
on-policy (r = 1, GRPO's gradient whatever tau) and it decays smoothly as r leaves 1, instead of
falling to zero at the clip boundary. tau_neg > tau_pos makes negative-advantage updates (which
raise many unsampled tokens' logits) fade faster. Advantages are GRPO's group-normalised rewards;
there is no KL term. TRL 1.16's GRPOTrainer with loss_type="sapo" computes the same loss and
gradients (tests/test_rl_parity.py).

Token-level options (GroupConfig, all off by default; as in posttrain_plugins.grpo): ``sampler_correction``,
``top_entropy_fraction``, ``clip_cov_fraction`` and ``kl_cov_fraction`` reweight or mask each token's
gated term f(r) A_i (or subtract KL-Cov's penalty from it); the KL term and the normalisation are unchanged.

Deviations from the paper:
1. Learning rate, group size, prompts per rollout and step count are sized for the embedded tiny
   model (paper: Qwen3 models). As in posttrain_plugins.dapo and gspo a rollout feeds 2 updates
   (64 completions, micro-batches of 32), so the second is off-policy and the gate acts;
   max_steps 400 = 200 rollouts.
2. tau_pos / tau_neg default to the paper's 1.0 / 1.05, chosen for large models; they are kept.
3. beta > 0 adds GRPO's k3 KL (the paper's objective has none), averaged like the policy term.
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
        5e-5, gt=0, description="Peak learning rate of AdamW (sized for the embedded model, as grpo's)."
    )
    tau_pos: float = Field(1.0, gt=0, description="tau_pos, gate temperature of tokens with A > 0 (paper: 1.0).")
    tau_neg: float = Field(1.05, gt=0, description="tau_neg, gate temperature of tokens with A <= 0 (paper: 1.05).")
    batch_size: int = Field(
        32, ge=1, description="Completions per micro-batch: 2 optimizer steps per 64-completion rollout."
    )
    max_steps: int = Field(400, ge=1, description="Optimizer steps (2 per rollout: 200 rollouts).")
    beta: float = Field(0.0, ge=0, description="beta, coefficient of an optional k3 KL to the reference (paper: none).")
    std_epsilon: float = Field(1e-4, gt=0, description="Added to the group std in the advantage denominator.")


# --- gate and loss ------------------------------------------------------------------------------------


def soft_gate(ratio: torch.Tensor, advantages: torch.Tensor, tau_pos: float, tau_neg: float) -> torch.Tensor:
    """f(r) = sigmoid(tau (r - 1)) * 4 / tau with tau = tau_pos where A > 0, else tau_neg.

    f(1) = 2 / tau; df/dr = 4 s (1 - s) is 1 at r = 1. tau 1, r = 1 + ln 3: s = 3/4, f = 3, df/dr = 3/4.
    """
    tau = torch.where(advantages > 0, tau_pos, tau_neg).to(ratio.dtype)
    return torch.sigmoid(tau * (ratio - 1)) * 4 / tau


def sapo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    tau_pos: float,
    tau_neg: float,
    beta: float = 0.0,
    shaping: TokenShaping | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-(1/N) sum_i (1/|o_i|) sum_t [f(r_{i,t}) A_i - beta * k3 KL]; (N, C) inputs, advantages (N,).

    ``shaping`` (the token-level options, posttrain.rl.group) reweights the gated term f(r) A_i per
    token; the KL term and the 1/|o_i| normalisation stay as they are."""
    ratio = torch.exp(logps - old_logps)
    adv = advantages[:, None]
    gate = soft_gate(ratio, adv, tau_pos, tau_neg)
    kl = reference_kl(logps, ref_logps)
    per_token = shape_surrogate(gate * adv, shaping) - beta * kl
    loss = -sequence_mean(per_token, mask)
    tokens = mask.sum().clamp(min=1)
    s = torch.sigmoid(torch.where(adv > 0, tau_pos, tau_neg) * (ratio - 1)).detach()
    stats = {"kl": (kl * mask).sum() / tokens, "gate_weight": (4 * s * (1 - s) * mask).sum() / tokens}
    return loss, stats


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_group_advantages(cfg, ctx, "sapo", sapo_loss, cfg.tau_pos, cfg.tau_neg, cfg.beta)


plugin = Plugin(
    id="sapo",
    config=Config,
    run=run,
    summary="SAPO: a smooth sigmoid gate on the token ratio (asymmetric temperatures) instead of hard clipping.",
    smoke={**SMOKE, "batch_size": 8},
)
