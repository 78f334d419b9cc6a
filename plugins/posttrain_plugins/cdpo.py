"""Conservative DPO (cDPO) and robust DPO: DPO for preference labels flipped with probability ε.

Papers: Mitchell, 2023, "A note on DPO with noisy preferences & relationship to IPO" (the cDPO
label-smoothed loss; a short note, no arXiv id); Chowdhury, Kini, Natarajan, 2024, "Provably
Robust DPO: Aligning Language Models with Noisy Feedback", arXiv:2403.00409 (rDPO, an
unbiased loss under label noise). Catalog entry: catalog/methods/cdpo.yaml.

    catalog run cdpo                                  # embedded tiny model + addition pairs
    catalog run cdpo --set epsilon=0.2 --set variant=robust --dataset noisy_prefs.jsonl

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

cDPO mixes the DPO loss of the labelled pair with that of the flipped pair:
−(1−ε) log σ(h) − ε log σ(−h), h = β(log-ratio chosen − log-ratio rejected). Its optimum margin
is finite (h* = log((1−ε)/ε)). rDPO instead de-biases: [(1−ε)ℓ(h) − εℓ(−h)] / (1−2ε) with
ℓ(h) = −log σ(h), whose expectation over random flips equals the clean DPO loss.

Deviations from the papers:
1. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
2. Reference log-probs are computed once before training; chosen and rejected share one forward.
3. ε defaults to 0.1 (TRL's documented robust-DPO example); neither paper fixes one value.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.config import TrainingConfig
from posttrain.data import batch_indices
from posttrain.hf import load_policy, lora_settings, parameter_counts
from posttrain.preference import (
    PairLogps,
    evaluate_pairs,
    load_pairs,
    pair_batch,
    pair_logps,
    reference_logps,
    reward_metrics,
)
from posttrain.train import finish, loop_settings, train_loop


class Config(TrainingConfig):
    beta: float = Field(0.1, gt=0, description="β, strength of the KL penalty to the reference (as in DPO).")
    epsilon: float = Field(
        0.1, ge=0, lt=0.5, description="ε, assumed probability that a preference label is flipped (below 1/2)."
    )
    variant: Literal["cdpo", "robust"] = Field(
        "cdpo", description="cdpo: Mitchell's label-smoothed loss; robust: Chowdhury et al.'s unbiased rDPO loss."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (sized for the embedded model).")
    max_steps: int = Field(150, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Preference pairs per micro-batch.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    train_examples: int = Field(4800, ge=1, description="Pairs drawn from the embedded task (ignored with --dataset).")


# --- losses ---------------------------------------------------------------------------------


def _margin_and_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    return chosen_rewards - rejected_rewards, chosen_rewards.detach(), rejected_rewards.detach()


def cdpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    epsilon: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mitchell's conservative DPO: −(1−ε) log σ(h) − ε log σ(−h), per pair (B,).

    ε = 0 is DPO; at policy = reference it is ln 2; ε = 1/2 (labels carry no information) has its optimum at h = 0.
    """
    h, c, r = _margin_and_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = -(1 - epsilon) * F.logsigmoid(h) - epsilon * F.logsigmoid(-h)
    return losses, c, r


def robust_dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    epsilon: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chowdhury et al.'s rDPO: [(1−ε)(−log σ(h)) − ε(−log σ(−h))] / (1−2ε), per pair (B,).

    ε = 0 is DPO; averaged over labels flipped with probability ε it equals the clean DPO loss.
    """
    h, c, r = _margin_and_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = (-(1 - epsilon) * F.logsigmoid(h) + epsilon * F.logsigmoid(-h)) / (1 - 2 * epsilon)
    return losses, c, r


LOSSES = {"cdpo": cdpo_loss, "robust": robust_dpo_loss}


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    loss_of = LOSSES[cfg.variant]
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    data = load_pairs(ctx, cfg, tokenizer)
    counts = parameter_counts(policy)
    ctx.log(0, counts)
    ref_train, ref_heldout = reference_logps(policy, data, ctx.device)

    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        return cfg.beta * (pol.chosen - ref.chosen), cfg.beta * (pol.rejected - ref.rejected)

    before = evaluate_pairs(policy, tokenizer, data, rewards, ref_heldout, cfg)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(data.train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pair_batch([data.train[i] for i in idx], data.pad_id, ctx.device)
        pol, ref = pair_logps(policy, batch), ref_train[idx]
        losses, c_rew, r_rew = loss_of(pol.chosen, pol.rejected, ref.chosen, ref.rejected, cfg.beta, cfg.epsilon)
        return losses.mean(), {**reward_metrics(c_rew, r_rew, pol), "tokens": int(batch["attention_mask"].sum())}

    loop = train_loop(policy, ctx, loop_settings(cfg), loss_fn, description=f"{cfg.variant} dpo on {data.source}")
    after = evaluate_pairs(policy, tokenizer, data, rewards, ref_heldout, cfg)
    return finish(ctx, policy, tokenizer, loop, before, after, data=data.source, variant=cfg.variant, **counts)


plugin = Plugin(
    id="cdpo",
    config=Config,
    run=run,
    summary="Conservative / robust DPO for noisy preference labels (label smoothing ε).",
    smoke={"max_steps": 2, "train_examples": 32, "eval_examples": 16, "batch_size": 8, "log_every": 1},
)
