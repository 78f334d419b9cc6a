"""f-DPO: DPO under a forward-KL, Jensen-Shannon or α-divergence constraint, three plugins in one file.

Paper: Wang, Jiang, Yang, Liu, Chen, 2023, "Beyond Reverse KL: Generalizing Direct Preference
Optimization with Diverse Divergence Constraints", arXiv:2309.16240 (ICLR 2024), Theorem 1 and its
table of f'(u). Catalog entries: catalog/methods/fdpo-forward-kl.yaml, catalog/methods/fdpo-js.yaml,
catalog/methods/fdpo-alpha.yaml.

    catalog run fdpo-js                               # embedded tiny model + addition pairs
    catalog run fdpo-alpha --model ./my-sft-model --dataset prefs.jsonl --set alpha=0.3

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

DPO regularises the policy with the reverse KL to the reference. With any f-divergence whose f is
convex and f' invertible, the optimal policy of the regularised objective still has a closed form,
and the pairwise loss becomes −log σ(β f'(u_w) − β f'(u_l)), u = π(y|x)/π_ref(y|x): the log-ratio of
DPO (f'(u) = log u + 1) is replaced by f'(u) of the chosen divergence (constants cancel):
- forward KL: f'(u) = 1 − 1/u (mass-covering; the most diverse outputs in the paper);
- Jensen-Shannon: f'(u) = log(2u / (1 + u));
- α-divergence, α ∈ (0, 1): f'(u) = (1 − u^(−α)) / α, reverse KL as α → 0 and forward KL at α = 1.
Every f' is increasing, so the held-out preference accuracy of β f'(u) equals that of DPO's reward
β log u, which is the reward reported (TRL logs the same).

Deviations from the paper:
1. The exponent −α log u of α-divergence and forward KL is capped at 80 so u^(−α) stays finite in
   float32 (e^80 ≈ 5.5e34); beyond the cap, where that response's loss term has long saturated,
   its gradient is 0 (TRL caps α-divergence the same way and leaves forward KL uncapped).
2. The α here is the paper's; TRL's ``f_alpha_divergence_coef`` is 1 − α (its f'(t) =
   (t^(coef−1) − 1)/(coef − 1)), the same at the default 0.5.
3. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
   Reference log-probs are computed once before training; chosen and rejected share one forward.
4. The default adds RPO's NLL term on the chosen response (Pang et al. 2024, arXiv:2404.19733;
   ``rpo_alpha=1``, α times the NLL per chosen token of the batch), as the project's DPO does,
   because the paper's loss alone lowers held-out exact match on the embedded task far more than
   plain DPO (78.4% -> 65.2%, reports/runs/dpo-plain.json): forward KL 78.4% -> 37.2%, JS
   78.4% -> 40.8%, α = 0.5 78.4% -> 29.2% (reports/runs/fdpo-forward-kl-plain.json,
   reports/runs/fdpo-js-plain.json, reports/runs/fdpo-alpha-plain.json). With the term exact match
   goes 78.4% -> 80.6% (p = 0.32), 78.4% -> 85.2% (p = 2.2e-4) and 78.4% -> 82.0% (p = 0.085)
   (reports/runs/fdpo-forward-kl.json, reports/runs/fdpo-js.json, reports/runs/fdpo-alpha.json).
   ``--set rpo_alpha=0`` gives the paper's loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, NllAnchoredPairwiseConfig, train_with_reference

# u^(−α) = exp(−α log u) is evaluated with the exponent capped here: e^80 is finite in float32.
MAX_EXPONENT = 80.0


class Config(NllAnchoredPairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, scale of the implicit reward (TRL DPOConfig default 0.1).")


class AlphaConfig(NllAnchoredPairwiseConfig):
    # not a subclass of Config: `catalog show` reads config classes statically, four bases deep at most
    beta: float = Field(0.1, gt=0, description="β, scale of the implicit reward (TRL DPOConfig default 0.1).")
    alpha: float = Field(
        0.5,
        gt=0,
        le=1,
        description="α of the α-divergence: → 0 approaches reverse KL (DPO), 1 is forward KL "
        "(TRL f_alpha_divergence_coef default 0.5, i.e. 1 − α = 0.5).",
    )


# --- f'(u) of each divergence, from the log-ratio log u = log π − log π_ref --------------------


def power_scores(log_ratios: torch.Tensor, alpha: float) -> torch.Tensor:
    """α-divergence f'(u) = (1 − u^(−α)) / α, the exponent capped at ``MAX_EXPONENT``."""
    exponent = torch.clamp(-alpha * log_ratios, max=MAX_EXPONENT)
    return -torch.expm1(exponent) / alpha


def forward_kl_scores(log_ratios: torch.Tensor) -> torch.Tensor:
    """Forward KL f'(u) = 1 − 1/u: the α-divergence at α = 1."""
    return power_scores(log_ratios, 1.0)


def js_scores(log_ratios: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon f'(u) = log(2u / (1 + u)) = log 2 + log σ(log u)."""
    return math.log(2) + F.logsigmoid(log_ratios)


# --- the loss --------------------------------------------------------------------------------


def f_dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    scores,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair −log σ(β (f'(u_w) − f'(u_l))) for ``scores`` = f' of log u, and DPO's rewards β log u.

    Inputs are summed log-probs, shape (B,). Every f' here is 0 at u = 1, so the loss is ln 2 at
    policy = reference, as DPO's.
    """
    chosen_ratios, rejected_ratios = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (scores(chosen_ratios) - scores(rejected_ratios)))
    return losses, beta * chosen_ratios.detach(), beta * rejected_ratios.detach()


def forward_kl_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """f-DPO with the forward KL."""
    return f_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, forward_kl_scores)


def js_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """f-DPO with the Jensen-Shannon divergence."""
    return f_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, js_scores)


def alpha_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, alpha: float):
    """f-DPO with the α-divergence."""

    def scores(log_ratios: torch.Tensor) -> torch.Tensor:
        return power_scores(log_ratios, alpha)

    return f_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, scores)


# --- run ------------------------------------------------------------------------------------


def run_forward_kl(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_reference(cfg, ctx, "fdpo-forward-kl", forward_kl_loss)


def run_js(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_reference(cfg, ctx, "fdpo-js", js_loss)


def run_alpha(cfg: AlphaConfig, ctx: RunContext) -> RunResult:
    return train_with_reference(cfg, ctx, "fdpo-alpha", alpha_loss, cfg.alpha)


forward_kl_plugin = Plugin(
    id="fdpo-forward-kl",
    config=Config,
    run=run_forward_kl,
    summary="f-DPO with a forward-KL constraint: DPO's log-ratio replaced by 1 − π_ref/π.",
    smoke=PAIRWISE_SMOKE,
)

js_plugin = Plugin(
    id="fdpo-js",
    config=Config,
    run=run_js,
    summary="f-DPO with a Jensen-Shannon constraint: DPO's log-ratio replaced by log(2u/(1+u)), u = π/π_ref.",
    smoke=PAIRWISE_SMOKE,
)

alpha_plugin = Plugin(
    id="fdpo-alpha",
    config=AlphaConfig,
    run=run_alpha,
    summary="f-DPO with an α-divergence constraint, between reverse KL (DPO) and forward KL.",
    smoke=PAIRWISE_SMOKE,
)
