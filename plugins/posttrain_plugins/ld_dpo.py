"""LD-DPO (length-desensitized DPO): DPO with the tokens past the shorter response down-weighted by α.

Paper: Liu, Bai, Han, Weng, Xu, Cao, Wang, Cai, 2024, "Length Desensitization in Direct Preference
Optimization", arXiv:2409.06411 (the length-decoupled likelihood that replaces log π(y|x) in DPO).
Catalog entry: catalog/methods/ld-dpo.yaml.

    catalog run ld-dpo                                # embedded tiny model + addition pairs
    catalog run ld-dpo --model ./my-sft-model --dataset prefs.jsonl --set ld_alpha=0.3

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

DPO's implicit reward sums log-probs over every token, so the longer response of a pair carries
more of the gradient and the policy learns to prefer length. LD-DPO splits each response of a pair
at l = min(|y_w|, |y_l|): the first l tokens (the "public" part both responses have) count fully,
the excess ("verbose") tokens of the longer one count with weight α ∈ [0, 1]:
log π̂(y|x) = Σ_{t ≤ l} log π(y_t | x, y_<t) + α Σ_{t > l} log π(y_t | x, y_<t), for the policy
and the reference alike; the loss is DPO's on these log-likelihoods. α = 1 is DPO; α = 0 compares
the two responses over their shared length only.

Deviations from the paper:
1. ``ld_alpha`` defaults to 0.5, this project's choice (the middle of TRL's allowed [0, 1]; TRL's
   ``ld_alpha`` has no default); it is not tuned on the embedded task.
2. The reported implicit rewards are β (log π̂ − log π̂_ref), the ones the loss uses (TRL logs the
   same); the held-out log-prob accuracy and chosen log-prob per token use the plain sums.
3. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
   Reference log-probs are computed once before training; chosen and rejected share one forward.
4. The default adds RPO's NLL term on the chosen response (Pang et al. 2024, arXiv:2404.19733;
   ``rpo_alpha=1``, on the plain chosen log-probs as TRL's ``sft`` term), as the project's DPO
   does: the paper's loss alone lowers held-out exact match on the embedded task 78.4% -> 65.2%
   (35 fixed, 101 broken, p = 1.3e-08; reports/runs/ld-dpo-plain.json), with the term it rises
   78.4% -> 85.4% (55 fixed / 20 broken, p = 6.5e-05; reports/runs/ld-dpo.json). The task's
   answers are short numbers, mostly of equal token length, so on it LD-DPO is close to DPO
   (reports/runs/dpo.json, reports/runs/dpo-plain.json). ``--set rpo_alpha=0`` gives the paper's loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.logprobs import completion_token_logprobs, masked_sum, split_pairs
from posttrain.training.preference import PAIRWISE_SMOKE, NllAnchoredPairwiseConfig, PairLogps, dpo_loss, train_pairwise


class Config(NllAnchoredPairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, scale of the implicit reward (TRL DPOConfig default 0.1).")
    ld_alpha: float = Field(
        0.5,
        ge=0,
        le=1,
        description="α, weight of the tokens past the shorter response of the pair (1 gives DPO, 0 drops them); "
        "0.5 is this project's untuned choice.",
    )


@dataclass
class SharedPrefixLogps(PairLogps):
    """PairLogps plus, per pair, the summed log-probs of each response's first min(|y_w|, |y_l|) tokens."""

    chosen_shared: torch.Tensor
    rejected_shared: torch.Tensor

    def desensitized(self, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """log π̂ of chosen and rejected: the shared part plus α times the rest."""
        return (
            self.chosen_shared + alpha * (self.chosen - self.chosen_shared),
            self.rejected_shared + alpha * (self.rejected - self.rejected_shared),
        )


def shared_prefix_sums(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row of a chosen-first pair batch: the summed log-probs of its first l completion tokens,
    l = the shorter completion length of its pair. token_logps and mask (2B, T)."""
    lengths = mask.sum(-1)
    shared = torch.minimum(*split_pairs(lengths)).repeat(2)
    within = (mask.cumsum(-1) <= shared[:, None]) & mask.bool()
    return masked_sum(token_logps, within.to(token_logps.dtype))


def shared_prefix_logps(model, batch: dict) -> SharedPrefixLogps:
    """``pair_logps`` plus the shared-prefix sums LD-DPO needs (one forward)."""
    token_logps, mask = completion_token_logprobs(model, batch)
    sums, counts, shared = masked_sum(token_logps, mask), mask.sum(-1), shared_prefix_sums(token_logps, mask)
    (c, r), (nc, nr), (sc, sr) = split_pairs(sums), split_pairs(counts), split_pairs(shared)
    return SharedPrefixLogps(c, r, nc, nr, sc, sr)


# --- loss ------------------------------------------------------------------------------------


def ld_dpo_loss(
    policy: SharedPrefixLogps, ref: SharedPrefixLogps, beta: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss on the length-desensitized log-likelihoods, and its rewards β (log π̂ − log π̂_ref)."""
    return dpo_loss(*policy.desensitized(alpha), *ref.desensitized(alpha), beta)


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def pair_loss(pol: SharedPrefixLogps, ref: SharedPrefixLogps):
        losses, chosen, rejected = ld_dpo_loss(pol, ref, cfg.beta, cfg.ld_alpha)
        return losses.mean(), chosen, rejected, {}

    def rewards(pol: SharedPrefixLogps, ref: SharedPrefixLogps):
        (pc, pr), (rc, rr) = pol.desensitized(cfg.ld_alpha), ref.desensitized(cfg.ld_alpha)
        return cfg.beta * (pc - rc), cfg.beta * (pr - rr)

    return train_pairwise(cfg, ctx, "ld-dpo", pair_loss, rewards, reference=True, logps_of=shared_prefix_logps)


plugin = Plugin(
    id="ld-dpo",
    config=Config,
    run=run,
    summary="Length-desensitized DPO: tokens past the shorter response of a pair count α times.",
    smoke=PAIRWISE_SMOKE,
)
