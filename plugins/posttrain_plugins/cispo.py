"""CISPO: Clipped IS-weight Policy Optimization.

Paper: MiniMax, 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning
Attention", arXiv:2506.13585, §3.1 (the J_CISPO objective and its clipped IS weight). Catalog
entry: catalog/methods/cispo.yaml.

    catalog run cispo                                  # embedded tiny model + addition prompts
    catalog run cispo --model ./my-model --dataset prompts.jsonl --set max_completion_length=2048

GRPO (posttrain_plugins.grpo) with the PPO clip replaced by a REINFORCE update weighted by a
clipped, stop-gradient importance-sampling weight:

    J = (1 / sum_i |o_i|) sum_i sum_t sg(r_hat_{i,t}) A_i log pi(o_{i,t}),
    r_hat = clip(r, 1 - eps_low_IS, 1 + eps_high_IS),  r = pi / pi_old per token.

PPO/GRPO's clip drops the gradient of every token whose ratio left the trust region (often the
rare "reflective" tokens that grow fastest); here the weight is bounded but every token keeps its
gradient. Advantages are GRPO's group-normalised rewards; the loss is averaged over all tokens
of the batch (DAPO's token-level average); there is no KL term.

Token-level options (GroupConfig, all off by default; as in posttrain_plugins.grpo): ``sampler_correction``,
``top_entropy_fraction``, ``clip_cov_fraction`` and ``kl_cov_fraction`` reweight or mask each token's
term sg(r_hat) A_i log pi (or subtract KL-Cov's penalty from it); the KL term and the average are unchanged.

TRL 1.16's GRPOTrainer with loss_type="cispo" computes the same loss and gradients
(tests/test_rl_parity.py); its ``epsilon_high`` is the cap itself, 1 + eps_high_IS here, and it
has no lower bound (this plugin's default too).

Deviations from the paper:
1. Learning rate, group size, prompts per rollout and step count are sized for the embedded tiny
   model (paper: MiniMax-M1, and a Qwen2.5-32B-base comparison). As in posttrain_plugins.dapo and
   gspo a rollout feeds 2 updates (64 completions, micro-batches of 32), so the second is
   off-policy and the IS weight differs from 1; max_steps 400 = 200 rollouts.
2. The paper sets no lower bound on the IS weight (eps_low_IS "large") and tunes eps_high_IS without
   stating the value; ``epsilon_low_is`` defaults to none (no lower bound) and ``epsilon_high_is``
   to 4, a cap of 5 on the weight: the eps_max = 5.0 that TRL 1.16's GRPOConfig recommends for
   its cispo loss, citing ScaleRL (arXiv:2510.13786).
3. The token-level average is over the tokens of each micro-batch; with grad_accum > 1 this
   differs from the paper's average over the whole batch (as in posttrain_plugins.dapo).
4. Only the loss: the rest of M1's RL recipe (its data, rewards, length schedule, FP32 LM head,
   repetition early stop) is not part of this plugin. beta > 0 adds GRPO's k3 KL, token-averaged.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.rl.group import SMOKE, TokenShaping, reference_kl, shape_surrogate, train_with_group_advantages
from posttrain.rl.rollout_config import GroupConfig


class Config(GroupConfig):
    learning_rate: float = Field(
        5e-5, gt=0, description="Peak learning rate of AdamW (sized for the embedded model, as grpo's)."
    )
    epsilon_low_is: float | None = Field(
        None, gt=0, description="eps_low_IS, lower clip of the IS weight at 1 - eps (§3.1: none, 'a large value')."
    )
    epsilon_high_is: float = Field(
        4.0, gt=0, description="eps_high_IS, upper clip of the IS weight at 1 + eps (default cap 5, as TRL's eps_max)."
    )
    batch_size: int = Field(
        32, ge=1, description="Completions per micro-batch: 2 optimizer steps per 64-completion rollout."
    )
    max_steps: int = Field(400, ge=1, description="Optimizer steps (2 per rollout: 200 rollouts).")
    beta: float = Field(0.0, ge=0, description="beta, coefficient of an optional k3 KL to the reference (paper: none).")
    std_epsilon: float = Field(1e-4, gt=0, description="Added to the group std in the advantage denominator.")


# --- weight and loss (paper §3.1) ---------------------------------------------------------------------


def clipped_is_weight(
    logps: torch.Tensor, old_logps: torch.Tensor, eps_low: float | None, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """sg(clip(r, 1 - eps_low, 1 + eps_high)) per token, and where the clip changed r.

    r = exp(logps - old_logps), detached: the weight scales the gradient of log pi, it has none of
    its own. eps_low None: no lower bound. Ratios [0.5, 1, 3] with eps (None, 1) -> [0.5, 1, 2].
    """
    ratio = torch.exp(logps - old_logps).detach()
    weight = torch.clamp(ratio, min=None if eps_low is None else 1 - eps_low, max=1 + eps_high)
    return weight, weight != ratio


def cispo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float | None,
    eps_high: float,
    beta: float = 0.0,
    shaping: TokenShaping | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-(1 / sum_i |o_i|) sum_i sum_t [sg(r_hat) A_i log pi - beta * k3 KL]; (N, C) inputs, advantages (N,).

    Gradient of a token: -r_hat A_i grad log pi / (number of tokens), never zero because of the clip.
    ``shaping`` (the token-level options, posttrain.rl.group) reweights the policy-gradient term
    sg(r_hat) A_i log pi per token; the KL term and the token-level average stay as they are.
    """
    weight, clipped = clipped_is_weight(logps, old_logps, eps_low, eps_high)
    kl = reference_kl(logps, ref_logps)
    per_token = shape_surrogate(weight * advantages[:, None] * logps, shaping) - beta * kl
    tokens = mask.sum().clamp(min=1)
    loss = -(per_token * mask).sum() / tokens
    stats = {
        "kl": (kl * mask).sum() / tokens,
        "clip_ratio": (clipped.to(mask.dtype) * mask).sum() / tokens,
        "is_weight": (weight * mask).sum() / tokens,
    }
    return loss, stats


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_group_advantages(cfg, ctx, "cispo", cispo_loss, cfg.epsilon_low_is, cfg.epsilon_high_is, cfg.beta)


plugin = Plugin(
    id="cispo",
    config=Config,
    run=run,
    summary="CISPO: REINFORCE weighted by a clipped, stop-gradient IS weight, so no token's gradient is dropped.",
    smoke={**SMOKE, "batch_size": 8},
)
