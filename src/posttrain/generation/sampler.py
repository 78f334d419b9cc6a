"""The sampler: completions of token-id prompts with a KV cache, behind one entry point
(``sample_tokens``) and three backends picked by ``Sampling.backend``:

- ``native`` (default): our own loop (``native_generate``). Each prompt is prefilled once and its
  KV cache shared by its G samples (left padding, generate's position ids), then one cached forward
  per new token, exiting as soon as every row has finished. It also returns the sampler's
  log-probs, so a rollout needs no extra forward for its old-policy log-probs. For Llama / Qwen2
  models the forward is ``posttrain.generation.fastpath``'s (preallocated cache).
- ``hf``: transformers' ``generate`` with an explicit generation config (``generation_config``);
  also what ``native`` hands over to when a stop string is more than one token.
- ``vllm``: a colocated vLLM engine (``posttrain.generation.vllm.VLLMEngine``), CUDA only.

Sampling uses an explicit config (temperature, top-p, top-k, no repetition penalty), never the
checkpoint's generation_config.json defaults. The completion conventions (``completion_masks``): a
completion ends at its first stop id or stop string, both included; after the end, tokens are
``pad_id`` and masked out. ``posttrain.generation.logprobs.completion_logprobs`` recomputes the
sampler's log-probs from the same left padding and position ids.

Text-level decoding for evaluation and test-time methods (N texts per prompt, greedy decoding) is
``posttrain.generation.decode``; it shares ``left_pad`` with this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from posttrain.errors import UserError
from posttrain.generation.fastpath import lean_decoder

# --- sampling settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    backend: str = "native"  # "native" | "hf" | "vllm" (resolved from "auto" by resolve_backend)


def resolve_backend(name: str, device: str) -> str:
    """'auto' -> 'vllm' when vllm imports and the device is CUDA, else 'native' (our sampling loop)."""
    if name in ("hf", "native"):
        return name
    available = _vllm_available() and device.startswith("cuda")
    if name == "vllm" and not available:
        raise UserError("backend=vllm: needs `pip install vllm` and a CUDA device (use backend=native, hf or auto)")
    return "vllm" if available else "native"


def _vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


# --- padding, positions, stops ------------------------------------------------------------------


def left_pad(sequences: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (N, longest) long, on ``device`` if given: each sequence
    right-aligned after ``pad_id`` tokens, the layout every batched generate of a decoder needs.

    left_pad([[5, 6], [7]], 0) -> ids [[5, 6], [0, 7]], mask [[1, 1], [0, 1]]."""
    width = max(len(s) for s in sequences)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in sequences], dtype=torch.long)
    attn = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], dtype=torch.long)
    if device is not None:
        ids, attn = ids.to(device), attn.to(device)
    return ids, attn


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """The positions generate() uses with left padding (pads get 1, as in transformers)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


def eos_ids(tokenizer, model=None) -> list[int]:
    """EOS ids of the tokenizer and of the model's generation config (Qwen lists two)."""
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(config_eos if isinstance(config_eos, list) else [config_eos])
    return sorted(i for i in ids if i is not None)


def completion_masks(
    completion_ids: torch.Tensor, stop_ids: Sequence[int], tokenizer=None, stop: Sequence[str] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask (N, C) float, truncated (N,) bool): a completion ends at its first stop id (included)
    or at the end of the first stop string (included); tokens after the end are masked out."""
    n, width = completion_ids.shape
    is_stop = torch.isin(completion_ids, torch.tensor(list(stop_ids), dtype=torch.long, device=completion_ids.device))
    has_stop = is_stop.any(-1)
    lengths = torch.where(has_stop, is_stop.float().argmax(-1) + 1, torch.full_like(has_stop, width, dtype=torch.long))
    if stop and tokenizer is not None:
        for i in range(n):
            ids = completion_ids[i, : int(lengths[i])].tolist()
            end = _stop_string_end(ids, tokenizer, stop)
            if end is not None:
                lengths[i] = min(int(lengths[i]), end)
                has_stop[i] = True
    mask = (torch.arange(width, device=completion_ids.device)[None, :] < lengths[:, None]).float()
    return mask, ~has_stop


def _stop_string_end(ids: list[int], tokenizer, stop: Sequence[str]) -> int | None:
    """Fewest leading tokens whose text contains a stop string (binary search: containment is monotone)."""

    def hit(k: int) -> bool:
        text = tokenizer.decode(ids[:k], skip_special_tokens=True)
        return any(s in text for s in stop)

    if not ids or not hit(len(ids)):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to and including the earliest stop string."""
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text


def generation_config(tokenizer, sampling: Sampling, stop_ids: list[int]):
    """An explicit config: the checkpoint's own defaults (repetition penalty, top-k...) would change
    the sampling distribution without changing the log-probs we train on."""
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    return GenerationConfig(
        do_sample=True,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_new_tokens=sampling.max_new_tokens,
        repetition_penalty=1.0,
        pad_token_id=pad,
        eos_token_id=stop_ids,
        stop_strings=list(sampling.stop) or None,
    )


# --- the native sampling loop -----------------------------------------------------------------------


def single_token_stops(tokenizer, stop: Sequence[str]) -> list[int] | None:
    """Token ids of the stop strings when each one is exactly one token, else None (the native loop
    then hands over to generate's StopStringCriteria). A stop string that also occurs inside longer
    tokens is still cut correctly afterwards by ``completion_masks``, only without the early exit."""
    ids = []
    for text in stop:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1 or tokenizer.decode(encoded) != text:
            return None
        ids.append(encoded[0])
    return ids


def sampling_scores(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The scores tokens are drawn from (softmax): logits / temperature, then top-k, then top-p
    (nucleus) filtering with -inf, in transformers' order and with its tie rules (TopK keeps every
    token tied with the k-th; TopP keeps the smallest set whose probability exceeds top_p, at least 1).

    Logits [2, 1, 0] with top_k 2 -> [2, 1, -inf]; with top_p 0.6 -> [2, -inf, -inf] (p = 0.665, ...).
    """
    scores = logits.float() / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores, dim=-1)  # ascending
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - top_p
        drop[..., -1] = False  # keep the most likely token
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return scores


def draw(scores: torch.Tensor) -> torch.Tensor:
    """One token per row from softmax(scores): argmax of p / E with E = -log U ~ Exp(1), U uniform
    (the exponential race, as vLLM samples; several times cheaper than torch.multinomial on CPU)."""
    return (scores.softmax(-1) / -torch.rand_like(scores).log()).argmax(-1)


def _lean_prefill(lean, ids, attn, positions, repeat: int, max_new_tokens: int):
    """_hf_prefill with posttrain.generation.fastpath's forward and preallocated cache."""
    logits, cache = lean.prefill(ids, attn, positions, repeat, ids.shape[1] + max_new_tokens)
    return logits, lambda token, position: lean.decode(token, position, cache)


def _hf_prefill(model, ids, attn, positions, repeat: int):
    """(last logits repeated per sample, step(token, position) -> next logits) with the model's own
    forward and cache: the path for architectures posttrain.generation.fastpath does not cover."""
    out = model(input_ids=ids, attention_mask=attn, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache, logits = out.cache, out.logits[:, -1]
    if repeat > 1:
        cache.batch_repeat_interleave(repeat)
        logits, attn = logits.repeat_interleave(repeat, 0), attn.repeat_interleave(repeat, 0)
    state = {"attn": attn}
    one = torch.ones(attn.shape[0], 1, dtype=attn.dtype, device=attn.device)

    def step(token, position):
        state["attn"] = torch.cat([state["attn"], one], 1)
        out = model(
            input_ids=token[:, None], attention_mask=state["attn"], position_ids=position, cache=cache, use_cache=True
        )
        return out.logits[:, -1]

    return logits, step


@torch.no_grad()
def native_generate(
    model, prompts: list[list[int]], num_generations: int, sampling: Sampling, stop_ids: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(completion ids (N, C), sampler log-probs (N, C)) for N = len(prompts) x G, the G rows of a
    prompt contiguous; C <= max_new_tokens.

    Each prompt is prefilled once (left padding, generate's position ids) and its KV cache repeated
    for its G samples; then one cached forward per new token (posttrain.generation.fastpath's lean forward
    for Llama / Qwen2 models, else the model's own). A row finishes at its first stop id
    (included); after that it gets ``pad_id`` and log-prob 0, and the loop exits as soon as every
    row has finished. The log-probs are log softmax(logits / temperature) of the drawn tokens, the
    quantity ``completion_logprobs`` recomputes (top-k / top-p shape the draw, not the log-prob,
    as in training). The model is put in eval mode (no dropout) for the loop.
    """
    device = next(model.parameters()).device
    ids, attn = (t.to(device) for t in left_pad(prompts, pad_id))
    positions = position_ids(attn)
    was_training = model.training
    model.eval()
    try:
        lean = lean_decoder(model)
        if lean is not None:
            logits, step = _lean_prefill(lean, ids, attn, positions, num_generations, sampling.max_new_tokens)
        else:
            logits, step = _hf_prefill(model, ids, attn, positions, num_generations)
        position = positions.repeat_interleave(num_generations, 0)[:, -1:] + 1
        n = position.shape[0]
        stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        tokens, logps = [], []
        for index in range(sampling.max_new_tokens):
            scores = sampling_scores(logits, sampling.temperature, sampling.top_k, sampling.top_p)
            token = draw(scores)
            logp = torch.log_softmax(logits.float() / sampling.temperature, -1).gather(-1, token[:, None]).squeeze(-1)
            token = token.masked_fill(finished, pad_id)
            tokens.append(token)
            logps.append(logp.masked_fill(finished, 0.0))
            finished = finished | torch.isin(token, stops)
            if index + 1 == sampling.max_new_tokens or bool(finished.all()):
                break
            logits = step(token, position)
            position = position + 1
    finally:
        model.train(was_training)
    return torch.stack(tokens, 1), torch.stack(logps, 1)


# --- the one entry point ------------------------------------------------------------------------------


@dataclass
class SampledTokens:
    """G completions per prompt, the G rows of a prompt contiguous (N = prompts x G rows)."""

    prompt_ids: torch.Tensor  # (N, Tp) left-padded, on the model's device
    prompt_mask: torch.Tensor  # (N, Tp)
    completion_ids: torch.Tensor  # (N, C) right-padded with pad_id after each completion's end
    completion_mask: torch.Tensor  # (N, C) float: 1 up to and including EOS or the stop string
    truncated: torch.Tensor  # (N,) bool: no EOS or stop string within max_new_tokens
    texts: list[str]  # decoded completions, cut after the first stop string
    sample_logps: torch.Tensor | None  # (N, C) the native sampler's log-probs (0 off the mask), else None
    pad_id: int


def hf_generate(model, tokenizer, prompt: torch.Tensor, prompt_attn: torch.Tensor, sampling: Sampling, stop_ids):
    """Completion ids (N, C) of transformers' ``generate`` with the explicit ``generation_config``
    (the hf backend; stop strings through generate's StopStringCriteria)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = model.generate(
        input_ids=prompt.to(device),
        attention_mask=prompt_attn.to(device),
        generation_config=generation_config(tokenizer, sampling, stop_ids),
        tokenizer=tokenizer if sampling.stop else None,
    )
    model.train(was_training)
    return out[:, prompt.shape[1] :]


@torch.no_grad()
def sample_tokens(
    model, tokenizer, prompts: list[list[int]], num_generations: int, sampling: Sampling, vllm_engine=None
) -> SampledTokens:
    """G = ``num_generations`` completions of each token-id prompt in one batched call with KV cache
    (left padding): ``vllm_engine`` when given, else the native loop (``sampling.backend`` native;
    it hands multi-token stop strings to generate), else transformers' ``generate`` (hf)."""
    device = next(model.parameters()).device
    stop_ids = eos_ids(tokenizer, model)
    if not stop_ids:
        raise UserError("the tokenizer has no eos_token_id: completions could never end (set one)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    encoded = [ids for ids in prompts for _ in range(num_generations)]
    prompt, prompt_attn = left_pad(encoded, pad)
    native_stops = single_token_stops(tokenizer, sampling.stop) if sampling.backend == "native" else None
    sample_logps = None
    if vllm_engine is not None:
        completion = vllm_engine.generate(model, encoded, sampling, pad).to(device)
    elif native_stops is not None:
        completion, sample_logps = native_generate(
            model, prompts, num_generations, sampling, sorted(set(stop_ids) | set(native_stops)), pad
        )
    else:
        completion = hf_generate(model, tokenizer, prompt, prompt_attn, sampling, stop_ids)
    mask, truncated = completion_masks(completion, stop_ids, tokenizer, sampling.stop)
    width = max(1, int(mask.sum(-1).max()))  # drop columns that are padding in every row
    completion, mask = completion[:, :width], mask[:, :width]
    completion = torch.where(mask.bool(), completion, torch.full_like(completion, pad))
    if sample_logps is not None:
        sample_logps = sample_logps[:, :width] * mask
    texts = [
        cut_at_stop(t, sampling.stop)
        for t in tokenizer.batch_decode(completion * mask.long() + pad * (1 - mask.long()), skip_special_tokens=True)
    ]
    return SampledTokens(
        prompt_ids=prompt.to(device),
        prompt_mask=prompt_attn.to(device),
        completion_ids=completion,
        completion_mask=mask,
        truncated=truncated,
        texts=texts,
        sample_logps=sample_logps,
        pad_id=pad,
    )
