"""ORPO: odds-ratio preference optimisation, SFT and alignment in one loss, no reference model.

Paper: Hong, Lee, Thorne, 2024, "ORPO: Monolithic Preference Optimization without Reference
Model", arXiv:2403.07691, Eq. 4 and 7 as TRL cites them (L_ORPO = L_SFT + λ L_OR). Catalog entry:
catalog/methods/orpo.yaml.

    catalog run orpo                                  # embedded tiny model + addition pairs
    catalog run orpo --model Qwen/Qwen2.5-0.5B --dataset prefs.jsonl --set lam=0.1

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

odds(y|x) = P(y|x) / (1 − P(y|x)) with P the length-normalised likelihood exp(mean log π), and
L_OR = −log σ(log odds(y_w|x) − log odds(y_l|x)). The NLL term L_SFT is on the chosen response.

Deviations from the paper:
1. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model
   (the paper starts from a base model and trains 10 epochs at 5e-6 to 8e-6).
2. The embedded base model is already fine-tuned on the task, so here ORPO refines an SFT model
   rather than replacing the SFT stage.
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
    lam: float = Field(0.1, gt=0, description="λ, weight of the odds-ratio term L_OR (paper: 0.1; TRL beta).")


# --- loss (paper Eq. 4, 7) ------------------------------------------------------------------


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − e^x) for x < 0, switching form at −ln 2 so neither branch cancels catastrophically."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def log_odds_ratio(policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor) -> torch.Tensor:
    """log odds(y_w) − log odds(y_l) from mean per-token log-probs (B,); log odds = log p − log(1 − p)."""
    return (policy_chosen_avg - policy_rejected_avg) - (log1mexp(policy_chosen_avg) - log1mexp(policy_rejected_avg))


def orpo_loss(
    policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, chosen_nll: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO: chosen_nll + λ · mean(−log σ(log odds ratio)); returns (loss, per-pair L_OR, log odds ratio).

    Equal chosen and rejected likelihoods give L_OR = ln 2; λ → 0 leaves plain SFT on y_w.
    """
    ratio = log_odds_ratio(policy_chosen_avg, policy_rejected_avg)
    odds_losses = -F.logsigmoid(ratio)
    return chosen_nll + lam * odds_losses.mean(), odds_losses, ratio.detach()


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        chosen_avg, rejected_avg = pol.averaged()  # TRL's ORPO rewards: λ · mean log-prob
        return cfg.lam * chosen_avg, cfg.lam * rejected_avg

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        chosen_avg, rejected_avg = pol.averaged()
        nll = chosen_nll_per_token(pol)
        loss, odds_losses, ratio = orpo_loss(chosen_avg, rejected_avg, nll, cfg.lam)
        c_rew, r_rew = cfg.lam * chosen_avg.detach(), cfg.lam * rejected_avg.detach()
        metrics = {
            "nll_loss": nll.item(),
            "log_odds_ratio": ratio.mean().item(),
            "odds_ratio_loss": odds_losses.mean().item(),
        }
        return loss, c_rew, r_rew, metrics

    return train_pairwise(cfg, ctx, "orpo", pair_loss, rewards, reference=False)


plugin = Plugin(
    id="orpo",
    config=Config,
    run=run,
    summary="ORPO: NLL on the chosen response plus an odds-ratio preference term; no reference.",
    smoke=PAIRWISE_SMOKE,
)
