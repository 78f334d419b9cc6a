"""REINFORCE with a moving-average baseline.

Paper: Williams, 1992, "Simple Statistical Gradient-Following Algorithms for Connectionist
Reinforcement Learning", Machine Learning 8:229-256 (no arXiv id): the REINFORCE estimator and its
reinforcement-comparison baseline. Catalog entry: catalog/methods/reinforce.yaml.

    catalog run reinforce                              # embedded tiny model + addition prompts
    catalog run reinforce --model ./my-sft-model --dataset prompts.jsonl --set baseline_decay=0.95

Data: ``prompt`` (string or message list) with ``answer`` for the exact-match reward.

One response is sampled per prompt and scored; the episode is the response, its return the
sequence reward r. Every token's log-probability is pushed up by (r - b), where the baseline b is
an exponential moving average of the mean reward of earlier batches (it never depends on the
responses it weights, so the gradient stays unbiased). The loss is -(r - b) log π(y|x), with
log π(y|x) summed over the response's tokens.

Deviations from the paper:
1. Williams' updates are per episode with a plain learning rate; here one optimizer step (AdamW)
   averages 64 episodes. The learning rate, batch and step count are sized for the embedded model.
2. The baseline starts at the policy's mean held-out reward measured before training (one sampled
   response per held-out prompt), then follows b <- d b + (1 - d) mean(r) after every batch.
3. No KL penalty and no reference model: this is the plain estimator that the catalog's RLOO,
   ReMax, REINFORCE++ and GRPO entries refine.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.logprobs import completion_logprobs
from posttrain.rl.policy_gradient import rollout_stats, sequence_sum, start, train_on_rollouts
from posttrain.rl.rollout_config import RolloutConfig


class Config(RolloutConfig):
    num_generations: int = Field(1, ge=1, description="Responses sampled per prompt (Williams: one episode each).")
    prompts_per_step: int = Field(64, ge=1, description="Episodes (prompts) per optimizer step.")
    baseline_decay: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="d, decay of the moving-average baseline b (Williams' reinforcement comparison).",
    )
    use_baseline: bool = Field(True, description="Subtract the baseline b (false: plain REINFORCE, b = 0).")
    learning_rate: float = Field(7.5e-5, gt=0, description="Peak learning rate α.")
    max_steps: int = Field(150, ge=1, description="Optimizer steps (one per batch of episodes).")


# --- baseline and loss -------------------------------------------------------------------------


def moving_average_baseline(baseline: float | None, rewards: torch.Tensor, decay: float) -> float:
    """Exponential moving average of past mean rewards, b <- d b + (1 - d) mean(r) (Williams 1992:
    the reinforcement-comparison baseline). With no earlier value, b is this batch's mean."""
    mean = float(rewards.mean())
    return mean if baseline is None else decay * baseline + (1 - decay) * mean


def reinforce_loss(seq_logps: torch.Tensor, rewards: torch.Tensor, baseline: float) -> torch.Tensor:
    """-mean_i (r_i - b) log π(y_i|x) (Williams 1992, with a response as the episode).

    b must not depend on the sampled y_i (here: earlier batches only), so the estimator stays unbiased.
    """
    return -((rewards - baseline).detach() * seq_logps).mean()


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    rl = start(cfg, ctx, "reinforce", reference=False)
    state = {"baseline": float(rl.before["reward"]) if cfg.use_baseline else 0.0}

    def make(index: int):
        rollout = rl.sample(rl.prompts(index))
        rollout.stats["baseline"] = state["baseline"]
        rollout.advantages = rollout.rewards - state["baseline"]  # the weight of each episode (logged)
        if cfg.use_baseline:  # updated after use: b never sees the episodes it weights
            state["baseline"] = moving_average_baseline(state["baseline"], rollout.rewards, cfg.baseline_decay)
        return rollout

    def micro_batch_loss(rollout, rows: slice):
        logps = completion_logprobs(rl.policy, rollout, rows, rl.sampling.temperature)
        seq_logps = sequence_sum(logps, rollout.completion_mask[rows])
        loss = reinforce_loss(seq_logps, rollout.rewards[rows], rollout.stats["baseline"])
        return loss, {**rollout_stats(rollout), "tokens": int(rollout.attention_mask[rows].sum())}

    return train_on_rollouts(rl, make, micro_batch_loss)


plugin = Plugin(
    id="reinforce",
    config=Config,
    run=run,
    summary="REINFORCE (Williams 1992) with a moving-average reward baseline.",
    smoke={"max_steps": 2, "prompts_per_step": 8, "train_examples": 16, "eval_examples": 8, "log_every": 1},
)
