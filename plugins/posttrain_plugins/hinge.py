"""SLiC-HF: sequence likelihood calibration with a hinge (rank) loss on preference pairs.

Paper: Zhao, Joshi, Liu, Khalman, Saleh, Liu, 2023, "SLiC-HF: Sequence Likelihood Calibration
with Human Feedback", arXiv:2305.10425 (rank calibration loss + cross-entropy
regulariser). Catalog entry: catalog/methods/hinge.yaml.

    catalog run hinge                                 # embedded tiny model + addition pairs
    catalog run hinge --set variant=hinge --set beta=0.1   # TRL's reference-normalised hinge

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

Two losses, one function each:
- ``slic`` (the paper, default): max(0, δ − log π(y_w|x) + log π(y_l|x)) − λ log π(y_ref|x). No
  reference model: the hinge acts on the policy's own sequence log-likelihoods.
- ``hinge`` (TRL / LLaMA-Factory ``loss_type=hinge``): max(0, 1 − β h) with h the DPO
  log-ratio margin against a frozen reference, and no regulariser.

Deviations from the paper:
1. The regularisation target y_ref is the chosen response of each pair (the paper regularises
   towards SFT targets, which preference-pair data does not carry), and its NLL is averaged per
   token over the batch.
2. δ = 1 and λ = 0.1 are our defaults for the embedded model; the paper tunes them per task.
3. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import (
    PAIRWISE_SMOKE,
    PairLogps,
    PairwiseConfig,
    chosen_nll_per_token,
    train_pairwise,
)


class Config(PairwiseConfig):
    variant: Literal["slic", "hinge"] = Field(
        "slic", description="slic: the paper's loss on raw log-likelihoods; hinge: TRL's reference-normalised hinge."
    )
    delta: float = Field(1.0, gt=0, description="δ, the rank margin in log-likelihood (slic).")
    reg_weight: float = Field(0.1, ge=0, description="λ, weight of the cross-entropy regulariser on y_ref (slic).")
    beta: float = Field(0.1, gt=0, description="β of TRL's hinge: the margin is 1/β in log-ratio units (hinge).")


# --- losses ---------------------------------------------------------------------------------


def slic_loss(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, delta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SLiC rank calibration loss max(0, δ − log π(y_w) + log π(y_l)) per pair (B,).

    Zero once the chosen sequence log-likelihood leads by δ; slope −1 / +1 below that. The
    "rewards" are the log-likelihoods themselves (no reference).
    """
    losses = torch.relu(delta - policy_chosen + policy_rejected)
    return losses, policy_chosen.detach(), policy_rejected.detach()


def hinge_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TRL's hinge: max(0, 1 − β h), h the DPO log-ratio margin; 1 at policy = reference."""
    chosen_ratio, rejected_ratio = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    losses = torch.relu(1 - beta * (chosen_ratio - rejected_ratio))
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        if ref is None:  # slic: the calibrated quantity is the sequence log-likelihood
            return pol.chosen, pol.rejected
        return cfg.beta * (pol.chosen - ref.chosen), cfg.beta * (pol.rejected - ref.rejected)

    def slic_pair_loss(pol: PairLogps, ref: PairLogps | None):
        losses, c_rew, r_rew = slic_loss(pol.chosen, pol.rejected, cfg.delta)
        nll = chosen_nll_per_token(pol)
        return losses.mean() + cfg.reg_weight * nll, c_rew, r_rew, {"nll_loss": nll.item()}

    def hinge_pair_loss(pol: PairLogps, ref: PairLogps | None):
        losses, c_rew, r_rew = hinge_loss(pol.chosen, pol.rejected, ref.chosen, ref.rejected, cfg.beta)
        return losses.mean(), c_rew, r_rew, {}

    slic = cfg.variant == "slic"
    pair_loss = slic_pair_loss if slic else hinge_pair_loss
    return train_pairwise(cfg, ctx, cfg.variant, pair_loss, rewards, reference=not slic, variant=cfg.variant)


plugin = Plugin(
    id="hinge",
    config=Config,
    run=run,
    summary="SLiC-HF hinge (rank calibration) loss on preference pairs; TRL's hinge as a variant.",
    smoke=PAIRWISE_SMOKE,
)
