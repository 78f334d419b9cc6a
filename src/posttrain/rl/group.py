"""The group-RL recipe (grpo, dr-grpo, dapo, gspo, cispo, sapo, gmpo, on-policy-distillation): sample
G completions per prompt, score them, turn the rewards into advantages, then take ``policy_epochs``
passes of mini-batch updates over the rollout. A plugin passes its advantage estimator and its objective.

One rollout feeds ``steps_per_rollout`` optimizer steps (``posttrain.rl.rollout.BatchSemantics``):
epoch e, mini-batch m, micro-batch u use the rollout's rows
``[(m * grad_accum + u) * micro_batch, ... + micro_batch)``. The run ends after ``max_steps``
optimizer steps, in the middle of a rollout if it does not divide.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from posttrain.data import task_records
from posttrain.generation.logprobs import completion_logprobs
from posttrain.generation.sampler import Sampling
from posttrain.generation.vllm_engine import VLLMEngine
from posttrain.hf import frozen_reference, load_policy, lora_settings, model_source, parameter_counts
from posttrain.interface import RunContext, RunResult
from posttrain.rl.rollout import (
    BatchSemantics,
    Rollout,
    attach_logprobs,
    evaluate_policy,
    prompt_batch,
    rollout_metrics,
    sample_completions,
    sampling_from_config,
    score_rollout,
)
from posttrain.rl.rollout_config import RolloutConfig
from posttrain.scoring.rewards import reward_from_config
from posttrain.training.trainer import Trainer, finish, loop_settings

# (logps, old_logps, ref_logps, advantages, mask) -> (loss, stats); the tensors are one micro-batch's rows.
# --- the family's pure functions (DeepSeekMath, arXiv:2402.03300, Eq. 3-4); tensors (N, C), mask 1 on sampled tokens --------------------------------------


def group_advantages(rewards: torch.Tensor, std_epsilon: float = 1e-4) -> torch.Tensor:
    """Outcome advantages (P, G) -> (P, G): (r - mean(r)) / (std(r) + eps) within each group.

    Rewards [1, 0, 0, 0]: mean 0.25, unbiased std 0.5, advantages [1.5, -0.5, -0.5, -0.5] (up to eps).
    Equal rewards in a group give zero advantages.
    """
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, keepdim=True) if rewards.shape[-1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + std_epsilon)


def clipped_surrogate(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) and where clipping was active.

    rho = exp(logps - old_logps). Inside the trust region it equals rho A (the unclipped objective);
    at rho = 1 it equals A. ``advantages`` broadcasts: (N, 1) for outcome rewards.
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * advantages
    return torch.minimum(unclipped, clipped), (clipped < unclipped)


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token unbiased KL(pi || pi_ref) estimate (Eq. 4): pi_ref/pi - log(pi_ref/pi) - 1 >= 0.

    Zero when the policy equals the reference; log-ratio log(pi_ref/pi) = 1 gives e - 2 = 0.7183.
    """
    log_ratio = ref_logps - logps
    return torch.exp(log_ratio) - log_ratio - 1


def token_stats(kl: torch.Tensor, clipped: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean KL and share of clipped tokens over the real tokens of a micro-batch."""
    tokens = mask.sum().clamp(min=1)
    return {"kl": (kl * mask).sum() / tokens, "clip_ratio": (clipped.float() * mask).sum() / tokens}


# --- the recipe ----------------------------------------------------------------------------------

Objective = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]

# The smoke settings the group plugins share: 2 steps of one 16-completion rollout each.
SMOKE = {
    "max_steps": 2,
    "prompts_per_step": 4,
    "num_generations": 4,
    "batch_size": 16,
    "train_examples": 16,
    "eval_examples": 8,
    "log_every": 1,
}

# Refill batches of a rollout (DAPO's dynamic sampling) use prompt batch index + round * this.
REFILL_STRIDE = 1_000_003


def train_group_policy(
    cfg: RolloutConfig,
    ctx: RunContext,
    name: str,
    advantages: Callable[[Rollout], torch.Tensor],
    objective: Callable[[Sampling], Objective],
    beta: float = 0.0,
    make_rollout: Callable[..., Rollout] | None = None,
) -> RunResult:
    """Sample -> score -> old/ref log-probs -> advantages, then ``objective`` on micro-batches.

    ``advantages(rollout) -> (N,)``; ``objective(sampling)`` returns the loss function
    ``(logps, old_logps, ref_logps, advantages, mask) -> (loss, stats)``; ``make_rollout(prompts_for,
    sample)`` replaces plain sampling + scoring of ``prompts_for(0)`` (DAPO's dynamic sampling:
    ``prompts_for(k)`` is the k-th refill batch, ``sample(prompts)`` a scored rollout).
    """
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    reference = frozen_reference(policy) if beta > 0 else None
    train_records, heldout_records, source = task_records(ctx, "prompt", cfg.train_examples, cfg.eval_examples)
    embedded = ctx.dataset is None
    semantics = BatchSemantics.from_config(cfg)
    sampling = sampling_from_config(cfg, embedded, ctx.device)
    reward_fn = reward_from_config(cfg, ctx.device)
    engine = VLLMEngine(model_source(ctx)) if sampling.backend == "vllm" else None
    print(f"{name}: {semantics.describe()}")
    counts = parameter_counts(policy)
    ctx.log(0, counts)
    eval_tokens = cfg.max_new_tokens or (8 if embedded else 128)
    before = evaluate_policy(policy, tokenizer, heldout_records, reward_fn, sampling, eval_tokens)
    loss_of = objective(sampling)

    def sample(prompts: list[dict]) -> Rollout:
        rollout = sample_completions(policy, tokenizer, prompts, cfg.num_generations, sampling, engine)
        return score_rollout(rollout, reward_fn)

    def make(index: int) -> Rollout:
        def prompts_for(round_: int) -> list[dict]:  # round > 0: refills (DAPO), a distinct deterministic batch
            return prompt_batch(train_records, semantics, index + round_ * REFILL_STRIDE, ctx.seed)

        rollout = make_rollout(prompts_for, sample) if make_rollout else sample(prompts_for(0))
        attach_logprobs(
            rollout,
            policy,
            reference,
            old=semantics.reuses_rollouts,
            ref=beta > 0,
            micro_batch=semantics.micro_batch,
            temperature=sampling.temperature,
        )
        rollout.advantages = advantages(rollout)
        return rollout

    def micro_batch_loss(rollout: Rollout, rows: slice) -> tuple[torch.Tensor, dict]:
        logps = completion_logprobs(policy, rollout, rows, sampling.temperature)
        old = rollout.old_logps[rows] if rollout.old_logps is not None else logps.detach()
        ref = rollout.ref_logps[rows] if rollout.ref_logps is not None else None
        loss, stats = loss_of(logps, old, ref, rollout.advantages[rows], rollout.completion_mask[rows])
        metrics = {**rollout_metrics(rollout), **{k: float(v.detach()) for k, v in stats.items()}}
        metrics["tokens"] = int(rollout.attention_mask[rows].sum())
        return loss, metrics

    generate_seconds = 0.0
    max_steps, per_rollout = cfg.max_steps, semantics.steps_per_rollout
    with Trainer(policy, ctx, loop_settings(cfg), f"{name} on {source}") as trainer:
        # A resumed run starts with the rollout of its first remaining step (sampled anew).
        for rollout_index in range(trainer.start_step // per_rollout, math.ceil(max_steps / per_rollout)):
            with trainer.micro_batch():  # old/ref log-probs under the same autocast as the training forward
                rollout = make(rollout_index)
            generate_seconds += rollout.timings.get("generate", 0.0)
            for epoch in range(semantics.policy_epochs):
                for minibatch in range(semantics.steps_per_epoch):
                    step = (rollout_index * semantics.policy_epochs + epoch) * semantics.steps_per_epoch + minibatch
                    if not trainer.start_step <= step < max_steps:
                        continue
                    for micro in range(semantics.grad_accum):
                        first = (minibatch * semantics.grad_accum + micro) * semantics.micro_batch
                        with trainer.micro_batch():
                            trainer.step(*micro_batch_loss(rollout, slice(first, first + semantics.micro_batch)))
    loop = trainer.result
    after = evaluate_policy(policy, tokenizer, heldout_records, reward_fn, sampling, eval_tokens)
    timing = {
        "generate_seconds": round(generate_seconds, 2),
        "generate_share": round(generate_seconds / max(loop.seconds, 1e-9), 3),
    }
    return finish(
        ctx, policy, tokenizer, loop, before, after, data=source, batch=semantics.describe(), **timing, **counts
    )
