"""Bradley-Terry outcome reward model: a scalar head on a language model, trained on preference pairs.

Papers: Bradley & Terry 1952, "Rank Analysis of Incomplete Block Designs" (the preference model);
Stiennon et al. 2020, "Learning to summarize from human feedback", arXiv:2009.01325, §3.4;
Ouyang et al. 2022 (InstructGPT), arXiv:2203.02155, §3.5 (reward model loss, Eq. 1).
Optional margin: Touvron et al. 2023, "Llama 2", arXiv:2307.09288, §3.2.2 (Eq. 2).
Optional reward centring: Eisenstein et al. 2023, "Helping or Herding? Reward Model Ensembles
Mitigate but do not Eliminate Reward Hacking", arXiv:2312.09244 (auxiliary loss, coefficient 0.01).
Catalog entry: catalog/methods/reward-model.yaml.

    catalog run reward-model                                  # embedded tiny model + addition pairs
    catalog run reward-model --model ./my-sft-model --dataset prefs.jsonl --set center_rewards_coefficient=0.01

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists), optional numeric
``margin`` per pair (Llama 2's m(r), e.g. from the gap in annotator ratings).

The trained model is saved as a standard transformers sequence-classification folder with one
label (``AutoModelForSequenceClassification.from_pretrained(run/model)``); RL and test-time
plugins use it through ``posttrain.scoring.scorers.load_reward_model`` / ``score``
(``--set reward_model=run/model``).

Deviations from the papers:
1. The reward head reads the last non-pad token of prompt + completion + EOS (as TRL's
   RewardTrainer); InstructGPT reads the final token too. The head is freshly initialised on top of
   the policy's transformer (InstructGPT starts from the SFT model, as ``--model`` does here).
2. Pairs are drawn as independent batch elements; InstructGPT puts all C(K,2) comparisons of one
   prompt into one batch element to avoid overfitting. Use a dataset with one row per comparison.
3. AdamW with warmup and cosine decay, counted in optimizer steps (InstructGPT: one epoch, lr 9e-6,
   batch 64); the default learning rate and step count are sized for the embedded tiny model.
4. With ``lora=true`` the adapters are merged into the weights before saving, so the saved folder is
   always a plain sequence-classification model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult, outcomes
from posttrain.data import batch_indices, iterate_batches, task_records, tokenize_preference
from posttrain.errors import UserError
from posttrain.hf import (
    LoraSettings,
    apply_lora,
    default_dtype,
    head_error,
    is_peft,
    load_tokenizer,
    lora_settings,
    model_source,
    parameter_counts,
    quiet_transformers,
)
from posttrain.logprobs import split_pairs
from posttrain.scoring.scorers import prepare_tokenizer, rewards_of
from posttrain.training.config import TrainingConfig
from posttrain.training.preference import pair_batch, pair_preferences, preference_accuracy
from posttrain.training.trainer import finish, loop_settings, train_loop


class Config(TrainingConfig):
    center_rewards_coefficient: float = Field(
        0.0,
        ge=0,
        description="η of the centring term η·(r(x,y_w) + r(x,y_l))² (Eisenstein et al. 2023: 0.01; 0: plain BT).",
    )
    use_margin: bool = Field(
        True, description="Subtract each pair's `margin` column m(r) inside the sigmoid when present (Llama 2 Eq. 2)."
    )
    learning_rate: float = Field(
        5e-4,
        gt=0,
        description="Peak learning rate (InstructGPT: 9e-6 for the 6B RM; 5e-4 suits the embedded model, 2e-3 stalls).",
    )
    max_steps: int = Field(1200, ge=1, description="Optimizer steps (InstructGPT: one epoch over the comparisons).")
    batch_size: int = Field(64, ge=1, description="Preference pairs per micro-batch (InstructGPT: 64).")
    warmup_steps: int = Field(50, ge=0, description="Linear warmup steps.")
    train_examples: int = Field(20000, ge=1, description="Pairs drawn from the embedded task (ignored with --dataset).")


# --- loss (Bradley-Terry; InstructGPT Eq. 1, Llama 2 Eq. 2) --------------------------------------


def bradley_terry_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pair loss −log σ(r_w − r_l − m), shape (B,).

    Equal rewards and no margin give ln 2 ≈ 0.6931 (the model says "coin flip"). With a margin m the
    loss at equal rewards is −log σ(−m): the pair counts as right only once r_w − r_l exceeds m.
    """
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff)


def centering_penalty(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, coefficient: float) -> torch.Tensor:
    """η · mean((r_w + r_l)²): pulls the reward of each pair towards zero mean.

    The BT likelihood only sees differences, so a constant can drift into every reward; this term
    pins it (Eisenstein et al. 2023). Zero when r_l = −r_w, whatever the difference.
    """
    return coefficient * ((chosen_rewards + rejected_rewards) ** 2).mean()


# --- model and data -----------------------------------------------------------------------------


def load_reward_backbone(ctx: RunContext, lora: LoraSettings | None):
    """A one-label sequence-classification model on the policy's transformer (new scalar head)."""
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    source = model_source(ctx)
    tokenizer = load_tokenizer(source, ctx.trust_remote_code)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=1,
            dtype=default_dtype(ctx.device),
            trust_remote_code=ctx.trust_remote_code,
            pad_token_id=tokenizer.pad_token_id,
        )
    except (OSError, ValueError) as exc:
        raise head_error(source, exc, "sequence-classification", "reward-model") from None
    prepare_tokenizer(tokenizer, model)
    if lora is not None:
        model = apply_lora(model, lora, task_type="SEQ_CLS")  # SEQ_CLS keeps the new score head fully trainable
    return model.to(ctx.device), tokenizer


def pair_margins(records: list[dict], source: str, use: bool) -> torch.Tensor | None:
    """The per-pair `margin` column as a tensor, None when the data has none (or use_margin is off)."""
    have = [r for r in records if "margin" in r]
    if not use or not have:
        return None
    if len(have) != len(records):
        missing = next(r for r in records if "margin" not in r)
        raise UserError(f"{source}:{missing.get('_line', '?')}: `margin` is missing here but present on other lines")
    values = []
    for r in records:
        m = r["margin"]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m):
            raise UserError(f"{source}:{r.get('_line', '?')}: `margin` must be a finite number, found {m!r}")
        values.append(float(m))
    return torch.tensor(values)


@torch.no_grad()
def evaluate(model, pairs, pad_id: int, device: str, margins: torch.Tensor | None) -> dict:
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    for chunk in iterate_batches(pairs, 64):
        c, r = split_pairs(rewards_of(model, pair_batch(chunk, pad_id, device)))
        chosen.append(c.cpu())
        rejected.append(r.cpu())
    model.train(was_training)
    c, r = torch.cat(chosen), torch.cat(rejected)
    wins = pair_preferences(c, r)  # per pair 1, 1/2 on a tie, 0: kept for the paired test
    outcomes.record("pairwise_accuracy", [f"pair-{i}" for i in range(len(wins))], wins.tolist(), outcomes.SCORE)
    return {
        "pairwise_accuracy": preference_accuracy(c, r).item(),
        "reward_margin": (c - r).mean().item(),
        "reward_mean": torch.cat([c, r]).mean().item(),
        "loss": bradley_terry_loss(c, r, margins).mean().item(),
    }


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = load_reward_backbone(ctx, lora_settings(cfg))
    train_records, heldout_records, source = task_records(ctx, "preference", cfg.train_examples, cfg.eval_examples)
    train = [tokenize_preference(r, tokenizer, cfg.max_length) for r in train_records]
    heldout = [tokenize_preference(r, tokenizer, cfg.max_length) for r in heldout_records]
    train_margins = pair_margins(train_records, source, cfg.use_margin)
    heldout_margins = pair_margins(heldout_records, source, cfg.use_margin)
    pad = tokenizer.pad_token_id
    counts = parameter_counts(model)
    ctx.log(0, counts)
    before = evaluate(model, heldout, pad, ctx.device, heldout_margins)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pair_batch([train[i] for i in idx], pad, ctx.device)
        chosen, rejected = split_pairs(rewards_of(model, batch))
        margin = train_margins[idx].to(chosen.device) if train_margins is not None else None
        loss = bradley_terry_loss(chosen, rejected, margin).mean()
        if cfg.center_rewards_coefficient:
            loss = loss + centering_penalty(chosen, rejected, cfg.center_rewards_coefficient)
        return loss, {
            "accuracy": preference_accuracy(chosen, rejected).item(),
            "rewards/chosen": chosen.mean().item(),
            "rewards/rejected": rejected.mean().item(),
            "rewards/margins": (chosen - rejected).mean().item(),
            "tokens": int(batch["attention_mask"].sum()),
        }

    loop = train_loop(model, ctx, loop_settings(cfg), loss_fn, description=f"reward-model on {source}")
    after = evaluate(model, heldout, pad, ctx.device, heldout_margins)
    saved = model.merge_and_unload() if is_peft(model) else model
    return finish(ctx, saved, tokenizer, loop, before, after, data=source, **counts)


plugin = Plugin(
    id="reward-model",
    config=Config,
    run=run,
    summary="Bradley-Terry outcome reward model (scalar head, optional margin and centring).",
    smoke={"max_steps": 2, "train_examples": 32, "eval_examples": 16, "batch_size": 8, "log_every": 1},
)
