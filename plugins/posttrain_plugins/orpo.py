"""ORPO: odds-ratio preference optimisation, SFT and alignment in one loss, no reference model.

Paper: Hong, Lee, Thorne, 2024, "ORPO: Monolithic Preference Optimization without Reference
Model", arXiv:2403.07691, Eq. 4 and 7 as TRL cites them (L_ORPO = L_SFT + λ L_OR). Catalog entry:
catalog/methods/orpo.yaml.

    catalog run orpo                                  # embedded tiny model + addition pairs
    catalog run orpo --model Qwen/Qwen2.5-0.5B --dataset prefs.jsonl --set lam=0.1

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

odds(y|x) = P(y|x) / (1 − P(y|x)) with P the length-normalised likelihood exp(mean log π), and
L_OR = −log σ(log odds(y_w|x) − log odds(y_l|x)). The NLL term L_SFT is on the chosen response.

Deviations from the paper:
1. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model
   (the paper starts from a base model and trains 10 epochs at 5e-6 to 8e-6).
2. The embedded base model is already fine-tuned on the task, so here ORPO refines an SFT model
   rather than replacing the SFT stage.
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
    lam: float = Field(0.1, gt=0, description="λ, weight of the odds-ratio term L_OR (paper: 0.1; TRL beta).")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (sized for the embedded model).")
    max_steps: int = Field(150, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Preference pairs per micro-batch.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    train_examples: int = Field(4800, ge=1, description="Pairs drawn from the embedded task (ignored with --dataset).")


# --- loss (paper Eq. 4, 7) ------------------------------------------------------------------


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − e^x) for x < 0, switching form at −ln 2 so neither branch cancels catastrophically."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def log_odds_ratio(policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor) -> torch.Tensor:
    """log odds(y_w) − log odds(y_l) from mean per-token log-probs (B,); log odds = log p − log(1 − p)."""
    return (policy_chosen_avg - policy_rejected_avg) - (log1mexp(policy_chosen_avg) - log1mexp(policy_rejected_avg))


def orpo_loss(
    policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, chosen_nll: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO: chosen_nll + λ · mean(−log σ(log odds ratio)); returns (loss, per-pair L_OR, log odds ratio).

    Equal chosen and rejected likelihoods give L_OR = ln 2; λ → 0 leaves plain SFT on y_w.
    """
    ratio = log_odds_ratio(policy_chosen_avg, policy_rejected_avg)
    odds_losses = -F.logsigmoid(ratio)
    return chosen_nll + lam * odds_losses.mean(), odds_losses, ratio.detach()


def nll_per_token(logps: PairLogps) -> torch.Tensor:
    """Mean negative log-likelihood per chosen token over the batch (L_SFT)."""
    return -logps.chosen.sum() / logps.chosen_tokens.sum().clamp(min=1)


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    data = load_pairs(ctx, cfg, tokenizer)
    counts = parameter_counts(policy)
    ctx.log(0, counts)

    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        chosen_avg, rejected_avg = pol.averaged()  # TRL's ORPO rewards: λ · mean log-prob
        return cfg.lam * chosen_avg, cfg.lam * rejected_avg

    before = evaluate_pairs(policy, tokenizer, data, rewards, None, cfg)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(data.train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pair_batch([data.train[i] for i in idx], data.pad_id, ctx.device)
        pol = pair_logps(policy, batch)
        chosen_avg, rejected_avg = pol.averaged()
        nll = nll_per_token(pol)
        loss, odds_losses, ratio = orpo_loss(chosen_avg, rejected_avg, nll, cfg.lam)
        c_rew, r_rew = cfg.lam * chosen_avg.detach(), cfg.lam * rejected_avg.detach()
        metrics = {
            **reward_metrics(c_rew, r_rew, pol),
            "nll_loss": nll.item(),
            "log_odds_ratio": ratio.mean().item(),
            "odds_ratio_loss": odds_losses.mean().item(),
        }
        return loss, {**metrics, "tokens": int(batch["attention_mask"].sum())}

    loop = train_loop(policy, ctx, loop_settings(cfg), loss_fn, description=f"orpo on {data.source}")
    after = evaluate_pairs(policy, tokenizer, data, rewards, None, cfg)
    return finish(ctx, policy, tokenizer, loop, before, after, data=data.source, **counts)


plugin = Plugin(
    id="orpo",
    config=Config,
    run=run,
    summary="ORPO: NLL on the chosen response plus an odds-ratio preference term; no reference.",
    smoke={"max_steps": 2, "train_examples": 32, "eval_examples": 16, "batch_size": 8, "log_every": 1},
)
