"""REINFORCE Leave-One-Out (RLOO).

Paper: Ahmadian, Cremer, Gallé, Fadaee, Kreutzer, Pietquin, Üstün, Hooker, 2024, "Back to Basics:
Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs", arXiv:2402.14740
(the leave-one-out estimator of Kool, van Hoof, Welling 2019). Catalog entry: catalog/methods/rloo.yaml.

    catalog run rloo                                   # embedded tiny model + addition prompts
    catalog run rloo --model ./my-sft-model --dataset prompts.jsonl \\
        --set rewards='[reward-model:./my-reward-model]' --set num_generations=4

Data: ``prompt`` (string or message list) with ``answer`` for the exact-match reward.

The whole response is one action. For each prompt k responses are sampled; each response's reward
is r = r_φ(x, y) - β log(π(y|x) / π_ref(y|x)), and its advantage is its reward minus the mean
reward of the other k - 1 responses. The loss is REINFORCE's -A log π(y|x) with log π(y|x) summed
over the response's tokens. No critic, no clipping, no importance ratio.

Deviations from the paper:
1. The learning rate (7.5e-5; billion-parameter RLHF runs use far smaller rates), k = 4 (paper k = 2 and 4), 16 prompts per rollout and the
   step count are sized for the embedded tiny model; the default reward is the task's exact-match
   checker (the paper uses a learned reward model: pass ``rewards=[reward-model:PATH]``).
2. β = 0.05 as TRL's RLOOTrainer (the paper tunes β per task); the reference is the policy at the
   start of training (or the adapter-disabled base with ``lora=true``).
3. One optimizer step per rollout by default, as in the paper. If you set ``policy_epochs`` > 1 or
   a micro-batch smaller than the rollout, later steps are slightly off-policy and are not
   importance-corrected (TRL's trainer adds PPO clipping for that case; this file keeps the paper).
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.logprobs import completion_logprobs
from posttrain.rl.policy_gradient import rollout_stats, sequence_sum, start, train_on_rollouts
from posttrain.rl.rollout import attach_logprobs
from posttrain.rl.rollout_config import RolloutConfig


class Config(RolloutConfig):
    num_generations: int = Field(4, ge=2, description="k, responses sampled per prompt (paper: k = 2 and 4).")
    prompts_per_step: int = Field(16, ge=1, description="Prompts per rollout; k x this = completions per step.")
    kl_coef: float = Field(0.05, ge=0, description="β, KL penalty folded into the sequence reward (TRL: 0.05).")
    learning_rate: float = Field(7.5e-5, gt=0, description="Peak learning rate (sized for the embedded model).")
    max_steps: int = Field(150, ge=1, description="Optimizer steps (one per rollout by default).")


# --- advantage and loss -------------------------------------------------------------------------


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Leave-one-out advantages (Ahmadian et al. 2024; Kool et al. 2019):

        A_i = r_i - 1/(k-1) Σ_{j≠i} r_j  =  k/(k-1) · (r_i - mean_j r_j)

    rewards (N,) hold k consecutive samples per prompt. Zero for a group whose rewards are all
    equal; sums to zero within every group. Needs k ≥ 2.
    """
    if k < 2:
        raise ValueError("RLOO needs k >= 2 samples per prompt")
    grouped = rewards.view(-1, k)
    baseline = (grouped.sum(-1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


def kl_regularized_scores(
    scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Sequence-level RLHF reward r(x, y) = r_φ(x, y) - β log(π(y|x) / π_ref(y|x)) (the
    whole response is one action); logps and ref_logps are summed over the response, shape (N,)."""
    return scores - kl_coef * (logps - ref_logps)


def policy_gradient_loss(seq_logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE loss -mean_i A_i log π(y_i|x); seq_logps (N,) summed over each response (with grad),
    advantages (N,) treated as constants."""
    return -(advantages.detach() * seq_logps).mean()


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    rl = start(cfg, ctx, "rloo", reference=cfg.kl_coef > 0)
    temperature = rl.sampling.temperature

    def make(index: int):
        rollout = rl.sample(rl.prompts(index))
        attach_logprobs(
            rollout, rl.policy, rl.reference, old=cfg.kl_coef > 0, ref=cfg.kl_coef > 0,
            micro_batch=rl.semantics.micro_batch, temperature=temperature,
        )  # fmt: skip
        rewards = rollout.rewards
        if cfg.kl_coef > 0:
            mask = rollout.completion_mask
            seq_kl = sequence_sum(rollout.old_logps - rollout.ref_logps, mask)
            rewards = kl_regularized_scores(rewards, seq_kl, torch.zeros_like(seq_kl), cfg.kl_coef)
            rollout.stats["kl"] = float(seq_kl.mean())
        rollout.advantages = rloo_advantages(rewards, cfg.num_generations)
        rollout.stats["advantage_abs"] = float(rollout.advantages.abs().mean())
        return rollout

    def micro_batch_loss(rollout, rows: slice):
        mask = rollout.completion_mask[rows]
        logps = completion_logprobs(rl.policy, rollout, rows, temperature)
        loss = policy_gradient_loss(sequence_sum(logps, mask), rollout.advantages[rows])
        return loss, {**rollout_stats(rollout), "tokens": int(rollout.attention_mask[rows].sum())}

    return train_on_rollouts(rl, make, micro_batch_loss)


plugin = Plugin(
    id="rloo",
    config=Config,
    run=run,
    summary="REINFORCE with a leave-one-out baseline over k samples per prompt.",
    smoke={
        "max_steps": 2,
        "prompts_per_step": 4,
        "num_generations": 2,
        "train_examples": 16,
        "eval_examples": 8,
        "log_every": 1,
    },
)
