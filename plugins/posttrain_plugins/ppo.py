"""PPO (pure functions; plugin to follow)."""

from __future__ import annotations

import torch

# --- pure functions (tensors in, tensors out) -------------------------------------------------------
# Token tensors are (N, C): N completions, C completion positions, right-padded; ``mask`` is 1 on the
# sampled tokens (a prefix of each row: up to and including EOS) and 0 on padding.


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (token-level average over the batch)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions of the whole batch; padding stays 0.

    With ``shift_mean=False`` the mean is added back (only the scale changes), as TRL does for the
    per-token rewards. Uses the population variance.
    """
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


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


def clipped_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017, Eq. 7), negated to a loss, token-level mean:

        L = -mean_t min(ρ_t Â_t, clip(ρ_t, 1-ε, 1+ε) Â_t),   ρ_t = π_θ(y_t) / π_old(y_t)

    Returns (loss, share of tokens where the clipped branch is the smaller one). Inside the trust
    region |ρ - 1| ≤ ε it equals the unclipped objective; at ρ = 1 its gradient is the policy gradient.
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages
    loss = -masked_mean(torch.min(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped < unclipped).float(), mask)
    return loss, clip_fraction


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
