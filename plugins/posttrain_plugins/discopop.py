"""DiscoPOP: the log-ratio modulated loss found by LLM-driven objective discovery.

Paper: Lu, Holt, Fanconi, Chan, Foerster, van der Schaar, Lange, 2024, "Discovering Preference
Optimization Algorithms with and for Large Language Models", arXiv:2406.08414 (NeurIPS 2024),
Eq. 5 (LRML). Catalog entry: catalog/methods/discopop.yaml.

    catalog run discopop                              # embedded tiny model + addition pairs
    catalog run discopop --model ./my-sft-model --dataset prefs.jsonl --set tau=0.1

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

With ρ = β h (h the DPO log-ratio margin) the loss blends DPO's logistic loss and an exponential
loss with a weight set by the margin itself: (1 − σ(ρ/τ))·(−log σ(ρ)) + σ(ρ/τ)·exp(−ρ). Below
zero margin it is mostly logistic, above it mostly exponential; the mix is non-convex and its
derivative is small near ρ = 0 and for large ρ, which the paper links to its stability.

Deviations from the paper:
1. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
   Reference log-probs are computed once before training; chosen and rejected share one forward.
2. β = 0.1 is TRL's default; the paper's τ = 0.05 (TRL's ``discopop_tau`` default, which it states
   is the paper's recommendation).
3. The default adds RPO's NLL term on the chosen response (Pang et al. 2024, arXiv:2404.19733;
   ``rpo_alpha=1``, α times the NLL per chosen token of the batch), because the paper's loss alone
   lowers held-out exact match on the embedded task: 78.4% -> 39.0% (25 fixed, 222 broken,
   p = 1.2e-40; reports/runs/discopop-plain.json). With the term exact match rises 78.4% -> 82.4%
   (55 fixed / 35 broken, p = 0.045; reports/runs/discopop.json). ``--set rpo_alpha=0`` gives the
   paper's loss.

Neither setting learns the preference on the embedded task (preference accuracy 50.0% -> 48.4%
without the term, reports/runs/discopop-plain.json; 50.0% -> 51.8% with it, reports/runs/discopop.json).
The reason is in the loss: at τ = 0.05 its slope at ρ = 0 is positive (+0.78 in ρ), and it has a
local minimum at ρ ≈ −0.12, so training that starts at policy = reference (ρ = 0) is first pushed
to a slightly negative margin and stays near it. At τ = 0.5 the slope at 0 is negative (−0.60)
(tests/test_preference_trl_losses.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, NllAnchoredPairwiseConfig, train_with_reference


class Config(NllAnchoredPairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, scale of the implicit reward β log(π/π_ref) (TRL default 0.1).")
    tau: float = Field(
        0.05, gt=0, description="τ, temperature of the logistic/exponential mixing weight σ(ρ/τ) (paper: 0.05)."
    )


# --- loss (paper Eq. 5) ----------------------------------------------------------------------


def discopop_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair (1 − σ(ρ/τ))·(−log σ(ρ)) + σ(ρ/τ)·e^(−ρ), ρ = β h, and the rewards β log(π/π_ref).

    At policy = reference ρ = 0 and the loss is (ln 2 + 1)/2.
    """
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    rho = chosen_rewards - rejected_rewards
    weight = torch.sigmoid(rho / tau)
    losses = (1 - weight) * -F.logsigmoid(rho) + weight * torch.exp(-rho)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_reference(cfg, ctx, "discopop", discopop_loss, cfg.tau)


plugin = Plugin(
    id="discopop",
    config=Config,
    run=run,
    summary="DiscoPOP: DPO's logistic loss blended with an exponential loss by the margin (LLM-discovered).",
    smoke=PAIRWISE_SMOKE,
)
