"""MPO (mixed preference optimization): DPO's preference loss + BCO's quality loss + SFT's generation loss.

Paper: Wang et al., 2024, "Enhancing the Reasoning Ability of
Multimodal Large Language Models via Mixed Preference Optimization", arXiv:2411.10442 (the MPO
objective L = w_p L_p + w_q L_q + w_g L_g). Catalog entry: catalog/methods/mpo.yaml.

    catalog run mpo                                   # embedded tiny model + addition pairs
    catalog run mpo --model ./my-sft-model --dataset prefs.jsonl --set quality_weight=0.5

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

MPO asks the model to learn three things from one preference pair: which response is better
(preference loss: DPO's −log σ(r_w − r_l)), how good each response is on its own (quality loss:
BCO's −log σ(r_w) − log σ(−r_l), a binary classifier on the implicit reward
r = β log(π/π_ref)), and how to write the chosen response (generation loss: NLL per chosen token).
The paper trains a multimodal model; the objective itself is text-only and is TRL's
``loss_type=["sigmoid", "bco_pair", "sft"]`` with ``loss_weights``.

Deviations from the paper:
1. No reward shift δ in the quality loss: the paper (following BCO) subtracts a running mean of
   the rewards from the logit; TRL's ``bco_pair`` and this plugin use δ = 0.
2. The generation loss is the project's RPO term (``rpo_alpha``, NLL per chosen token of the batch,
   the same number as TRL's ``sft`` loss term), so its weight w_g is ``rpo_alpha``.
3. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
   Reference log-probs are computed once before training; chosen and rejected share one forward.

On the embedded task at the defaults: exact match 78.4% -> 85.0% (53 fixed / 20 broken,
p = 1.4e-04), preference accuracy 50.0% -> 66.8% (reports/runs/mpo.json), about what the project's
DPO with RPO's NLL term reaches (reports/runs/dpo.json).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, NllAnchoredPairwiseConfig, reward_pair, train_with_reference


class Config(NllAnchoredPairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, scale of the implicit reward β log(π/π_ref) (TRL default 0.1).")
    preference_weight: float = Field(
        0.8, ge=0, description="w_p, weight of DPO's preference loss (TRL's MPO example loss_weights [0.8, 0.2, 1.0])."
    )
    quality_weight: float = Field(
        0.2, ge=0, description="w_q, weight of BCO's quality loss (TRL's MPO example loss_weights [0.8, 0.2, 1.0])."
    )
    rpo_alpha: float = Field(
        1.0,
        ge=0,
        description="w_g, weight of the generation loss: NLL per chosen token "
        "(TRL's MPO example loss_weights [0.8, 0.2, 1.0]).",
    )


# --- loss ------------------------------------------------------------------------------------


def preference_and_quality_losses(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor):
    """Per pair: DPO's −log σ(r_w − r_l) and BCO's −log σ(r_w) − log σ(−r_l)."""
    preference = -F.logsigmoid(chosen_rewards - rejected_rewards)
    quality = -F.logsigmoid(chosen_rewards) - F.logsigmoid(-rejected_rewards)
    return preference, quality


def mpo_pair_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    preference_weight: float,
    quality_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair w_p L_p + w_q L_q and the rewards r = β log(π/π_ref); the generation loss w_g L_g is
    added per batch (``rpo_alpha``). At the reference: (w_p + 2 w_q) ln 2."""
    chosen, rejected = reward_pair(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    preference, quality = preference_and_quality_losses(chosen, rejected)
    return preference_weight * preference + quality_weight * quality, chosen.detach(), rejected.detach()


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_reference(cfg, ctx, "mpo", mpo_pair_loss, cfg.preference_weight, cfg.quality_weight)


plugin = Plugin(
    id="mpo",
    config=Config,
    run=run,
    summary="Mixed preference optimization: DPO's preference loss + BCO's quality loss + NLL on the chosen.",
    smoke=PAIRWISE_SMOKE,
)
