"""Process reward model (PRM): a per-step correctness classifier, with step labels generated
automatically by Monte-Carlo rollouts (Math-Shepherd) or taken from an exact checker.

Papers: Lightman et al. 2023, "Let's Verify Step by Step", arXiv:2305.20050 (a PRM predicts, at
the end of every step, whether the step is correct; a solution's score is the product or the
minimum of its step probabilities); Wang et al. 2023, "Math-Shepherd: Verify and Reinforce LLMs
Step-by-step without Human Annotations", arXiv:2312.08935, §3.3 (automatic labels: from each step
prefix, N completions are decoded; hard estimation labels the step good if any reaches the right
answer, soft estimation uses the share that do). Catalog entry: catalog/methods/prm.yaml.

    catalog run prm                                    # embedded reasoning model, Monte-Carlo labels
    catalog run prm --set label_source=checker         # the task's exact step labels, for comparison
    catalog run prm --model ./policy --dataset problems.jsonl --set step_separator="\\n\\n" --set rollouts=8
    catalog run prm --model ./base --dataset prm800k_like.jsonl   # ready labels: prompt, completions, labels

Data: ``prompt`` + ``answer`` records (solutions are sampled from ``--model`` and labelled by
rollouts; the answer is checked by the task checker), or stepwise records in TRL's PRM format:
``prompt``, ``completions`` (list of steps) and ``labels`` (one bool per step).

The PRM is a token-classification model with one logit per token (``AutoModelForTokenClassification``,
``num_labels=1``) on the policy's transformer; the loss is binary cross-entropy at the last token
of each step. ``posttrain.scoring.scorers.load_prm`` / ``score_steps`` use the saved folder.

Deviations from the papers:
1. Lightman et al. train on human labels with a neutral class; Math-Shepherd trains the LM to
   predict special tokens. Here one logit per token, read at each step's last token (TRL's
   PRMTrainer does the same with two classes).
2. Math-Shepherd uses N = 8 rollouts and 15 solutions per problem from 7B generators; the
   defaults here (N = 4, 2 solutions per problem) are sized for the embedded tiny model.
3. The last step's label is the checker's verdict on the whole solution (a rollout from a complete
   solution would only repeat it).
4. Held-out step accuracy is measured against the exact checker (embedded task) on the policy's
   own solutions to held-out problems; Lightman et al. report best-of-N selection accuracy.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult, outcomes
from posttrain.data import batch_indices, load_records
from posttrain.errors import UserError
from posttrain.evaluation import score
from posttrain.generation.decode import generate
from posttrain.hf import (
    default_dtype,
    head_error,
    load_model,
    load_tokenizer,
    model_source,
    parameter_counts,
    quiet_transformers,
)
from posttrain.scoring.scorers import encode_steps, prepare_tokenizer, step_logits
from posttrain.training.config import TrainingConfig
from posttrain.training.trainer import finish, loop_settings, train_loop

IGNORE = -100.0


class Config(TrainingConfig):
    label_source: Literal["monte-carlo", "checker"] = Field(
        "monte-carlo",
        description="Step labels: Math-Shepherd rollouts from each step prefix, or the embedded task's exact checker.",
    )
    estimator: Literal["hard", "soft"] = Field(
        "hard", description="Math-Shepherd estimator: hard (good if any of N rollouts is right) or soft (share right)."
    )
    rollouts: int = Field(4, ge=1, description="N, completions decoded from each step prefix (Math-Shepherd: 8).")
    solutions_per_problem: int = Field(
        2, ge=1, description="Solutions sampled per training problem (Math-Shepherd: 15)."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of solutions and rollouts.")
    step_separator: str = Field(";", min_length=1, description="Text that ends a step (embedded task: ';').")
    learning_rate: float = Field(5e-4, gt=0, description="Peak learning rate (sized for the embedded model).")
    max_steps: int = Field(600, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Solutions per micro-batch.")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    train_examples: int = Field(400, ge=1, description="Training problems drawn from the embedded task.")
    eval_examples: int = Field(
        200, ge=1, description="Held-out problems (solutions_per_problem sampled solutions each)."
    )


# --- loss and labelling rules ---------------------------------------------------------------------


def prm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over labelled positions: −[c log σ(z) + (1−c) log(1−σ(z))].

    ``logits`` and ``labels`` are (B, T); labels are in [0, 1] at step ends and −100 elsewhere.
    A logit of 0 costs ln 2 whatever the label.
    """
    mask = labels != IGNORE
    return F.binary_cross_entropy_with_logits(logits[mask], labels[mask].to(logits.dtype))


def hard_estimate(rollout_correct: torch.Tensor) -> torch.Tensor:
    """Math-Shepherd hard estimation: a step is good (1.0) if any of its N rollouts is correct. (S, N) -> (S,)"""
    return rollout_correct.any(dim=-1).float()


def soft_estimate(rollout_correct: torch.Tensor) -> torch.Tensor:
    """Math-Shepherd soft estimation: the share of the N rollouts that are correct. (S, N) -> (S,)"""
    return rollout_correct.float().mean(dim=-1)


def step_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of steps whose prediction (p > 0.5) matches the 0/1 label."""
    return ((probs > 0.5).float() == labels.float()).float().mean()


# --- data -----------------------------------------------------------------------------------------


def split_on(text: str, separator: str) -> list[str]:
    """Steps of a solution: each piece keeps its separator; a trailing piece is the last step."""
    pieces, rest = [], text
    while rest:
        end = rest.find(separator)
        if end < 0:
            pieces.append(rest)
            break
        pieces.append(rest[: end + len(separator)])
        rest = rest[end + len(separator) :]
    return [p for p in pieces if p.strip()]


def monte_carlo_labels(
    policy, tokenizer, cfg: Config, solutions: list[dict], max_new_tokens: int, check=score
) -> list[list[float]]:
    """Label every step of every solution by N rollouts from its prefix (the last step: the checker).

    ``check(completion, record) -> bool`` judges a finished solution against the record's answer."""
    prefixes, owners = [], []
    for s, sol in enumerate(solutions):
        for k in range(len(sol["steps"]) - 1):
            prefixes.append(_as_text(sol["prompt"]) + "".join(sol["steps"][: k + 1]))
            owners.append((s, k))
    flat = generate(
        policy,
        tokenizer,
        [p for p in prefixes for _ in range(cfg.rollouts)],
        max_new_tokens,
        batch_size=256,
        temperature=cfg.temperature,
    )
    verdicts = []
    for i, (s, k) in enumerate(owners):
        done = "".join(solutions[s]["steps"][: k + 1])
        verdicts.append([check(done + t, solutions[s]) for t in flat[i * cfg.rollouts : (i + 1) * cfg.rollouts]])
    estimate = hard_estimate if cfg.estimator == "hard" else soft_estimate
    values = estimate(torch.tensor(verdicts, dtype=torch.bool)).tolist() if verdicts else []
    labels = [[0.0] * len(sol["steps"]) for sol in solutions]
    for (s, k), v in zip(owners, values, strict=True):
        labels[s][k] = v
    for s, sol in enumerate(solutions):
        labels[s][-1] = float(check("".join(sol["steps"]), sol))
    return labels


def _as_text(prompt) -> str:
    if not isinstance(prompt, str):
        raise UserError("prm: Monte-Carlo labelling needs plain-text prompts (message lists are not supported)")
    return prompt


def tokenize_stepwise(tokenizer, sol: dict, labels: list[float], max_length: int) -> dict:
    ids, ends = encode_steps(tokenizer, sol["prompt"], sol["steps"], max_length)
    targets = [IGNORE] * len(ids)
    for pos, value in zip(ends, labels, strict=False):
        targets[pos] = float(value)
    return {"input_ids": ids, "labels": targets}


def pad_stepwise(examples: list[dict], pad_id: int, device: str) -> dict:
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n], attn[i, :n], labels[i, :n] = torch.tensor(e["input_ids"]), 1, torch.tensor(e["labels"])
    return {"input_ids": ids.to(device), "attention_mask": attn.to(device), "labels": labels.to(device)}


def embedded_data(policy, tokenizer, cfg: Config, ctx: RunContext) -> tuple[list[dict], list[dict], dict]:
    """The policy's sampled solutions: training ones with MC (or checker) labels, held-out ones with
    the exact checker's labels (the reference the PRM is measured against)."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import is_correct, reasoning_records, split_steps, step_labels

    problems, heldout_problems, _ = reasoning_records("prompt", cfg.train_examples, cfg.eval_examples, ctx.seed)
    torch.manual_seed(ctx.seed)
    n = cfg.solutions_per_problem
    everything = problems + heldout_problems
    texts = generate(
        policy, tokenizer, [p["prompt"] for p in everything for _ in range(n)], 16, 256, temperature=cfg.temperature
    )
    solutions, heldout = [], []
    for i, text in enumerate(texts):
        steps = split_steps(text)
        if steps:
            row = {**everything[i // n], "steps": steps}
            (solutions if i // n < len(problems) else heldout).append(row)
    for row in heldout:
        row["labels"] = [float(x) for x in step_labels(tuple(row["numbers"]), row["steps"], task.digits)]
    exact = [[float(x) for x in step_labels(tuple(s["numbers"]), s["steps"], task.digits)] for s in solutions]
    if cfg.label_source == "checker":
        labels = exact
    else:
        labels = monte_carlo_labels(
            policy, tokenizer, cfg, solutions, 16, lambda text, r: is_correct(text, r["answer"])
        )
    flat_mc, flat_exact = [x for ls in labels for x in ls], [x for ls in exact for x in ls]
    stats = {
        "labels/steps": len(flat_exact),
        "labels/good_share": sum(v >= 0.5 for v in flat_mc) / max(1, len(flat_mc)),
        "labels/agreement_with_checker": sum((a >= 0.5) == (b >= 0.5) for a, b in zip(flat_mc, flat_exact, strict=True))
        / max(1, len(flat_exact)),
    }
    return [dict(s, labels=ls) for s, ls in zip(solutions, labels, strict=True)], heldout, stats


def dataset_data(policy, tokenizer, cfg: Config, ctx: RunContext) -> tuple[list[dict], list[dict], dict]:
    """User data: ready stepwise labels (prompt, completions, labels), or problems to sample and label."""
    records, source = load_records(ctx.dataset, "train")
    first = records[0]
    if "completions" in first and "labels" in first:
        rows = [_stepwise_record(r, source) for r in records]
    elif "prompt" in first and "answer" in first:
        if cfg.label_source == "checker":
            raise UserError("--set label_source=checker: exact step labels exist only for the embedded task")
        texts = generate(
            policy,
            tokenizer,
            [r["prompt"] for r in records for _ in range(cfg.solutions_per_problem)],
            cfg.max_new_tokens or 256,
            64,
            temperature=cfg.temperature,
        )
        sols = [
            {**records[i // cfg.solutions_per_problem], "steps": split_on(t, cfg.step_separator)}
            for i, t in enumerate(texts)
        ]
        sols = [s for s in sols if s["steps"]]
        labels = monte_carlo_labels(policy, tokenizer, cfg, sols, cfg.max_new_tokens or 256)
        rows = [dict(s, labels=ls) for s, ls in zip(sols, labels, strict=True)]
    else:
        raise UserError(f"{source}: expected prompt + completions + labels (stepwise) or prompt + answer records")
    random.Random(ctx.seed).shuffle(rows)
    n_eval = max(1, min(cfg.eval_examples, len(rows) // 10))
    return rows[n_eval:], rows[:n_eval], {"labels/steps": sum(len(r["labels"]) for r in rows)}


def _stepwise_record(r: dict, source: str) -> dict:
    steps, labels = r.get("completions"), r.get("labels")
    if not isinstance(steps, list) or not isinstance(labels, list) or len(steps) != len(labels) or not steps:
        raise UserError(
            f"{source}:{r.get('_line', '?')}: `completions` and `labels` must be equal-length non-empty lists"
        )
    return {"prompt": r["prompt"], "steps": [str(s) for s in steps], "labels": [float(bool(x)) for x in labels]}


# --- run ------------------------------------------------------------------------------------------


def load_prm_backbone(source: str, ctx: RunContext):
    """A one-logit-per-token classifier on the policy's transformer (new head)."""
    from transformers import AutoModelForTokenClassification

    tokenizer = load_tokenizer(source, ctx.trust_remote_code)
    try:
        model = AutoModelForTokenClassification.from_pretrained(
            source, num_labels=1, dtype=default_dtype(ctx.device), trust_remote_code=ctx.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise head_error(source, exc, "token-classification", "prm") from None
    prepare_tokenizer(tokenizer, model)
    return model.to(ctx.device), tokenizer


@torch.no_grad()
def evaluate(model, examples: list[dict], pad_id: int, device: str) -> dict:
    was_training = model.training
    model.eval()
    probs, labels, solution_ok, solution_pred = [], [], [], []
    for start in range(0, len(examples), 64):
        batch = pad_stepwise(examples[start : start + 64], pad_id, device)
        p = torch.sigmoid(step_logits(model, batch))
        for row in range(p.shape[0]):
            mask = batch["labels"][row] != IGNORE
            step_p, step_y = p[row][mask].cpu(), batch["labels"][row][mask].cpu()
            probs.append(step_p)
            labels.append(step_y)
            solution_ok.append(bool(step_y[-1] >= 0.5))
            solution_pred.append(
                bool(step_p.min() > 0.5)
            )  # one bad step fails it (Lightman et al. rank by the product)
    model.train(was_training)
    probs_t, labels_t = torch.cat(probs), (torch.cat(labels) >= 0.5).float()
    step_right = ((probs_t > 0.5).float() == labels_t).tolist()  # step_accuracy's terms, for the paired test
    outcomes.record("step_accuracy", [f"step-{i}" for i in range(len(step_right))], step_right)
    outcomes.record(
        "solution_accuracy",
        [f"solution-{i}" for i in range(len(solution_ok))],
        [a == b for a, b in zip(solution_ok, solution_pred, strict=True)],
    )
    return {
        "step_accuracy": step_accuracy(probs_t, labels_t).item(),
        "solution_accuracy": sum(a == b for a, b in zip(solution_ok, solution_pred, strict=True)) / len(solution_ok),
        "good_step_share": labels_t.mean().item(),
    }


def run(cfg: Config, ctx: RunContext) -> RunResult:
    quiet_transformers()
    if ctx.dataset is None and ctx.model is None:
        from posttrain.embedded.reasoning import EMBEDDED_REASONING_MODEL

        ctx = dataclasses.replace(ctx, model=EMBEDDED_REASONING_MODEL)
    if cfg.label_source == "checker" and ctx.dataset is not None:
        raise UserError("--set label_source=checker: exact step labels exist only for the embedded task")
    source = model_source(ctx)
    policy_tokenizer = load_tokenizer(source, ctx.trust_remote_code)
    policy = load_model(source, ctx.device, ctx.trust_remote_code)
    policy.eval()
    maker = embedded_data if ctx.dataset is None else dataset_data
    train_rows, heldout_rows, stats = maker(policy, policy_tokenizer, cfg, ctx)
    del policy
    if not train_rows:
        raise UserError("prm: no training solution has any step (check step_separator and max_new_tokens)")
    ctx.log(0, stats)
    model, tokenizer = load_prm_backbone(source, ctx)
    train = [tokenize_stepwise(tokenizer, r, r["labels"], cfg.max_length) for r in train_rows]
    heldout = [tokenize_stepwise(tokenizer, r, r["labels"], cfg.max_length) for r in heldout_rows]
    counts = parameter_counts(model)
    ctx.log(0, counts)
    pad = tokenizer.pad_token_id
    before = evaluate(model, heldout, pad, ctx.device)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pad_stepwise([train[i] for i in idx], pad, ctx.device)
        logits = step_logits(model, batch)
        mask = batch["labels"] != IGNORE
        probs = torch.sigmoid(logits[mask]).detach()
        return prm_loss(logits, batch["labels"]), {
            "step_accuracy": step_accuracy(probs, batch["labels"][mask] >= 0.5).item(),
            "tokens": int(batch["attention_mask"].sum()),
        }

    loop = train_loop(model, ctx, loop_settings(cfg), loss_fn, description=f"prm ({cfg.label_source} labels)")
    after = evaluate(model, heldout, pad, ctx.device)
    return finish(ctx, model, tokenizer, loop, before, after, labels=cfg.label_source, **stats, **counts)


plugin = Plugin(
    id="prm",
    config=Config,
    run=run,
    summary="Process reward model with Monte-Carlo (Math-Shepherd) or checker step labels.",
    smoke={
        "max_steps": 2,
        "train_examples": 8,
        "eval_examples": 4,
        "rollouts": 1,
        "solutions_per_problem": 1,
        "batch_size": 8,
        "log_every": 1,
    },
)
