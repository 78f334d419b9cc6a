"""Configuration fields every online-RL plugin shares: batch semantics, sampling and rewards.

An online-RL plugin's ``Config`` subclasses ``RolloutConfig`` (itself a ``TrainingConfig``) and
redeclares a field to change its default. No torch import here, so ``catalog`` commands stay fast.

Batch semantics (printed at the start of every run by ``BatchSemantics.describe``):

- one *rollout batch* = ``prompts_per_step`` prompts x ``num_generations`` completions each;
- it is cut into micro-batches of ``batch_size`` completions; ``grad_accum`` micro-batches make
  one optimizer step;
- the rollout batch is reused for ``policy_epochs`` passes (mu in GRPO), so one rollout feeds
  ``policy_epochs * prompts_per_step * num_generations / (batch_size * grad_accum)`` optimizer steps.
  ``max_steps`` counts optimizer steps.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posttrain.training.config import TrainingConfig


class RolloutConfig(TrainingConfig):
    prompts_per_step: int = Field(8, ge=1, description="Prompts sampled per rollout batch.")
    num_generations: int = Field(8, ge=1, description="G, completions sampled per prompt (the group size).")
    batch_size: int = Field(64, ge=1, description="Completions per micro-batch (forward/backward).")
    policy_epochs: int = Field(
        1, ge=1, description="mu, passes (optimizer updates) over each rollout batch before sampling again."
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate of AdamW.")
    max_steps: int = Field(200, ge=1, description="Optimizer steps.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    schedule: Literal["cosine", "linear", "constant"] = Field("constant", description="Learning-rate decay.")
    train_examples: int = Field(
        2000, ge=1, description="Prompts drawn from the embedded task (ignored with --dataset)."
    )
    eval_examples: int = Field(500, ge=1, description="Held-out prompts evaluated before and after training.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts (and of their log-probs).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold of the rollouts (1: off).")
    top_k: int = Field(0, ge=0, description="Top-k sampling of the rollouts (0: off).")
    max_completion_length: int | None = Field(
        None, ge=1, description="Max new tokens per rollout completion (default 8 on the embedded task, else 256)."
    )
    stop: list[str] = Field([], description="Stop strings that end a completion early.")
    backend: Literal["auto", "native", "hf", "vllm"] = Field(
        "auto",
        description="Rollout generation: our sampling loop (native), transformers' generate (hf), vLLM, or auto "
        "(vLLM when importable and on CUDA, else native).",
    )
    rewards: list[str] = Field(
        ["exact-match"],
        description="Reward functions (exact-match, format, length-penalty, reward-model:PATH, code-tests[:SECONDS]), "
        "summed with weights.",
    )
    reward_weights: list[float] | None = Field(None, description="One weight per reward function (default: all 1).")
    format_pattern: str | None = Field(
        None, description="Regex of the `format` reward (default: R1's <think>...</think><answer>...</answer>)."
    )
    length_budget: int = Field(
        512, ge=1, description="Characters above which the `length-penalty` reward falls linearly to -1 at 2x."
    )
