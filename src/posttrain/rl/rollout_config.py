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


class GroupConfig(RolloutConfig):
    """Token-level options of the group-RL recipe (``posttrain.rl.group``), each off by default so a
    default run is unchanged. Each one reweights or masks the per-token policy-gradient term of the
    plugin's objective (or adds a per-token penalty); the KL term and the length normalisation stay."""

    sampler_correction: Literal["off", "tis", "mis"] = Field(
        "off",
        description="Correct for the sampler/trainer log-prob mismatch with the per-token ratio w = "
        "pi_old(trainer) / pi_sampler: tis multiplies each token's policy-gradient term by min(w, C) (truncated "
        "importance sampling, Yao et al. 2025, 'Your efficient RL framework secretly brings you off-policy RL "
        "training'); mis multiplies it by w where w <= C and drops the token where w > C (masked importance "
        "sampling, arXiv 2510.18855). Needs the sampler's log-probs (the native backend records them).",
    )
    sampler_ratio_cap: float = Field(
        2.0, gt=0, description="C, the cap of the sampler ratio for tis / mis (Yao et al. use C = 2; inf: no cap)."
    )
    top_entropy_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="rho: keep the policy-gradient term only on tokens whose entropy is at or above the (1 - rho) "
        "quantile of the micro-batch's token entropies (arXiv 2506.01939, J_HighEnt: the indicator "
        "I[H >= tau_rho]; the paper keeps 20%). The loss keeps the plugin's normaliser over all tokens, as "
        "TRL's top_entropy_quantile does; the paper's Eq. 6 divides by the kept tokens. 1: every token (off). "
        "Needs the full logits: not with --logit-chunk-size.",
    )
    kl_cov_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="k of KL-Cov (arXiv 2505.22617, §4, 'The Entropy Mechanism of RL for Reasoning LMs'): the "
        "fraction of a micro-batch's tokens with the highest covariance (log pi - mean)(A - mean) that get the "
        "penalty kl_cov_coef * |log pi - log pi_old|. 0: off. Acts only when a rollout feeds several updates "
        "(policy_epochs > 1 or several mini-batches): on the first one pi = pi_old and the penalty is 0.",
    )
    kl_cov_coef: float = Field(1.0, ge=0, description="beta of KL-Cov, the weight of its per-token penalty.")
    clip_cov_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="r of Clip-Cov (arXiv 2505.22617, §4): the fraction of a micro-batch's tokens, drawn at random "
        "among those with clip_cov_lower < Cov < clip_cov_upper, whose policy-gradient term is cut "
        "(Cov = (log pi - mean)(A - mean)). 0: off.",
    )
    clip_cov_lower: float = Field(
        1.0, description="omega_low of Clip-Cov, the covariance above which a token may be cut (the authors' code: 1)."
    )
    clip_cov_upper: float = Field(
        5.0, description="omega_high of Clip-Cov, the covariance below which a token may be cut (the authors' code: 5)."
    )
