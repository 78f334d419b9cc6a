"""Shared plumbing of the test-time (inference) plugins: the model, the prompt set, batched
sampling with a reused prompt KV cache, a compute meter, scorers, predictions and budget sweeps.

Only plumbing lives here; each method's selection or search rule stays in its plugin file.

- ``InferenceConfig``: the fields every inference plugin shares (prompts, tokens, batch size,
  sampling temperature). Fields marked ``json_schema_extra={"sweep": True}`` are budgets:
  ``catalog run best-of-n --set n=1,4,16,64`` runs the method once per value (``run_sweep``)
  and writes ``sweep.json`` + ``sweep.png`` (accuracy against generated tokens per problem).
- ``load_problems``: the embedded task's held-out prompts, or any JSONL with ``prompt`` and an
  optional ``answer`` (``--dataset``).
- ``sample``: N completions per prompt from ONE batched ``generate`` per chunk; the prompts are
  prefilled once and their KV cache is repeated N times (``DynamicCache.batch_repeat_interleave``),
  so the prompt is never recomputed per sample. Returns the text, the token ids and the raw
  model's log-probability of every generated token (for confidence and likelihood scores).
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
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from posttrain import outcomes
from posttrain.data import chat_text
from posttrain.errors import UserError
from posttrain.interface import RunContext, RunResult
from posttrain.tracking import announce, finite_json

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


# --- sampling --------------------------------------------------------------------------------------


@dataclass
class Completions:
    """``n`` completions per prompt: texts[i][j], the raw model's log-prob of each generated token."""

    texts: list[list[str]]
    token_logprobs: list[list[list[float]]]
    ended: list[list[bool]] = field(default_factory=list)  # the completion emitted EOS

    def mean_logprob(self) -> list[list[float]]:
        return [[sum(lp) / max(len(lp), 1) for lp in row] for row in self.token_logprobs]

    def sum_logprob(self) -> list[list[float]]:
        return [[float(sum(lp)) for lp in row] for row in self.token_logprobs]

    def lengths(self) -> list[list[int]]:
        return [[len(lp) for lp in row] for row in self.token_logprobs]


def _encode(tokenizer, prompts: Sequence[Any]) -> list[list[int]]:
    from posttrain.data import prompts_ids

    return prompts_ids(tokenizer, prompts)


def _left_pad(encoded: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, width - len(e) :] = torch.tensor(e)
        attn[i, width - len(e) :] = 1
    return ids.to(device), attn.to(device)


def generate_cache_kwarg() -> str:
    """The name ``generate`` takes a ready KV cache under: ``cache`` since transformers renamed it
    (``past_key_values`` is deprecated there and goes in v6), ``past_key_values`` before."""
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def _prefilled_cache(model, ids: torch.Tensor, attn: torch.Tensor, n: int):
    """The KV cache of every prompt token but the last, computed once and repeated n times."""
    if ids.shape[1] < 2:
        return None
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=attn[:, :-1], position_ids=position_ids[:, :-1], use_cache=True)
    cache = out.past_key_values
    if n > 1:
        cache.batch_repeat_interleave(n)
    return cache


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: Sequence[Any],
    n: int,
    max_new_tokens: int,
    meter: ComputeMeter | None = None,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    batch_size: int = 512,
    stop: Sequence[str] | None = None,
    extra_generate: dict[str, Any] | None = None,
) -> Completions:
    """n completions for each prompt (strings or message lists), one batched generate per chunk of
    prompts (chunk * n <= batch_size), with the prompt prefilled once and its cache shared."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    per_call = max(1, batch_size // max(n, 1))
    texts: list[list[str]] = []
    logps: list[list[list[float]]] = []
    ended: list[list[bool]] = []
    encoded_all = _encode(tokenizer, prompts)
    for start in range(0, len(prompts), per_call):
        encoded = encoded_all[start : start + per_call]
        ids, attn = _left_pad(encoded, pad_id, device)
        cache = _prefilled_cache(model, ids, attn, n)
        ids, attn = ids.repeat_interleave(n, 0), attn.repeat_interleave(n, 0)
        options: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=eos,
            return_dict_in_generate=True,
            output_logits=True,
        )
        if greedy:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            options.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        if stop:
            options.update(stop_strings=list(stop), tokenizer=tokenizer)
        options.update(extra_generate or {})
        out = model.generate(input_ids=ids, attention_mask=attn, **{generate_cache_kwarg(): cache}, **options)
        new = out.sequences[:, ids.shape[1] :]
        logits = torch.stack(out.logits, 1).float() if out.logits else torch.zeros(new.shape + (1,))
        chosen = torch.gather(torch.log_softmax(logits, -1), -1, new.unsqueeze(-1)).squeeze(-1)
        for row in range(len(encoded)):
            row_texts, row_logps, row_ended = [], [], []
            for j in range(row * n, (row + 1) * n):
                length = _generated_length(new[j], eos, pad_id)
                row_texts.append(tokenizer.decode(new[j, :length], skip_special_tokens=True))
                row_logps.append(chosen[j, :length].tolist())
                row_ended.append(bool(length and int(new[j, length - 1]) == eos))
                if meter is not None:
                    meter.generated_tokens += length
            texts.append(row_texts)
            logps.append(row_logps)
            ended.append(row_ended)
    return Completions(texts, logps, ended)


def _generated_length(tokens: torch.Tensor, eos: int | None, pad_id: int) -> int:
    """Tokens up to and including the first EOS (generate pads finished rows after it)."""
    seq = tokens.tolist()
    if eos is not None and eos in seq:
        return seq.index(eos) + 1
    while seq and seq[-1] == pad_id and pad_id != eos:
        seq.pop()
    return len(seq)


@torch.no_grad()
def completion_logprobs(
    model, tokenizer, prompts: Sequence[Any], completions: Sequence[str], batch_size: int = 256
) -> tuple[list[float], list[int]]:
    """(summed log-prob, token count) of each completion given its prompt: one forward per chunk."""
    from posttrain.data import pad_sequences, tokenize_prompt_completion
    from posttrain.logprobs import sequence_logprobs

    device = str(next(model.parameters()).device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sums: list[float] = []
    counts: list[int] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [
            tokenize_prompt_completion({"prompt": p, "completion": c}, tokenizer)
            for p, c in zip(prompts[start : start + batch_size], completions[start : start + batch_size], strict=True)
        ]
        logp, count = sequence_logprobs(model, pad_sequences(chunk, pad_id, device))
        sums += logp.tolist()
        counts += [int(c) for c in count.tolist()]
    return sums, counts


@torch.no_grad()
def next_token_probs(model, tokenizer, prompts: Sequence[Any], words: Sequence[str]) -> torch.Tensor:
    """P(first token of each word | prompt), (len(prompts), len(words)): one batched forward.

    Used for a model's own yes/no verdicts (self-evaluation)."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, attn = _left_pad(_encode(tokenizer, prompts), pad_id, device)
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=position_ids).logits[:, -1].float()
    word_ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    return torch.softmax(logits, -1)[:, word_ids]


# --- outcome scorers --------------------------------------------------------------------------------


class RewardModelScorer:
    """An outcome reward model: a transformers sequence classifier (one logit) on prompt + response."""

    def __init__(self, path: str, device: str):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from posttrain.hf import checked_model_path

        path = checked_model_path(path, "--set reward_model=")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        except (OSError, ValueError) as exc:
            raise UserError(f"--set reward_model={path}: could not load it: {str(exc).splitlines()[0]}") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        texts = [str(p) + str(r) for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        for start in range(0, len(texts), 128):
            enc = self.tokenizer(texts[start : start + 128], return_tensors="pt", padding=True).to(self.model.device)
            out += self.model(**enc).logits[:, 0].float().tolist()
        return out


def load_reward_model(path: str, device: str):
    """The project's reward-model loader when installed (branch `reward`), else a sequence classifier."""
    try:
        from posttrain import reward_models  # type: ignore[attr-defined]
    except ImportError:
        return RewardModelScorer(path, device)
    model, tokenizer = reward_models.load_reward_model(path, device)
    return lambda prompts, responses: reward_models.score(model, tokenizer, list(prompts), list(responses)).tolist()


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


# --- budget sweeps ----------------------------------------------------------------------------------


def sweepable_fields(config_cls: type[BaseModel]) -> list[str]:
    return [
        name
        for name, f in config_cls.model_fields.items()
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("sweep")
    ]


def find_sweep(config_cls: type[BaseModel], sets: Sequence[str]) -> tuple[str, list[str], list[str]] | None:
    """(field, values, other --set items) when one --set gives a comma list for a sweepable field."""
    found = None
    rest = []
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if sep and "," in raw and key in config_cls.model_fields:
            if key not in sweepable_fields(config_cls):  # a plain comma value of a non-budget field
                rest.append(item)
                continue
            if found is not None:
                raise UserError(f"--set {item}: only one field can be swept at a time (already sweeping {found[0]})")
            values = [v.strip() for v in raw.split(",") if v.strip()]
            if not values:
                raise UserError(f"--set {item}: expected a comma list of values")
            found = (key, values)
            continue
        rest.append(item)
    return (found[0], found[1], rest) if found else None


def run_sweep(
    method: str,
    field_name: str,
    values: list[str],
    base_sets: list[str],
    output_dir: Path | None,
    console=None,
    **prepare_kwargs,
) -> dict[str, Any]:
    """Run the method once per value of ``field_name``; write sweep.json and sweep.png in output_dir."""
    from posttrain.runner import default_output_dir, execute, prepare

    root = Path(output_dir or default_output_dir(method, False))
    points = []
    greedy = None
    for value in values:
        prepared = prepare(
            method,
            sets=[*base_sets, f"{field_name}={value}"],
            output_dir=root / f"{field_name}={value}",
            **prepare_kwargs,
        )
        result = execute(prepared, console=console)
        after = result.metrics.get("after", {})
        points.append({"value": getattr(prepared.config, field_name), **after})
        greedy = greedy or result.metrics.get("before")
    sweep = {
        "method": method,
        "field": field_name,
        "points": points,
        "greedy": greedy,
        "data": prepared.ctx.dataset or "embedded",
        "model": prepared.ctx.model or "embedded",
    }
    (root / "sweep.json").write_text(json.dumps(sweep, indent=2, default=str) + "\n")
    plot_sweeps([sweep], root / "sweep.png", title=f"{method}: accuracy against compute")
    if console is not None:
        console.print(f"sweep: {root / 'sweep.json'}, {root / 'sweep.png'}")
    return sweep


def plot_sweeps(
    sweeps: Sequence[dict[str, Any]], path: Path, title: str = "", x_key: str = "generated_tokens_per_problem"
) -> Path:
    """Accuracy against compute: one line per sweep (method), greedy decoding as a reference point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    greedy_drawn = False
    for sweep in sweeps:
        pts = [p for p in sweep["points"] if p.get("accuracy") is not None]
        xs = [max(p[x_key], 1e-9) for p in pts]
        ys = [p["accuracy"] for p in pts]
        line = ax.plot(xs, ys, marker="o", label=f"{sweep['method']} ({sweep['field']})")[0]
        for x, y, p in zip(xs, ys, pts, strict=True):
            ax.annotate(
                str(p["value"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=line.get_color()
            )
        g = sweep.get("greedy")
        if g and g.get("accuracy") is not None and not greedy_drawn:
            ax.scatter([g[x_key]], [g["accuracy"]], marker="*", s=120, color="black", zorder=5, label="greedy")
            greedy_drawn = True
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x_key.replace("_", " "))
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


# --- scorers of attempts (full solutions or step prefixes) -----------------------------------------


@torch.no_grad()
def attempt_logprobs(model, tokenizer, prompts: Sequence[str], attempts: Sequence[str], batch_size: int = 256):
    """Mean log-prob per token of each attempt (a partial or full completion, no EOS added)."""
    from posttrain.data import pad_sequences, prompt_ids
    from posttrain.logprobs import sequence_logprobs

    device = str(next(model.parameters()).device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[float] = []
    for start in range(0, len(prompts), batch_size):
        chunk = []
        for p, a in zip(prompts[start : start + batch_size], attempts[start : start + batch_size], strict=True):
            p_ids = prompt_ids(tokenizer, p)
            a_ids = list(tokenizer(a, add_special_tokens=False)["input_ids"]) if a else []
            chunk.append({"input_ids": p_ids + a_ids, "completion_mask": [0] * len(p_ids) + [1] * len(a_ids)})
        logp, count = sequence_logprobs(model, pad_sequences(chunk, pad_id, device))
        out += (logp / count.clamp(min=1)).tolist()
    return out


@torch.no_grad()
def verify_scores(model, tokenizer, prompts: Sequence[str], attempts: Sequence[str], batch_size: int = 256):
    """The reasoning model's own verdict P(y) / (P(y) + P(n)) on ``V:<problem><attempt>``: is the
    attempt (a full solution or a step prefix) correct so far? Its verify sub-skill, no labels."""
    from posttrain.embedded.reasoning import verify_prompt

    out: list[float] = []
    for start in range(0, len(prompts), batch_size):
        queries = [
            verify_prompt(str(p), a)
            for p, a in zip(prompts[start : start + batch_size], attempts[start : start + batch_size], strict=True)
        ]
        probs = next_token_probs(model, tokenizer, queries, ["y", "n"])
        out += (probs[:, 0] / probs.sum(-1).clamp(min=1e-12)).tolist()
    return out


SCORERS = "auto|prm|verifier|likelihood"
PRM_AGGREGATES = ("last", "min", "prod")


def split_attempt(attempt: str, delimiter: str) -> list[str]:
    """Steps of an attempt, each keeping its delimiter; a trailing unfinished piece is the last step.

    split_attempt("12;13;6;#632", ";") -> ["12;", "13;", "6;", "#632"]; "" -> []."""
    pieces = attempt.split(delimiter)
    return [x + delimiter for x in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def aggregate_steps(probs: Sequence[float], how: str = "last") -> float:
    """One score from per-step PRM probabilities: the last step's (Snell 2024, the default), the
    minimum or the product (Lightman 2023). No step -> 0.0. [0.9, 0.5, 0.8]: last 0.8, min 0.5, prod 0.36."""
    if not probs:
        return 0.0
    if how == "last":
        return float(probs[-1])
    if how == "min":
        return float(min(probs))
    if how == "prod":
        return float(math.prod(probs))
    raise ValueError(f"unknown PRM aggregate {how!r}; expected one of {', '.join(PRM_AGGREGATES)}")


def resolve_prm(path: str, console=None) -> str:
    """A --set prm value as a folder: ``embedded`` is the embedded reasoning task's PRM (built once)."""
    from posttrain.embedded.prm import EMBEDDED_PRM, prm_model_dir

    return str(prm_model_dir(console=console)) if path == EMBEDDED_PRM else path


def load_prm_step_scorer(path: str, device: str, meter: ComputeMeter | None = None):
    """step_scores(prompts, step_lists) -> the PRM's P(correct so far) after each step, batched
    (``posttrain.reward_models.load_prm``; ``embedded`` = the embedded reasoning PRM). With
    ``meter``, its forward passes are counted."""
    from posttrain import reward_models

    prm, prm_tokenizer = reward_models.load_prm(resolve_prm(path), device, what="--set prm")
    if meter is not None:
        meter.watch(prm)

    def step_scores(prompts: Sequence[str], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        return reward_models.score_step_lists(prm, prm_tokenizer, list(prompts), [list(s) for s in step_lists])

    return step_scores


def load_prm_scorer(path: str, device: str, delimiter: str, aggregate: str = "last", meter: ComputeMeter | None = None):
    """A process reward model (``load_prm_step_scorer``): an attempt's score is the PRM's score of
    its last step (``aggregate``: or the min / product over its steps). The steps are split at
    ``delimiter``; batched."""
    step_scores = load_prm_step_scorer(path, device, meter)

    def score(prompts: Sequence[str], attempts: Sequence[str]) -> list[float]:
        probs = step_scores(prompts, [split_attempt(a, delimiter) for a in attempts])
        return [aggregate_steps(p, aggregate) for p in probs]

    return score


def verify_step_scores(model, tokenizer, prompts: Sequence[str], step_lists: Sequence[Sequence[str]]):
    """The reasoning model's own ``V:`` verdict on every step prefix: [[P(y | steps[:1]), ...], ...]."""
    owners = [i for i, steps in enumerate(step_lists) for _ in steps]
    prefixes = ["".join(steps[: k + 1]) for steps in step_lists for k in range(len(steps))]
    flat = verify_scores(model, tokenizer, [prompts[i] for i in owners], prefixes) if prefixes else []
    out: list[list[float]] = [[] for _ in step_lists]
    for i, v in zip(owners, flat, strict=True):
        out[i].append(v)
    return out


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
        return load_reward_model(reward_model, ctx.device), "reward_model"
    if kind == "prm" or (kind == "auto" and embedded_prm_applies(cfg, ctx)):
        from posttrain.embedded.prm import EMBEDDED_PRM

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
    from posttrain.embedded.prm import EMBEDDED_PRM

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
    from posttrain.embedded.prm import EMBEDDED_PRM

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
