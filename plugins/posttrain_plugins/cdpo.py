"""Conservative DPO (cDPO) and robust DPO: DPO for preference labels flipped with probability ε.

Papers: Mitchell, 2023, "A note on DPO with noisy preferences & relationship to IPO" (the cDPO
label-smoothed loss; a short note, no arXiv id); Chowdhury, Kini, Natarajan, 2024, "Provably
Robust DPO: Aligning Language Models with Noisy Feedback", arXiv:2403.00409 (rDPO, an
unbiased loss under label noise). Catalog entry: catalog/methods/cdpo.yaml.

    catalog run cdpo                                  # embedded tiny model + addition pairs
    catalog run cdpo --set epsilon=0.2 --set variant=robust --dataset noisy_prefs.jsonl

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

cDPO mixes the DPO loss of the labelled pair with that of the flipped pair:
−(1−ε) log σ(h) − ε log σ(−h), h = β(log-ratio chosen − log-ratio rejected). Its optimum margin
is finite (h* = log((1−ε)/ε)). rDPO instead de-biases: [(1−ε)ℓ(h) − εℓ(−h)] / (1−2ε) with
ℓ(h) = −log σ(h), whose expectation over random flips equals the clean DPO loss.

Deviations from the papers:
1. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
2. Reference log-probs are computed once before training; chosen and rejected share one forward.
3. ε defaults to 0.1 (TRL's documented robust-DPO example); neither paper fixes one value.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, PairLogps, ReferencePairwiseConfig, train_pairwise


class Config(ReferencePairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, strength of the KL penalty to the reference (as in DPO).")
    epsilon: float = Field(
        0.1, ge=0, lt=0.5, description="ε, assumed probability that a preference label is flipped (below 1/2)."
    )
    variant: Literal["cdpo", "robust"] = Field(
        "cdpo", description="cdpo: Mitchell's label-smoothed loss; robust: Chowdhury et al.'s unbiased rDPO loss."
    )


# --- losses ---------------------------------------------------------------------------------


def _margin_and_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    return chosen_rewards - rejected_rewards, chosen_rewards.detach(), rejected_rewards.detach()


def cdpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    epsilon: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mitchell's conservative DPO: −(1−ε) log σ(h) − ε log σ(−h), per pair (B,).

    ε = 0 is DPO; at policy = reference it is ln 2; ε = 1/2 (labels carry no information) has its optimum at h = 0.
    """
    h, c, r = _margin_and_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = -(1 - epsilon) * F.logsigmoid(h) - epsilon * F.logsigmoid(-h)
    return losses, c, r


def robust_dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    epsilon: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chowdhury et al.'s rDPO: [(1−ε)(−log σ(h)) − ε(−log σ(−h))] / (1−2ε), per pair (B,).

    ε = 0 is DPO; averaged over labels flipped with probability ε it equals the clean DPO loss.
    """
    h, c, r = _margin_and_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = (-(1 - epsilon) * F.logsigmoid(h) + epsilon * F.logsigmoid(-h)) / (1 - 2 * epsilon)
    return losses, c, r


LOSSES = {"cdpo": cdpo_loss, "robust": robust_dpo_loss}


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    loss_of = LOSSES[cfg.variant]

    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        return cfg.beta * (pol.chosen - ref.chosen), cfg.beta * (pol.rejected - ref.rejected)

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        losses, c_rew, r_rew = loss_of(pol.chosen, pol.rejected, ref.chosen, ref.rejected, cfg.beta, cfg.epsilon)
        return losses.mean(), c_rew, r_rew, {}

    return train_pairwise(cfg, ctx, f"{cfg.variant} dpo", pair_loss, rewards, reference=True, variant=cfg.variant)


plugin = Plugin(
    id="cdpo",
    config=Config,
    run=run,
    summary="Conservative / robust DPO for noisy preference labels (label smoothing ε).",
    smoke=PAIRWISE_SMOKE,
)
