"""Direct Preference Optimization (DPO), the sigmoid loss.

Paper: Rafailov, Sharma, Mitchell, Ermon, Manning, Finn, 2023, "Direct Preference Optimization:
Your Language Model is Secretly a Reward Model", arXiv:2305.18290, Eq. 7.
Optional NLL term: Pang et al. 2024, "Iterative Reasoning Preference Optimization" (RPO),
arXiv:2404.19733. Catalog entry: catalog/methods/dpo.yaml.

    catalog run dpo                                   # embedded tiny model + addition pairs
    catalog run dpo --set rpo_alpha=0                 # the paper's plain DPO, without RPO's NLL term
    catalog run dpo --model ./my-sft-model --dataset prefs.jsonl --set beta=0.1 --set lora=true

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

Deviations from the paper:
1. AdamW with warmup and cosine decay instead of RMSprop at a constant 1e-6 after 150 warmup
   steps; the default learning rate (1e-4) and step count are sized for the embedded tiny model.
2. The reference model is the policy at the start of training (the paper's pi_SFT when you pass
   an SFT model); with ``lora=true`` it is the adapter-disabled base, so no second copy is kept.
3. Chosen and rejected responses go through the policy in one concatenated forward pass, and the
   reference log-probs are computed once, before training, for the whole dataset (same values as
   computing them per batch, fewer forward passes).
4. The default adds RPO's NLL term (Pang et al. 2024; ``rpo_alpha=1``, their value), because plain
   DPO (``rpo_alpha=0``) lowers held-out exact match on the embedded task through likelihood
   displacement: the margin grows while the chosen answers' likelihood falls with the rejected
   ones'. On 500 held-out problems plain DPO takes exact match 78.4% -> 65.2% (35 fixed, 101 broken,
   sign-test p = 1.3e-08; reports/runs/dpo-plain.json) while the default takes it 78.4% -> 85.6% (55
   fixed, 19 broken, p = 3.4e-05) and preference accuracy 50.0% -> 66.8% (reports/runs/dpo.json).
   The term is α times the negative
   log-likelihood per chosen token of the batch, as TRL's ``loss_type=["sigmoid", "sft"]`` computes
   it (the paper divides each winner's log-likelihood by its own length).

``preference_accuracy`` and ``rewards/accuracies`` count exact ties as 1/2 (TRL's
``rewards/accuracies`` counts them as 0), so they start at 0.5 where every implicit reward is 0
(policy = reference).
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.preference import PAIRWISE_SMOKE, NllAnchoredPairwiseConfig, dpo_loss, train_with_reference


class Config(NllAnchoredPairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, strength of the KL penalty to the reference (paper §6.1: 0.1).")
    rpo_alpha: float = Field(
        1.0,
        ge=0,
        description="α of RPO's NLL term on the chosen response, per chosen token (Pang et al. 2024: 1); "
        "0 gives the paper's plain DPO.",
    )
    learning_rate: float = Field(
        1e-4, gt=0, description="Peak learning rate (paper: 1e-6 with RMSprop on 6B-scale models)."
    )
    batch_size: int = Field(32, ge=1, description="Preference pairs per micro-batch (paper: 64).")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps (paper: 150).")


# The loss (paper Eq. 7) is ``posttrain.training.preference.dpo_loss``: spin, step-dpo and online-dpo share it.


def run(cfg: Config, ctx: RunContext) -> RunResult:
    return train_with_reference(cfg, ctx, "dpo", dpo_loss)


plugin = Plugin(
    id="dpo",
    config=Config,
    run=run,
    summary="Direct Preference Optimization (sigmoid loss).",
    smoke=PAIRWISE_SMOKE,
)
