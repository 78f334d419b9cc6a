"""SPPO with hard preference labels, one offline iteration.

Paper: Wu, Sun, Yuan, Ji, Yang, Gu, 2024, "Self-Play Preference Optimization for Language Model
Alignment", arXiv:2405.00675, Algorithm 1 (the squared loss of Eq. 4.7). Catalog entry:
catalog/methods/sppo-hard.yaml.

    catalog run sppo-hard                             # embedded tiny model + addition pairs
    catalog run sppo-hard --model ./my-sft-model --dataset prefs.jsonl --set eta=5

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

SPPO regresses each response's log-ratio log(π/π_t) to η(P̂(y ≻ π_t) − ½), with P̂ the estimated
probability that y beats the current policy. With hard labels (P̂ = 1 for the winner, 0 for the
loser) the targets are +η/2 and −η/2: (log-ratio_w − η/2)² + (log-ratio_l + η/2)². Like IPO it has
a finite optimum, but it fixes each response's log-ratio, not only the margin.

Deviations from the paper:
1. Hard probabilities from the pair's labels, as TRL's ``sppo_hard``; the paper estimates P̂ with
   the PairRM preference model over several samples per prompt.
2. One iteration on a fixed dataset, π_t = the reference (the policy as loaded); the paper
   samples new responses from π_t and repeats (self-play).
3. η = 10 corresponds to TRL's β = 0.1 (TRL's target 0.5/β is η/2).
4. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
   Reference log-probs are computed once before training; chosen and rejected share one forward.
5. ``rpo_alpha`` (default 0, the paper) adds RPO's NLL term on the chosen response (Pang et al.
   2024, arXiv:2404.19733).

Logged rewards are log(π/π_t)/η, TRL's β log(π/π_ref) with β = 1/η.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, PairLogps, ReferencePairwiseConfig, train_pairwise


class Config(ReferencePairwiseConfig):
    eta: float = Field(
        10.0, gt=0, description="η, step size: the log-ratio targets are ±η/2 (TRL: 0.5/β with β = 0.1)."
    )


# --- loss (paper Eq. 4.7, P̂ ∈ {0, 1}) ----------------------------------------------------------


def sppo_hard_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    eta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair (log-ratio_w − η/2)² + (log-ratio_l + η/2)² and the rewards log-ratio/η.

    η²/2 at policy = reference (50 for η = 10); 0 exactly when the log-ratios are +η/2 and −η/2.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    losses = (chosen_ratio - eta / 2) ** 2 + (rejected_ratio + eta / 2) ** 2
    return losses, chosen_ratio.detach() / eta, rejected_ratio.detach() / eta


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        return (pol.chosen - ref.chosen) / cfg.eta, (pol.rejected - ref.rejected) / cfg.eta

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        losses, c_rew, r_rew = sppo_hard_loss(pol.chosen, pol.rejected, ref.chosen, ref.rejected, cfg.eta)
        return losses.mean(), c_rew, r_rew, {}

    return train_pairwise(cfg, ctx, "sppo-hard", pair_loss, rewards, reference=True)


plugin = Plugin(
    id="sppo-hard",
    config=Config,
    run=run,
    summary="SPPO with hard labels: regress each log-ratio to ±η/2 (one offline iteration).",
    smoke=PAIRWISE_SMOKE,
)
