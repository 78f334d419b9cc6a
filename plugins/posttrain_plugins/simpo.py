"""SimPO: reference-free preference optimisation with a length-normalised reward and a margin γ.

Paper: Meng, Xia, Chen, 2024, "SimPO: Simple Preference Optimization with a Reference-Free
Reward", arXiv:2405.14734 (the SimPO objective). Catalog entry: catalog/methods/simpo.yaml.

    catalog run simpo                                 # embedded tiny model + addition pairs
    catalog run simpo --model ./my-sft-model --dataset prefs.jsonl --set beta=2.5 --set gamma=1.4

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

The implicit reward is the average log-likelihood (β/|y|) log π(y|x), the quantity greedy/beam
generation ranks by, so training and generation agree; no reference model is loaded or run.
The loss −log σ(r_w − r_l − γ) asks the winner to lead by at least the target margin γ.

Deviations from the paper:
1. AdamW with warmup and cosine decay (paper: Adam, cosine, 10% warmup); learning rate and step
   count sized for the embedded model (paper: 3e-7 to 1e-6 on 7-8B models).
2. β = 2 and γ = 1 (γ/β = 0.5), inside the paper's ranges (β 2.0-2.5, γ 0.3-1.6 per setup) and
   TRL's default γ/β ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, PairLogps, PairwiseConfig, train_pairwise


class Config(PairwiseConfig):
    beta: float = Field(2.0, gt=0, description="β, scale of the length-normalised reward (paper: 2.0-2.5 by setup).")
    gamma: float = Field(1.0, ge=0, description="γ, target reward margin (paper: 0.3-1.6 by setup).")
    batch_size: int = Field(32, ge=1, description="Preference pairs per micro-batch (paper: 128).")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps (paper: 10% of training).")


# --- loss ------------------------------------------------------------------------------------


def simpo_loss(
    policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, beta: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair SimPO loss −log σ(β·avg log π(y_w) − β·avg log π(y_l) − γ) and the rewards.

    Inputs are per-token average log-probs (B,). Equal averages give log(1 + e^γ); γ = 0 with
    equal averages gives ln 2.
    """
    chosen_rewards = beta * policy_chosen_avg
    rejected_rewards = beta * policy_rejected_avg
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        chosen_avg, rejected_avg = pol.averaged()
        return cfg.beta * chosen_avg, cfg.beta * rejected_avg

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        losses, c_rew, r_rew = simpo_loss(*pol.averaged(), cfg.beta, cfg.gamma)
        return losses.mean(), c_rew, r_rew, {}

    return train_pairwise(cfg, ctx, "simpo", pair_loss, rewards, reference=False)


plugin = Plugin(
    id="simpo",
    config=Config,
    run=run,
    summary="SimPO: reference-free, length-normalised reward with a target margin.",
    smoke=PAIRWISE_SMOKE,
)
