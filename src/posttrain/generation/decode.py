"""Text-level decoding on top of the sampler's conventions (``posttrain.generation.sampler``): what
evaluation and the test-time (inference) methods call.

- ``sample``: n completions per prompt (texts, the raw model's log-prob of every generated token,
  whether each ended with EOS) from ONE batched ``generate`` per chunk; the prompts are prefilled
  once and their KV cache repeated n times (``DynamicCache.batch_repeat_interleave``), so a prompt
  is never recomputed per sample. Greedy with ``greedy=True``.
- ``generate``: one completion per prompt (greedy by default, or with sampling options), for
  held-out evaluation; peft prompt-learning models are decoded without cache
  (``greedy_full_forward``).

Both left-pad with ``posttrain.generation.sampler.left_pad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from posttrain.data import iterate_batches, prompts_ids
from posttrain.generation.sampler import left_pad


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
    meter=None,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    batch_size: int = 512,
    stop: Sequence[str] | None = None,
    extra_generate: dict[str, Any] | None = None,
) -> Completions:
    """n completions for each prompt (strings or message lists), one batched generate per chunk of
    prompts (chunk * n <= batch_size), with the prompt prefilled once and its cache shared.
    ``meter`` (a ``posttrain.inference.recipe.ComputeMeter``) counts the generated tokens."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    per_call = max(1, batch_size // max(n, 1))
    texts: list[list[str]] = []
    logps: list[list[list[float]]] = []
    ended: list[list[bool]] = []
    encoded_all = prompts_ids(tokenizer, prompts)
    for start in range(0, len(prompts), per_call):
        encoded = encoded_all[start : start + per_call]
        ids, attn = left_pad(encoded, pad_id, device)
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
        ids, attn = left_pad(prompts_ids(tokenizer, chunk), pad_id, device)
        width = ids.shape[1]
        gen = model.generate(
            input_ids=ids,
            attention_mask=attn,
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
