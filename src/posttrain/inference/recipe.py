"""The test-time (inference) recipe: what every search or sampling plugin does around its own rule.
A plugin calls ``setup`` (model, prompt set, compute meter, greedy baseline), runs its selection or
search rule (which stays in the plugin file) with the judge ``attempt_scorer`` / ``evaluator_scorer``
chooses for it, and returns ``finish(...)``.

Sampling is ``posttrain.generation.decode.sample``; the judges (reward models, PRMs, the policy's
likelihood) are loaded and run by ``posttrain.scoring.scorers``, and chosen here (``attempt_scorer``);
budget sweeps are ``posttrain.runs.sweeps``.

- ``InferenceConfig``: the fields every inference plugin shares (prompts, tokens, batch size,
  sampling temperature). Fields marked ``json_schema_extra={"sweep": True}`` (``SWEEP``) are
  budgets: ``catalog run best-of-n --set n=1,4,16,64`` runs the method once per value
  (``posttrain.runs.sweeps``) and writes ``sweep.json`` + ``sweep.png`` (accuracy against generated
  tokens per problem).
- ``load_problems``: the embedded task's held-out prompts, or any JSONL with ``prompt`` and an
  optional ``answer`` (``--dataset``).
- ``ComputeMeter``: generated tokens, forward passes (model calls) and token positions processed,
  counted by a forward hook on the model, and wall time; every method reports it.
- ``finish``: checks each prediction (the checker only measures; no search uses it), writes
  ``predictions.jsonl`` and returns ``before`` (greedy decoding) and ``after`` (the method).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from posttrain import outcomes
from posttrain.console import announce
from posttrain.data import chat_text
from posttrain.embedded.reasoning import verify_prompt
from posttrain.errors import UserError
from posttrain.files import finite_json
from posttrain.generation.decode import Completions, sample
from posttrain.interface import RunContext, RunResult
from posttrain.scoring.scorers import (
    EMBEDDED_PRM,
    attempt_logprobs,
    load_prm_scorer,
    load_prm_step_scorer,
    next_token_probs,
    reward_model_scorer,
)

EMBEDDED_EVAL_SEED = 1234  # the held-out prompts every method (and every trainer's eval) is measured on
SWEEP = {"sweep": True}


class InferenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    eval_examples: int = Field(
        200, ge=1, description="Problems to solve: the embedded held-out prompts or the first N records of --dataset."
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="Tokens per completion (default 8 on the embedded addition task, else 128)."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature T of the sampled completions.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (1: plain sampling).")
    batch_size: int = Field(512, ge=1, description="Sequences per batched generate call.")
    baseline: bool = Field(True, description="Also run greedy decoding and report it as `before`.")


class StepSearchConfig(InferenceConfig):
    """Fields shared by the methods that search over reasoning steps (the scratchpad task by default)."""

    task: str = Field(
        "reasoning", pattern="^(addition|reasoning)$", description="Embedded task when no --dataset is given."
    )
    temperature: float = Field(0.8, gt=0, description="Sampling temperature T of proposed steps.")
    scorer: str = Field(
        "auto",
        pattern="^(auto|prm|verifier|likelihood)$",
        description="PRM of the partial solutions when neither prm nor reward_model is given: auto = the embedded PRM on the embedded reasoning task (the policy's mean log-likelihood with your own --model/--dataset), prm = the embedded PRM, likelihood, or verifier (the reasoning model's V: sub-skill).",
    )
    reward_model: str | None = Field(None, description="A reward model (HF id or folder) to score attempts instead.")
    prm: str | None = Field(
        None,
        description="A process reward model scoring each attempt by its last step (Snell 2024): a folder from the prm plugin, or 'embedded' (the embedded reasoning task's PRM).",
    )
    step_delimiter: str = Field(";", description="Text that ends a reasoning step (';' on the scratchpad task).")
    max_steps: int = Field(8, ge=1, description="Most steps per solution.")
    max_step_tokens: int = Field(8, ge=1, description="Most tokens per step.")


# --- problems -------------------------------------------------------------------------------------


@dataclass
class Problems:
    """The prompts a method solves, with a checker that only measures (never guides a search)."""

    records: list[dict[str, Any]]
    source: str
    check: Callable[[str, dict], bool | None]
    default_new_tokens: int


REASONING_MODEL = "embedded:reasoning"  # --model value of the embedded scratchpad reasoning model


def load_problems(ctx: RunContext, n: int, task: str = "addition") -> Problems:
    """The embedded task's held-out prompts (``task``: addition or reasoning, the scratchpad task),
    or a JSONL with ``prompt`` (+ optional ``answer``)."""
    from posttrain.evaluation import reference_of, score

    def check(completion: str, record: dict) -> bool | None:
        return score(completion, record) if reference_of(record) is not None else None

    if ctx.dataset is None and task == "reasoning":
        from posttrain.embedded import reasoning

        def check_scratchpad(completion: str, record: dict) -> bool:
            return reasoning.is_correct(completion, record["answer"])

        records = reasoning.DEFAULT_REASONING_TASK.prompts(n, EMBEDDED_EVAL_SEED, "test")
        return Problems(records, reasoning.DEFAULT_REASONING_TASK.name, check_scratchpad, 24)
    if ctx.dataset is None:
        from posttrain.embedded.task import DEFAULT_TASK

        return Problems(DEFAULT_TASK.prompts(n, EMBEDDED_EVAL_SEED, "test"), DEFAULT_TASK.name, check, 8)
    from posttrain.data import check_format, has_split, load_records

    split = "test" if has_split(ctx.dataset, "test") else "train"
    records, source = load_records(ctx.dataset, split)
    check_format(records, "prompt", source)
    for r in records:
        if "answer" in r and not isinstance(r["answer"], str | int | float):
            raise UserError(f"{source}:{r.get('_line', '?')}: 'answer' must be a string or number")
    return Problems(records[:n], source, check, 128)


def load_model(ctx: RunContext, source: str | None = None):
    """(model, tokenizer) in eval mode: --model, else ``source`` (an embedded base folder), else the
    embedded addition base model."""
    from posttrain.hf import load_policy

    if ctx.model is None and source is not None:
        from dataclasses import replace

        ctx = replace(ctx, model=source)
    model, tokenizer = load_policy(ctx)
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


# --- compute ---------------------------------------------------------------------------------------


class ComputeMeter:
    """Counts model calls and token positions through a forward hook, plus generated tokens and time."""

    def __init__(self, *models):
        self.forward_passes = 0
        self.forward_tokens = 0
        self.generated_tokens = 0
        self.start = time.perf_counter()
        self._hooks = [m.register_forward_hook(self._hook, with_kwargs=True) for m in models if m is not None]

    def watch(self, model) -> None:
        """Count another model's calls too (a reward model or PRM scoring the attempts)."""
        self._hooks.append(model.register_forward_hook(self._hook, with_kwargs=True))

    def _hook(self, module, args, kwargs, output) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.forward_passes += 1
        if isinstance(ids, torch.Tensor):
            self.forward_tokens += int(ids.numel())
        elif isinstance(kwargs.get("inputs_embeds"), torch.Tensor):
            self.forward_tokens += int(kwargs["inputs_embeds"].shape[0] * kwargs["inputs_embeds"].shape[1])

    def reset(self) -> None:
        """Zero the counts and restart the clock, still watching the same models (a phase reported apart)."""
        self.forward_passes = self.forward_tokens = self.generated_tokens = 0
        self.start = time.perf_counter()

    def snapshot(self, problems: int) -> dict[str, float]:
        seconds = time.perf_counter() - self.start
        return {
            "generated_tokens": self.generated_tokens,
            "generated_tokens_per_problem": self.generated_tokens / max(problems, 1),
            "forward_passes": self.forward_passes,
            "forward_tokens_per_problem": self.forward_tokens / max(problems, 1),
            "seconds": round(seconds, 3),
        }

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


# --- results ----------------------------------------------------------------------------------------


def greedy_decoding(model, tokenizer, problems: Problems, max_new_tokens: int, batch_size: int):
    """(per-problem correctness, metrics) of greedy decoding; the metrics are accuracy and compute."""
    meter = ComputeMeter(model)
    prompts = [r["prompt"] for r in problems.records]
    outs = sample(model, tokenizer, prompts, 1, max_new_tokens, meter, greedy=True, batch_size=batch_size)
    meter.close()
    preds = [row[0] for row in outs.texts]
    correct = [bool(problems.check(p, r)) for p, r in zip(preds, problems.records, strict=True)]
    record_accuracy(problems, preds)
    return correct, {"accuracy": accuracy(problems, preds), **meter.snapshot(len(preds))}


def greedy_baseline(model, tokenizer, problems: Problems, max_new_tokens: int, batch_size: int) -> dict[str, Any]:
    """Greedy decoding's accuracy and compute: the `before` column of every inference method."""
    return greedy_decoding(model, tokenizer, problems, max_new_tokens, batch_size)[1]


def record_accuracy(problems: Problems, predictions: Sequence[str]) -> None:
    """Keep each problem's correctness for the run's paired statistics (``posttrain.outcomes``)."""
    checks = [problems.check(p, r) for p, r in zip(predictions, problems.records, strict=True)]
    outcomes.record("accuracy", [r["prompt"] for r in problems.records], checks)
    known = [c for c in checks if c is not None]
    if known:
        announce(f"held-out accuracy: {sum(known)}/{len(known)} = {sum(known) / len(known):.1%}")


def accuracy(problems: Problems, predictions: Sequence[str]) -> float | None:
    checks = [problems.check(p, r) for p, r in zip(predictions, problems.records, strict=True)]
    known = [c for c in checks if c is not None]
    return sum(known) / len(known) if known else None


def finish(
    ctx: RunContext,
    problems: Problems,
    predictions: Sequence[str],
    meter: ComputeMeter,
    before: dict[str, Any] | None,
    per_problem: Sequence[dict[str, Any]] | None = None,
    **extra: Any,
) -> RunResult:
    """Write predictions.jsonl and return the run's metrics: ``after`` (method), ``before`` (greedy)."""
    meter.close()
    n = len(problems.records)
    record_accuracy(problems, predictions)
    after = {"accuracy": accuracy(problems, predictions), **meter.snapshot(n)}
    path = ctx.output_dir / "predictions.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i, (record, pred) in enumerate(zip(problems.records, predictions, strict=True)):
            row = {
                "prompt": record["prompt"],
                "prediction": pred,
                "answer": record.get("answer"),
                "correct": problems.check(pred, record),
                "compute": per_problem[i] if per_problem else {},
            }
            fh.write(json.dumps(finite_json(row), default=str) + "\n")
    if before:
        ctx.log(0, {f"greedy/{k}": v for k, v in before.items() if isinstance(v, int | float)})
    ctx.log(1, {k: v for k, v in after.items() if isinstance(v, int | float)})
    metrics: dict[str, Any] = {"after": after, "data": problems.source, "problems": n, **extra}
    if before:
        metrics["before"] = before
    return RunResult(metrics=metrics, artifacts={"predictions": str(path)})


def new_tokens(cfg: InferenceConfig, problems: Problems) -> int:
    return cfg.max_new_tokens or problems.default_new_tokens


def task_of(cfg: InferenceConfig, ctx: RunContext) -> str:
    """addition | reasoning: the config's ``task`` field, or reasoning when --model embedded:reasoning."""
    return "reasoning" if ctx.model == REASONING_MODEL else getattr(cfg, "task", "addition")


def setup(cfg: InferenceConfig, ctx: RunContext, problems: Problems | None = None):
    """(model, tokenizer, problems, before, meter): everything a method's run starts from.

    With a ``task: reasoning`` config and no --model, the embedded scratchpad reasoning model."""
    task = task_of(cfg, ctx)
    model, tokenizer = load_model(ctx, REASONING_MODEL if task == "reasoning" else None)
    problems = problems or load_problems(ctx, cfg.eval_examples, task)
    before = (
        greedy_baseline(model, tokenizer, problems, new_tokens(cfg, problems), cfg.batch_size) if cfg.baseline else None
    )
    return model, tokenizer, problems, before, ComputeMeter(model)


def progress(ctx: RunContext, items, total: int, description: str):
    return ctx.progress(items, total=total, description=description) if ctx.progress else items


# --- per-problem bookkeeping ---------------------------------------------------------------------


@dataclass
class PerProblem:
    """Per-problem compute counters a method fills as it goes (written into predictions.jsonl)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, n: int) -> PerProblem:
        return cls([{"generated_tokens": 0} for _ in range(n)])

    def add_tokens(self, owners: Sequence[int], counts: Sequence[int]) -> None:
        for i, c in zip(owners, counts, strict=True):
            self.rows[i]["generated_tokens"] += int(c)


def softmax(values: Sequence[float], temperature: float = 1.0) -> list[float]:
    """Plain-Python softmax (for small per-problem score lists)."""
    if not values:
        return []
    top = max(values)
    exps = [math.exp((v - top) / temperature) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


# --- step-search helpers --------------------------------------------------------------------------


def text_prompt(tokenizer, prompt: Any) -> str:
    """A prompt as text that partial solutions can be appended to (chat prompts are rendered)."""
    if isinstance(prompt, str):
        return prompt
    rendered = chat_text(tokenizer, prompt, add_generation_prompt=True)
    bos = tokenizer.bos_token or ""
    return rendered[len(bos) :] if bos and rendered.startswith(bos) else rendered


def step_stop(tokenizer, delimiter: str) -> dict[str, Any]:
    """generate() options that end a completion after one reasoning step (at ``delimiter`` or EOS)."""
    ids = tokenizer(delimiter, add_special_tokens=False)["input_ids"]
    if len(ids) == 1:  # one token: stop on it like on EOS (cheaper than stop strings)
        return {"eos_token_id": [tokenizer.eos_token_id, ids[0]]}
    return {"stop_strings": [delimiter], "tokenizer": tokenizer}


def extend_steps(
    model,
    tokenizer,
    prefixes: Sequence[str],
    k: int,
    meter: ComputeMeter | None,
    cfg: InferenceConfig,
    delimiter: str,
    max_step_tokens: int = 8,
    greedy: bool = False,
) -> Completions:
    """k one-step continuations of each prefix (problem + steps so far), one batched generate per
    chunk; each prefix is prefilled once and its cache shared by its k continuations."""
    return sample(
        model,
        tokenizer,
        list(prefixes),
        k,
        max_step_tokens,
        meter,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        greedy=greedy,
        batch_size=cfg.batch_size,
        extra_generate=step_stop(tokenizer, delimiter),
    )


# --- judges: the embedded reasoning model's own verdicts, and which judge a method gets (loading and
# running them is posttrain.scoring.scorers) ---------------------------------------------------


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
