"""Multi-sample comparison optimisation (mDPO / mIPO): DPO and IPO between groups of samples.

Paper: Wang, Zhao, Zhu, Sankararaman, Valko, Cao, Chen, Khabsa, Chen, Ma, Wang, 2024,
"Preference Optimization with Multi-Sample Comparisons", arXiv:2410.12138 (§3: mDPO and mIPO).
Survey: §3.2.9 "Multi-sample comparison optimization". Catalog entry: catalog/methods/mdpo.yaml.

    catalog run mdpo                                  # embedded: 1 correct vs 4 distinct mistakes
    catalog run mdpo --set variant=mipo --dataset groups.jsonl

Data: ``prompt`` + ``chosen`` + ``rejected`` where ``chosen`` / ``rejected`` are a list of
completions (a group of samples) or a single string (a group of one: then mDPO is DPO).

Instead of one pair, the preference is between two groups (distributions) of responses: the
group reward is the mean implicit reward of its samples, so with h(y) = log π(y|x)/π_ref(y|x):
mDPO = −log σ(β [mean_{y∈Y_w} h(y) − mean_{y∈Y_l} h(y)]) and
mIPO = (mean_{y∈Y_w} h(y) − mean_{y∈Y_l} h(y) − 1/(2β))². Groups may have different sizes.
On the embedded task the desirable group is the correct answer (a point mass: its mean over k
copies is the single value) and the undesirable group is k distinct plausible mistakes for the
same prompt, i.e. the learner's error distribution is compared as a whole.

Deviations from the paper:
1. The mean inside the log-sigmoid is estimated from the k samples in the data (a plug-in
   estimate, biased for mDPO as the paper notes); the paper's lower-variance unbiased mIPO
   estimator is not implemented: ``mipo`` uses the plain plug-in estimate.
2. The survey's section shows a Plackett-Luce product over samples; we follow the paper (group
   means in a Bradley-Terry comparison), as the catalog entry says.
3. AdamW with warmup and cosine decay; learning rate and step count sized for the embedded model;
   reference log-probs computed once before training, all samples of a batch in one forward.
"""

from __future__ import annotations

import random
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.data import (
    batch_indices,
    iterate_batches,
    pad_sequences,
    task_records,
    tokenize_preference,
    tokenize_prompt_completion,
)
from posttrain.errors import UserError
from posttrain.hf import frozen_reference, load_policy, lora_settings, parameter_counts, reference_mode
from posttrain.logprobs import sequence_logprobs
from posttrain.training.preference import (
    PairLogps,
    PreferenceData,
    ReferencePairwiseConfig,
    add_rpo_nll,
    dataset_logps,
    evaluate_pairs,
    preference_accuracy,
)
from posttrain.training.trainer import finish, loop_settings, train_loop


class Config(ReferencePairwiseConfig):
    beta: float = Field(0.1, gt=0, description="β, KL strength (mDPO) or τ with target 1/(2τ) (mIPO), paper §3.")
    variant: Literal["mdpo", "mipo"] = Field("mdpo", description="mdpo: log-sigmoid (DPO); mipo: squared (IPO).")
    group_size: int = Field(
        4, ge=1, le=6, description="k, rejected samples per prompt on the embedded task (distinct mistakes)."
    )
    batch_size: int = Field(16, ge=1, description="Prompts (group comparisons) per micro-batch.")
    train_examples: int = Field(
        2400, ge=1, description="Prompts drawn from the embedded task (ignored with --dataset)."
    )


# --- losses (paper §3) ----------------------------------------------------------------------


def group_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid entries of each row: values, mask (G, K) -> (G,)."""
    return torch.where(mask, values, 0).sum(-1) / mask.sum(-1).clamp(min=1)


def group_margin(policy_chosen, ref_chosen, chosen_mask, policy_rejected, ref_rejected, rejected_mask):
    chosen = group_mean(policy_chosen - ref_chosen, chosen_mask)
    rejected = group_mean(policy_rejected - ref_rejected, rejected_mask)
    return chosen, rejected


def mdpo_loss(
    policy_chosen: torch.Tensor,
    ref_chosen: torch.Tensor,
    chosen_mask: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_rejected: torch.Tensor,
    rejected_mask: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mDPO per group comparison: −log σ(β mean_w h − β mean_l h); inputs (G, K) with bool masks.

    Groups of one sample are DPO exactly; ln 2 at policy = reference.
    """
    chosen, rejected = group_margin(
        policy_chosen, ref_chosen, chosen_mask, policy_rejected, ref_rejected, rejected_mask
    )
    losses = -F.logsigmoid(beta * (chosen - rejected))
    return losses, beta * chosen.detach(), beta * rejected.detach()


def mipo_loss(
    policy_chosen: torch.Tensor,
    ref_chosen: torch.Tensor,
    chosen_mask: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_rejected: torch.Tensor,
    rejected_mask: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mIPO per group comparison: (mean_w h − mean_l h − 1/(2β))² (plug-in estimate); (1/(2β))² at policy = reference."""
    chosen, rejected = group_margin(
        policy_chosen, ref_chosen, chosen_mask, policy_rejected, ref_rejected, rejected_mask
    )
    losses = (chosen - rejected - 1 / (2 * beta)) ** 2
    return losses, beta * chosen.detach(), beta * rejected.detach()


LOSSES = {"mdpo": mdpo_loss, "mipo": mipo_loss}


# --- data -----------------------------------------------------------------------------------


def embedded_groups(n: int, k: int, seed: int) -> list[dict]:
    """Prompts of the embedded task with the correct answer vs k distinct plausible mistakes."""
    from posttrain.embedded.task import DEFAULT_TASK as task
    from posttrain.embedded.task import plausible_mistake

    rng = random.Random(f"mdpo-groups-{seed}")
    out = []
    for _ in range(n):
        nums = task.sample(rng, "train")
        mistakes: list[str] = []
        for _ in range(8 * k):  # a few problems have fewer than k distinct mistakes: keep those found
            m = plausible_mistake(nums, rng)
            if m not in mistakes:
                mistakes.append(m)
            if len(mistakes) == k:
                break
        out.append({"prompt": task.prompt(nums), "chosen": [task.answer(nums)], "rejected": mistakes})
    return out


def as_group(record: dict, key: str, source: str) -> list:
    value = record[key]
    items = value if isinstance(value, list) and value and not isinstance(value[0], dict) else [value]
    if not items:
        raise UserError(f"{source}:{record.get('_line', '?')}: '{key}' is an empty list; expected completions")
    return items


def tokenize_group(record: dict, tokenizer, max_length: int, source: str) -> tuple[list[dict], list[dict]]:
    chosen = [
        tokenize_prompt_completion({"prompt": record["prompt"], "completion": c}, tokenizer, max_length)
        for c in as_group(record, "chosen", source)
    ]
    rejected = [
        tokenize_prompt_completion({"prompt": record["prompt"], "completion": r}, tokenizer, max_length)
        for r in as_group(record, "rejected", source)
    ]
    return chosen, rejected


def first_pair(record: dict, source: str) -> dict:
    """A held-out group as one pair (first chosen vs first rejected), so accuracy compares with DPO's."""
    return dict(record, chosen=as_group(record, "chosen", source)[0], rejected=as_group(record, "rejected", source)[0])


def flatten(groups: list[tuple[list[dict], list[dict]]], idx: list[int]):
    """Sequences of groups ``idx`` in one list, with (G, K) position matrices and masks for chosen and rejected."""
    seqs: list[dict] = []
    positions = {"chosen": [], "rejected": []}
    for i in idx:
        for side, items in zip(("chosen", "rejected"), groups[i], strict=True):
            positions[side].append(list(range(len(seqs), len(seqs) + len(items))))
            seqs += items
    out = [seqs]
    for side in ("chosen", "rejected"):
        width = max(len(p) for p in positions[side])
        pos = torch.tensor([p + [0] * (width - len(p)) for p in positions[side]])
        mask = torch.tensor([[True] * len(p) + [False] * (width - len(p)) for p in positions[side]])
        out += [pos, mask]
    return out


# --- run ------------------------------------------------------------------------------------


@torch.no_grad()
def group_ref_logps(model, groups, pad: int, device: str, batch_groups: int = 32) -> list[torch.Tensor]:
    """Reference log-prob of every sequence, grouped: one (n_chosen + n_rejected,) tensor per group."""
    out = []
    for chunk in iterate_batches(list(range(len(groups))), batch_groups):
        seqs, *_ = flatten(groups, chunk)
        logps = sequence_logprobs(model, pad_sequences(seqs, pad, device))[0]
        sizes = [len(groups[i][0]) + len(groups[i][1]) for i in chunk]
        out += list(torch.split(logps, sizes))
    return out


def run(cfg: Config, ctx: RunContext) -> RunResult:
    loss_of = LOSSES[cfg.variant]
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    pad = tokenizer.pad_token_id
    _, heldout_records, source = task_records(ctx, "preference", 1, cfg.eval_examples)
    if ctx.dataset is None:
        train_records = embedded_groups(cfg.train_examples, cfg.group_size, ctx.seed)
    else:
        train_records, _, source = task_records(ctx, "preference", cfg.train_examples, cfg.eval_examples)
    groups = [tokenize_group(r, tokenizer, cfg.max_length, source) for r in train_records]
    heldout_records = [first_pair(r, source) for r in heldout_records]
    heldout = [tokenize_preference(r, tokenizer, cfg.max_length) for r in heldout_records]
    counts = parameter_counts(policy)
    ctx.log(0, counts)
    with reference_mode(policy, frozen_reference(policy)) as ref:
        ref_groups = group_ref_logps(ref, groups, pad, ctx.device)
        ref_heldout = dataset_logps(ref, heldout, pad, ctx.device)
    del ref  # frees the frozen copy: training holds one model, not two
    held = PreferenceData([], heldout, heldout_records, source, ctx.dataset is None, pad)

    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        return cfg.beta * (pol.chosen - ref.chosen), cfg.beta * (pol.rejected - ref.rejected)

    before = evaluate_pairs(policy, tokenizer, held, rewards, ref_heldout, cfg)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(groups), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        seqs, c_pos, c_mask, r_pos, r_mask = flatten(groups, idx)
        batch = pad_sequences(seqs, pad, ctx.device)
        logps, n_tokens = sequence_logprobs(policy, batch)
        ref = torch.cat([ref_groups[i] for i in idx])
        c_pos, c_mask, r_pos, r_mask = (t.to(ctx.device) for t in (c_pos, c_mask, r_pos, r_mask))
        losses, c_rew, r_rew = loss_of(logps[c_pos], ref[c_pos], c_mask, logps[r_pos], ref[r_pos], r_mask, cfg.beta)
        samples = PairLogps(
            logps[c_pos][c_mask], logps[r_pos][r_mask], n_tokens[c_pos][c_mask], n_tokens[r_pos][r_mask]
        )
        loss, nll = add_rpo_nll(losses.mean(), samples, cfg.rpo_alpha)  # NLL over every chosen sample
        metrics = {
            "rewards/chosen": c_rew.mean().item(),
            "rewards/rejected": r_rew.mean().item(),
            "rewards/margins": (c_rew - r_rew).mean().item(),
            "rewards/accuracies": preference_accuracy(c_rew, r_rew).item(),
            "group_size/rejected": r_mask.sum(-1).float().mean().item(),
            "tokens": int(batch["attention_mask"].sum()),
            **nll,
        }
        return loss, metrics

    loop = train_loop(policy, ctx, loop_settings(cfg), loss_fn, description=f"{cfg.variant} on {source}")
    after = evaluate_pairs(policy, tokenizer, held, rewards, ref_heldout, cfg)
    return finish(ctx, policy, tokenizer, loop, before, after, data=source, variant=cfg.variant, **counts)


plugin = Plugin(
    id="mdpo",
    config=Config,
    run=run,
    summary="Multi-sample DPO / IPO: preferences between groups of samples (mean implicit rewards).",
    smoke={"max_steps": 2, "train_examples": 16, "eval_examples": 16, "batch_size": 4, "log_every": 1},
)
