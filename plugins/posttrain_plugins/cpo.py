"""Contrastive Preference Optimization (CPO): DPO with a uniform reference plus an NLL term.

Paper: Xu, Sharaf, Chen, Tan, Shen, Van Durme, Murray, Kim, 2024, "Contrastive Preference
Optimization: Pushing the Boundaries of LLM Performance in Machine Translation",
arXiv:2401.08417 (L_CPO = L_prefer + L_NLL). Catalog entry: catalog/methods/cpo.yaml.

    catalog run cpo                                   # embedded tiny model + addition pairs
    catalog run cpo --model ./my-sft-model --dataset prefs.jsonl --set beta=0.1

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

With a uniform reference the DPO margin reduces to β(log π(y_w) − log π(y_l)), so no reference
model is kept or run (the memory saving the paper is after); the NLL term on the preferred
output keeps the policy on the preferred distribution.

Deviations from the paper:
1. The NLL term is the mean over chosen tokens of the batch (TRL's cross-entropy), not the
   paper's per-sequence negative log-likelihood; ``alpha`` weights it (paper: 1).
2. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    beta: float = Field(0.1, gt=0, description="β of the preference term (paper: 0.1).")
    alpha: float = Field(1.0, ge=0, description="Weight of the NLL term L_NLL (paper: 1; TRL cpo_alpha).")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (paper: 1e-4 with LoRA).")


# --- loss ------------------------------------------------------------------------------------


def cpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_nll: torch.Tensor,
    beta: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPO: mean over pairs of −log σ(β log π(y_w) − β log π(y_l)), plus α · chosen_nll.

    Inputs: summed log-probs (B,) and the batch's NLL per chosen token (scalar). Returns the
    total loss, the per-pair preference losses and the rewards β log π. Equal log-probs give
    ln 2 + α·NLL.
    """
    chosen_rewards = beta * policy_chosen
    rejected_rewards = beta * policy_rejected
    prefer = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return prefer.mean() + alpha * chosen_nll, prefer, chosen_rewards.detach(), rejected_rewards.detach()


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        return cfg.beta * pol.chosen, cfg.beta * pol.rejected

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        nll = chosen_nll_per_token(pol)
        loss, _, c_rew, r_rew = cpo_loss(pol.chosen, pol.rejected, nll, cfg.beta, cfg.alpha)
        return loss, c_rew, r_rew, {"nll_loss": nll.item()}

    return train_pairwise(cfg, ctx, "cpo", pair_loss, rewards, reference=False)


plugin = Plugin(
    id="cpo",
    config=Config,
    run=run,
    summary="Contrastive Preference Optimization: reference-free DPO approximation plus NLL.",
    smoke=PAIRWISE_SMOKE,
)
