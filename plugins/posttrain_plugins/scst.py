"""Self-Critical Sequence Training (SCST).

Paper: Rennie, Marcheret, Mroueh, Ross, Goel, 2017, "Self-critical Sequence Training for Image
Captioning", CVPR 2017, arXiv:1612.00563 (the self-critical gradient). Catalog entry: catalog/methods/scst.yaml.

    catalog run scst                                   # embedded tiny model + addition prompts
    catalog run scst --model ./my-sft-model --dataset prompts.jsonl --set rewards='[exact-match]'

Data: ``prompt`` (string or message list) with ``answer`` for the exact-match reward.

For each input one sequence w^s is sampled and one, ŵ, decoded greedily (the model's test-time
behaviour); the sample's reward minus the greedy reward weights the sample's log-likelihood:
∇L ≈ -(r(w^s) - r(ŵ)) ∇ log p(w^s). Samples that beat the greedy decode are pushed up, worse ones
down, and when both score the same nothing changes. The reward is the task metric itself (CIDEr in
the paper, the exact-match checker here): no reward model, no reference model, no KL term.

How SCST differs from ReMax (catalog entry ``remax``), which reuses this greedy baseline for RLHF
of LLMs: ReMax adds a per-token KL penalty to an SFT reference, clips the reward difference, scores
with a learned reward model and sums the log-probabilities of the whole response per prompt. SCST,
as here, optimises the raw test metric with no regulariser (it starts from a cross-entropy-trained
model and relies on the greedy baseline alone) and averages the loss over tokens, as the widely
used reference implementation does (self-critical.pytorch, RewardCriterion).

Deviations from the paper:
1. The paper optimises CIDEr-D of image captions with an LSTM captioner (Adam); here the
   reward is exact match on the embedded task (any reward of posttrain.scoring.rewards can be chosen), and
   the learning rate (7.5e-5), prompts per step (64) and step count are sized for the tiny model.
2. The greedy decode is top-k = 1 sampling (identical to argmax except on exact probability ties).
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.logprobs import completion_logprobs
from posttrain.rl.policy_gradient import rollout_stats, start, train_on_rollouts
from posttrain.rl.rollout_config import RolloutConfig


class Config(RolloutConfig):
    num_generations: int = Field(1, ge=1, le=1, description="Sampled sequences w^s per input (paper: one).")
    prompts_per_step: int = Field(64, ge=1, description="Inputs per optimizer step.")
    learning_rate: float = Field(7.5e-5, gt=0, description="Peak learning rate (sized for the embedded model).")
    max_steps: int = Field(
        300, ge=1, description="Optimizer steps (one per batch; 150 gained only +0.008 exact match)."
    )


# --- advantage and loss ------------------------------------------------------------------------


def self_critical_advantages(sample_rewards: torch.Tensor, greedy_rewards: torch.Tensor) -> torch.Tensor:
    """r(w^s) - r(ŵ): the sampled sequence's reward minus the reward of the model's own greedy
    (test-time) decode of the same input (Rennie et al. 2017)."""
    return sample_rewards - greedy_rewards


def scst_loss(token_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-Σ_{i,t} A_i log p(w^s_{i,t}) / Σ mask: the token-averaged loss of the reference SCST code
    (self-critical.pytorch's RewardCriterion). token_logps (N, C), advantages (N,), mask (N, C)."""
    weighted = advantages.detach().unsqueeze(-1) * token_logps * mask
    return -weighted.sum() / mask.sum().clamp(min=1)


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    rl = start(cfg, ctx, "scst", reference=False)

    def make(index: int):
        prompts = rl.prompts(index)
        greedy = rl.greedy(prompts)
        rollout = rl.sample(prompts, 1)
        rollout.timings["generate"] += greedy.timings["generate"]
        rollout.advantages = self_critical_advantages(rollout.rewards, greedy.rewards)
        rollout.stats.update(
            greedy_reward=float(greedy.rewards.mean()),
            beats_greedy=float((rollout.advantages > 0).float().mean()),
            below_greedy=float((rollout.advantages < 0).float().mean()),
        )
        return rollout

    def micro_batch_loss(rollout, rows: slice):
        logps = completion_logprobs(rl.policy, rollout, rows, rl.sampling.temperature)
        loss = scst_loss(logps, rollout.advantages[rows], rollout.completion_mask[rows])
        return loss, {**rollout_stats(rollout), "tokens": int(rollout.attention_mask[rows].sum())}

    return train_on_rollouts(rl, make, micro_batch_loss)


plugin = Plugin(
    id="scst",
    config=Config,
    run=run,
    summary="Self-critical sequence training: REINFORCE with the greedy decode's reward as baseline.",
    smoke={"max_steps": 2, "prompts_per_step": 8, "train_examples": 16, "eval_examples": 8, "log_every": 1},
)
