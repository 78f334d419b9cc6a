"""Reward functions for online RL: a small registry, combined with weights, selected by config.

A reward function maps ``(prompts, completions, records) -> list[float]``, one value per
completion; ``records`` are the dataset records the prompts came from (``answer`` for verifiable
tasks). Built-ins:

- ``exact-match``: 1 when the completion passes the task checker against the record's ``answer``
  (the embedded task's: first integer equals the answer; else trimmed string equality), else 0;
- ``format``: 1 when the whole completion matches a regex (default: DeepSeek-R1's
  ``<think>...</think><answer>...</answer>``), else 0;
- ``length-penalty``: 0 up to ``length_budget`` characters, then falling linearly to -1 at twice
  the budget (and staying there);
- ``reward-model:PATH``: the score of any sequence-classification model (a local folder or hub id
  loadable with AutoModelForSequenceClassification) on prompt + completion;
- ``code-tests`` / ``code-tests:SECONDS``: the share of the record's ``tests`` (stdin/stdout pairs
  ``{"input", "output"}`` or assert strings) that the completion's last code block passes, run in
  ``posttrain.scoring.sandbox`` with a per-test timeout (default 2 s).

``register_reward(name, factory)`` adds one; ``CombinedReward`` sums them with weights and keeps
each component for logging. No torch import at module level.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.errors import UserError

RewardFn = Callable[[Sequence[Any], Sequence[str], Sequence[dict]], list[float]]

R1_FORMAT = r"(?s)^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$"


@dataclass(frozen=True)
class RewardOptions:
    """Options the built-in factories read (fields of posttrain.rl.rollout_config.RolloutConfig)."""

    format_pattern: str | None = None
    length_budget: int = 512
    device: str = "cpu"


# --- built-in reward functions -------------------------------------------------------------------


def exact_match_reward(prompts: Sequence[Any], completions: Sequence[str], records: Sequence[dict]) -> list[float]:
    from posttrain.evaluation import reference_of, score

    out = []
    for completion, record in zip(completions, records, strict=True):
        if reference_of(record) is None:
            raise UserError(
                f"reward exact-match: record {record.get('_line', '?')} has no 'answer' (use another reward)"
            )
        out.append(1.0 if score(completion, record) else 0.0)
    return out


def format_reward(pattern: str) -> RewardFn:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"format_pattern {pattern!r}: not a valid regular expression ({exc})") from None

    def reward(prompts, completions, records) -> list[float]:
        return [1.0 if compiled.fullmatch(c) else 0.0 for c in completions]

    return reward


def length_penalty(length: int, budget: int) -> float:
    """0 within the budget, then linear down to -1 at twice the budget."""
    return -min(1.0, max(0, length - budget) / budget)


def length_penalty_reward(budget: int) -> RewardFn:
    def reward(prompts, completions, records) -> list[float]:
        return [length_penalty(len(c), budget) for c in completions]

    return reward


def render_for_classifier(tokenizer, prompt: Any, completion: str) -> str:
    """Prompt + completion as text: through the chat template for message lists, else concatenated."""
    if isinstance(prompt, list):
        messages = prompt + [{"role": "assistant", "content": completion}]
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False)
        return "".join(str(m.get("content", "")) for m in messages)
    return f"{prompt}{completion}"


def reward_model_reward(path: str, device: str = "cpu", batch_size: int = 32) -> RewardFn:
    """Scores of a sequence-classification model (logit 0, or logit 1 - logit 0 with two labels).

    One-label models (the reward-model plugin's) are scored with ``posttrain.scoring.scorers.score``,
    i.e. tokenized as in their training; two-label classifiers read the plain prompt + completion text."""
    from posttrain.scoring.scorers import load_classifier

    model, tokenizer = load_classifier(path, device)

    def reward(prompts, completions, records) -> list[float]:
        import torch

        if model.config.num_labels == 1:
            # Tokenize exactly as reward-model training did (prompt ids + completion ids + EOS, score read
            # at EOS); scoring the plain text without EOS reads the head at a position it never saw.
            from posttrain.scoring.scorers import score

            return score(model, tokenizer, list(prompts), list(completions), batch_size).tolist()
        texts = [render_for_classifier(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True, truncation=True)
                logits = model(**{k: v.to(device) for k, v in enc.items()}).logits.float()
                values = logits[:, 1] - logits[:, 0] if logits.shape[-1] == 2 else logits[:, 0]
                out += values.tolist()
        return out

    return reward


def code_tests_reward(argument: str) -> RewardFn:
    from posttrain.scoring.sandbox import code_execution_factory

    return code_execution_factory(None, argument)


# --- the registry ------------------------------------------------------------------------------

RewardFactory = Callable[[RewardOptions, str], RewardFn]  # (options, argument after ':') -> function

REWARDS: dict[str, RewardFactory] = {
    "exact-match": lambda opts, arg: exact_match_reward,
    "format": lambda opts, arg: format_reward(opts.format_pattern or R1_FORMAT),
    "length-penalty": lambda opts, arg: length_penalty_reward(opts.length_budget),
    "reward-model": lambda opts, arg: reward_model_reward(arg, opts.device),
    "code-tests": lambda opts, arg: code_tests_reward(arg),
}


def register_reward(name: str, factory: RewardFactory) -> None:
    REWARDS[name] = factory


def build_reward(spec: str, options: RewardOptions | None = None) -> RewardFn:
    """A reward function from its spec: ``name`` or ``name:argument`` (``reward-model:./rm``)."""
    name, _, arg = spec.partition(":")
    if name not in REWARDS:
        raise UserError(f"rewards: unknown reward '{spec}' (expected one of {', '.join(sorted(REWARDS))})")
    if name == "reward-model" and not arg:
        raise UserError("rewards: reward-model needs a path, e.g. reward-model:./my-reward-model")
    return REWARDS[name](options or RewardOptions(), arg)


@dataclass
class CombinedReward:
    """Weighted sum of reward functions; ``__call__`` returns (totals, {name: values})."""

    names: list[str]
    functions: list[RewardFn]
    weights: list[float]

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[str], records: Sequence[dict]
    ) -> tuple[list[float], dict[str, list[float]]]:
        parts = {name: fn(prompts, completions, records) for name, fn in zip(self.names, self.functions, strict=True)}
        totals = [
            sum(w * parts[name][i] for name, w in zip(self.names, self.weights, strict=True))
            for i in range(len(completions))
        ]
        return totals, parts


def combined_reward(specs: Sequence[str], weights: Sequence[float] | None = None, options=None) -> CombinedReward:
    if not specs:
        raise UserError("rewards: give at least one reward function, e.g. rewards=[exact-match]")
    if weights is not None and len(weights) != len(specs):
        raise UserError(f"reward_weights: expected {len(specs)} weights (one per reward), got {len(weights)}")
    names: list[str] = []
    for spec in specs:  # log keys: the name without its argument, numbered when repeated
        base = spec.split(":", 1)[0]
        names.append(base if base not in names else f"{base}-{len(names)}")
    return CombinedReward(names, [build_reward(s, options) for s in specs], list(weights or [1.0] * len(specs)))


def reward_from_config(cfg, device: str = "cpu") -> CombinedReward:
    """The combined reward of a RolloutConfig (fields rewards, reward_weights, format_pattern, length_budget)."""
    options = RewardOptions(format_pattern=cfg.format_pattern, length_budget=cfg.length_budget, device=device)
    return combined_reward(cfg.rewards, cfg.reward_weights, options)
