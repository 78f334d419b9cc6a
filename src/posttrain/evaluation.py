"""Held-out evaluation plumbing: batched greedy generation and exact match against a checker."""

from __future__ import annotations

from typing import Any

import torch

from posttrain import outcomes
from posttrain.answers import is_correct
from posttrain.data import iterate_batches, prompts_ids
from posttrain.tracking import announce


@torch.no_grad()
def generate(
    model, tokenizer, prompts: list[Any], max_new_tokens: int = 8, batch_size: int = 64, **sampling
) -> list[str]:
    """Completions for prompts (strings or message lists): one left-padded batched generate per chunk
    (peft prompt-learning models: a greedy decode without cache, see ``greedy_full_forward``)."""
    if not sampling and prompt_learning(model):
        return greedy_full_forward(model, tokenizer, prompts, max_new_tokens, batch_size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs: list[str] = []
    for chunk in iterate_batches(prompts, batch_size):
        encoded = prompts_ids(tokenizer, chunk)
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, e in enumerate(encoded):
            ids[i, width - len(e) :] = torch.tensor(e)
            attn[i, width - len(e) :] = 1
        gen = model.generate(
            input_ids=ids.to(device),
            attention_mask=attn.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=bool(sampling),
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        outputs += tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)
    model.train(was_training)
    return outputs


def prompt_learning(model) -> bool:
    """A peft prompt-learning model: virtual tokens (prompt tuning) or key/value prefixes in every
    layer (prefix tuning, P-Tuning v2)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


@torch.no_grad()
def greedy_full_forward(model, tokenizer, prompts: list[Any], max_new_tokens: int = 8, batch_size: int = 64):
    """Greedy completions computed the way the model is trained: one full forward per new token, no
    KV cache, prompts batched by token length so no padding shifts any position. For peft
    prompt-learning models, whose cached, left-padded ``generate`` (peft 0.21, transformers 5.24)
    does not reproduce the training-time forward: on a P-Tuning v2 model batched ``generate`` scored
    0.67, one prompt at a time 0.82, this decode 0.86 (100 held-out prompts); on a prompt-tuning
    model ``generate`` wrote unrelated digits (0.0) where this decode scored 0.14."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encoded = prompts_ids(tokenizer, prompts)
    outputs: list[str] = [""] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, e in enumerate(encoded):
        by_length.setdefault(len(e), []).append(i)
    for group in by_length.values():
        for chunk in iterate_batches(group, batch_size):
            ids = torch.tensor([encoded[i] for i in chunk], device=device)
            width = ids.shape[1]
            done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
            for _ in range(max_new_tokens):
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
                nxt = logits[:, -1].argmax(-1)
                if tokenizer.eos_token_id is not None:
                    done |= nxt == tokenizer.eos_token_id
                ids = torch.cat([ids, nxt[:, None]], 1)
                if bool(done.all()):
                    break
            for row, i in zip(ids[:, width:].tolist(), chunk, strict=True):
                if tokenizer.eos_token_id in row:
                    row = row[: row.index(tokenizer.eos_token_id)]
                outputs[i] = tokenizer.decode(row, skip_special_tokens=True)
    model.train(was_training)
    return outputs


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
