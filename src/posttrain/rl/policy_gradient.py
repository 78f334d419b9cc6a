"""The actor-critic / REINFORCE recipe (ppo, reinforce, reinforce-pp, rloo, remax, scst).

``start(cfg, ctx, name)`` loads the policy (and a frozen reference when asked), the prompt records,
the batch semantics (printed), sampling settings and the reward, and evaluates the policy on the
held-out prompts. The plugin then passes two functions to ``train_on_rollouts``: ``make(index)``
samples, scores and prepares rollout ``index`` (its advantages, baselines, critic values), and
``micro_batch_loss(rollout, rows)`` is the policy (and value) loss on some of its rows. The recipe's
loops take ``policy_epochs`` passes of mini-batch updates over each rollout, then evaluate again,
report generation time and save the policy.

One rollout feeds ``steps_per_rollout`` optimizer steps (``posttrain.rl.rollout.BatchSemantics``):
epoch e, mini-batch m, micro-batch u use the rollout's rows
``[(m * grad_accum + u) * micro_batch, ... + micro_batch)``. The run ends after ``max_steps``
optimizer steps, in the middle of a rollout if it does not divide.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from posttrain.data import task_records
from posttrain.generation.sampler import Sampling
from posttrain.generation.vllm_engine import VLLMEngine
from posttrain.hf import frozen_reference, load_policy, lora_settings, model_source, parameter_counts
from posttrain.interface import RunContext, RunResult
from posttrain.rl.rollout import (
    BatchSemantics,
    Rollout,
    evaluate_policy,
    prompt_batch,
    rollout_metrics,
    sample_completions,
    sampling_from_config,
    score_rollout,
)
from posttrain.scoring.rewards import reward_from_config
from posttrain.training.trainer import Trainer, finish, loop_settings

# --- the family's pure functions; tensors (N, C), mask 1 on sampled tokens -----------------------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (token-level average over the batch)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions of the whole batch; padding stays 0.

    With ``shift_mean=False`` the mean is added back (only the scale changes), as TRL does for the
    per-token rewards. Uses the population variance.
    """
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def clipped_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347, Eq. 7), negated to a loss,
    token-level mean:

        L = -mean_t min(ρ_t Â_t, clip(ρ_t, 1-ε, 1+ε) Â_t),   ρ_t = π_θ(y_t) / π_old(y_t)

    Returns (loss, share of tokens where the clipped branch is the smaller one). Inside the trust
    region |ρ - 1| ≤ ε it equals the unclipped objective; at ρ = 1 its gradient is the policy gradient.
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages
    loss = -masked_mean(torch.min(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped < unclipped).float(), mask)
    return loss, clip_fraction


def sequence_sum(token_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C) per-token values -> (N,) sums over each completion's real tokens."""
    return (token_values * mask).sum(-1)


# --- the recipe ----------------------------------------------------------------------------------


@dataclass
class OnlineRun:
    """What a plugin's rollout and loss functions need, made once by ``start``."""

    cfg: Any
    ctx: RunContext
    name: str
    policy: Any
    tokenizer: Any
    reference: Any  # frozen copy, or None (LoRA policy: adapter-disabled base; or no reference wanted)
    train_records: list[dict]
    heldout_records: list[dict]
    source: str
    semantics: BatchSemantics
    sampling: Sampling
    reward_fn: Any
    engine: Any = None
    before: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    @property
    def eval_tokens(self) -> int:
        return self.cfg.max_new_tokens or (8 if self.ctx.dataset is None else 128)

    def prompts(self, rollout_index: int) -> list[dict]:
        """The prompts of rollout ``rollout_index`` (a pure function of the index and the seed)."""
        return prompt_batch(self.train_records, self.semantics, rollout_index, self.ctx.seed)

    def sample(self, prompts: list[dict], num_generations: int | None = None) -> Rollout:
        """num_generations (default G) sampled completions per prompt, scored by the reward."""
        g = self.cfg.num_generations if num_generations is None else num_generations
        rollout = sample_completions(self.policy, self.tokenizer, prompts, g, self.sampling, self.engine)
        return score_rollout(rollout, self.reward_fn)

    def greedy(self, prompts: list[dict]) -> Rollout:
        """The policy's greedy response to each prompt, scored (top-k 1 sampling is argmax decoding).

        Used as the baseline by SCST and ReMax; ties between equally likely tokens are broken at random.
        """
        backend = "hf" if self.sampling.backend == "hf" else "native"
        greedy = replace(self.sampling, temperature=1.0, top_p=1.0, top_k=1, backend=backend)
        rollout = sample_completions(self.policy, self.tokenizer, prompts, 1, greedy)
        return score_rollout(rollout, self.reward_fn)


def start(cfg, ctx: RunContext, name: str, *, reference: bool) -> OnlineRun:
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    ref = frozen_reference(policy) if reference else None
    train_records, heldout_records, source = task_records(ctx, "prompt", cfg.train_examples, cfg.eval_examples)
    semantics = BatchSemantics.from_config(cfg)
    sampling = sampling_from_config(cfg, ctx.dataset is None, ctx.device)
    engine = VLLMEngine(model_source(ctx)) if sampling.backend == "vllm" else None
    run = OnlineRun(
        cfg, ctx, name, policy, tokenizer, ref, train_records, heldout_records, source, semantics, sampling,
        reward_from_config(cfg, ctx.device), engine,
    )  # fmt: skip
    print(f"{name}: {semantics.describe()}")
    run.counts = parameter_counts(policy)
    ctx.log(0, run.counts)
    run.before = evaluate(run)
    return run


def evaluate(run: OnlineRun) -> dict:
    """Held-out greedy exact match and mean reward of one sampled completion per prompt."""
    return evaluate_policy(run.policy, run.tokenizer, run.heldout_records, run.reward_fn, run.sampling, run.eval_tokens)


def train_on_rollouts(
    rl: OnlineRun,
    make: Callable[[int], Rollout],
    micro_batch_loss: Callable[[Rollout, slice], tuple[torch.Tensor, dict[str, Any]]],
    model=None,
) -> RunResult:
    """Train ``model`` (default the policy; PPO passes policy and critic together) on rollout after
    rollout, then evaluate and save the policy."""
    semantics, max_steps = rl.semantics, rl.cfg.max_steps
    per_rollout = semantics.steps_per_rollout
    generate_seconds = 0.0
    with Trainer(
        rl.policy if model is None else model, rl.ctx, loop_settings(rl.cfg), f"{rl.name} on {rl.source}"
    ) as trainer:
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
    after = evaluate(rl)
    timing = {
        "generate_seconds": round(generate_seconds, 2),
        "generate_share": round(generate_seconds / max(loop.seconds, 1e-9), 3),
    }
    return finish(
        rl.ctx, rl.policy, rl.tokenizer, loop, rl.before, after, data=rl.source,
        batch=semantics.describe(), **timing, **rl.counts,
    )  # fmt: skip


def rollout_stats(rollout: Rollout) -> dict[str, float]:
    """rollout_metrics without the within-group reward std when there is one sample per prompt (undefined)."""
    import warnings

    with warnings.catch_warnings():  # the group std of one sample is undefined; dropped below
        warnings.simplefilter("ignore", UserWarning)
        metrics = rollout_metrics(rollout)
    if rollout.num_generations < 2:
        metrics.pop("reward_std", None)
    return metrics
