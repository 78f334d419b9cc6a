"""SPIN (self-play fine-tuning): DPO's logistic loss with the model's own answers as the rejected side.

Paper: Chen, Deng, Yuan, Ji, Gu, 2024, "Self-Play Fine-Tuning Converts Weak Language Models to
Strong Language Models", arXiv:2401.01335 (the SPIN objective with the logistic loss ℓ(t) = log(1 + e^(−t))).
Catalog entry: catalog/methods/spin.yaml.

    catalog run spin                                  # embedded tiny model + addition problems
    catalog run spin --model ./my-sft-model --dataset sft.jsonl --set lam=0.1

Data: SFT records, ``prompt`` + ``completion`` (strings or message lists). No preference labels.

Each iteration plays the model against its previous self: the previous model π_t answers every
prompt, and the new model is trained to tell the human answer y from that self-generated answer y'
with ℓ(λ log(π_θ(y|x)/π_t(y|x)) − λ log(π_θ(y'|x)/π_t(y'|x))), ℓ the logistic loss. It is DPO with
the SFT answer as chosen and the model's own answer as rejected; the fixed point is π = p_data.
Where the model's answer already equals the human one the margin is 0 for every θ and the pair
teaches nothing.

Deviations from the paper:
1. One iteration; the paper runs several, each against the model the last one produced.
2. The model's answers are greedy decodes (``max_new_tokens``, 8 on the embedded task, else 128);
   the paper samples them.
3. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
   Reference (π_t) log-probs are computed once before training; both answers share one forward.
4. Held-out ``preference_accuracy`` is measured on held-out prompts against the starting model's
   own greedy answers (the pairs SPIN would train on there).
5. The default adds RPO's NLL term on the human answer (Pang et al. 2024, arXiv:2404.19733;
   ``rpo_alpha=1``, α times the NLL per human-answer token of the batch), as the project's DPO does,
   because the paper's loss alone lowers held-out exact match on the embedded task: 77.8% -> 26.2%
   (25 fixed, 283 broken, p = 1.6e-56; reports/runs/spin-plain.json). With the term exact match
   rises 77.8% -> 84.2% (50 fixed / 18 broken, p = 1.3e-04) and preference accuracy 50.0% -> 58.7%
   (p = 3.4e-18; reports/runs/spin.json); 389 of its 500 held-out pairs stay ties at 1/2 (the
   starting model's answer is the human one), which caps that accuracy. ``--set rpo_alpha=0`` gives
   the paper's loss.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.data import task_records, tokenize_preference
from posttrain.errors import UserError
from posttrain.training.preference import (
    PAIRWISE_SMOKE,
    PairLogps,
    PreferenceData,
    ReferencePairwiseConfig,
    dpo_loss,
    implicit_rewards,
    train_pairwise,
)


class Config(ReferencePairwiseConfig):
    lam: float = Field(
        0.1, gt=0, description="λ, scale of the log-ratios in the logistic loss (DPO's β; TRL default 0.1)."
    )
    train_examples: int = Field(
        4800, ge=1, description="SFT prompts drawn from the embedded task (ignored with --dataset)."
    )
    rpo_alpha: float = Field(
        1.0,
        ge=0,
        description="α of RPO's NLL term on the human answer, per token (Pang et al. 2024: 1); 0 gives the paper's loss.",
    )


# --- self-play pairs -----------------------------------------------------------------------------


def self_play_pairs(model, tokenizer, records: list[dict], max_new_tokens: int, source: str) -> list[dict]:
    """SFT records -> preference records: the human answer chosen, the model's greedy answer rejected."""
    from posttrain.generation.decode import generate

    missing = [i for i, r in enumerate(records) if "prompt" not in r or "completion" not in r]
    if missing:
        raise UserError(
            f"{source}: record {missing[0]} has no prompt + completion; spin needs SFT records with both "
            "(the model answers each prompt itself)"
        )
    answers = generate(model, tokenizer, [r["prompt"] for r in records], max_new_tokens=max_new_tokens)
    return [
        {"prompt": r["prompt"], "chosen": r["completion"], "rejected": a} for r, a in zip(records, answers, strict=True)
    ]


def load_self_play_data(ctx, cfg: Config, tokenizer, policy) -> PreferenceData:
    train_sft, heldout_sft, source = task_records(ctx, "sft", cfg.train_examples, cfg.eval_examples)
    embedded = ctx.dataset is None
    max_new_tokens = cfg.max_new_tokens or (8 if embedded else 128)
    train = self_play_pairs(policy, tokenizer, train_sft, max_new_tokens, source)
    heldout = self_play_pairs(policy, tokenizer, heldout_sft, max_new_tokens, source)
    return PreferenceData(
        train=[tokenize_preference(r, tokenizer, cfg.max_length) for r in train],
        heldout=[tokenize_preference(r, tokenizer, cfg.max_length) for r in heldout],
        heldout_records=heldout,
        source=source,
        embedded=embedded,
        pad_id=tokenizer.pad_token_id,
    )


# --- loss (logistic ℓ) -----------------------------------------------------------------------------


def spin_loss(
    policy_human: torch.Tensor,
    policy_self: torch.Tensor,
    ref_human: torch.Tensor,
    ref_self: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair log(1 + exp(−(λ log-ratio(y) − λ log-ratio(y')))) and the rewards λ log(π/π_t).

    The same arithmetic as DPO's loss with the human answer chosen and the model's own rejected."""
    return dpo_loss(policy_human, policy_self, ref_human, ref_self, lam)


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        losses, c_rew, r_rew = spin_loss(pol.chosen, pol.rejected, ref.chosen, ref.rejected, cfg.lam)
        return losses.mean(), c_rew, r_rew, {}

    rewards = implicit_rewards(cfg.lam)  # λ log(π/π_t), DPO's implicit reward at β = λ
    return train_pairwise(cfg, ctx, "spin", pair_loss, rewards, reference=True, load_data=load_self_play_data)


plugin = Plugin(
    id="spin",
    config=Config,
    run=run,
    summary="Self-play fine-tuning: DPO's loss with the SFT answer chosen and the model's own answer rejected.",
    smoke=PAIRWISE_SMOKE,
)
