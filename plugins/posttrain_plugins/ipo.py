"""Identity Preference Optimisation (IPO): a squared loss on the DPO log-ratio margin.

Paper: Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos, 2023, "A General Theoretical
Paradigm to Understand Learning from Human Preferences", arXiv:2310.12036, Eq. 17 (empirical
IPO loss). Catalog entry: catalog/methods/ipo.yaml.

    catalog run ipo                                   # embedded tiny model + addition pairs
    catalog run ipo --model ./my-sft-model --dataset prefs.jsonl --set tau=0.1

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

The loss regresses h = log[π(y_w)π_ref(y_l) / (π(y_l)π_ref(y_w))] to the target 1/(2τ); unlike
DPO's log-sigmoid it has a finite optimum, so deterministic preferences cannot push the policy
arbitrarily far from the reference.

Deviations from the paper:
1. Log-probabilities are averaged over completion tokens (``average_log_prob=true``), as TRL does
   after consulting the IPO authors (HF blog "Preference Tuning LLMs", addendum); the paper's
   formula uses sequence log-likelihoods (set ``average_log_prob=false``).
2. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
3. Reference log-probs are computed once before training (same values, fewer forward passes);
   chosen and rejected go through the policy in one forward pass.

Logged rewards differ from TRL's: ``rewards/*`` and ``preference_accuracy`` use the log-probs the
loss uses, τ times the per-token mean log-ratio with ``average_log_prob=true``, while TRL's
DPOTrainer logs β times the summed log-ratio for IPO too (it averages inside the loss only); ties
count 1/2 in both accuracies here, 0 in TRL's ``rewards/accuracies``. ``rpo_alpha`` (default 0, the
paper) adds RPO's NLL term on the chosen response (Pang et al. 2024, arXiv:2404.19733).
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, PairLogps, ReferencePairwiseConfig, train_pairwise


class Config(ReferencePairwiseConfig):
    tau: float = Field(
        0.1, gt=0, description="τ, regularisation towards the reference; target margin 1/(2τ) (paper Eq. 17; TRL beta)."
    )
    average_log_prob: bool = Field(
        True, description="Average log-probs over completion tokens (TRL / authors' advice) instead of summing."
    )


# --- loss (paper Eq. 17) --------------------------------------------------------------------


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair IPO loss (h − 1/(2τ))² with h the log-ratio margin, and the rewards τ·log(π/π_ref).

    Inputs are log-probs of each response, shape (B,). When policy = reference, h = 0 and the
    loss is (1/(2τ))² (25 for τ = 0.1); it is 0 exactly when h = 1/(2τ), and grows again beyond.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    losses = (chosen_ratio - rejected_ratio - 1 / (2 * tau)) ** 2
    return losses, tau * chosen_ratio.detach(), tau * rejected_ratio.detach()


# --- run ------------------------------------------------------------------------------------


def log_probs(logps: PairLogps, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    return logps.averaged() if cfg.average_log_prob else (logps.chosen, logps.rejected)


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        (pc, pr), (rc, rr) = log_probs(pol, cfg), log_probs(ref, cfg)
        return cfg.tau * (pc - rc), cfg.tau * (pr - rr)

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        losses, c_rew, r_rew = ipo_loss(*log_probs(pol, cfg), *log_probs(ref, cfg), cfg.tau)
        return losses.mean(), c_rew, r_rew, {}

    return train_pairwise(cfg, ctx, "ipo", pair_loss, rewards, reference=True)


plugin = Plugin(
    id="ipo",
    config=Config,
    run=run,
    summary="Identity Preference Optimisation (squared loss towards a target margin).",
    smoke=PAIRWISE_SMOKE,
)
