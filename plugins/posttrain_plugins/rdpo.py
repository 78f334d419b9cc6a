"""R-DPO: DPO with a length regulariser inside the Bradley-Terry margin.

Paper: Park, Rafailov, Ermon, Finn, 2024, "Disentangling Length from Quality in Direct
Preference Optimization", arXiv:2403.19159 (the R-DPO objective). Catalog entry:
catalog/methods/rdpo.yaml.

    catalog run rdpo                                  # embedded tiny model + addition pairs
    catalog run rdpo --model ./my-sft-model --dataset prefs.jsonl --set alpha=0.01

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

The paper adds a length penalty α|y| to the KL-regularised reward objective; solving it as DPO
does gives r(x, y) = β log π/π_ref + α|y| + const, so the loss is
−log σ(β log-ratio(y_w) − β log-ratio(y_l) + α(|y_w| − |y_l|)). When the winner is longer, the
length term already explains part of the preference and the policy is pushed less towards the
longer answer: that is what stops the length exploitation.

Deviations from the paper:
1. |y| is the number of completion tokens (the paper's length in tokens), counted after
   truncation to ``max_length``.
2. α = 0.01 and the learning rate / step count are defaults for the embedded model; the paper
   sweeps α per dataset.
3. AdamW with warmup and cosine decay; reference log-probs computed once before training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, PairLogps, ReferencePairwiseConfig, train_pairwise


class Config(ReferencePairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, strength of the KL penalty to the reference (R-DPO objective).")
    alpha: float = Field(0.01, ge=0, description="α, weight of the length term α(|y_w| − |y_l|) (R-DPO objective).")


# --- loss ------------------------------------------------------------------------------------


def rdpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    rejected_length: torch.Tensor,
    beta: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair R-DPO loss −log σ(β h + α(|y_w| − |y_l|)) and the DPO implicit rewards.

    α = 0, or equal lengths, is DPO exactly (ln 2 at policy = reference).
    """
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards + alpha * (chosen_length - rejected_length))
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        return cfg.beta * (pol.chosen - ref.chosen), cfg.beta * (pol.rejected - ref.rejected)

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        lengths = (pol.chosen_tokens, pol.rejected_tokens)
        logps = (pol.chosen, pol.rejected, ref.chosen, ref.rejected)
        losses, c_rew, r_rew = rdpo_loss(*logps, *lengths, cfg.beta, cfg.alpha)
        length_gap = (pol.chosen_tokens - pol.rejected_tokens).float().mean().item()
        return losses.mean(), c_rew, r_rew, {"length_gap": length_gap}

    return train_pairwise(cfg, ctx, "rdpo", pair_loss, rewards, reference=True)


plugin = Plugin(
    id="rdpo",
    config=Config,
    run=run,
    summary="Length-regularised DPO (R-DPO): a length term in the preference margin.",
    smoke=PAIRWISE_SMOKE,
)
