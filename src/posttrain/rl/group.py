"""The group-RL recipe (grpo, dr-grpo, dapo, gspo, cispo, sapo, gmpo, lite-ppo, ttrl,
on-policy-distillation, prime): sample G completions per prompt, score them, turn the rewards into
advantages, then take ``policy_epochs`` passes of mini-batch updates over the rollout. A plugin passes
its advantage estimator and its objective.

One rollout feeds ``steps_per_rollout`` optimizer steps (``posttrain.rl.rollout.BatchSemantics``):
epoch e, mini-batch m, micro-batch u use the rollout's rows
``[(m * grad_accum + u) * micro_batch, ... + micro_batch)``. The run ends after ``max_steps``
optimizer steps, in the middle of a rollout if it does not divide.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from posttrain.data import task_records
from posttrain.errors import UserError
from posttrain.evaluation import reference_of
from posttrain.generation.logprobs import completion_logprobs, completion_logprobs_and_entropies
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
from posttrain.rl.rollout_config import GroupConfig, RolloutConfig
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


def reference_kl(logps: torch.Tensor, ref_logps: torch.Tensor | None) -> torch.Tensor:
    """Per-token k3 KL to the reference, or zeros when the run keeps none (beta = 0)."""
    return k3_kl(logps, ref_logps) if ref_logps is not None else torch.zeros_like(logps)


def sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GRPO's aggregation: each completion's mean over its tokens, then the mean over completions."""
    lengths = mask.sum(-1).clamp(min=1)
    return ((values * mask).sum(-1) / lengths).mean()


def token_stats(kl: torch.Tensor, clipped: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean KL and share of clipped tokens over the real tokens of a micro-batch."""
    tokens = mask.sum().clamp(min=1)
    return {"kl": (kl * mask).sum() / tokens, "clip_ratio": (clipped.float() * mask).sum() / tokens}


# --- token-level options (GroupConfig; each off by default) ----------------------------------------
# Each gives a per-token weight on the plugin's policy-gradient term or a per-token penalty; they are
# combined in a TokenShaping that the objective applies with ``shape_surrogate``.


def sampler_ratio(old_logps: torch.Tensor, sample_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w = pi_old(trainer) / pi_sampler per token, 1 off the mask (no grad: both sides are fixed)."""
    return torch.exp((old_logps - sample_logps).detach() * mask)


def truncated_is_weights(
    old_logps: torch.Tensor, sample_logps: torch.Tensor, mask: torch.Tensor, cap: float
) -> torch.Tensor:
    """TIS (Yao et al. 2025): min(w, C). C = inf gives the plain ratio; equal log-probs give 1.

    Log-ratio log 3 with C = 2 gives 2; log-ratio log 0.5 gives 0.5.
    """
    return torch.clamp(sampler_ratio(old_logps, sample_logps, mask), max=cap)


def masked_is_weights(
    old_logps: torch.Tensor, sample_logps: torch.Tensor, mask: torch.Tensor, cap: float
) -> torch.Tensor:
    """MIS (arXiv 2510.18855): w where w <= C, 0 where w > C (the token is dropped).

    Log-ratio log 3 with C = 2 gives 0; log-ratio log 0.5 gives 0.5.
    """
    ratio = sampler_ratio(old_logps, sample_logps, mask)
    return ratio.masked_fill(ratio > cap, 0.0)


def top_entropy_mask(entropies: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """1 on real tokens whose entropy is >= the (1 - fraction) quantile of the real tokens' entropies
    (linear interpolation, torch.quantile), else 0 (arXiv 2506.01939, J_HighEnt's indicator I[H >= tau]).

    fraction = 1 keeps every real token. Entropies [0.1, 0.5, 0.9, 1.3] with fraction 0.5: the 0.5
    quantile is 0.7, so the last two are kept.
    """
    real = mask.bool()
    if not real.any():
        return torch.zeros_like(mask)
    threshold = torch.quantile(entropies.detach()[real], 1 - fraction)  # in their dtype: rho = 1 keeps the min
    return ((entropies.detach() >= threshold) & real).to(mask.dtype)


def token_covariance(logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cov per token (arXiv 2505.22617, §4): (log pi - mean log pi)(A - mean A), means over the real
    tokens of the batch; 0 off the mask, no grad. ``advantages`` (N,) or (N, C)."""
    advantages = advantages.expand_as(logps) if advantages.dim() == 2 else advantages[:, None].expand_as(logps)
    real = mask.bool()
    tokens = mask.sum().clamp(min=1)
    logps = logps.detach()
    centred_logps = logps - (logps * mask).sum() / tokens
    centred_advantages = advantages - (advantages * mask).sum() / tokens
    return torch.where(real, centred_logps * centred_advantages, torch.zeros_like(logps))


def top_covariance_mask(covariance: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """1 on the floor(fraction * real tokens) real tokens of highest covariance (KL-Cov's selection), else 0.

    A fraction too small to select one token selects none (the plain loss).
    """
    real = mask.bool()
    count = int(fraction * int(real.sum()))
    selected = torch.zeros_like(mask)
    if count == 0:
        return selected
    scores = covariance.masked_fill(~real, float("-inf")).reshape(-1)
    selected.view(-1)[torch.topk(scores, count).indices] = 1
    return selected


def kl_cov_penalty(logps: torch.Tensor, old_logps: torch.Tensor, selected: torch.Tensor, coef: float) -> torch.Tensor:
    """KL-Cov's per-token penalty (arXiv 2505.22617, §4): coef * |log pi - log pi_old| on the selected
    tokens, 0 elsewhere; grad flows through ``logps``. Zero (and zero gradient) when pi = pi_old."""
    return coef * (logps - old_logps).abs() * selected


def clip_cov_keep(
    covariance: torch.Tensor,
    mask: torch.Tensor,
    fraction: float,
    lower: float,
    upper: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Clip-Cov (arXiv 2505.22617, §4): 0 on floor(fraction * real tokens) tokens drawn at random among
    the real tokens with lower < Cov < upper (their policy gradient is cut), 1 elsewhere.

    Fewer candidates than the count: all of them. A fraction too small to draw one token: all ones.
    """
    real = mask.bool()
    count = int(fraction * int(real.sum()))
    keep = torch.ones_like(mask)
    candidates = torch.nonzero((real & (covariance > lower) & (covariance < upper)).reshape(-1)).squeeze(-1)
    if count == 0 or candidates.numel() == 0:
        return keep
    order = torch.randperm(candidates.numel(), generator=generator, device="cpu").to(candidates.device)
    keep.view(-1)[candidates[order[:count]]] = 0
    return keep


@dataclass
class TokenShaping:
    """What the token-level options do to one micro-batch: ``weights`` (N, C) multiply each token's
    policy-gradient term (no grad), ``penalty`` (N, C) is subtracted from it."""

    weights: torch.Tensor
    penalty: torch.Tensor
    stats: dict[str, torch.Tensor]


def shape_surrogate(surrogate: torch.Tensor, shaping: TokenShaping | None) -> torch.Tensor:
    """The per-token objective after the options: surrogate * weights - penalty (unchanged without options)."""
    if shaping is None:
        return surrogate
    return surrogate * shaping.weights - shaping.penalty


def clipped_token_objective(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    beta: float = 0.0,
    shaping: TokenShaping | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The per-token term the PPO-clip group losses share, (N, C): the clipped surrogate, reweighted by
    the token options, minus beta * k3 KL; with the micro-batch's KL and clip stats. ``advantages`` is
    (N,) (one per completion) or (N, C) (per token). Each loss then applies its own normaliser."""
    per_token_advantages = advantages[:, None] if advantages.dim() == 1 else advantages
    surrogate, clipped = clipped_surrogate(logps, old_logps, per_token_advantages, eps_low, eps_high)
    kl = reference_kl(logps, ref_logps)
    return shape_surrogate(surrogate, shaping) - beta * kl, token_stats(kl, clipped, mask)


# GRPO's loss (DeepSeekMath arXiv:2402.03300, Eq. 3-4), used by the grpo and ttrl plugins.


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    beta: float,
    shaping: TokenShaping | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-J_GRPO (Eq. 3): per-token clipped surrogate minus beta * k3 KL, mean over each completion's
    tokens, then over completions. logps/old/ref/mask (N, C); advantages (N,). ``shaping`` (the
    token-level options above) reweights the surrogate per token; the KL term and the
    1/|o_i| normalisation stay as they are."""
    per_token, stats = clipped_token_objective(
        logps, old_logps, ref_logps, advantages, mask, epsilon, epsilon, beta, shaping
    )
    return -sequence_mean(per_token, mask), stats


IS_WEIGHTS = {"tis": truncated_is_weights, "mis": masked_is_weights}


def shaping_enabled(cfg) -> bool:
    """Whether any token-level option of ``GroupConfig`` is on (a plain RolloutConfig has none)."""
    if not isinstance(cfg, GroupConfig):
        return False
    return (
        cfg.sampler_correction != "off"
        or cfg.top_entropy_fraction < 1
        or cfg.kl_cov_fraction > 0
        or cfg.clip_cov_fraction > 0
    )


def token_shaping(
    cfg: GroupConfig,
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    sample_logps: torch.Tensor | None,
    entropies: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
) -> TokenShaping:
    """The options of ``cfg`` on one micro-batch: sampler-correction weights times the high-entropy
    and Clip-Cov masks, and the KL-Cov penalty. Stats: the mean weight and the share of tokens each
    option keeps or selects. ``generator`` draws Clip-Cov's tokens."""
    weights = torch.ones_like(logps).detach()
    stats: dict[str, torch.Tensor] = {}
    tokens = mask.sum().clamp(min=1)
    if cfg.sampler_correction != "off":
        correction = IS_WEIGHTS[cfg.sampler_correction](old_logps, sample_logps, mask, cfg.sampler_ratio_cap)
        weights = weights * correction
        stats["sampler_weight"] = (correction * mask).sum() / tokens
    if cfg.top_entropy_fraction < 1:
        kept = top_entropy_mask(entropies, mask, cfg.top_entropy_fraction)
        weights = weights * kept
        stats["entropy_kept"] = kept.sum() / tokens
        stats["entropy"] = (entropies * mask).sum() / tokens
    if cfg.clip_cov_fraction > 0:
        covariance = token_covariance(logps, advantages, mask)
        keep = clip_cov_keep(covariance, mask, cfg.clip_cov_fraction, cfg.clip_cov_lower, cfg.clip_cov_upper, generator)
        weights = weights * keep
        stats["clip_cov_cut"] = ((1 - keep) * mask).sum() / tokens
    penalty = torch.zeros_like(logps)
    if cfg.kl_cov_fraction > 0:
        selected = top_covariance_mask(token_covariance(logps, advantages, mask), mask, cfg.kl_cov_fraction)
        penalty = kl_cov_penalty(logps, old_logps, selected, cfg.kl_cov_coef)
        stats["kl_cov_selected"] = selected.sum() / tokens
    return TokenShaping(weights=weights, penalty=penalty, stats=stats)


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

# Clip-Cov's generator for micro-batch d of a run with seed s is seeded with s * this + d.
CLIP_COV_SEED_STRIDE = 1_000_003

# Refill batches of a rollout (DAPO's dynamic sampling) use prompt batch index + round * this.
REFILL_STRIDE = 1_000_003


def check_options(cfg, ctx: RunContext) -> None:
    """Refuse option combinations that cannot run, before any model is loaded."""
    if isinstance(cfg, GroupConfig) and cfg.top_entropy_fraction < 1 and ctx.logit_chunk_size:
        raise UserError(
            f"--logit-chunk-size {ctx.logit_chunk_size}: top_entropy_fraction={cfg.top_entropy_fraction} needs "
            "each token's entropy, hence the full logits; drop --logit-chunk-size or set top_entropy_fraction=1"
        )


def standardised_advantages(std_epsilon: float) -> Callable[[Rollout], torch.Tensor]:
    """GRPO's outcome advantages of a rollout, one per completion: ``group_advantages`` over each
    prompt's G rewards, flattened."""
    return lambda rollout: group_advantages(rollout.grouped(rollout.rewards), std_epsilon).reshape(-1)


def train_with_group_advantages(
    cfg, ctx: RunContext, name: str, loss: Callable, *loss_args, **rollout_options
) -> RunResult:
    """``train_group_policy`` with GRPO's standardised advantages (``cfg.std_epsilon``), the KL
    reference kept when ``cfg.beta`` > 0, and the token loss ``loss(logps, old, ref, adv, mask,
    *loss_args, **options)`` (``options``: ``shaping`` when a GroupConfig option is on).
    ``rollout_options``: ``make_rollout`` and ``score`` of ``train_group_policy``."""

    def objective(sampling: Sampling) -> Objective:
        return lambda logps, old, ref, adv, mask, **options: loss(logps, old, ref, adv, mask, *loss_args, **options)

    advantages = standardised_advantages(cfg.std_epsilon)
    return train_group_policy(cfg, ctx, name, advantages, objective, beta=cfg.beta, **rollout_options)


def train_group_policy(
    cfg: RolloutConfig,
    ctx: RunContext,
    name: str,
    advantages: Callable[[Rollout], torch.Tensor],
    objective: Callable[[Sampling], Objective],
    beta: float = 0.0,
    make_rollout: Callable[..., Rollout] | None = None,
    score: Callable[[Rollout], Rollout] | None = None,
) -> RunResult:
    """Sample -> score -> old/ref log-probs -> advantages, then ``objective`` on micro-batches.

    ``advantages(rollout) -> (N,)``; ``objective(sampling)`` returns the loss function
    ``(logps, old_logps, ref_logps, advantages, mask) -> (loss, stats)``; ``make_rollout(prompts_for,
    sample)`` replaces plain sampling + scoring of ``prompts_for(0)`` (DAPO's dynamic sampling:
    ``prompts_for(k)`` is the k-th refill batch, ``sample(prompts)`` a scored rollout). With a
    ``GroupConfig`` option on, the loss function is also given ``shaping=TokenShaping`` (``token_shaping``).
    ``score(rollout)`` replaces the config's rewards on training rollouts (TTRL's label-free
    majority vote); held-out evaluation keeps them, and skips the sampled reward when no held-out
    record has a reference answer (a prompt-only dataset).
    """
    shaped = shaping_enabled(cfg)
    check_options(cfg, ctx)
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    reference = frozen_reference(policy) if beta > 0 else None
    train_records, heldout_records, source = task_records(ctx, "prompt", cfg.train_examples, cfg.eval_examples)
    embedded = ctx.dataset is None
    corrected = shaped and cfg.sampler_correction != "off"
    semantics = BatchSemantics.from_config(cfg)
    sampling = sampling_from_config(cfg, embedded, ctx.device)
    if corrected and sampling.backend != "native":
        raise UserError(
            f"--set sampler_correction={cfg.sampler_correction}: needs the sampler's log-probs, which only the "
            f"native backend records (this run samples with backend={sampling.backend}; set backend=native)"
        )
    reward_fn = reward_from_config(cfg, ctx.device)
    engine = VLLMEngine(model_source(ctx)) if sampling.backend == "vllm" else None
    print(f"{name}: {semantics.describe()}")
    counts = parameter_counts(policy)
    ctx.log(0, counts)
    eval_tokens = cfg.max_new_tokens or (8 if embedded else 128)
    eval_reward = reward_fn if score is None or any(reference_of(r) is not None for r in heldout_records) else None
    before = evaluate_policy(policy, tokenizer, heldout_records, eval_reward, sampling, eval_tokens)
    loss_of = objective(sampling)

    def sample(prompts: list[dict]) -> Rollout:
        rollout = sample_completions(policy, tokenizer, prompts, cfg.num_generations, sampling, engine)
        return score(rollout) if score else score_rollout(rollout, reward_fn)

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
            trust_sampler=not corrected,
        )
        rollout.advantages = advantages(rollout)
        return rollout

    def micro_batch_loss(rollout: Rollout, rows: slice, draw: int) -> tuple[torch.Tensor, dict]:
        if shaped:
            return shaped_micro_batch_loss(rollout, rows, draw)
        logps = completion_logprobs(policy, rollout, rows, sampling.temperature)
        old = rollout.old_logps[rows] if rollout.old_logps is not None else logps.detach()
        ref = rollout.ref_logps[rows] if rollout.ref_logps is not None else None
        loss, stats = loss_of(logps, old, ref, rollout.advantages[rows], rollout.completion_mask[rows])
        return loss, micro_batch_metrics(rollout, rows, stats)

    def shaped_micro_batch_loss(rollout: Rollout, rows: slice, draw: int) -> tuple[torch.Tensor, dict]:
        """The same step with GroupConfig's token-level options (``token_shaping``) passed to the objective.
        Clip-Cov's draws depend only on the seed and the micro-batch's index ``draw``, so a resumed run
        repeats them."""
        entropies = None
        if cfg.top_entropy_fraction < 1:
            logps, entropies = completion_logprobs_and_entropies(policy, rollout, rows, sampling.temperature)
        else:
            logps = completion_logprobs(policy, rollout, rows, sampling.temperature)
        old = rollout.old_logps[rows] if rollout.old_logps is not None else logps.detach()
        ref = rollout.ref_logps[rows] if rollout.ref_logps is not None else None
        sample = rollout.sample_logps[rows] if rollout.sample_logps is not None else None
        mask, adv = rollout.completion_mask[rows], rollout.advantages[rows]
        generator = torch.Generator().manual_seed(ctx.seed * CLIP_COV_SEED_STRIDE + draw)
        shaping = token_shaping(cfg, logps, old, sample, entropies, adv, mask, generator)
        loss, stats = loss_of(logps, old, ref, adv, mask, shaping=shaping)
        return loss, micro_batch_metrics(rollout, rows, {**stats, **shaping.stats})

    def micro_batch_metrics(rollout: Rollout, rows: slice, stats: dict) -> dict:
        metrics = {**rollout_metrics(rollout), **{k: float(v.detach()) for k, v in stats.items()}}
        metrics["tokens"] = int(rollout.attention_mask[rows].sum())
        return metrics

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
                            rows = slice(first, first + semantics.micro_batch)
                            trainer.step(*micro_batch_loss(rollout, rows, step * semantics.grad_accum + micro))
    loop = trainer.result
    after = evaluate_policy(policy, tokenizer, heldout_records, eval_reward, sampling, eval_tokens)
    timing = {
        "generate_seconds": round(generate_seconds, 2),
        "generate_share": round(generate_seconds / max(loop.seconds, 1e-9), 3),
    }
    return finish(
        ctx, policy, tokenizer, loop, before, after, data=source, batch=semantics.describe(), **timing, **counts
    )
