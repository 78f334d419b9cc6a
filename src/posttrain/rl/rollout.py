"""Online-RL rollouts: G completions per prompt (``Rollout``), their rewards, and the log-probs of
the sampled tokens under the policy, the old policy and the reference; how rollouts map onto
optimizer steps (``BatchSemantics``). Plumbing only: advantage estimators and
policy losses live in the plugins and ``posttrain.rl``; sampling is ``posttrain.generation.sampler`` and log-probs
``posttrain.generation.logprobs``.

Layout of a rollout (``Rollout``), N = prompts x G rows, the G completions of a prompt contiguous:

    input_ids        (N, Tp + C)  prompt left-padded to Tp | completion right-padded to C
    completion_mask  (N, C)       1 on the sampled tokens up to and including EOS or the stop string
    *_logps          (N, C)       log p(completion token j | prefix), aligned with completion_mask

Answers to the usual complaints about RL libraries:
- generation is one batched call with KV cache (left padding): by default our own sampling loop
  (``posttrain.generation.sampler.native_generate``: each prompt is prefilled once and its KV cache
  shared by its G samples, then one cached forward per new token, exiting as soon as every row has
  finished), else transformers' ``generate`` (backend=hf) or vLLM (backend=vllm). The native loop
  also returns the sampler's log-probs, which serve as the old-policy log-probs (one forward pass
  fewer per rollout);
- for Llama / Qwen2 models both the sampler and the log-prob forward use ``posttrain.generation.fastpath``:
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
from posttrain.evaluation import exact_match
from posttrain.generation.logprobs import batched_logprobs
from posttrain.generation.sampler import Sampling, resolve_backend, sample_tokens

# --- batch semantics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSemantics:
    """How rollouts map onto optimizer steps (see posttrain.rl.rollout_config for the config fields)."""

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


# --- sampling settings of a rollout config ----------------------------------------------------


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


@torch.no_grad()
def sample_completions(
    model, tokenizer, records: list[dict], num_generations: int, sampling: Sampling, vllm_engine=None
) -> Rollout:
    """G completions per record's ``prompt`` as a Rollout (``posttrain.generation.sampler.sample_tokens``:
    one batched call with KV cache, native / hf / vLLM backend)."""
    t0 = time.perf_counter()
    rows = [r for r in records for _ in range(num_generations)]
    unique = prompts_ids(tokenizer, [r["prompt"] for r in records])
    sampled = sample_tokens(model, tokenizer, unique, num_generations, sampling, vllm_engine)
    return Rollout(
        records=rows,
        num_generations=num_generations,
        input_ids=torch.cat([sampled.prompt_ids, sampled.completion_ids], dim=1),
        attention_mask=torch.cat([sampled.prompt_mask, sampled.completion_mask.long()], dim=1),
        prompt_width=sampled.prompt_ids.shape[1],
        completion_mask=sampled.completion_mask,
        texts=sampled.texts,
        truncated=sampled.truncated,
        sample_logps=sampled.sample_logps,
        timings={"generate": time.perf_counter() - t0},
        pad_id=sampled.pad_id,
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


def attach_logprobs(
    rollout: Rollout,
    policy,
    reference=None,
    *,
    old: bool,
    ref: bool,
    micro_batch: int,
    temperature: float = 1.0,
    trust_sampler: bool = True,
) -> Rollout:
    """Fill rollout.old_logps (policy before this rollout's updates) and rollout.ref_logps.

    ``reference`` is a frozen copy (posttrain.hf.frozen_reference) or None for a LoRA policy,
    whose adapter-disabled base is the reference. Skip ``old`` when the rollout feeds a single
    optimizer step: the old policy then equals the policy, and ratios are exactly 1. A rollout from
    the native sampler brings its old-policy log-probs along (``sample_logps``, computed by the
    sampler with the same temperature), so no forward pass is spent on them; ``temperature`` must
    then be the sampling temperature, as it is for every caller. ``trust_sampler=False`` computes
    them with the trainer's forward all the same (the sampler/trainer correction compares the two).
    """
    from posttrain.hf import reference_mode

    t0 = time.perf_counter()
    if old and trust_sampler and rollout.sample_logps is not None:  # the native sampler's: no extra pass
        rollout.old_logps = rollout.sample_logps
    elif old:
        rollout.old_logps = batched_logprobs(policy, rollout, micro_batch, temperature)
    if ref:
        with reference_mode(policy, reference) as ref_model:
            rollout.ref_logps = batched_logprobs(ref_model, rollout, micro_batch, temperature)
    rollout.timings["logprobs"] = rollout.timings.get("logprobs", 0.0) + time.perf_counter() - t0
    return rollout


def score_rollout(rollout: Rollout, reward_fn) -> Rollout:
    """Fill rollout.rewards (N,) and rollout.reward_components with a posttrain.scoring.rewards.CombinedReward."""
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
    model, tokenizer, records: list[dict], reward_fn, sampling, eval_max_new_tokens: int
) -> dict[str, float | None]:
    """Greedy exact match (when records have answers) and the mean reward of one sampled completion
    per held-out prompt at the training temperature (what the RL objective raises; ``sampling`` is a
    ``posttrain.generation.sampler.Sampling``); each prompt's reward is kept for the run's paired
    statistics (``posttrain.outcomes``, a per-problem score). ``reward_fn`` None: no sampled reward
    (a label-free run on prompts without answers)."""
    em = exact_match(model, tokenizer, records, max_new_tokens=eval_max_new_tokens)["exact_match"]
    if reward_fn is None:
        return {"exact_match": em, "reward": None}
    local = replace(sampling, backend="hf" if sampling.backend == "hf" else "native")  # not vLLM's stale weights
    rewards: list[float] = []
    for start in range(0, len(records), 256):
        chunk = sample_completions(model, tokenizer, records[start : start + 256], 1, local)
        rewards += reward_fn(chunk.prompts, chunk.texts, chunk.records)[0]
    outcomes.record("reward", [r["prompt"] for r in records], rewards, outcomes.SCORE)
    return {"exact_match": em, "reward": sum(rewards) / max(1, len(rewards))}
