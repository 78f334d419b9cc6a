"""Online-RL rollouts: sampling G completions per prompt, their masks, and the log-probs of the
sampled tokens under the policy, the old policy and the reference. Plumbing only: advantage
estimators and policy losses live in the plugins.

Layout of a rollout (``Rollout``), N = prompts x G rows, the G completions of a prompt contiguous:

    input_ids        (N, Tp + C)  prompt left-padded to Tp | completion right-padded to C
    completion_mask  (N, C)       1 on the sampled tokens up to and including EOS or the stop string
    *_logps          (N, C)       log p(completion token j | prefix), aligned with completion_mask

Answers to the usual complaints about RL libraries:
- generation is one batched call with KV cache (left padding): by default our own sampling loop
  (``native_generate``: each prompt is prefilled once and its KV cache shared by its G samples, then
  one cached forward per new token, exiting as soon as every row has finished), else transformers'
  ``generate`` (backend=hf) or vLLM (backend=vllm). The native loop also returns the sampler's
  log-probs, which serve as the old-policy log-probs (one forward pass fewer per rollout);
- for Llama / Qwen2 models both the sampler and the log-prob forward use ``posttrain.fastpath``:
  a preallocated KV cache, and a training forward that runs each prompt once for its G samples
  (equal to the model's own forward, values and gradients; tests/test_fastpath.py);
- sampling uses an explicit generation config (temperature, top-p, top-k, no repetition penalty),
  not whatever the checkpoint's generation_config.json says, and log-probs are computed with the
  same temperature and the same left-padding position ids, so the old-policy log-probs equal the
  sampler's (tests/test_rollout.py checks them against generate's own logits);
- batch semantics are explicit and printed at start (``BatchSemantics.describe``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from posttrain import outcomes
from posttrain.data import batch_indices, prompts_ids
from posttrain.errors import UserError
from posttrain.fastpath import lean_decoder

# --- batch semantics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSemantics:
    """How rollouts map onto optimizer steps (see posttrain.rollout_config for the config fields)."""

    prompts_per_step: int
    completions_per_prompt: int
    micro_batch: int
    grad_accum: int = 1
    policy_epochs: int = 1

    @classmethod
    def from_config(cls, cfg) -> BatchSemantics:
        """From a RolloutConfig; the micro-batch is capped at the rollout size."""
        n = cfg.prompts_per_step * cfg.num_generations
        semantics = cls(
            cfg.prompts_per_step, cfg.num_generations, min(cfg.batch_size, n), cfg.grad_accum, cfg.policy_epochs
        )
        semantics.check()
        return semantics

    @property
    def completions_per_rollout(self) -> int:
        return self.prompts_per_step * self.completions_per_prompt

    @property
    def completions_per_step(self) -> int:
        return self.micro_batch * self.grad_accum

    @property
    def steps_per_epoch(self) -> int:
        return self.completions_per_rollout // self.completions_per_step

    @property
    def steps_per_rollout(self) -> int:
        return self.steps_per_epoch * self.policy_epochs

    @property
    def reuses_rollouts(self) -> bool:
        """True when a rollout feeds more than one optimizer step, so old-policy log-probs differ from the policy's."""
        return self.steps_per_rollout > 1

    def check(self) -> None:
        n, per_step = self.completions_per_rollout, self.completions_per_step
        if per_step > n or n % per_step:
            raise UserError(
                f"batch_size x grad_accum = {per_step} completions per optimizer step must divide "
                f"prompts_per_step x num_generations = {n} completions per rollout"
            )

    def locate(self, step: int, micro: int) -> tuple[int, int, slice]:
        """(rollout index, policy epoch, rows of the rollout) used by optimizer ``step``, micro-batch ``micro``."""
        rollout, within = divmod(step, self.steps_per_rollout)
        epoch, minibatch = divmod(within, self.steps_per_epoch)
        start = (minibatch * self.grad_accum + micro) * self.micro_batch
        return rollout, epoch, slice(start, start + self.micro_batch)

    def describe(self) -> str:
        return (
            f"batch: {self.prompts_per_step} prompts x {self.completions_per_prompt} completions = "
            f"{self.completions_per_rollout} completions per rollout; micro-batch {self.micro_batch} completions, "
            f"grad_accum {self.grad_accum} -> {self.completions_per_step} completions per optimizer step; "
            f"{self.policy_epochs} policy epoch(s) per rollout -> {self.steps_per_rollout} optimizer step(s) per rollout"
        )


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


def sampling_from_config(cfg, embedded: bool, device: str = "cpu") -> Sampling:
    """Sampling settings of a RolloutConfig; max length 8 tokens on the embedded task, else 256."""
    return Sampling(
        max_new_tokens=cfg.max_completion_length or (8 if embedded else 256),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        stop=tuple(cfg.stop),
        backend=resolve_backend(cfg.backend, device),
    )


# --- the rollout ----------------------------------------------------------------------------------


@dataclass
class Rollout:
    records: list[dict]  # the record of each row's prompt (each repeated G times)
    num_generations: int
    input_ids: torch.Tensor  # (N, Tp + C)
    attention_mask: torch.Tensor  # (N, Tp + C)
    prompt_width: int  # Tp
    completion_mask: torch.Tensor  # (N, C), float
    texts: list[str]
    truncated: torch.Tensor  # (N,) bool: no EOS or stop string within max_new_tokens
    sample_logps: torch.Tensor | None = None  # (N, C), the native sampler's log-probs (0 off the mask)
    old_logps: torch.Tensor | None = None  # (N, C), no grad
    ref_logps: torch.Tensor | None = None  # (N, C), no grad
    rewards: torch.Tensor | None = None  # (N,)
    advantages: torch.Tensor | None = None  # (N,) or (N, C), filled by the plugin's estimator
    reward_components: dict[str, torch.Tensor] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: generate, reward, logprobs
    stats: dict[str, float] = field(default_factory=dict)  # extra per-rollout metrics a plugin logs
    pad_id: int = 0

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def prompts(self) -> list[Any]:
        return [r["prompt"] for r in self.records]

    @property
    def completion_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_width :]

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)

    @property
    def group(self) -> torch.Tensor:
        """(N,) index of each row's prompt."""
        return torch.arange(len(self), device=self.input_ids.device) // self.num_generations

    def grouped(self, values: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (P, G, ...)."""
        return values.view(-1, self.num_generations, *values.shape[1:])

    def select_groups(self, groups: Sequence[int]) -> Rollout:
        """The rollout restricted to whole groups (prompt indices), in the given order."""
        g = self.num_generations
        rows = [i * g + j for i in groups for j in range(g)]
        return self.select_rows(rows)

    def select_rows(self, rows: Sequence[int]) -> Rollout:
        idx = torch.tensor(list(rows), dtype=torch.long, device=self.input_ids.device)

        def pick(t):
            return None if t is None else t[idx]

        return replace(
            self,
            records=[self.records[i] for i in rows],
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            completion_mask=self.completion_mask[idx],
            texts=[self.texts[i] for i in rows],
            truncated=self.truncated[idx],
            sample_logps=pick(self.sample_logps),
            old_logps=pick(self.old_logps),
            ref_logps=pick(self.ref_logps),
            rewards=pick(self.rewards),
            advantages=pick(self.advantages),
            reward_components={k: v[idx] for k, v in self.reward_components.items()},
            timings=dict(self.timings),
            stats=dict(self.stats),
        )


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in sequences], dtype=torch.long)
    attn = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], dtype=torch.long)
    return ids, attn


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
    """_hf_prefill with posttrain.fastpath's forward and preallocated cache."""
    logits, cache = lean.prefill(ids, attn, positions, repeat, ids.shape[1] + max_new_tokens)
    return logits, lambda token, position: lean.decode(token, position, cache)


def _hf_prefill(model, ids, attn, positions, repeat: int):
    """(last logits repeated per sample, step(token, position) -> next logits) with the model's own
    forward and cache: the path for architectures posttrain.fastpath does not cover."""
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
    for its G samples; then one cached forward per new token (posttrain.fastpath's lean forward
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


@torch.no_grad()
def sample_completions(
    model, tokenizer, records: list[dict], num_generations: int, sampling: Sampling, vllm_engine=None
) -> Rollout:
    """G completions per record's ``prompt`` in one batched call with KV cache (left padding): the
    native loop (``sampling.backend`` native; it hands multi-token stop strings to generate),
    transformers' ``generate`` (hf), or ``vllm_engine``."""
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    stop_ids = eos_ids(tokenizer, model)
    if not stop_ids:
        raise UserError("the tokenizer has no eos_token_id: completions could never end (set one)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    rows = [r for r in records for _ in range(num_generations)]
    unique = prompts_ids(tokenizer, [r["prompt"] for r in records])
    encoded = [ids for ids in unique for _ in range(num_generations)]
    prompt, prompt_attn = left_pad(encoded, pad)
    native_stops = single_token_stops(tokenizer, sampling.stop) if sampling.backend == "native" else None
    sample_logps = None
    if vllm_engine is not None:
        completion = vllm_engine.generate(model, encoded, sampling, pad).to(device)
    elif native_stops is not None:
        completion, sample_logps = native_generate(
            model, unique, num_generations, sampling, sorted(set(stop_ids) | set(native_stops)), pad
        )
    else:
        was_training = model.training
        model.eval()
        out = model.generate(
            input_ids=prompt.to(device),
            attention_mask=prompt_attn.to(device),
            generation_config=generation_config(tokenizer, sampling, stop_ids),
            tokenizer=tokenizer if sampling.stop else None,
        )
        model.train(was_training)
        completion = out[:, prompt.shape[1] :]
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
    return Rollout(
        records=rows,
        num_generations=num_generations,
        input_ids=torch.cat([prompt.to(device), completion], dim=1),
        attention_mask=torch.cat([prompt_attn.to(device), mask.long()], dim=1),
        prompt_width=prompt.shape[1],
        completion_mask=mask,
        texts=texts,
        truncated=truncated,
        sample_logps=sample_logps,
        timings={"generate": time.perf_counter() - t0},
        pad_id=pad,
    )


def concat_rollouts(rollouts: Sequence[Rollout], pad_id: int | None = None) -> Rollout:
    """Several rollouts (same G) as one, re-padded to a common prompt and completion width."""
    if len(rollouts) == 1:
        return rollouts[0]
    pad_id = rollouts[0].pad_id if pad_id is None else pad_id
    tp = max(r.prompt_width for r in rollouts)
    c = max(r.completion_mask.shape[1] for r in rollouts)

    def pad2(t: torch.Tensor, left: int, right: int, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (left, right), value=value)

    def widen(r: Rollout, t: torch.Tensor | None, fill) -> torch.Tensor | None:
        return None if t is None else pad2(t, 0, c - t.shape[1], fill)

    parts = []
    for r in rollouts:
        left, right = tp - r.prompt_width, c - r.completion_mask.shape[1]
        parts.append(
            (
                pad2(r.input_ids, left, right, pad_id),
                pad2(r.attention_mask, left, right, 0),
                widen(r, r.completion_mask, 0.0),
                widen(r, r.old_logps, 0.0),
                widen(r, r.ref_logps, 0.0),
                widen(r, r.sample_logps, 0.0),
            )
        )

    def cat(i: int) -> torch.Tensor | None:
        return None if any(p[i] is None for p in parts) else torch.cat([p[i] for p in parts])

    first = rollouts[0]
    keys = set(first.reward_components)
    return Rollout(
        records=[rec for r in rollouts for rec in r.records],
        num_generations=first.num_generations,
        input_ids=cat(0),
        attention_mask=cat(1),
        prompt_width=tp,
        completion_mask=cat(2),
        texts=[t for r in rollouts for t in r.texts],
        truncated=torch.cat([r.truncated for r in rollouts]),
        sample_logps=cat(5),
        old_logps=cat(3),
        ref_logps=cat(4),
        rewards=None if first.rewards is None else torch.cat([r.rewards for r in rollouts]),
        advantages=None if first.advantages is None else torch.cat([r.advantages for r in rollouts]),
        reward_components={k: torch.cat([r.reward_components[k] for r in rollouts]) for k in keys},
        timings={k: sum(r.timings.get(k, 0.0) for r in rollouts) for k in first.timings},
        stats=dict(first.stats),
        pad_id=pad_id,
    )


# --- log-probs ------------------------------------------------------------------------------------


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """The positions generate() uses with left padding (pads get 1, as in transformers)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


def completion_logprobs(
    model, rollout: Rollout, rows: slice | torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """log p(completion token | prefix) under ``model`` for ``rows``, (n, C); grad flows if enabled.

    For Llama / Qwen2 models posttrain.fastpath's forward (the prompt part once per run of rows
    sharing it); else one padded forward over prompt + completion, keeping the last C + 1 logits.
    """
    from posttrain.logit_chunks import logit_chunk_size

    if logit_chunk_size(model):
        return chunked_completion_logprobs(model, rollout, rows, temperature)
    rows = slice(None) if rows is None else rows
    ids, attn = rollout.input_ids[rows], rollout.attention_mask[rows]
    width = ids.shape[1] - rollout.prompt_width
    lean = lean_decoder(model)
    if lean is not None:
        logits = lean.completion_logits(ids, attn, rollout.prompt_width)
    else:
        logits = _model_logits(model, ids, attn, width + 1)[:, :-1]
    logits = logits.float() / temperature
    targets = ids[:, rollout.prompt_width :]
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def chunked_completion_logprobs(
    model, rollout: Rollout, rows: slice | torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """``completion_logprobs`` with the LM head applied in chunks (``--logit-chunk-size``,
    posttrain.logit_chunks): hidden states from the lean forward or the model's, no (n, C, V) logits."""
    from posttrain.logit_chunks import check_logit_head, final_hidden_states, token_logprobs_chunked

    rows = slice(None) if rows is None else rows
    ids, attn = rollout.input_ids[rows], rollout.attention_mask[rows]
    width = ids.shape[1] - rollout.prompt_width
    positions = position_ids(attn)
    check_logit_head(model, ids, attention_mask=attn, position_ids=positions)
    lean = lean_decoder(model)
    if lean is not None:
        hidden = lean.completion_hidden(ids, attn, rollout.prompt_width)
    else:
        hidden = final_hidden_states(model, input_ids=ids, attention_mask=attn, position_ids=positions)
        hidden = hidden[:, -width - 1 : -1]
    return token_logprobs_chunked(model, hidden, ids[:, rollout.prompt_width :], temperature=temperature)


def _model_logits(model, ids, attn, keep: int) -> torch.Tensor:
    kwargs = dict(input_ids=ids, attention_mask=attn, position_ids=position_ids(attn))
    try:
        return model(**kwargs, logits_to_keep=keep).logits[:, -keep:]
    except TypeError:  # architectures without logits_to_keep
        return model(**kwargs).logits[:, -keep:]


@torch.no_grad()
def batched_logprobs(model, rollout: Rollout, micro_batch: int, temperature: float = 1.0) -> torch.Tensor:
    """completion_logprobs for every row, in micro-batches, without grad (old policy, reference)."""
    was_training = model.training
    model.eval()
    parts = [
        completion_logprobs(model, rollout, slice(i, i + micro_batch), temperature)
        for i in range(0, len(rollout), micro_batch)
    ]
    model.train(was_training)
    return torch.cat(parts)


def attach_logprobs(
    rollout: Rollout,
    policy,
    reference=None,
    *,
    old: bool,
    ref: bool,
    micro_batch: int,
    temperature: float = 1.0,
) -> Rollout:
    """Fill rollout.old_logps (policy before this rollout's updates) and rollout.ref_logps.

    ``reference`` is a frozen copy (posttrain.hf.frozen_reference) or None for a LoRA policy,
    whose adapter-disabled base is the reference. Skip ``old`` when the rollout feeds a single
    optimizer step: the old policy then equals the policy, and ratios are exactly 1. A rollout from
    the native sampler brings its old-policy log-probs along (``sample_logps``, computed by the
    sampler with the same temperature), so no forward pass is spent on them; ``temperature`` must
    then be the sampling temperature, as it is for every caller.
    """
    from posttrain.hf import reference_mode

    t0 = time.perf_counter()
    if old and rollout.sample_logps is not None:  # the native sampler's: the same quantity, no extra pass
        rollout.old_logps = rollout.sample_logps
    elif old:
        rollout.old_logps = batched_logprobs(policy, rollout, micro_batch, temperature)
    if ref:
        with reference_mode(policy, reference) as ref_model:
            rollout.ref_logps = batched_logprobs(ref_model, rollout, micro_batch, temperature)
    rollout.timings["logprobs"] = rollout.timings.get("logprobs", 0.0) + time.perf_counter() - t0
    return rollout


def score_rollout(rollout: Rollout, reward_fn) -> Rollout:
    """Fill rollout.rewards (N,) and rollout.reward_components with a posttrain.rewards.CombinedReward."""
    t0 = time.perf_counter()
    total, parts = reward_fn(rollout.prompts, rollout.texts, rollout.records)
    device = rollout.input_ids.device
    rollout.rewards = torch.tensor(total, dtype=torch.float32, device=device)
    rollout.reward_components = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in parts.items()}
    rollout.timings["reward"] = rollout.timings.get("reward", 0.0) + time.perf_counter() - t0
    return rollout


def rollout_metrics(rollout: Rollout) -> dict[str, float]:
    """What every online-RL plugin logs about a rollout."""
    lengths = rollout.lengths
    out = {
        "reward": float(rollout.rewards.mean()) if rollout.rewards is not None else 0.0,
        "reward_std": float(rollout.grouped(rollout.rewards).std(-1).mean()) if rollout.rewards is not None else 0.0,
        "completion_length": float(lengths.mean()),
        "truncated_share": float(rollout.truncated.float().mean()),
    }
    for name, values in rollout.reward_components.items():
        out[f"rewards/{name}"] = float(values.mean())
    return {**out, **rollout.stats}


# --- from optimizer steps to rollouts ----------------------------------------------------------


def prompt_batch(records: list[dict], semantics: BatchSemantics, rollout_index: int, seed: int) -> list[dict]:
    """The prompts of rollout ``rollout_index``: epoch-wise shuffles, a pure function of (index, seed)."""
    idx = batch_indices(len(records), semantics.prompts_per_step, rollout_index, seed)
    return [records[i] for i in idx]


# --- held-out evaluation ------------------------------------------------------------------------


def evaluate_policy(
    model, tokenizer, records: list[dict], reward_fn, sampling: Sampling, eval_max_new_tokens: int
) -> dict[str, float | None]:
    """Greedy exact match (when records have answers) and the mean reward of one sampled completion
    per held-out prompt at the training temperature (what the RL objective raises); each prompt's
    reward is kept for the run's paired statistics (``posttrain.outcomes``, a per-problem score)."""
    from posttrain.evaluation import exact_match

    em = exact_match(model, tokenizer, records, max_new_tokens=eval_max_new_tokens)["exact_match"]
    local = replace(sampling, backend="hf" if sampling.backend == "hf" else "native")  # not vLLM's stale weights
    rewards: list[float] = []
    for start in range(0, len(records), 256):
        chunk = sample_completions(model, tokenizer, records[start : start + 256], 1, local)
        rewards += reward_fn(chunk.prompts, chunk.texts, chunk.records)[0]
    outcomes.record("reward", [r["prompt"] for r in records], rewards, outcomes.SCORE)
    return {"exact_match": em, "reward": sum(rewards) / max(1, len(rewards))}


# --- optional vLLM backend (untested on CPU machines) --------------------------------------------


class VLLMEngine:
    """Rollouts with vLLM in the same process (colocated): weights are pushed from the policy before
    every rollout. Only used with backend=vllm|auto on CUDA when vllm is installed; the CPU test
    suite cannot exercise it. LoRA policies are merged on the fly before the push."""

    def __init__(self, model_path: str, gpu_memory_utilization: float = 0.3) -> None:
        from vllm import LLM

        self.llm = LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True)

    def _push_weights(self, policy) -> None:
        from posttrain.hf import is_peft

        if is_peft(policy):
            policy.merge_adapter()
        state = {
            k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in policy.state_dict().items()
        }
        state = {k: v for k, v in state.items() if "lora_" not in k}
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(state.items())
        if is_peft(policy):
            policy.unmerge_adapter()

    def generate(self, policy, encoded: list[list[int]], sampling: Sampling, pad_id: int) -> torch.Tensor:
        from vllm import SamplingParams, TokensPrompt

        self._push_weights(policy)
        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k or -1,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None,
            include_stop_str_in_output=True,
        )
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=e) for e in encoded], params, use_tqdm=False)
        seqs = [list(o.outputs[0].token_ids) or [pad_id] for o in outs]
        width = max(len(s) for s in seqs)
        return torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], dtype=torch.long)
