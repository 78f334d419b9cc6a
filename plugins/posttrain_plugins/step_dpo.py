"""Step-DPO: DPO on single reasoning steps, after a shared correct prefix.

Paper: Lai, Tian, Chen, Li, Yuan, Liu, Jia, 2024, "Step-DPO: Step-wise Preference Optimization for
Long-chain Reasoning of LLMs", arXiv:2406.18629. Data pipeline (§3.2): collect wrong solutions
from the model, locate the first erroneous step, and rectify it by sampling continuations of the
correct prefix from the model itself until one step is correct (in-distribution chosen steps).
Loss (Eq. 3): DPO on the step, −log σ(β log π(s_w|x,s_<k)/π_ref(s_w|x,s_<k) − β log π(s_l|·)/π_ref(s_l|·)).
Catalog entry: catalog/methods/step-dpo.yaml.

    catalog run step-dpo                                   # embedded reasoning model, self-generated pairs
    catalog run step-dpo --set pair_source=task            # the task's synthetic wrong steps instead
    catalog run step-dpo --model ./policy --dataset step_pairs.jsonl --set beta=0.4

Data: with ``--dataset``, preference records whose ``prompt`` is the problem followed by the
correct prefix and whose ``chosen`` / ``rejected`` are single steps.

Deviations from the paper:
1. The first wrong step is located with the embedded task's exact step checker (the paper uses
   GPT-4 or humans); with ``--dataset`` the pairs come ready-made.
2. A problem whose wrong step the model cannot rectify within ``rectify_samples`` tries gives no
   pair (the paper keeps sampling); nothing from the ground truth is used with ``pair_source=self``.
3. AdamW with warmup and cosine decay counted in optimizer steps; sizes are set for the embedded
   tiny model (the paper trains 8 epochs at lr 5e-7 on about 10K pairs). β = 0.5 and lr 5e-5 were
   chosen on the embedded model: β = 0.1 at lr 1e-4 also raised held-out step preference accuracy
   but lowered greedy exact match (likelihood displacement).
4. The reference model is the policy at the start (as ``dpo``); pairs are collected once, before
   training (the paper's pipeline is offline too).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Literal

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult, outcomes
from posttrain.data import batch_indices, task_records, tokenize_preference
from posttrain.generation.decode import generate
from posttrain.hf import frozen_reference, load_policy, lora_settings, parameter_counts, reference_mode
from posttrain.training.config import TrainingConfig
from posttrain.training.preference import (
    PairLogps,
    dataset_logps,
    dpo_loss,
    pair_batch,
    pair_logps,
    preference_accuracy,
    reward_metrics,
    reward_pair,
)
from posttrain.training.trainer import finish, loop_settings, train_loop


class Config(TrainingConfig):
    beta: float = Field(
        0.5,
        gt=0,
        description="β of the step-level DPO loss (0.5 chosen on the embedded model: 0.1 at lr 1e-4 cut exact match).",
    )
    pair_source: Literal["self", "task"] = Field(
        "self",
        description="Step pairs: the paper's pipeline on the model's own samples (self), or the task's synthetic ones.",
    )
    samples_per_problem: int = Field(4, ge=1, description="Solutions sampled per problem to collect errors.")
    rectify_samples: int = Field(
        8, ge=1, description="Continuations of the correct prefix sampled to find a correct step."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of error collection and rectification.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate (paper: 5e-7 on 7-72B models).")
    max_steps: int = Field(150, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Step pairs per micro-batch.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    train_examples: int = Field(1000, ge=1, description="Problems sampled for error collection (embedded task).")
    eval_examples: int = Field(300, ge=1, description="Held-out step pairs and problems.")


# --- pair construction (paper §3.2) ---------------------------------------------------------------


def first_wrong_step(labels: list[bool]) -> int | None:
    """Index of the first step the checker marks wrong (the step to localise), None if all are right."""
    return labels.index(False) if False in labels else None


def step_pair(prefix: list[str], wrong_step: str, candidate_steps: list[str], is_right) -> tuple[str, str] | None:
    """(chosen, rejected) for one located error: the first candidate next step that ``is_right``
    accepts and that differs from the wrong step; None when no candidate rectifies it."""
    for step in candidate_steps:
        if step and step != wrong_step and is_right(prefix + [step]):
            return step, wrong_step
    return None


# --- run ------------------------------------------------------------------------------------------


def self_generated_pairs(policy, tokenizer, cfg: Config, ctx: RunContext) -> tuple[list[dict], dict]:
    """Sample solutions, find each wrong one's first error, rectify it with the model's own step."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import reasoning_records, split_steps, step_labels

    problems, _, _ = reasoning_records("prompt", cfg.train_examples, 1, ctx.seed)
    torch.manual_seed(ctx.seed)
    n = cfg.samples_per_problem
    texts = generate(
        policy, tokenizer, [p["prompt"] for p in problems for _ in range(n)], 16, 256, temperature=cfg.temperature
    )
    located, seen = [], set()
    for i, text in enumerate(texts):
        problem, steps = problems[i // n], split_steps(text)
        k = first_wrong_step(step_labels(tuple(problem["numbers"]), steps, task.digits))
        if k is not None and (problem["prompt"], k, steps[k]) not in seen:
            seen.add((problem["prompt"], k, steps[k]))
            located.append((problem, steps[:k], steps[k]))
    m = cfg.rectify_samples
    prefixes = [p["prompt"] + "".join(prefix) for p, prefix, _ in located]
    continuations = generate(
        policy, tokenizer, [x for x in prefixes for _ in range(m)], 8, 256, temperature=cfg.temperature
    )
    pairs = []
    for j, (problem, prefix, wrong) in enumerate(located):
        candidates = [(split_steps(c) or [""])[0] for c in continuations[j * m : (j + 1) * m]]
        nums = tuple(problem["numbers"])
        found = step_pair(prefix, wrong, candidates, lambda s, nums=nums: all(step_labels(nums, s, task.digits)))
        if found is not None:
            pairs.append({"prompt": prefixes[j], "chosen": found[0], "rejected": found[1]})
    stats = {
        "pairs/solutions": len(texts),
        "pairs/wrong_solutions": len(located),
        "pairs/rectified": len(pairs),
    }
    return pairs, stats


def evaluate(policy, tokenizer, pairs, ref: PairLogps, problems, cfg: Config, check) -> dict:
    logps = dataset_logps(policy, pairs, tokenizer.pad_token_id, str(next(policy.parameters()).device))
    c_rewards, r_rewards = reward_pair(logps.chosen, logps.rejected, ref.chosen, ref.rejected, cfg.beta)
    out = {
        "step_preference_accuracy": preference_accuracy(c_rewards, r_rewards).item(),
        "reward_margin": (c_rewards - r_rewards).mean().item(),
        "logprob_step_accuracy": preference_accuracy(logps.chosen, logps.rejected).item(),
    }
    if problems:
        texts = generate(policy, tokenizer, [p["prompt"] for p in problems], cfg.max_new_tokens or 16)
        correct = [check(t, p) for t, p in zip(texts, problems, strict=True)]
        outcomes.record("exact_match", [p["prompt"] for p in problems], correct)
        out["exact_match"] = sum(correct) / len(problems)
    return out


def run(cfg: Config, ctx: RunContext) -> RunResult:
    embedded = ctx.dataset is None
    if embedded and ctx.model is None:
        from posttrain.embedded.reasoning import EMBEDDED_REASONING_MODEL

        ctx = dataclasses.replace(ctx, model=EMBEDDED_REASONING_MODEL)
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    stats: dict = {}
    if embedded:
        from posttrain.embedded.reasoning import is_correct, reasoning_records

        _, heldout_records, source = reasoning_records("step-preference", 1, cfg.eval_examples, ctx.seed)
        _, problems, _ = reasoning_records("prompt", 1, cfg.eval_examples, ctx.seed)
        if cfg.pair_source == "self":
            train_records, stats = self_generated_pairs(policy, tokenizer, cfg, ctx)
        else:
            train_records = reasoning_records("step-preference", cfg.train_examples, 1, ctx.seed)[0]
        check = lambda text, record: is_correct(text, record["answer"])  # noqa: E731
    else:
        train_records, heldout_records, source = task_records(ctx, "preference", cfg.train_examples, cfg.eval_examples)
        problems, check = [], None
    if not train_records:
        from posttrain.errors import UserError

        raise UserError("step-dpo: no step pair could be built (raise samples_per_problem or rectify_samples)")
    ctx.log(0, {**stats, "pairs/train": len(train_records)})
    pad = tokenizer.pad_token_id
    train = [tokenize_preference(r, tokenizer, cfg.max_length) for r in train_records]
    heldout = [tokenize_preference(r, tokenizer, cfg.max_length) for r in heldout_records]
    random.Random(ctx.seed).shuffle(train)
    counts = parameter_counts(policy)
    ctx.log(0, counts)
    with reference_mode(policy, frozen_reference(policy)) as ref:  # the policy as loaded: sampling left it unchanged
        ref_train = dataset_logps(ref, train, pad, ctx.device)
        ref_heldout = dataset_logps(ref, heldout, pad, ctx.device)
    del ref  # frees the frozen copy: training holds one model, not two
    before = evaluate(policy, tokenizer, heldout, ref_heldout, problems, cfg, check)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pair_batch([train[i] for i in idx], pad, ctx.device)
        pol, ref = pair_logps(policy, batch), ref_train[idx]
        losses, c_rew, r_rew = dpo_loss(pol.chosen, pol.rejected, ref.chosen, ref.rejected, cfg.beta)
        return losses.mean(), {**reward_metrics(c_rew, r_rew, pol), "tokens": int(batch["attention_mask"].sum())}

    loop = train_loop(policy, ctx, loop_settings(cfg), loss_fn, description=f"step-dpo on {source}")
    after = evaluate(policy, tokenizer, heldout, ref_heldout, problems, cfg, check)
    return finish(ctx, policy, tokenizer, loop, before, after, data=source, pairs=len(train), **stats, **counts)


plugin = Plugin(
    id="step-dpo",
    config=Config,
    run=run,
    summary="Step-DPO: DPO on the first wrong step against a correct one after a shared correct prefix.",
    smoke={
        "max_steps": 2,
        "train_examples": 12,
        "eval_examples": 4,
        "samples_per_problem": 2,
        "rectify_samples": 4,
        "batch_size": 8,
        "log_every": 1,
    },
)
