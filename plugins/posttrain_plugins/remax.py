"""ReMax: REINFORCE with the greedy response's reward as baseline, for RLHF.

Paper: Li, Xu, Zhang, Liu, Sun, Luo, 2023, "ReMax: A Simple, Effective, and Efficient Reinforcement
Learning Method for Aligning Large Language Models", arXiv:2310.10505, Algorithm 1; the
loss and KL shaping follow the authors' code (github.com/liziniu/ReMax, step3_rlhf_finetuning/
remax_trainer.py). Catalog entry: catalog/methods/remax.yaml.

    catalog run remax                                  # embedded tiny model + addition prompts
    catalog run remax --model ./my-sft-model --dataset prompts.jsonl \\
        --set rewards='[reward-model:./my-reward-model]' --set kl_coef=0.05

Data: ``prompt`` (string or message list) with ``answer`` for the exact-match reward.

For each prompt one response y is sampled and one response ȳ is decoded greedily; both are scored.
Every token t of y gets the weight G_t = clip(r(x, y) - r(x, ȳ), ±c) - β (log π(y_t) - log π_ref(y_t))
and the loss is -Σ G_t log π(y_t | x, y_<t) / (number of tokens). No value model: the greedy
reward is the baseline, so memory is about half of PPO's (no critic, no critic optimizer state).

How ReMax differs from SCST (catalog entry ``scst``), which uses the same greedy baseline: SCST
(Rennie et al. 2017) trains an image captioner on a task metric (CIDEr) with no reference model;
ReMax applies the baseline to RLHF of LLMs: the reward is a learned reward model, a per-token KL
penalty to the SFT reference is added to each token's weight, the reward difference is clipped,
and the paper proves the baseline keeps the gradient unbiased while cutting its variance. On the
embedded task both plugins use the exact-match checker; ``scst`` has no KL term and no clipping.

Deviations from the paper:
1. Learning rate (7.5e-5; billion-parameter runs use far smaller rates), 64 prompts per step and the step
   count are sized for the embedded tiny model; the default reward is the task's exact-match
   checker (the paper uses a reward model: pass ``rewards=[reward-model:PATH]``).
2. β = 0.05 is our choice for the tiny model (the ReMax scripts set ``kl_ctl`` per model); the
   greedy response is decoded as top-k = 1 sampling; sampling uses top-p 1.0 (ReMax's code: 0.9).
3. γ = 1 (no discount), as in the paper's undiscounted objective.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.logprobs import completion_logprobs
from posttrain.rl.policy_gradient import rollout_stats, start, train_on_rollouts
from posttrain.rl.rollout import attach_logprobs
from posttrain.rl.rollout_config import RolloutConfig


class Config(RolloutConfig):
    num_generations: int = Field(
        1, ge=1, le=1, description="Sampled responses per prompt (ReMax: one, plus the greedy one)."
    )
    prompts_per_step: int = Field(64, ge=1, description="Prompts per optimizer step.")
    kl_coef: float = Field(0.05, ge=0, description="β, per-token KL penalty to the reference (code: kl_ctl).")
    reward_clip: float = Field(5.0, gt=0, description="c, clip of r(y) - r(ȳ) (code: clip_reward_value = 5).")
    learning_rate: float = Field(7.5e-5, gt=0, description="Peak learning rate (sized for the embedded model).")
    max_steps: int = Field(
        300, ge=1, description="Optimizer steps (one per rollout; 150 gained only +0.002 exact match)."
    )


# --- advantage and loss (paper Algorithm 1) ------------------------------------------------------


def remax_advantages(sample_rewards: torch.Tensor, greedy_rewards: torch.Tensor, clip: float) -> torch.Tensor:
    """A(x, y) = clip(r(x, y) - r(x, ȳ), -c, c) with ȳ the greedy response to the same prompt
    (Algorithm 1). Zero when the sampled response scores like the greedy one."""
    return (sample_rewards - greedy_rewards).clamp(-clip, clip)


def remax_token_weights(
    advantages: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """G_t = A - β (log π_old(y_t) - log π_ref(y_t)): every token carries the sequence advantage and
    its own KL penalty (the authors' compute_returns with γ = 1). (N,), (N, C) -> (N, C)."""
    return (advantages.unsqueeze(-1) - kl_coef * (logps - ref_logps)) * mask


def remax_loss(token_logps: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-Σ_{i,t} G_{i,t} log π(y_{i,t}) / Σ mask (the authors' actor_loss_fn); weights are constants."""
    return -(weights.detach() * token_logps * mask).sum() / mask.sum().clamp(min=1)


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    rl = start(cfg, ctx, "remax", reference=cfg.kl_coef > 0)
    temperature = rl.sampling.temperature

    def make(index: int):
        prompts = rl.prompts(index)
        greedy = rl.greedy(prompts)
        rollout = rl.sample(prompts, 1)
        rollout.timings["generate"] += greedy.timings["generate"]
        attach_logprobs(
            rollout, rl.policy, rl.reference, old=True, ref=cfg.kl_coef > 0,
            micro_batch=rl.semantics.micro_batch, temperature=temperature,
        )  # fmt: skip
        mask = rollout.completion_mask
        ref = rollout.ref_logps if rollout.ref_logps is not None else rollout.old_logps
        advantages = remax_advantages(rollout.rewards, greedy.rewards, cfg.reward_clip)
        rollout.advantages = remax_token_weights(advantages, rollout.old_logps, ref, mask, cfg.kl_coef)
        rollout.stats.update(
            greedy_reward=float(greedy.rewards.mean()),
            advantage_mean=float(advantages.mean()),
            kl=float(((rollout.old_logps - ref) * mask).sum(-1).mean()),
        )
        return rollout

    def micro_batch_loss(rollout, rows: slice):
        mask = rollout.completion_mask[rows]
        logps = completion_logprobs(rl.policy, rollout, rows, temperature)
        loss = remax_loss(logps, rollout.advantages[rows], mask)
        return loss, {**rollout_stats(rollout), "tokens": int(rollout.attention_mask[rows].sum())}

    return train_on_rollouts(rl, make, micro_batch_loss)


plugin = Plugin(
    id="remax",
    config=Config,
    run=run,
    summary="REINFORCE with the greedy response's reward as baseline and a per-token KL penalty (RLHF).",
    smoke={"max_steps": 2, "prompts_per_step": 8, "train_examples": 16, "eval_examples": 8, "log_every": 1},
)
