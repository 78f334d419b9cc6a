"""Held-out evaluation plumbing: exact match of greedy completions (``posttrain.generation.decode``)
against a checker, and the mean NLL (the RL policy's held-out
rewards are ``posttrain.rl.rollout.evaluate_policy``)."""

from __future__ import annotations

from typing import Any

import torch

from posttrain import outcomes
from posttrain.answers import is_correct
from posttrain.console import announce
from posttrain.data import iterate_batches
from posttrain.generation.decode import generate


def reference_of(record: dict) -> str | None:
    if "answer" in record:
        return str(record["answer"])
    if isinstance(record.get("completion"), str):
        return record["completion"]
    return None


def score(completion: str, record: dict) -> bool:
    """Checker: the first integer for numeric answers, else whitespace-trimmed exact match."""
    ref = reference_of(record)
    if ref is None:
        return False
    if ref.strip().lstrip("-").isdigit():
        return is_correct(completion, ref)
    return completion.strip() == ref.strip()


def exact_match(
    model, tokenizer, records: list[dict], max_new_tokens: int = 8, batch_size: int = 64, metric: str = "exact_match"
) -> dict[str, Any]:
    """Greedy exact match on the records that have a reference; the per-problem outcomes are kept
    under ``metric`` for the run's paired statistics (``posttrain.outcomes``)."""
    scored = [r for r in records if reference_of(r) is not None]
    if not scored:
        return {"exact_match": None, "n": 0}
    outs = generate(model, tokenizer, [r["prompt"] for r in scored], max_new_tokens, batch_size)
    correct = [score(o, r) for o, r in zip(outs, scored, strict=True)]
    outcomes.record(metric, [r["prompt"] for r in scored], correct)
    hits = sum(correct)
    announce(f"held-out {metric}: {hits}/{len(scored)} = {hits / len(scored):.1%} (greedy decoding)")
    return {
        "exact_match": hits / len(scored),
        "n": len(scored),
        "samples": list(zip([r["prompt"] for r in scored[:5]], outs[:5], strict=False)),
    }


@torch.no_grad()
def mean_nll(model, examples: list[dict], pad_id: int, batch_size: int = 64) -> float:
    """Held-out loss: mean NLL per completion token of tokenized examples."""
    from posttrain.data import pad_sequences
    from posttrain.logprobs import sequence_logprobs

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0.0
    for chunk in iterate_batches(examples, batch_size):
        logp, n = sequence_logprobs(model, pad_sequences(chunk, pad_id, str(device)))
        total -= logp.sum().item()
        count += n.sum().item()
    model.train(was_training)
    return total / max(count, 1.0)
