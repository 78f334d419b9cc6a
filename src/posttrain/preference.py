"""Plumbing shared by the offline preference trainers (ipo, cdpo, hinge, simpo, cpo, orpo, rdpo,
mdpo, kto): paired batches with chosen and rejected in one forward pass, reference log-probs
computed once before training, and the held-out preference metrics.

No algorithm lives here: each plugin keeps its loss, its implicit reward and its run() in its own
file and calls these helpers for data, log-probs and evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from posttrain.data import iterate_batches, pad_sequences, task_records, tokenize_preference
from posttrain.evaluation import exact_match
from posttrain.logprobs import sequence_logprobs, split_pairs


@dataclass
class PairLogps:
    """Summed completion log-probs and completion token counts, chosen and rejected, each (B,)."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor

    def __getitem__(self, idx) -> PairLogps:
        return PairLogps(self.chosen[idx], self.rejected[idx], self.chosen_tokens[idx], self.rejected_tokens[idx])

    def averaged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token mean log-probs (length-normalised), chosen and rejected."""
        return self.chosen / self.chosen_tokens.clamp(min=1), self.rejected / self.rejected_tokens.clamp(min=1)


def pair_batch(pairs: list[tuple[dict, dict]], pad_id: int, device: str) -> dict:
    """Chosen then rejected in one padded batch: one forward pass for both."""
    return pad_sequences([c for c, _ in pairs] + [r for _, r in pairs], pad_id, device)


def pair_logps(model, batch: dict) -> PairLogps:
    """Log-probs of a batch built by ``pair_batch`` (with grad when the caller has it on)."""
    logps, counts = sequence_logprobs(model, batch)
    (c, r), (nc, nr) = split_pairs(logps), split_pairs(counts)
    return PairLogps(c, r, nc, nr)


@torch.no_grad()
def dataset_logps(model, pairs: list[tuple[dict, dict]], pad_id: int, device: str, batch_size: int = 64) -> PairLogps:
    """Log-probs of every pair, in eval mode and without grad (reference values, held-out scores)."""
    was_training = model.training
    model.eval()
    parts = [pair_logps(model, pair_batch(chunk, pad_id, device)) for chunk in iterate_batches(pairs, batch_size)]
    model.train(was_training)
    return PairLogps(*(torch.cat([getattr(p, f) for p in parts]) for f in PairLogps.__dataclass_fields__))


@dataclass
class PreferenceData:
    """Tokenized train and held-out pairs of a run, plus what evaluation needs."""

    train: list[tuple[dict, dict]]
    heldout: list[tuple[dict, dict]]
    heldout_records: list[dict]
    source: str
    embedded: bool
    pad_id: int


def load_pairs(ctx, cfg, tokenizer) -> PreferenceData:
    """Preference pairs (embedded task, or --dataset with prompt/chosen/rejected), tokenized."""
    train_records, heldout_records, source = task_records(ctx, "preference", cfg.train_examples, cfg.eval_examples)
    return PreferenceData(
        train=[tokenize_preference(r, tokenizer, cfg.max_length) for r in train_records],
        heldout=[tokenize_preference(r, tokenizer, cfg.max_length) for r in heldout_records],
        heldout_records=heldout_records,
        source=source,
        embedded=ctx.dataset is None,
        pad_id=tokenizer.pad_token_id,
    )


def preference_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Share of pairs whose chosen reward is higher; exact ties count 1/2 (chance), not 0."""
    return ((chosen_rewards > rejected_rewards).float() + 0.5 * (chosen_rewards == rejected_rewards).float()).mean()


def reward_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, policy: PairLogps) -> dict:
    """The per-step metrics every preference trainer logs (TRL's names)."""
    return {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "rewards/accuracies": preference_accuracy(chosen_rewards, rejected_rewards).item(),
        "logps/chosen": policy.chosen.detach().mean().item(),
        "logps/rejected": policy.rejected.detach().mean().item(),
    }


RewardFn = Callable[[PairLogps, "PairLogps | None"], tuple[torch.Tensor, torch.Tensor]]


def evaluate_pairs(policy, tokenizer, data: PreferenceData, reward_fn: RewardFn, ref: PairLogps | None, cfg) -> dict:
    """Held-out metrics: preference accuracy under the method's implicit reward, the plain
    log-prob accuracy, the mean chosen log-prob per token (falls under likelihood displacement),
    and greedy exact match on the chosen answers."""
    device = str(next(policy.parameters()).device)
    logps = dataset_logps(policy, data.heldout, data.pad_id, device)
    c_rew, r_rew = reward_fn(logps, ref)
    answers = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in data.heldout_records]
    em = exact_match(policy, tokenizer, answers, max_new_tokens=cfg.max_new_tokens or (8 if data.embedded else 128))
    return {
        "preference_accuracy": preference_accuracy(c_rew, r_rew).item(),
        "reward_margin": (c_rew - r_rew).mean().item(),
        "logprob_preference_accuracy": preference_accuracy(logps.chosen, logps.rejected).item(),
        "chosen_logp_per_token": logps.averaged()[0].mean().item(),
        "exact_match": em["exact_match"],
    }


def reference_logps(policy, data: PreferenceData, device: str) -> tuple[PairLogps, PairLogps]:
    """Reference log-probs of the train and held-out pairs, computed once before training.

    The reference is the policy as loaded (with LoRA: the adapter-disabled base, no copy). The
    frozen copy is dropped afterwards, so training holds one model in memory, not two.
    """
    from posttrain.hf import frozen_reference, reference_mode

    reference = frozen_reference(policy)
    with reference_mode(policy, reference) as ref:
        out = dataset_logps(ref, data.train, data.pad_id, device), dataset_logps(ref, data.heldout, data.pad_id, device)
    del reference
    return out
