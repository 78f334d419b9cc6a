"""Length-normalised DPO (TRL ``sigmoid_norm``): the DPO loss on per-token log-ratios.

Paper: Lambert, Morrison, Pyatkin, Huang, Ivison, Brahman, Miranda, et al., 2024, "Tulu 3:
Pushing Frontiers in Open Language Model Post-Training", arXiv:2411.15124 (the length-normalised
DPO objective used for Tülu 3's preference stage). Catalog entry: catalog/methods/sigmoid-norm.yaml.

    catalog run sigmoid-norm                          # embedded tiny model + addition pairs
    catalog run sigmoid-norm --model ./my-sft-model --dataset prefs.jsonl --set beta=5

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

−log σ(β/|y_w| · log(π/π_ref)(y_w) − β/|y_l| · log(π/π_ref)(y_l)): each response's log-ratio is
divided by its number of completion tokens, so a longer answer no longer earns a larger reward
from its length alone (DPO's length bias).

Deviations from the paper:
1. β = 0.1 is TRL's default; Tülu 3 tunes β for the normalised loss separately (a per-token
   log-ratio is |y| times smaller than DPO's summed one).
2. |y| counts completion tokens after truncation to ``max_length``.
3. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
   Reference log-probs are computed once before training; chosen and rejected share one forward.
4. The default adds RPO's NLL term on the chosen response (Pang et al. 2024, arXiv:2404.19733;
   ``rpo_alpha=1``, α times the NLL per chosen token of the batch), as the project's DPO does,
   because the length-normalised loss alone lowers held-out exact match on the embedded task:
   78.4% -> 58.2% (32 fixed, 133 broken, p = 7.8e-16; reports/runs/sigmoid-norm-plain.json). With
   the term both exact match (78.4% -> 86.8%, 56 fixed / 14 broken, p = 4.3e-07) and preference
   accuracy (50.0% -> 64.6%, p = 6.6e-11) rise (reports/runs/sigmoid-norm.json). ``--set
   rpo_alpha=0`` gives the plain length-normalised loss.

Logged rewards differ from TRL's: ``rewards/*`` and ``preference_accuracy`` use the loss's own
per-token reward β log(π/π_ref)/|y|, while TRL's DPOTrainer logs β times the summed log-ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, NllAnchoredPairwiseConfig, PairLogps, train_pairwise


class Config(NllAnchoredPairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, scale of the per-token implicit reward (TRL default 0.1).")


# --- loss ------------------------------------------------------------------------------------


def sigmoid_norm_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    rejected_length: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair −log σ(β (log-ratio_w/|y_w| − log-ratio_l/|y_l|)) and the per-token rewards.

    Lengths are completion token counts (clamped to ≥ 1); ln 2 at policy = reference.
    """
    chosen_rewards = beta * (policy_chosen - ref_chosen) / chosen_length.clamp(min=1)
    rejected_rewards = beta * (policy_rejected - ref_rejected) / rejected_length.clamp(min=1)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        c = cfg.beta * (pol.chosen - ref.chosen) / pol.chosen_tokens.clamp(min=1)
        return c, cfg.beta * (pol.rejected - ref.rejected) / pol.rejected_tokens.clamp(min=1)

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        logps = (pol.chosen, pol.rejected, ref.chosen, ref.rejected)
        losses, c_rew, r_rew = sigmoid_norm_loss(*logps, pol.chosen_tokens, pol.rejected_tokens, cfg.beta)
        return losses.mean(), c_rew, r_rew, {}

    return train_pairwise(cfg, ctx, "sigmoid-norm", pair_loss, rewards, reference=True)


plugin = Plugin(
    id="sigmoid-norm",
    config=Config,
    run=run,
    summary="Length-normalised DPO: the sigmoid loss on per-token log-ratios (Tülu 3).",
    smoke=PAIRWISE_SMOKE,
)
