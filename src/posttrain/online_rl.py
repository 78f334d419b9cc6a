"""The start and end every online-RL trainer shares (plumbing only, built on posttrain.rollout).

``start(cfg, ctx, name)`` loads the policy (and a frozen reference when asked), the prompt records,
the batch semantics (printed), sampling settings and the reward, and evaluates the policy on the
held-out prompts; ``conclude(...)`` evaluates again, reports generation time and saves the policy.
The plugin in between builds its rollouts and its loss: advantage estimators, baselines and policy
losses stay in the plugin files (ppo, rloo, reinforce-pp, remax, reinforce, scst).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from posttrain.data import task_records
from posttrain.evaluation import evaluate_policy
from posttrain.generation.sampler import Sampling
from posttrain.generation.vllm_engine import VLLMEngine
from posttrain.hf import frozen_reference, load_policy, lora_settings, model_source, parameter_counts
from posttrain.interface import RunContext, RunResult
from posttrain.rewards import reward_from_config
from posttrain.rollout import (
    BatchSemantics,
    Rollout,
    RolloutSchedule,
    prompt_batch,
    rollout_metrics,
    sample_completions,
    sampling_from_config,
    score_rollout,
)
from posttrain.train import LoopResult, finish


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


def conclude(run: OnlineRun, loop: LoopResult, schedule: RolloutSchedule, **extra: Any) -> RunResult:
    after = evaluate(run)
    generate = schedule.seconds.get("generate", 0.0)
    timing = {"generate_seconds": round(generate, 2), "generate_share": round(generate / max(loop.seconds, 1e-9), 3)}
    return finish(
        run.ctx, run.policy, run.tokenizer, loop, run.before, after, data=run.source,
        batch=run.semantics.describe(), **timing, **run.counts, **extra,
    )  # fmt: skip


def sequence_sum(token_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C) per-token values -> (N,) sums over each completion's real tokens."""
    return (token_values * mask).sum(-1)


def rollout_stats(rollout: Rollout) -> dict[str, float]:
    """rollout_metrics without the within-group reward std when there is one sample per prompt (undefined)."""
    import warnings

    with warnings.catch_warnings():  # the group std of one sample is undefined; dropped below
        warnings.simplefilter("ignore", UserWarning)
        metrics = rollout_metrics(rollout)
    if rollout.num_generations < 2:
        metrics.pop("reward_std", None)
    return metrics
