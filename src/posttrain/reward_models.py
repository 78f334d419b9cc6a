"""Trained reward models as a reward: load one and score (prompt, completion) pairs.

Stable API for the RL and test-time plugins (keep these signatures):

    from posttrain.reward_models import load_reward_model, score
    model, tokenizer = load_reward_model("runs/reward-model/<stamp>/model", device="cpu")
    rewards = score(model, tokenizer, ["12+30="], ["42"])   # tensor (N,), float32, on CPU

- ``load_reward_model(path, device)`` loads a standard transformers sequence-classification folder
  with one label (what ``catalog run reward-model`` saves; any ``AutoModelForSequenceClassification``
  reward model from the hub works too), sets the pad token, and returns ``(model, tokenizer)`` in
  eval mode. Bad paths raise ``UserError``.
- ``score(model, tokenizer, prompts, completions, batch_size=64)`` returns the scalar reward of each
  pair. Prompts and completions are tokenized exactly as during reward-model training
  (``posttrain.data.tokenize_prompt_completion``: prompt ids, completion ids, EOS), and the score is
  read at the last non-pad token. Strings or chat message lists are accepted.

Process reward models (``catalog run prm``), same conventions:

    from posttrain.reward_models import load_prm, score_steps
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

No torch import at module level: the CLI's catalog commands may import this module's neighbours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.errors import UserError


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
