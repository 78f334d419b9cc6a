"""Contrastive Preference Optimization (CPO): DPO with a uniform reference plus an NLL term.

Paper: Xu, Sharaf, Chen, Tan, Shen, Van Durme, Murray, Kim, 2024, "Contrastive Preference
Optimization: Pushing the Boundaries of LLM Performance in Machine Translation",
arXiv:2401.08417 (L_CPO = L_prefer + L_NLL). Catalog entry: catalog/methods/cpo.yaml.

    catalog run cpo                                   # embedded tiny model + addition pairs
    catalog run cpo --model ./my-sft-model --dataset prefs.jsonl --set beta=0.1

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

With a uniform reference the DPO margin reduces to β(log π(y_w) − log π(y_l)), so no reference
model is kept or run (the memory saving the paper is after); the NLL term on the preferred
output keeps the policy on the preferred distribution.

Deviations from the paper:
1. The NLL term is the mean over chosen tokens of the batch (TRL's cross-entropy), not the
   paper's per-sequence negative log-likelihood; ``alpha`` weights it (paper: 1).
2. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.config import TrainingConfig
from posttrain.data import batch_indices
from posttrain.hf import load_policy, lora_settings, parameter_counts
from posttrain.preference import PairLogps, evaluate_pairs, load_pairs, pair_batch, pair_logps, reward_metrics
from posttrain.train import finish, loop_settings, train_loop


class Config(TrainingConfig):
    beta: float = Field(0.1, gt=0, description="β of the preference term (paper: 0.1).")
    alpha: float = Field(1.0, ge=0, description="Weight of the NLL term L_NLL (paper: 1; TRL cpo_alpha).")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (paper: 1e-4 with LoRA).")
    max_steps: int = Field(150, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Preference pairs per micro-batch.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    train_examples: int = Field(4800, ge=1, description="Pairs drawn from the embedded task (ignored with --dataset).")


# --- loss ------------------------------------------------------------------------------------


def cpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_nll: torch.Tensor,
    beta: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPO: mean over pairs of −log σ(β log π(y_w) − β log π(y_l)), plus α · chosen_nll.

    Inputs: summed log-probs (B,) and the batch's NLL per chosen token (scalar). Returns the
    total loss, the per-pair preference losses and the rewards β log π. Equal log-probs give
    ln 2 + α·NLL.
    """
    chosen_rewards = beta * policy_chosen
    rejected_rewards = beta * policy_rejected
    prefer = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return prefer.mean() + alpha * chosen_nll, prefer, chosen_rewards.detach(), rejected_rewards.detach()


def nll_per_token(logps: PairLogps) -> torch.Tensor:
    """Mean negative log-likelihood per chosen token over the batch."""
    return -logps.chosen.sum() / logps.chosen_tokens.sum().clamp(min=1)


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    data = load_pairs(ctx, cfg, tokenizer)
    counts = parameter_counts(policy)
    ctx.log(0, counts)

    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        return cfg.beta * pol.chosen, cfg.beta * pol.rejected

    before = evaluate_pairs(policy, tokenizer, data, rewards, None, cfg)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(data.train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pair_batch([data.train[i] for i in idx], data.pad_id, ctx.device)
        pol = pair_logps(policy, batch)
        nll = nll_per_token(pol)
        loss, _, c_rew, r_rew = cpo_loss(pol.chosen, pol.rejected, nll, cfg.beta, cfg.alpha)
        metrics = {**reward_metrics(c_rew, r_rew, pol), "nll_loss": nll.item()}
        return loss, {**metrics, "tokens": int(batch["attention_mask"].sum())}

    loop = train_loop(policy, ctx, loop_settings(cfg), loss_fn, description=f"cpo on {data.source}")
    after = evaluate_pairs(policy, tokenizer, data, rewards, None, cfg)
    return finish(ctx, policy, tokenizer, loop, before, after, data=data.source, **counts)


plugin = Plugin(
    id="cpo",
    config=Config,
    run=run,
    summary="Contrastive Preference Optimization: reference-free DPO approximation plus NLL.",
    smoke={"max_steps": 2, "train_examples": 32, "eval_examples": 16, "batch_size": 8, "log_every": 1},
)
