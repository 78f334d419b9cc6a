"""WPO (weighted preference optimization): DPO with each pair weighted by how likely the policy is to write it.

Paper: Zhou et al., 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization",
arXiv:2406.11827 (EMNLP 2024), Eq. 2 and the sampled-alignment weight. Catalog entry:
catalog/methods/wpo.yaml.

    catalog run wpo                                   # embedded tiny model + addition pairs
    catalog run wpo --model ./my-sft-model --dataset prefs.jsonl --set beta=0.05

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

Offline preference pairs were written by other models, so many are far from what the policy
would sample (off-policy). WPO simulates on-policy learning by reweighting: each pair's DPO loss is
multiplied by w(x, y_w) · w(x, y_l), where w(x, y) = exp((1/|y|) Σ_t log[π(y_t | x, y_<t) /
Σ_v π(v | x, y_<t)²]) is the policy's per-token probability of the response relative to how
peaked its distribution is at each step (1 for a response the policy would write greedily from a
one-hot distribution), computed with the current policy and without gradient.

Deviations from the paper:
1. Offline pairs only; the paper also studies a hybrid setting that adds on-policy samples.
2. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
   Reference log-probs are computed once before training; chosen and rejected share one forward.
3. ``--logit-chunk-size`` is refused with a one-line error: the weights need each position's full
   distribution.
4. The default adds RPO's NLL term on the chosen response (Pang et al. 2024, arXiv:2404.19733;
   ``rpo_alpha=1``, unweighted, as TRL's ``sft`` term), as the project's DPO and its sibling
   losses do. Measured on the embedded task: with it exact match 78.4% -> 86.4% (56 fixed /
   16 broken, p = 2.4e-06; reports/runs/wpo.json); the paper's loss alone leaves it unchanged,
   78.4% -> 78.6% (32 fixed / 31 broken; reports/runs/wpo-plain.json), where plain DPO lowers it
   (reports/runs/dpo-plain.json). ``--set rpo_alpha=0`` gives the paper's loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.errors import UserError
from posttrain.logprobs import (
    completion_logits,
    first_completion_position,
    masked_sum,
    split_pairs,
    token_logprobs,
)
from posttrain.training.preference import (
    PAIRWISE_SMOKE,
    NllAnchoredPairwiseConfig,
    PairLogps,
    dpo_loss,
    implicit_rewards,
    train_pairwise,
)


class Config(NllAnchoredPairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, scale of the implicit reward β log(π/π_ref) (TRL default 0.1).")


@dataclass
class WeightedPairLogps(PairLogps):
    """PairLogps plus WPO's weight w(x, y) of each chosen and rejected response (no gradient)."""

    chosen_weight: torch.Tensor
    rejected_weight: torch.Tensor


def log_sum_squared_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log Σ_v p(v)² at each scored position: logits (B, T, V), targets (B, T) -> (B, T-1), the
    positions ``token_logprobs`` scores. As logsumexp(2z) − 2 logsumexp(z) of the logits z, so no
    (B, T, V) log-softmax is kept."""
    logits = logits[:, -targets.shape[1] : -1].float()
    return torch.logsumexp(2 * logits, dim=-1) - 2 * torch.logsumexp(logits, dim=-1)


def alignment_weights(token_logps: torch.Tensor, log_sum_sq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w(x, y) = exp(mean over completion tokens of log p(y_t) − log Σ_v p(v)²), each (B, T) -> (B,)."""
    return torch.exp(masked_sum(token_logps - log_sum_sq, mask) / mask.sum(-1).clamp(min=1))


def weighted_pair_logps(model, batch: dict) -> WeightedPairLogps:
    """``pair_logps`` plus WPO's weights of the batch (one forward, full logits from the batch's
    first completion position on, as ``posttrain.logprobs.completion_token_logprobs``)."""
    start = first_completion_position(batch["completion_mask"])
    targets = batch["input_ids"][:, start - 1 :]
    logits = completion_logits(model, batch, keep=targets.shape[1])
    token_logps = token_logprobs(logits, targets)
    mask = batch["completion_mask"][:, start:].to(token_logps.dtype)
    with torch.no_grad():
        weights = alignment_weights(token_logps.detach(), log_sum_squared_probs(logits.detach(), targets), mask)
    (c, r), (nc, nr) = split_pairs(masked_sum(token_logps, mask)), split_pairs(mask.sum(-1))
    return WeightedPairLogps(c, r, nc, nr, *split_pairs(weights))


# --- loss ------------------------------------------------------------------------------------


def wpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    chosen_weight: torch.Tensor,
    rejected_weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair w(y_w) w(y_l) · DPO loss, and DPO's rewards β log(π/π_ref). Weights are constants."""
    losses, chosen, rejected = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    return losses * (chosen_weight * rejected_weight).detach(), chosen, rejected


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    if ctx.logit_chunk_size:
        raise UserError(
            "--logit-chunk-size: wpo does not support it (its weights need each position's full token distribution); "
            "leave it out"
        )

    def pair_loss(pol: WeightedPairLogps, ref: PairLogps):
        losses, chosen, rejected = wpo_loss(
            pol.chosen, pol.rejected, ref.chosen, ref.rejected, cfg.beta, pol.chosen_weight, pol.rejected_weight
        )
        weights = pol.chosen_weight * pol.rejected_weight
        return losses.mean(), chosen, rejected, {"pair_weight": weights.mean().item()}

    return train_pairwise(
        cfg, ctx, "wpo", pair_loss, implicit_rewards(cfg.beta), reference=True, logps_of=weighted_pair_logps
    )


plugin = Plugin(
    id="wpo",
    config=Config,
    run=run,
    summary="Weighted preference optimization: each pair's DPO loss weighted by the policy's probability of it.",
    smoke=PAIRWISE_SMOKE,
)
