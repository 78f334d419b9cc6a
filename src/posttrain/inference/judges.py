"""Which judge a test-time method gets: its config (``prm``, ``reward_model``, ``scorer``,
``evaluator``) and the run (model, dataset, task) choose among a process reward model, an outcome
reward model, the embedded PRM, the embedded reasoning model's own verdicts (its ``V:`` verify
sub-skill) and the policy's likelihood. The judges themselves are loaded and run by
``posttrain.scoring.scorers``; this module only chooses, so it sits with the test-time recipe.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from posttrain.embedded.reasoning import verify_prompt
from posttrain.errors import UserError
from posttrain.inference.recipe import REASONING_MODEL, ComputeMeter, InferenceConfig, task_of
from posttrain.interface import RunContext
from posttrain.scoring.scorers import (
    EMBEDDED_PRM,
    attempt_logprobs,
    load_prm_scorer,
    load_prm_step_scorer,
    next_token_probs,
    reward_model_scorer,
)

# --- the embedded reasoning model's own verdicts ---------------------------------------------------


@torch.no_grad()
def verify_scores(model, tokenizer, prompts: Sequence[str], attempts: Sequence[str], batch_size: int = 256):
    """The reasoning model's own verdict P(y) / (P(y) + P(n)) on ``V:<problem><attempt>``: is the
    attempt (a full solution or a step prefix) correct so far? Its verify sub-skill, no labels."""
    out: list[float] = []
    for start in range(0, len(prompts), batch_size):
        queries = [
            verify_prompt(str(p), a)
            for p, a in zip(prompts[start : start + batch_size], attempts[start : start + batch_size], strict=True)
        ]
        probs = next_token_probs(model, tokenizer, queries, ["y", "n"])
        out += (probs[:, 0] / probs.sum(-1).clamp(min=1e-12)).tolist()
    return out


def verify_step_scores(model, tokenizer, prompts: Sequence[str], step_lists: Sequence[Sequence[str]]):
    """The reasoning model's own ``V:`` verdict on every step prefix: [[P(y | steps[:1]), ...], ...]."""
    owners = [i for i, steps in enumerate(step_lists) for _ in steps]
    prefixes = ["".join(steps[: k + 1]) for steps in step_lists for k in range(len(steps))]
    flat = verify_scores(model, tokenizer, [prompts[i] for i in owners], prefixes) if prefixes else []
    out: list[list[float]] = [[] for _ in step_lists]
    for i, v in zip(owners, flat, strict=True):
        out[i].append(v)
    return out


# --- which scorer a method gets ------------------------------------------------------------------


SCORERS = "auto|prm|verifier|likelihood"


def embedded_prm_applies(cfg: InferenceConfig, ctx: RunContext) -> bool:
    """The embedded PRM is the default scorer only on the embedded reasoning task with the embedded
    reasoning model (never silently on a user's --model / --dataset)."""
    return ctx.dataset is None and ctx.model in (None, REASONING_MODEL) and task_of(cfg, ctx) == "reasoning"


def attempt_scorer(cfg: InferenceConfig, ctx: RunContext, model, tokenizer, meter: ComputeMeter | None = None):
    """(score(prompts, attempts) -> list[float], name) of a search or selection method, in order:
    ``prm`` (a PRM folder or ``embedded``), ``reward_model`` (an ORM), ``scorer=prm`` (the embedded
    PRM), ``scorer=auto`` on the embedded reasoning task (the embedded PRM), else ``make_scorer``
    (likelihood, or verifier). The task's checker is never a scorer. With ``meter``, the PRM's
    forward passes are counted too."""
    prm = getattr(cfg, "prm", None)
    reward_model = getattr(cfg, "reward_model", None)
    kind = getattr(cfg, "scorer", "auto")
    delimiter = getattr(cfg, "step_delimiter", ";")
    if prm:
        return load_prm_scorer(prm, ctx.device, delimiter, meter=meter), f"prm:{prm}"
    if reward_model:
        return reward_model_scorer(reward_model, ctx.device), "reward_model"
    if kind == "prm" or (kind == "auto" and embedded_prm_applies(cfg, ctx)):
        return load_prm_scorer(EMBEDDED_PRM, ctx.device, delimiter, meter=meter), "prm:embedded"
    name = "likelihood" if kind == "auto" else kind
    return make_scorer(kind, task_of(cfg, ctx), model, tokenizer), name


def evaluator_scorer(
    evaluator: str, prm: str | None, ctx: RunContext, model, tokenizer, meter: ComputeMeter | None = None
):
    """(score(prompts, attempts) -> P(correct) list, name) of a method whose judge is selectable:
    ``self`` (the model's own ``V:`` verdicts) or ``prm`` (``prm``, default the embedded PRM).
    With ``meter``, the PRM's forward passes are counted too (the ``V:`` verdicts are the model's
    own calls, which the meter watching the model already counts)."""
    if evaluator == "self":
        return (lambda prompts, attempts: verify_scores(model, tokenizer, prompts, attempts)), "self"
    path = prm or EMBEDDED_PRM
    return load_prm_scorer(path, ctx.device, ";", meter=meter), f"prm:{path}"


def evaluator_step_scorer(
    evaluator: str, prm: str | None, ctx: RunContext, model, tokenizer, meter: ComputeMeter | None = None
):
    """(step_scores(prompts, step_lists) -> per-step P(correct so far), name): ``evaluator_scorer``
    step by step, for feedback that names the first doubtful step. ``self``: the model's ``V:``
    verdict on each step prefix; ``prm``: the PRM's score of each step (its forward passes counted
    with ``meter``)."""
    if evaluator == "self":
        return (lambda prompts, step_lists: verify_step_scores(model, tokenizer, prompts, step_lists)), "self"
    path = prm or EMBEDDED_PRM
    return load_prm_step_scorer(path, ctx.device, meter), f"prm:{path}"


def make_scorer(kind: str, task: str, model, tokenizer):
    """A function (prompts, attempts) -> scores of the policy itself, higher = better (reward models
    and PRMs: ``attempt_scorer``). The task's checker is never one.

    auto / likelihood: the policy's mean log-likelihood of the attempt. verifier: the embedded
    reasoning model's verify sub-skill (its base.json reports 53.5% verification accuracy, near
    chance, so searches that trust it do worse than greedy; see the method pages)."""
    if kind == "verifier":
        if task != "reasoning":
            raise UserError("scorer=verifier: needs the embedded reasoning task (its V: sub-skill); use likelihood")
        return lambda prompts, attempts: verify_scores(model, tokenizer, prompts, attempts)
    return lambda prompts, attempts: attempt_logprobs(model, tokenizer, prompts, attempts)
