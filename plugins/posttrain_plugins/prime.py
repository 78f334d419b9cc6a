"""PRIME: Process Reinforcement through IMplicit rEwards.

Paper: Cui, Yuan, Wang, Wang, Zhang, Chen, Li, He, Fan, Yu, Xu, et al., 2025, "Process
Reinforcement through Implicit Rewards", arXiv:2502.01456; the implicit PRM is Yuan et al., 2024,
"Free Process Rewards without Process Labels", arXiv:2412.01981. The algorithm's steps below follow
the authors' description on their model card (huggingface.co/PRIME-RL/Eurus-2-7B-PRIME, "The
algorithm flow includes"). Reading notes of the paper place the implicit process reward at Eq. 3
and the advantages at Eq. 5-6, with the PRM's cross-entropy update in Algorithm 1.
Catalog entry: catalog/methods/prime.yaml.

    catalog run prime                                  # embedded tiny model + addition prompts
    catalog run prime --model ./my-sft-model --dataset prompts.jsonl --set max_completion_length=512

Data: ``prompt`` (string or message list) with ``answer`` for the exact-match reward (the outcome
verifier; the outcome reward must lie in [0, 1], it is the PRM's cross-entropy label).

Three models: the policy pi_theta (trained by the group-RL recipe, posttrain.rl.group), the implicit
PRM pi_phi (a second trainable copy of the starting model with its own AdamW, updated here) and the
frozen reference pi_ref (the starting model). For every rollout of K completions per prompt:

1. prompt filter: keep the prompts whose sampled accuracy lies in [filter_low, filter_high];
2. process rewards r_phi(y_t) = beta * log(pi_phi(y_t | y_<t) / pi_ref(y_t | y_<t)) per token;
3. PRM update: one AdamW step on the cross-entropy between sigma(sum_t r_phi(y_t)) and the
   outcome label r_o (the process rewards of step 2 come from the PRM before this step);
4. advantages: RLOO on the outcome rewards; for the process rewards the leave-one-out baseline is
   the mean over the other K - 1 completions of their average token reward, subtracted from each
   token reward; each part becomes a return over tokens (discount gamma); the advantage is their sum;
5. policy update: PPO's clipped surrogate on those per-token advantages.

Checkpoints: the PRM and its optimizer are not in the policy's checkpoint, so ``--resume`` is
refused with one line (a resumed policy with a fresh PRM would not be the interrupted run). Runs
under torchrun are refused too: each process would train its own PRM on its own rollouts.

Results on the embedded task (3 seeds, defaults): held-out greedy exact match +4.0 ± 1.1 points,
pooled p = 3.8e-05 (reports/runs/prime.json); with process_coef=0 it is +3.3 ± 2.0 points
(reports/runs/prime-outcome-only.json), and the PRM's cross-entropy on new rollouts stays at about
log 2 (reports/benchmarks/prime-prm-trace.json): on 3-4 token answers the gain is RLOO's, not yet the
process rewards'. beta = 0.5 harms: -23.0 ± 2.5 points (reports/runs/prime-beta0.5.json).

Deviations from the paper:
1. Learning rates, K = 4, 16 prompts per rollout, step count and beta are sized for the embedded
   tiny model. Per reading notes of the paper (not its text), it uses beta = 0.05, gamma = 1, K = 4,
   policy lr 5e-7, PRM lr 1e-6 and no KL term; beta, gamma and K are the same here.
2. The prompt filter samples at most ``filter_rounds`` rounds of prompts; if fewer prompts pass,
   the rollout is completed with prompts that did not, with zero advantage and no weight in the
   PRM's loss (``filter/filled_share``). The authors keep only the prompts within the range.
3. The advantages are whitened over the rollout's tokens (mean 0, std 1), as the authors' verl
   recipe does (recipe/prime/prime_core_algos.py, compute_rloo_advantage_return); the outcome and
   process parts have weight 1 each (``outcome_coef``, ``process_coef``).
4. One PRM step per rollout over all its completions; the policy's loss is averaged over the
   micro-batch's tokens.
5. Log-probs of the PRM and the reference are taken at temperature 1 (they score, not sample).
6. The process baseline of completion i is the mean of the other completions' average token
   rewards, as the model card describes it; the authors' verl code computes, per token,
   r_t - (sum_j mean_j - r_t) / (K - 1), which differs from it by (r_t - mean_i) / (K - 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from posttrain import Plugin, RunContext, RunResult
from posttrain.distributed import launched_by_torchrun
from posttrain.errors import UserError
from posttrain.generation.logprobs import batched_logprobs, completion_logprobs
from posttrain.generation.sampler import Sampling
from posttrain.hf import frozen_reference, load_policy, lora_settings, reference_mode
from posttrain.rl.group import SMOKE, Objective, clipped_token_objective, train_group_policy
from posttrain.rl.policy_gradient import masked_mean, whiten
from posttrain.rl.rollout import Rollout, concat_rollouts
from posttrain.rl.rollout_config import RolloutConfig


class Config(RolloutConfig):
    num_generations: int = Field(4, ge=2, description="K, completions per prompt (leave-one-out needs K >= 2).")
    prompts_per_step: int = Field(16, ge=1, description="Prompts per rollout; K x this = completions per step.")
    learning_rate: float = Field(5e-5, gt=0, description="Policy AdamW learning rate (sized for the embedded model).")
    max_steps: int = Field(200, ge=1, description="Policy optimizer steps (one per rollout by default).")
    beta: float = Field(0.05, gt=0, description="beta of the implicit PRM's reward beta * log(pi_phi / pi_ref).")
    prm_learning_rate: float = Field(5e-5, gt=0, description="AdamW learning rate of the implicit PRM.")
    gamma: float = Field(
        1.0, ge=0, le=1, description="gamma, discount of the returns over tokens (the authors' verl recipe: 1)."
    )
    epsilon: float = Field(0.2, gt=0, description="epsilon, clipping range of the PPO ratio.")
    outcome_coef: float = Field(1.0, ge=0, description="Weight of the outcome (RLOO) return in the advantage.")
    process_coef: float = Field(1.0, ge=0, description="Weight of the implicit process return in the advantage.")
    whiten_advantages: bool = Field(True, description="Whiten the advantages over the rollout's tokens.")
    filter_low: float = Field(
        0.2, ge=0, le=1, description="Lowest sampled accuracy of a kept prompt (the authors' model card: 0.2)."
    )
    filter_high: float = Field(
        0.8, ge=0, le=1, description="Highest sampled accuracy of a kept prompt (the authors' model card: 0.8)."
    )
    filter_rounds: int = Field(
        2, ge=1, description="Most sampling rounds per rollout to find prompts_per_step prompts within the range."
    )

    @model_validator(mode="after")
    def _range(self):
        if self.filter_low > self.filter_high:
            raise ValueError(f"filter_low {self.filter_low} must not exceed filter_high {self.filter_high}")
        return self


# --- PRIME's pure functions --------------------------------------------------------------------------


def implicit_process_rewards(
    prm_logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """r_phi(y_t) = beta * (log pi_phi(y_t | y_<t) - log pi_ref(y_t | y_<t)), 0 off the mask; (N, C).

    log pi_phi = log 0.5, log pi_ref = log 0.25, beta = 0.05: r = 0.05 log 2 = 0.0347. Zero when the
    PRM equals the reference. Grad flows through ``prm_logps``.
    """
    return beta * (prm_logps - ref_logps) * mask


def implicit_prm_loss(process_rewards: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-completion cross-entropy -[r_o log sigma(s) + (1 - r_o) log(1 - sigma(s))], s = sum_t r_phi(y_t); (N,).

    s = 0 gives log 2 = 0.6931 whatever the label; s = log 3 with r_o = 1 gives -log(3/4) = 0.2877,
    with r_o = 0 gives log 4 = 1.3863.
    """
    scores = (process_rewards * mask).sum(-1)
    return F.binary_cross_entropy_with_logits(scores, labels, reduction="none")


def leave_one_out(values: torch.Tensor) -> torch.Tensor:
    """(P, K) -> (P, K): each value minus the mean of the other K - 1 of its group (RLOO).

    [1, 0, 0, 0] -> [1, -1/3, -1/3, -1/3]; K = 2: [a, b] -> [a - b, b - a].
    """
    k = values.shape[-1]
    return values - (values.sum(-1, keepdim=True) - values) / (k - 1)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = sum_{s >= t} gamma^(s - t) r_s over each row's real tokens, 0 off the mask; (N, C).

    Rewards [1, 2, 3] with gamma 0.5: [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3] = [2.75, 3.5, 3].
    """
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def prime_advantages(
    outcome_rewards: torch.Tensor,
    process_rewards: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    gamma: float,
    outcome_coef: float = 1.0,
    process_coef: float = 1.0,
) -> torch.Tensor:
    """Per-token advantages (N, C) of N = P x K completions (each prompt's K rows contiguous).

    Outcome: the RLOO advantage r_o(y^i) - mean_{j != i} r_o(y^j), placed on the last real token and
    turned into a return (with gamma = 1 every token of the completion gets it). Process: the
    baseline b_i = mean_{j != i} (sum_t r_phi(y^j_t) / |y^j|); each real token's reward minus b_i,
    then its return. With a PRM equal to the reference (r_phi = 0) and gamma = 1 this is RLOO's
    advantage on every token.
    """
    lengths = mask.sum(-1).clamp(min=1)
    last = F.one_hot((mask.sum(-1).long() - 1).clamp(min=0), mask.shape[1]).to(mask.dtype) * mask
    outcome = leave_one_out(outcome_rewards.view(-1, k)).reshape(-1)
    mean_process = (process_rewards * mask).sum(-1) / lengths
    process_baseline = mean_process - leave_one_out(mean_process.view(-1, k)).reshape(-1)  # mean of the others
    outcome_returns = discounted_returns(outcome[:, None] * last, mask, gamma)
    process_returns = discounted_returns((process_rewards - process_baseline[:, None]) * mask, mask, gamma)
    return outcome_coef * outcome_returns + process_coef * process_returns


def prime_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-(1 / tokens) sum_{i,t} min(rho A_t, clip(rho, 1 - eps, 1 + eps) A_t), A (N, C) per token.

    On-policy (rho = 1) the loss is minus the mean advantage over the tokens.
    """
    per_token, stats = clipped_token_objective(logps, old_logps, None, advantages, mask, epsilon, epsilon)
    return -masked_mean(per_token, mask), stats


def accuracy_in_range(rewards: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """(P, K) outcome rewards -> (P,) bool: low <= mean accuracy <= high (the online prompt filter)."""
    accuracy = rewards.mean(-1)
    return (accuracy >= low) & (accuracy <= high)


# --- the implicit PRM and the prompt filter ------------------------------------------------------


def outcome_labels(rewards: torch.Tensor) -> torch.Tensor:
    """The outcome rewards as the PRM's cross-entropy labels; they must lie in [0, 1]."""
    if bool(((rewards < 0) | (rewards > 1)).any()):
        bad = float(rewards[(rewards < 0) | (rewards > 1)][0])
        raise UserError(
            f"prime: the outcome reward must lie in [0, 1] (it is the implicit PRM's cross-entropy label), got "
            f"{bad:g}; use rewards=[exact-match] or a verifier that returns 0/1"
        )
    return rewards.float()


def filtered_rollout(prompts_for, sample, cfg: Config) -> tuple[Rollout, torch.Tensor]:
    """A rollout of ``prompts_per_step`` prompts within the accuracy range, from at most
    ``filter_rounds`` rounds of sampling, completed with out-of-range prompts if too few pass.
    Returns it and a (N,) weight: 1 on rows of prompts that passed, 0 on the filler."""
    kept, spare, found, used = [], [], 0, 0
    for used in range(1, cfg.filter_rounds + 1):
        rollout = sample(prompts_for(used - 1))
        passed = accuracy_in_range(rollout.grouped(rollout.rewards), cfg.filter_low, cfg.filter_high)
        kept.append(rollout.select_groups(passed.nonzero().flatten().tolist()))
        spare.append(rollout.select_groups((~passed).nonzero().flatten().tolist()))
        found += int(passed.sum())
        if found >= cfg.prompts_per_step:
            break
    groups = cfg.prompts_per_step
    filled = max(0, groups - found)
    parts = [r for r in kept if len(r)] + ([concat_rollouts([r for r in spare if len(r)])] if filled else [])
    merged = concat_rollouts(parts).select_groups(list(range(groups)))
    merged.stats = {"filter/rounds": float(used), "filter/filled_share": filled / groups}
    weights = (torch.arange(groups) < groups - filled).float().repeat_interleave(cfg.num_generations)
    return merged, weights.to(merged.input_ids.device)


def update_prm(prm, reference, optimizer, rollout: Rollout, weights: torch.Tensor, cfg: Config):
    """Score the rollout with the implicit PRM, then take one AdamW step on its cross-entropy loss
    (weighted mean over the completions, micro-batches of ``batch_size``). Returns the process
    rewards of the PRM before the step (N, C), detached, and the step's metrics."""
    labels = outcome_labels(rollout.rewards)
    with reference_mode(prm, reference) as ref_model:
        ref_logps = batched_logprobs(ref_model, rollout, cfg.batch_size)
    prm.train()
    optimizer.zero_grad(set_to_none=True)
    total = weights.sum()
    rewards, losses = [], []
    for start in range(0, len(rollout), cfg.batch_size):
        rows = slice(start, start + cfg.batch_size)
        mask = rollout.completion_mask[rows]
        process = implicit_process_rewards(completion_logprobs(prm, rollout, rows), ref_logps[rows], mask, cfg.beta)
        loss = implicit_prm_loss(process, labels[rows], mask)
        if total > 0:
            ((loss * weights[rows]).sum() / total).backward()
        rewards.append(process.detach())
        losses.append(loss.detach())
    if total > 0:
        torch.nn.utils.clip_grad_norm_([p for p in prm.parameters() if p.requires_grad], cfg.max_grad_norm)
        optimizer.step()
    process = torch.cat(rewards)
    scores, loss = process.sum(-1), torch.cat(losses)
    used = weights > 0
    # the sign of the sequence reward against the label; a score of exactly 0 (an untrained PRM) counts half
    correct = torch.where(scores == 0, 0.5, ((scores > 0) == (labels > 0.5)).float())
    stats = {
        "prm/loss": float(loss[used].mean()) if used.any() else 0.0,
        "prm/accuracy": float(correct[used].mean()) if used.any() else 0.0,
        "process_reward": float(process.sum() / rollout.completion_mask.sum().clamp(min=1)),
    }
    return process, stats


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    if ctx.resume:
        raise UserError(
            "--resume: prime does not checkpoint its implicit PRM, so it cannot resume; start the run again"
        )
    if launched_by_torchrun():
        raise UserError(
            "prime: the implicit PRM is not synchronised across processes; run it in one process (without torchrun)"
        )
    # The PRM starts as a copy of the starting model (loaded again: the recipe loads the policy);
    # the reference is that model frozen (with lora=true, the PRM's adapter-disabled base).
    prm, _ = load_policy(ctx, lora_settings(cfg))
    reference = frozen_reference(prm)
    optimizer = torch.optim.AdamW([p for p in prm.parameters() if p.requires_grad], lr=cfg.prm_learning_rate)

    def make_rollout(prompts_for, sample) -> Rollout:
        rollout, weights = filtered_rollout(prompts_for, sample, cfg)
        process, stats = update_prm(prm, reference, optimizer, rollout, weights, cfg)
        mask = rollout.completion_mask
        advantages = prime_advantages(
            rollout.rewards, process, mask, cfg.num_generations, cfg.gamma, cfg.outcome_coef, cfg.process_coef
        )
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask * weights[:, None])
        rollout.advantages = advantages * weights[:, None]  # (N, C): the recipe reads them back below
        rollout.stats.update(
            {**stats, "advantage_abs": float((rollout.advantages.abs() * mask).sum() / mask.sum().clamp(min=1))}
        )
        return rollout

    def advantages(rollout: Rollout) -> torch.Tensor:
        return rollout.advantages  # computed with the PRM update in make_rollout

    def objective(sampling: Sampling) -> Objective:
        return lambda logps, old, ref, adv, mask: prime_policy_loss(logps, old, adv, mask, cfg.epsilon)

    return train_group_policy(cfg, ctx, "prime", advantages, objective, beta=0.0, make_rollout=make_rollout)


plugin = Plugin(
    id="prime",
    config=Config,
    run=run,
    summary="PRIME: an implicit PRM updated online from outcome labels gives token rewards; RLOO returns, PPO loss.",
    smoke={**SMOKE, "filter_rounds": 1},
)
