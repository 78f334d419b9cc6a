"""Scoring: loading and selecting the models that judge completions: outcome reward models (ORMs),
process reward models (PRMs), verifiers (a model's own yes/no verdict) and the policy's own
likelihood. One module, so a reader finds how any judge is loaded, how it reads a completion, and
which one a method gets, in one place; reward *functions* for RL (``posttrain.scoring.rewards``) and the
test-time methods (``posttrain_plugins.*``) call it.

Stable API for the RL and test-time plugins (keep these signatures):

    from posttrain.scoring.scorers import load_reward_model, score
    model, tokenizer = load_reward_model("runs/reward-model/<stamp>/model", device="cpu")
    rewards = score(model, tokenizer, ["12+30="], ["42"])   # tensor (N,), float32, on CPU

- ``load_reward_model(path, device)`` loads a standard transformers sequence-classification folder
  with one label (what ``catalog run reward-model`` saves; any ``AutoModelForSequenceClassification``
  reward model from the hub works too), sets the pad token, and returns ``(model, tokenizer)`` in
  eval mode. Bad paths raise ``UserError``. ``load_classifier`` also accepts two-label classifiers
  (the ``reward-model:PATH`` RL reward).
- ``score(model, tokenizer, prompts, completions, batch_size=64)`` returns the scalar reward of each
  pair. Prompts and completions are tokenized exactly as during reward-model training
  (``posttrain.data.tokenize_prompt_completion``: prompt ids, completion ids, EOS), and the score is
  read at the last non-pad token. Strings or chat message lists are accepted.

Process reward models (``catalog run prm``), same conventions:

    from posttrain.scoring.scorers import load_prm, score_steps
    prm, tok = load_prm("runs/prm/<stamp>/model", device="cpu")
    probs = score_steps(prm, tok, "347+285=", ["12;", "13;", "6;", "#632"])   # [p_1, ..., p_K]

- ``load_prm(path, device)`` loads a one-label token-classification folder (what ``catalog run prm``
  saves) and returns ``(model, tokenizer)`` in eval mode.
- ``score_steps(model, tokenizer, prompt, steps)`` returns, per step, the probability that the
  solution is still on track after that step (sigmoid of the logit at the step's last token).
  The prompt (string) and each step are tokenized separately and concatenated, as in training
  (``encode_steps``); aggregate with ``min`` or the product for a solution score (Lightman et al.).
- ``score_step_lists(model, tokenizer, prompts, step_lists)`` does the same for many solutions in
  right-padded batches: one list of per-step probabilities per solution (``[]`` for no step).
- The embedded reasoning task has a ready PRM in this format:
  ``posttrain.embedded.prm.prm_model_dir()`` (``--set prm=embedded``).

Selection for the test-time methods: ``attempt_scorer`` (a search or selection method's scorer of
full or partial attempts: PRM, ORM, embedded PRM, verifier or likelihood), ``evaluator_scorer`` and
``evaluator_step_scorer`` (a method whose judge is ``self`` or a PRM), ``make_scorer`` (the
policy's own scores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from posttrain.errors import UserError
from posttrain.inference.recipe import REASONING_MODEL, ComputeMeter, InferenceConfig, task_of
from posttrain.interface import RunContext

# --- loading -------------------------------------------------------------------------------------


def _check_folder(path: str | Path, what: str) -> str:
    from posttrain.hf import checked_model_path

    return checked_model_path(str(path), what)


def prepare_tokenizer(tokenizer, model=None):
    """Give the tokenizer a pad token (EOS for most decoder-only hub models) and tell the model,
    so sequence classification reads the score at the last real token, not at padding."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def load_reward_model(path: str | Path, device: str = "cpu", what: str = "reward_model"):
    """(model, tokenizer) of a one-label sequence-classification reward model, in eval mode."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from posttrain.hf import quiet_transformers, weight_load_errors, weights_error

    quiet_transformers()
    source = _check_folder(path, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32)
    except weight_load_errors() as exc:
        raise weights_error(source, exc, what) from None
    if model.config.num_labels != 1:
        raise UserError(
            f"{what} {path}: expected a reward model with one output (num_labels=1), found {model.config.num_labels}"
        )
    prepare_tokenizer(tokenizer, model)
    model.to(device).eval()
    return model, tokenizer


def load_classifier(path: str, device: str):
    """(model, tokenizer) of a sequence-classification model with one label or two (the
    ``reward-model:PATH`` reward), in eval mode without grad."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from posttrain.hf import checked_model_path

    path = checked_model_path(path, "reward-model:")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"reward-model:{path}: could not load a sequence-classification model: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval().requires_grad_(False)
    return model.to(device), tokenizer


def load_prm(path: str | Path, device: str = "cpu", what: str = "prm"):
    """(model, tokenizer) of a one-label token-classification process reward model, in eval mode."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from posttrain.hf import quiet_transformers

    quiet_transformers()
    source = _check_folder(path, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForTokenClassification.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise UserError(f"{what} {path}: could not load a process reward model: {str(exc).splitlines()[0]}") from None
    if model.config.num_labels != 1:
        raise UserError(f"{what} {path}: expected one output per token (num_labels=1), found {model.config.num_labels}")
    prepare_tokenizer(tokenizer, model)
    model.to(device).eval()
    return model, tokenizer


def resolve_prm(path: str, console=None) -> str:
    """A --set prm value as a folder: ``embedded`` is the embedded reasoning task's PRM (built once)."""
    from posttrain.embedded.prm import EMBEDDED_PRM, prm_model_dir

    return str(prm_model_dir(console=console)) if path == EMBEDDED_PRM else path


# --- outcome reward models -----------------------------------------------------------------------


def encode_pairs(tokenizer, prompts: list[Any], completions: list[Any], max_length: int | None = None) -> list[dict]:
    """Token ids of each prompt + completion (+ EOS), as the reward model saw them in training."""
    from posttrain.data import tokenize_prompt_completion

    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    return [
        tokenize_prompt_completion({"prompt": p, "completion": c}, tokenizer, max_length)
        for p, c in zip(prompts, completions, strict=True)
    ]


def rewards_of(model, batch: dict):
    """Scalar reward (B,) of a right-padded batch from ``posttrain.data.pad_sequences`` (with grad)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()


def score(model, tokenizer, prompts: list[Any], completions: list[Any], batch_size: int = 64, max_length: int = 1024):
    """Reward of each (prompt, completion): a float32 tensor (N,) on CPU."""
    import torch

    from posttrain.data import iterate_batches, pad_sequences

    examples = encode_pairs(tokenizer, prompts, completions, max_length)
    device = str(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for chunk in iterate_batches(examples, batch_size):
            out.append(rewards_of(model, pad_sequences(chunk, tokenizer.pad_token_id, device)).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


# --- process reward models ---------------------------------------------------------------------


def encode_steps(
    tokenizer, prompt: Any, steps: list[str], max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """(token ids, index of each step's last token): prompt ids, then each step's ids in turn.

    Steps that do not fit in ``max_length`` are dropped from the end (no position for them).
    """
    from posttrain.data import prompt_ids

    ids = list(prompt_ids(tokenizer, prompt))
    ends = []
    for step in steps:
        piece = list(tokenizer(step, add_special_tokens=False)["input_ids"])
        if not piece or (max_length is not None and len(ids) + len(piece) > max_length):
            break
        ids += piece
        ends.append(len(ids) - 1)
    return ids, ends


def step_logits(model, batch: dict):
    """Per-token logit (B, T) of a right-padded batch (with grad)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., 0].float()


def score_steps(model, tokenizer, prompt: Any, steps: list[str], max_length: int = 1024) -> list[float]:
    """Probability per step that the solution is still correct after it (one value per step that fits)."""
    return score_step_lists(model, tokenizer, [prompt], [steps], max_length=max_length)[0]


def score_step_lists(
    model, tokenizer, prompts: list[Any], step_lists: list[list[str]], batch_size: int = 256, max_length: int = 1024
) -> list[list[float]]:
    """``score_steps`` of many (prompt, steps) at once: right-padded batches, one forward each."""
    import torch

    if len(prompts) != len(step_lists):
        raise ValueError(f"{len(prompts)} prompts but {len(step_lists)} step lists")
    encoded = [encode_steps(tokenizer, p, s, max_length) for p, s in zip(prompts, step_lists, strict=True)]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out: list[list[float]] = [[] for _ in encoded]
    todo = [i for i, (_, ends) in enumerate(encoded) if ends]
    with torch.no_grad():
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            width = max(len(encoded[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for row, i in enumerate(chunk):
                n = len(encoded[i][0])
                ids[row, :n], attn[row, :n] = torch.tensor(encoded[i][0]), 1
            probs = torch.sigmoid(step_logits(model, {"input_ids": ids.to(device), "attention_mask": attn.to(device)}))
            for row, i in enumerate(chunk):
                out[i] = probs[row, encoded[i][1]].tolist()
    model.train(was_training)
    return out


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


def load_prm_step_scorer(path: str, device: str, meter: ComputeMeter | None = None):
    """step_scores(prompts, step_lists) -> the PRM's P(correct so far) after each step, batched
    (``load_prm``; ``embedded`` = the embedded reasoning PRM). With ``meter``, its forward passes
    are counted."""
    prm, prm_tokenizer = load_prm(resolve_prm(path), device, what="--set prm")
    if meter is not None:
        meter.watch(prm)

    def step_scores(prompts: Sequence[str], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        return score_step_lists(prm, prm_tokenizer, list(prompts), [list(s) for s in step_lists])

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


# --- the policy's own scores: likelihood and verifier verdicts ------------------------------------


@torch.no_grad()
def next_token_probs(model, tokenizer, prompts: Sequence[Any], words: Sequence[str]) -> torch.Tensor:
    """P(first token of each word | prompt), (len(prompts), len(words)): one batched forward.

    Used for a model's own yes/no verdicts (self-evaluation)."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    from posttrain.data import prompts_ids
    from posttrain.generation.sampler import left_pad

    ids, attn = left_pad(prompts_ids(tokenizer, prompts), pad_id, device)
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=position_ids).logits[:, -1].float()
    word_ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    return torch.softmax(logits, -1)[:, word_ids]


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


def reward_model_scorer(path: str, device: str):
    """score(prompts, responses) -> list[float] of an outcome reward model (``load_reward_model``)."""
    model, tokenizer = load_reward_model(path, device)
    return lambda prompts, responses: score(model, tokenizer, list(prompts), list(responses)).tolist()


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
