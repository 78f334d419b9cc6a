"""Scoring: loading and selecting the models that judge completions: outcome reward models (ORMs),
process reward models (PRMs), verifiers (a model's own yes/no verdict) and the policy's own
likelihood. One module, so a reader finds how any judge is loaded, how it reads a completion, and
which one a method gets, in one place; reward *functions* for RL (``posttrain.scoring.rewards``) and the
test-time methods (through ``posttrain.inference.recipe``) call it.

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

Which judge a test-time method gets (from its config: PRM, ORM, embedded PRM, verifier or
likelihood) is chosen in ``posttrain.inference.recipe``, one layer up. ``meter`` arguments take
anything with ``watch(model)`` (``posttrain.inference.recipe.ComputeMeter`` counts the judge's
forward passes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from posttrain.errors import UserError

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
    prepare_tokenizer(tokenizer, model)
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


EMBEDDED_PRM = "embedded"  # --set prm=embedded: the PRM registered as the model source "prm:embedded"


def resolve_prm(path: str, console=None) -> str:
    """A --set prm value as a folder: ``embedded`` is the embedded reasoning task's PRM (built once,
    found through ``posttrain.sources``)."""
    from posttrain import sources

    if path != EMBEDDED_PRM:
        return path
    folder = sources.model_source_for("prm:embedded", console=console)
    if folder is None:
        raise UserError("--set prm=embedded: no embedded PRM is registered (give a PRM folder)")
    return folder


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


def load_prm_step_scorer(path: str, device: str, meter=None):
    """step_scores(prompts, step_lists) -> the PRM's P(correct so far) after each step, batched
    (``load_prm``; ``embedded`` = the embedded reasoning PRM). With ``meter``, its forward passes
    are counted."""
    prm, prm_tokenizer = load_prm(resolve_prm(path), device, what="--set prm")
    if meter is not None:
        meter.watch(prm)

    def step_scores(prompts: Sequence[str], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        return score_step_lists(prm, prm_tokenizer, list(prompts), [list(s) for s in step_lists])

    return step_scores


def load_prm_scorer(path: str, device: str, delimiter: str, aggregate: str = "last", meter=None):
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


def reward_model_scorer(path: str, device: str):
    """score(prompts, responses) -> list[float] of an outcome reward model (``load_reward_model``)."""
    model, tokenizer = load_reward_model(path, device)
    return lambda prompts, responses: score(model, tokenizer, list(prompts), list(responses)).tolist()
