"""Direct Preference Optimization (DPO), the sigmoid loss.

Paper: Rafailov, Sharma, Mitchell, Ermon, Manning, Finn, 2023, "Direct Preference Optimization:
Your Language Model is Secretly a Reward Model", arXiv:2305.18290, Eq. 7.
Optional NLL term: Pang et al. 2024, "Iterative Reasoning Preference Optimization" (RPO),
arXiv:2404.19733. Catalog entry: catalog/methods/dpo.yaml.

    catalog run dpo                                   # embedded tiny model + addition pairs
    catalog run dpo --model ./my-sft-model --dataset prefs.jsonl --set beta=0.1 --set lora=true

Data: ``prompt`` + ``chosen`` + ``rejected`` (strings or message lists).

Deviations from the paper:
1. AdamW with warmup and cosine decay instead of RMSprop at a constant 1e-6 after 150 warmup
   steps; the default learning rate (1e-4) and step count are sized for the embedded tiny model.
2. The reference model is the policy at the start of training (the paper's pi_SFT when you pass
   an SFT model); with ``lora=true`` it is the adapter-disabled base, so no second copy is kept.
3. Chosen and rejected responses go through the policy in one concatenated forward pass, and the
   reference log-probs are computed once, before training, for the whole dataset (same values as
   computing them per batch, fewer forward passes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.config import TrainingConfig
from posttrain.data import batch_indices, iterate_batches, pad_sequences, task_records, tokenize_preference
from posttrain.evaluation import exact_match
from posttrain.hf import frozen_reference, load_policy, lora_settings, parameter_counts, reference_mode
from posttrain.logprobs import sequence_logprobs, split_pairs
from posttrain.train import finish, loop_settings, train_loop


class Config(TrainingConfig):
    beta: float = Field(0.1, gt=0, description="β, strength of the KL penalty to the reference (paper §6.1: 0.1).")
    rpo_alpha: float = Field(
        0.0, ge=0, description="α of RPO's NLL term on the chosen response (0: plain DPO, the paper)."
    )
    learning_rate: float = Field(
        1e-4, gt=0, description="Peak learning rate (paper: 1e-6 with RMSprop on 6B-scale models)."
    )
    max_steps: int = Field(150, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Preference pairs per micro-batch (paper: 64).")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps (paper: 150).")
    train_examples: int = Field(4800, ge=1, description="Pairs drawn from the embedded task (ignored with --dataset).")


# --- loss (paper Eq. 7) ---------------------------------------------------------------------


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss and the implicit rewards of chosen and rejected.

    Inputs are summed log-probs of each response, shape (B,). The implicit reward is
    r = β (log π(y|x) − log π_ref(y|x)); the loss is −log σ(r_chosen − r_rejected).
    When policy = reference every reward is 0 and the loss is ln 2 ≈ 0.6931.
    """
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def preference_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Share of pairs whose chosen reward is higher; exact ties count 1/2 (chance), not 0."""
    return ((chosen_rewards > rejected_rewards).float() + 0.5 * (chosen_rewards == rejected_rewards).float()).mean()


# --- run ------------------------------------------------------------------------------------


def pair_batch(pairs: list[tuple[dict, dict]], pad_id: int, device: str) -> dict:
    """Chosen then rejected in one padded batch: one forward pass for both."""
    return pad_sequences([c for c, _ in pairs] + [r for _, r in pairs], pad_id, device)


@torch.no_grad()
def all_logps(model, pairs, pad_id: int, device: str, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    chosen, rejected = [], []
    for chunk in iterate_batches(pairs, batch_size):
        c, r = split_pairs(sequence_logprobs(model, pair_batch(chunk, pad_id, device))[0])
        chosen.append(c)
        rejected.append(r)
    return torch.cat(chosen), torch.cat(rejected)


def evaluate(policy, tokenizer, pairs, records, ref_logps, cfg: Config, embedded: bool) -> dict:
    was_training = policy.training
    policy.eval()
    chosen, rejected = all_logps(policy, pairs, tokenizer.pad_token_id, str(next(policy.parameters()).device))
    policy.train(was_training)
    c_rewards, r_rewards = cfg.beta * (chosen - ref_logps[0]), cfg.beta * (rejected - ref_logps[1])
    answers = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in records]
    em = exact_match(policy, tokenizer, answers, max_new_tokens=cfg.max_new_tokens or (8 if embedded else 128))
    return {
        "preference_accuracy": preference_accuracy(c_rewards, r_rewards).item(),
        "reward_margin": (c_rewards - r_rewards).mean().item(),
        "logprob_preference_accuracy": preference_accuracy(chosen, rejected).item(),
        "exact_match": em["exact_match"],
    }


def batch_loss(policy, batch: dict, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, cfg: Config):
    """DPO (plus RPO's NLL term when ``rpo_alpha``) on a ``pair_batch``, and TRL's step metrics."""
    logps, n_tokens = sequence_logprobs(policy, batch)
    pol_c, pol_r = split_pairs(logps)
    losses, c_rew, r_rew = dpo_loss(pol_c, pol_r, ref_chosen, ref_rejected, cfg.beta)
    loss = losses.mean()
    if cfg.rpo_alpha:
        loss = loss + cfg.rpo_alpha * (-pol_c / split_pairs(n_tokens)[0]).mean()
    return loss, {
        "rewards/chosen": c_rew.mean().item(),
        "rewards/rejected": r_rew.mean().item(),
        "rewards/margins": (c_rew - r_rew).mean().item(),
        "rewards/accuracies": preference_accuracy(c_rew, r_rew).item(),
        "logps/chosen": pol_c.detach().mean().item(),
        "logps/rejected": pol_r.detach().mean().item(),
        "tokens": int(batch["attention_mask"].sum()),
    }


def run(cfg: Config, ctx: RunContext) -> RunResult:
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    reference = frozen_reference(policy)
    train_records, heldout_records, source = task_records(ctx, "preference", cfg.train_examples, cfg.eval_examples)
    train = [tokenize_preference(r, tokenizer, cfg.max_length) for r in train_records]
    heldout = [tokenize_preference(r, tokenizer, cfg.max_length) for r in heldout_records]
    pad, embedded = tokenizer.pad_token_id, ctx.dataset is None
    counts = parameter_counts(policy)
    ctx.log(0, counts)
    with reference_mode(policy, reference) as ref:
        ref.eval()
        ref_train = all_logps(ref, train, pad, ctx.device)
        ref_heldout = all_logps(ref, heldout, pad, ctx.device)
    del reference  # log-probs are precomputed: training holds one model, not two
    before = evaluate(policy, tokenizer, heldout, heldout_records, ref_heldout, cfg, embedded)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pair_batch([train[i] for i in idx], pad, ctx.device)
        return batch_loss(policy, batch, ref_train[0][idx], ref_train[1][idx], cfg)

    loop = train_loop(policy, ctx, loop_settings(cfg), loss_fn, description=f"dpo on {source}")
    after = evaluate(policy, tokenizer, heldout, heldout_records, ref_heldout, cfg, embedded)
    return finish(ctx, policy, tokenizer, loop, before, after, data=source, **counts)


plugin = Plugin(
    id="dpo",
    config=Config,
    run=run,
    summary="Direct Preference Optimization (sigmoid loss).",
    smoke={"max_steps": 2, "train_examples": 32, "eval_examples": 16, "batch_size": 8, "log_every": 1},
)
