"""Proximal Policy Optimization (PPO) as used in RLHF: actor-critic with GAE and a KL-shaped reward.

Papers: Schulman, Wolski, Dhariwal, Radford, Klimov, 2017, "Proximal Policy Optimization
Algorithms", arXiv:1707.06347 (Eq. 7 clipped surrogate, Eq. 9 value loss, §5 algorithm); Schulman,
Moritz, Levine, Jordan, Abbeel, 2016, "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", arXiv:1506.02438 (Eq. 16); Ouyang et al., 2022, "Training language models
to follow instructions with human feedback" (InstructGPT), arXiv:2203.02155, §3.5 (per-token KL
penalty to the SFT model folded into the reward). Catalog entry: catalog/methods/ppo.yaml.

    catalog run ppo                                    # embedded tiny model + addition prompts
    catalog run ppo --model ./my-sft-model --dataset prompts.jsonl \\
        --set rewards='[reward-model:./my-reward-model]' --set critic_model=./my-reward-model

Data: ``prompt`` (string or message list) with ``answer`` for the exact-match reward.

One rollout: sample a response per prompt, score it (reward function or reward model), and record
the log-probs under the policy (π_old) and the reference, and the critic's values. Per-token
rewards are r_t = -β (log π_old(y_t) - log π_ref(y_t)), plus the score on the last token; GAE turns
them and the values into advantages and value targets (returns); advantages are whitened over the
batch. Then ``policy_epochs`` passes of mini-batch updates minimise the clipped surrogate plus
``vf_coef`` times the clipped value loss.

The critic (value model) is a separate model, as in OpenRLHF and TRL's PPOTrainer (v0.11+), not a
head on the policy's trunk: an ``AutoModelForSequenceClassification`` with one label whose
``score`` head is applied to every position's last hidden state. It is initialised from
``critic_model`` (InstructGPT and OpenRLHF initialise it from the reward model) or, by default,
from the policy's weights with a fresh head. It is saved next to the policy as ``critic/`` and
reloads with ``AutoModelForSequenceClassification.from_pretrained``. Policy and critic are updated
by one AdamW optimizer on the summed loss (as TRL does).

Deviations from the papers:
1. Learning rate (7.5e-5; billion-parameter RLHF runs use far smaller rates), 64 prompts per rollout, one mini-batch x
   2 epochs per rollout (Schulman et al. Table 3: 10 epochs for MuJoCo; TRL: 4) and the step count
   are sized for the embedded tiny model; the default reward is the exact-match checker (RLHF
   uses a reward model: pass ``rewards=[reward-model:PATH]``).
2. γ = 1 and λ = 0.95 (TRL's defaults for language; the paper's MuJoCo γ = 0.99 discounts a
   reward that only arrives at the end of the response); β = 0.05, value clip 0.2 and vf_coef 0.1
   are TRL's PPOConfig defaults; the KL coefficient is fixed (InstructGPT also used a fixed β;
   Ziegler et al.'s adaptive controller is not implemented).
3. No PPO-ptx pretraining-gradient mix (InstructGPT's PPO-ptx), no entropy bonus (RLHF practice).
4. With ``lora=true`` only the policy gets adapters; the critic is trained in full.
5. Advantages are whitened with the population variance over all real tokens of the rollout.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.errors import UserError
from posttrain.generation.logprobs import completion_logprobs
from posttrain.generation.sampler import position_ids
from posttrain.hf import save_model
from posttrain.rl.policy_gradient import (
    clipped_policy_loss,
    masked_mean,
    rollout_stats,
    start,
    train_on_rollouts,
    whiten,
)
from posttrain.rl.rollout import attach_logprobs
from posttrain.rl.rollout_config import RolloutConfig


class Config(RolloutConfig):
    num_generations: int = Field(1, ge=1, description="Responses sampled per prompt (RLHF PPO: one).")
    prompts_per_step: int = Field(64, ge=1, description="Prompts per rollout.")
    batch_size: int = Field(64, ge=1, description="Completions per mini-batch update.")
    policy_epochs: int = Field(2, ge=1, description="PPO epochs K over each rollout (paper Table 3: 10; TRL: 4).")
    clip_epsilon: float = Field(0.2, gt=0, description="ε, clip range of the probability ratio (paper §6.1: 0.2).")
    value_clip: float = Field(0.2, gt=0, description="Clip range of the new values around the rollout's (TRL: 0.2).")
    vf_coef: float = Field(0.1, ge=0, description="c1, weight of the value loss (paper Eq. 9; TRL: 0.1).")
    gamma: float = Field(1.0, ge=0, le=1, description="γ, discount (GAE paper; 1 for language, TRL's default).")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="λ of GAE (paper Table 3: 0.95).")
    kl_coef: float = Field(0.05, ge=0, description="β, per-token KL penalty to the reference (InstructGPT Eq. 2).")
    critic_model: str | None = Field(
        None, description="Folder or hub id to initialise the critic from (e.g. the reward model); default: the policy."
    )
    learning_rate: float = Field(7.5e-5, gt=0, description="Peak learning rate of policy and critic.")
    max_steps: int = Field(240, ge=1, description="Optimizer steps (mini-batch updates; 2 per rollout by default).")


# --- pure functions (tensors in, tensors out) -------------------------------------------------------
# Token tensors are (N, C): N completions, C completion positions, right-padded; ``mask`` is 1 on the
# sampled tokens (a prefix of each row: up to and including EOS) and 0 on padding.


def kl_penalized_rewards(
    scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards of RLHF (Ouyang et al. 2022, Eq. 2; Stiennon et al. 2020):

        r_t = -β (log π_old(y_t) - log π_ref(y_t)) + [t = last token] · r_φ(x, y)

    scores (N,) are the sequence rewards; returns (rewards (N, C), per-token KL estimate k1 (N, C)).
    Summed over t the rewards equal r_φ - β log(π_old(y|x) / π_ref(y|x)).
    """
    kl = (logps - ref_logps) * mask
    rewards = -kl_coef * kl
    lengths = mask.sum(-1).long()
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    last = (lengths - 1).clamp(min=0)
    rewards[rows, last] += scores * (lengths > 0)
    return rewards, kl


def gae_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, Eq. 16) and the value targets.

        δ_t = r_t + γ V(s_{t+1}) - V(s_t),   Â_t = Σ_l (γλ)^l δ_{t+l},   returns R_t = Â_t + V(s_t)

    The state after the last token is terminal (value 0). With λ = 1, Â_t is the Monte-Carlo return
    Σ_l γ^l r_{t+l} minus V(s_t); with λ = 0 it is the one-step TD error δ_t.
    """
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    width = rewards.shape[1]
    for t in reversed(range(width)):
        next_value = values[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The value loss of PPO as implemented in OpenAI baselines / TRL / OpenRLHF:

        L_V = ½ mean_t max((V_t - R_t)², (clip(V_t, V_old,t - c, V_old,t + c) - R_t)²)

    The clip keeps the new values within c of the values the rollout was scored with. Returns
    (loss, share of tokens where the clipped term is the larger one).
    """
    clipped_values = old_values + (values - old_values).clamp(-clip_range, clip_range)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(loss_unclipped, loss_clipped), mask)
    clip_fraction = masked_mean((loss_clipped > loss_unclipped).float(), mask)
    return loss, clip_fraction


# --- the critic -----------------------------------------------------------------------------------


class ActorCritic(torch.nn.Module):
    """Policy and critic as one module, so the shared training loop updates (and checkpoints) both."""

    def __init__(self, policy, critic) -> None:
        super().__init__()
        self.policy = policy
        self.critic = critic


def load_critic(source: str, device: str, trust_remote_code: bool = False):
    """A one-label sequence-classification model (the TRL / OpenRLHF value-model form)."""
    from transformers import AutoModelForSequenceClassification

    try:
        critic = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"critic_model {source}: could not load a value model: {str(exc).splitlines()[0]}") from None
    if not hasattr(critic, "score"):
        raise UserError(f"critic_model {source}: the classification head is not named 'score' (unsupported)")
    return critic.to(device)


def critic_values(critic, rollout, rows=None) -> torch.Tensor:
    """V(s_t) for every completion position t, (n, C): the head on the hidden state that precedes
    token t (the same positions whose logits predict the completion)."""
    rows = slice(None) if rows is None else rows
    ids, attn = rollout.input_ids[rows], rollout.attention_mask[rows]
    body = getattr(critic, critic.base_model_prefix)
    hidden = body(input_ids=ids, attention_mask=attn, position_ids=position_ids(attn)).last_hidden_state
    width = ids.shape[1] - rollout.prompt_width
    return critic.score(hidden[:, -(width + 1) : -1]).squeeze(-1).float()


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    from posttrain.hf import model_source

    rl = start(cfg, ctx, "ppo", reference=cfg.kl_coef > 0)
    critic = load_critic(cfg.critic_model or model_source(ctx), ctx.device, ctx.trust_remote_code)
    if critic.config.pad_token_id is None:
        critic.config.pad_token_id = rl.tokenizer.pad_token_id
    both = ActorCritic(rl.policy, critic)
    temperature = rl.sampling.temperature
    targets: dict[str, torch.Tensor] = {}

    def make(index: int):
        rollout = rl.sample(rl.prompts(index))
        attach_logprobs(
            rollout, rl.policy, rl.reference, old=True, ref=cfg.kl_coef > 0,
            micro_batch=rl.semantics.micro_batch, temperature=temperature,
        )  # fmt: skip
        mask = rollout.completion_mask
        ref = rollout.ref_logps if rollout.ref_logps is not None else rollout.old_logps
        with torch.no_grad():
            values = torch.cat(
                [critic_values(critic, rollout, slice(i, i + rl.semantics.micro_batch))
                 for i in range(0, len(rollout), rl.semantics.micro_batch)]
            ) * mask  # fmt: skip
        rewards, kl = kl_penalized_rewards(rollout.rewards, rollout.old_logps, ref, mask, cfg.kl_coef)
        advantages, returns = gae_advantages(rewards, values, mask, cfg.gamma, cfg.gae_lambda)
        rollout.advantages = whiten(advantages, mask)
        targets.update(values=values, returns=returns)
        rollout.stats.update(kl=float(kl.sum(-1).mean()), value_mean=float(masked_mean(values, mask)))
        return rollout

    def micro_batch_loss(rollout, rows: slice):
        mask = rollout.completion_mask[rows]
        logps = completion_logprobs(rl.policy, rollout, rows, temperature)
        old = rollout.old_logps[rows]
        policy_loss, clip_fraction = clipped_policy_loss(logps, old, rollout.advantages[rows], mask, cfg.clip_epsilon)
        values = critic_values(critic, rollout, rows)
        value_loss, value_clip_fraction = clipped_value_loss(
            values, targets["values"][rows], targets["returns"][rows], mask, cfg.value_clip
        )
        return policy_loss + cfg.vf_coef * value_loss, {
            **rollout_stats(rollout),
            "policy_loss": policy_loss.item(),
            "value_loss": value_loss.item(),
            "clip_fraction": float(clip_fraction),
            "value_clip_fraction": float(value_clip_fraction),
            "approx_kl_old": float(masked_mean(old - logps.detach(), mask)),
            "tokens": int(rollout.attention_mask[rows].sum()),
        }

    result = train_on_rollouts(rl, make, micro_batch_loss, model=both)
    result.artifacts["critic"] = str(save_model(critic, rl.tokenizer, ctx.output_dir / "critic"))
    return result


plugin = Plugin(
    id="ppo",
    config=Config,
    run=run,
    summary="PPO for RLHF: separate critic, GAE, clipped policy and value losses, per-token KL penalty.",
    smoke={
        "max_steps": 2,
        "prompts_per_step": 8,
        "batch_size": 4,
        "policy_epochs": 1,
        "train_examples": 16,
        "eval_examples": 8,
        "log_every": 1,
    },
)
