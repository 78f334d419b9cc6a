"""On-policy distillation with the per-token reverse KL as the advantage.

Sources: Lu and Thinking Machines Lab, 2025, "On-Policy Distillation" (blog post,
https://thinkingmachines.ai/blog/on-policy-distillation/); it is the on-policy case (λ = 1) of
Agarwal et al., 2024, "On-Policy Distillation of Language Models: Learning from Self-Generated
Mistakes", arXiv:2306.13649, with the reverse KL as the divergence. Catalog entry:
catalog/methods/on-policy-distillation.yaml.

    catalog run on-policy-distillation                 # embedded teacher -> embedded base student
    catalog run on-policy-distillation --model ./student --set teacher=./teacher --dataset prompts.jsonl

The student samples completions; the frozen teacher scores each sampled token with its log-prob;
each token's advantage is the negative one-sample reverse-KL estimate on that token (discount 0:
no credit from later tokens), and the update is the importance-weighted policy gradient:

    A_t = -(log pi_old(y_t) - log pi_T(y_t)),   loss = -(1 / sum |o|) sum_{i,t} (pi / pi_old)(y_t) sg(A_t).

Its expectation over the student's samples is the gradient of the sequence's reverse KL with the
future terms dropped. It differs from posttrain_plugins.gkd, which computes the full-vocabulary
generalized JSD on every position and mixes in dataset completions: here only the sampled token's
two log-probs are used (a teacher that exposes log-probs of given tokens suffices), the loss is an
RL loss in the group-RL recipe (posttrain.rl.group), and the task reward is only logged.

Deviations from the sources:
1. Learning rate, prompts per rollout, completions per prompt and step count are sized for the
   embedded tiny model (the post: Qwen3 students and teachers; no learning rate published for this
   loss). One optimizer step per 64-completion rollout, so the update is on-policy and the ratio is 1.
2. The log-probs of both models are taken at the sampling temperature (default 1, as the post's).
3. No KL to a reference: the teacher is the only anchor (beta > 0 would add GRPO's k3 KL).
4. The task's reward is computed and logged (rewards/exact-match) but never trains the student.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.logprobs import completion_logprobs
from posttrain.generation.sampler import Sampling
from posttrain.hf import load_tokenizer, model_source
from posttrain.rl.group import SMOKE, Objective, reference_kl, train_group_policy
from posttrain.rl.rollout import Rollout
from posttrain.rl.rollout_config import RolloutConfig
from posttrain.training.distill import load_teacher


class Config(RolloutConfig):
    teacher: str | None = Field(
        None, description="Teacher model id or folder (default: the embedded teacher; embedded-base: the base)."
    )
    learning_rate: float = Field(
        5e-5, gt=0, description="Peak learning rate of AdamW (sized for the embedded model, as the group-RL plugins')."
    )
    max_steps: int = Field(200, ge=1, description="Optimizer steps (1 per 64-completion rollout: on-policy).")
    beta: float = Field(
        0.0, ge=0, description="beta, coefficient of an optional k3 KL to the reference (sources: none)."
    )


# --- advantage and loss ----------------------------------------------------------------------------


def reverse_kl_advantage(student_logps: torch.Tensor, teacher_logps: torch.Tensor) -> torch.Tensor:
    """Per-token A_t = -(log pi_S(y_t) - log pi_T(y_t)), detached: the negative one-sample reverse KL.

    Student log-prob log 0.5, teacher log 0.25 -> A = -log 2 (the student over-weights y_t); equal -> 0.
    """
    return (teacher_logps - student_logps).detach()


def on_policy_distillation_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    teacher_logps: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-(1 / tokens) sum_t [(pi / pi_old) sg(A_t) - beta * k3 KL]; (N, C) inputs, A_t from old_logps.

    On-policy (logps == old_logps) the gradient of a token is -A_t grad log pi / tokens, and the
    mean of -A_t over the tokens is the sampled reverse KL(student || teacher) (logged as ``reverse_kl``).
    """
    advantages = reverse_kl_advantage(old_logps, teacher_logps)
    ratio = torch.exp(logps - old_logps)
    kl = reference_kl(logps, ref_logps)
    per_token = ratio * advantages - beta * kl
    tokens = mask.sum().clamp(min=1)
    loss = -(per_token * mask).sum() / tokens
    stats = {"reverse_kl": -(advantages * mask).sum() / tokens, "kl": (kl * mask).sum() / tokens}
    return loss, stats


# --- run ------------------------------------------------------------------------------------------


def teacher_scorer(teacher, micro_batch: int, temperature: float):
    """make_rollout for train_group_policy: sample and score as usual, then the teacher's log-probs of
    the sampled tokens, in micro-batches without gradients (kept on the rollout for the loss)."""

    def make_rollout(prompts_for, sample) -> Rollout:
        rollout = sample(prompts_for(0))
        with torch.no_grad():
            rows = [
                completion_logprobs(teacher, rollout, slice(start, start + micro_batch), temperature)
                for start in range(0, len(rollout), micro_batch)
            ]
        rollout.teacher_logps = torch.cat(rows)
        return rollout

    return make_rollout


def run(cfg: Config, ctx: RunContext) -> RunResult:
    student_tokenizer = load_tokenizer(model_source(ctx), ctx.trust_remote_code)
    teacher, _, teacher_source = load_teacher(ctx, cfg.teacher, student_tokenizer)
    print(f"on-policy-distillation: teacher {teacher_source}")

    # The recipe's per-row "advantages" slot carries the teacher's token log-probs: the loss turns
    # them into A_t with the log-probs of the policy that sampled (old_logps), known only there.
    def teacher_logps(rollout: Rollout) -> torch.Tensor:
        return rollout.teacher_logps

    def objective(sampling: Sampling) -> Objective:
        return lambda logps, old, ref, teacher_lp, mask: on_policy_distillation_loss(
            logps, old, ref, teacher_lp, mask, cfg.beta
        )

    make_rollout = teacher_scorer(teacher, cfg.batch_size, cfg.temperature)
    return train_group_policy(
        cfg, ctx, "on-policy-distillation", teacher_logps, objective, beta=cfg.beta, make_rollout=make_rollout
    )


plugin = Plugin(
    id="on-policy-distillation",
    config=Config,
    run=run,
    summary="On-policy distillation: student samples, teacher log-probs give a per-token reverse-KL advantage.",
    smoke=SMOKE,  # the embedded teacher: with the base as its own teacher every advantage is 0
)
