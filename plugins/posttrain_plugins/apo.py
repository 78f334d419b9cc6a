"""Anchored Preference Optimization (APO): APO-zero and APO-down, two plugins in one file.

Paper: D'Oosterlinck, Xu, Develder, Demeester, Singh, Potts, Kiela, Mehri, 2024, "Anchored
Preference Optimization and Contrastive Revisions: Addressing Underspecification in Alignment",
arXiv:2408.06266 (TACL 2025), Eq. 7 (APO-zero) and Eq. 8 (APO-down). Catalog entries:
catalog/methods/apo-zero.yaml, catalog/methods/apo-down.yaml.

    catalog run apo-zero                              # embedded tiny model + addition pairs
    catalog run apo-down --model ./my-sft-model --dataset prefs.jsonl --set beta=0.2

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

DPO only fixes the sign of the margin, so both likelihoods may fall together. APO anchors each
response's reward r = β log(π/π_ref) on its own:
- APO-zero (chosen better than what the model now writes): 1 − σ(r_w) + σ(r_l), which pushes the
  chosen likelihood up and the rejected one down.
- APO-down (chosen worse than what the model now writes): σ(r_w) + 1 − σ(r_w − r_l), which pushes
  the chosen likelihood down and the rejected one down more. The paper's Eq. 8 prints it without
  the constant 1, which TRL adds so that both losses are 1 at the reference; gradients are the same.
Both are 1 at policy = reference.

Deviations from the paper:
1. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model
   (the paper trains Llama-3-8B-Instruct at 2e-7).
2. Reference log-probs are computed once before training; chosen and rejected share one forward.
3. APO-zero's default adds RPO's NLL term on the chosen response (Pang et al. 2024,
   arXiv:2404.19733; ``rpo_alpha=1``, α times the NLL per chosen token of the batch), as the
   project's DPO does, because the paper's loss alone lowers held-out exact match on the embedded
   task: 78.4% -> 58.2% (35 fixed, 136 broken, p = 2.9e-15; reports/runs/apo-zero-plain.json),
   while with the term both exact match (78.4% -> 86.2%, 57 fixed / 18 broken, p = 7.2e-06) and
   preference accuracy (50.0% -> 65.4%, p = 5.3e-12) rise (reports/runs/apo-zero.json).
   ``--set rpo_alpha=0`` gives the paper's APO-zero. APO-down keeps the paper's loss
   (``rpo_alpha=0``): the term would pull up the chosen likelihood APO-down is meant to lower.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, ReferencePairwiseConfig, reward_pair, train_with_reference


class Config(ReferencePairwiseConfig):
    """APO-down's config (the paper's loss: no NLL term, which would pull the chosen likelihood up)."""

    beta: float = Field(
        0.1, gt=0, description="β, scale of the implicit reward β log(π/π_ref) (TRL DPOConfig default 0.1)."
    )


class ZeroConfig(Config):
    """APO-zero's config: RPO's NLL term on by default (measured; see the module docstring)."""

    rpo_alpha: float = Field(
        1.0,
        ge=0,
        description="α of RPO's NLL term on the chosen response, per chosen token (Pang et al. 2024: 1); "
        "0 gives the paper's APO-zero.",
    )


# --- losses (paper Eq. 7 and Eq. 8) ----------------------------------------------------------


def apo_zero_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair APO-zero loss 1 − σ(r_w) + σ(r_l) (Eq. 7) and the implicit rewards r_w, r_l.

    Inputs are summed log-probs, shape (B,). 1 at policy = reference; 0 only in the limit
    r_w → +∞, r_l → −∞, each term pulled independently of the other.
    """
    chosen, rejected = reward_pair(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = 1 - torch.sigmoid(chosen) + torch.sigmoid(rejected)
    return losses, chosen.detach(), rejected.detach()


def apo_down_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair APO-down loss σ(r_w) + 1 − σ(r_w − r_l) (Eq. 8 plus TRL's constant 1) and the implicit rewards r_w, r_l.

    1 at policy = reference; it lowers r_w and lowers r_l further, so the margin still grows.
    """
    chosen, rejected = reward_pair(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = torch.sigmoid(chosen) + 1 - torch.sigmoid(chosen - rejected)
    return losses, chosen.detach(), rejected.detach()


# --- run ------------------------------------------------------------------------------------


def _runner(name: str, loss_of):
    def run(cfg: Config, ctx: RunContext) -> RunResult:
        return train_with_reference(cfg, ctx, name, loss_of)

    return run


apo_zero_plugin = Plugin(
    id="apo-zero",
    config=ZeroConfig,
    run=_runner("apo-zero", apo_zero_loss),
    summary="Anchored Preference Optimization, zero anchor: raise the chosen likelihood, lower the rejected.",
    smoke=PAIRWISE_SMOKE,
)

apo_down_plugin = Plugin(
    id="apo-down",
    config=Config,
    run=_runner("apo-down", apo_down_loss),
    summary="Anchored Preference Optimization, down anchor: lower both likelihoods, the rejected one more.",
    smoke=PAIRWISE_SMOKE,
)
