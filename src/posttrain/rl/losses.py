"""The RL pieces several plugins share: pure functions, tensors in and tensors out.

Group methods (grpo, dr-grpo, dapo, gspo, cispo, sapo): ``group_advantages``, ``clipped_surrogate``,
``k3_kl``, ``token_stats``. Actor-critic and REINFORCE methods (ppo, reinforce-pp, reinforce, rloo):
``masked_mean``, ``whiten``, ``clipped_policy_loss``, ``sequence_sum``.

Token tensors are (N, C): N completions, C completion positions, right-padded; ``mask`` is 1 on the
sampled tokens (a prefix of each row: up to and including EOS) and 0 on padding.
"""

from __future__ import annotations

import torch

# --- group methods (DeepSeekMath, arXiv:2402.03300, Eq. 3-4) --------------------------------------


def group_advantages(rewards: torch.Tensor, std_epsilon: float = 1e-4) -> torch.Tensor:
    """Outcome advantages (P, G) -> (P, G): (r - mean(r)) / (std(r) + eps) within each group.

    Rewards [1, 0, 0, 0]: mean 0.25, unbiased std 0.5, advantages [1.5, -0.5, -0.5, -0.5] (up to eps).
    Equal rewards in a group give zero advantages.
    """
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, keepdim=True) if rewards.shape[-1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + std_epsilon)


def clipped_surrogate(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) and where clipping was active.

    rho = exp(logps - old_logps). Inside the trust region it equals rho A (the unclipped objective);
    at rho = 1 it equals A. ``advantages`` broadcasts: (N, 1) for outcome rewards.
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * advantages
    return torch.minimum(unclipped, clipped), (clipped < unclipped)


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token unbiased KL(pi || pi_ref) estimate (Eq. 4): pi_ref/pi - log(pi_ref/pi) - 1 >= 0.

    Zero when the policy equals the reference; log-ratio log(pi_ref/pi) = 1 gives e - 2 = 0.7183.
    """
    log_ratio = ref_logps - logps
    return torch.exp(log_ratio) - log_ratio - 1


def token_stats(kl: torch.Tensor, clipped: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean KL and share of clipped tokens over the real tokens of a micro-batch."""
    tokens = mask.sum().clamp(min=1)
    return {"kl": (kl * mask).sum() / tokens, "clip_ratio": (clipped.float() * mask).sum() / tokens}


# --- actor-critic and REINFORCE methods -----------------------------------------------------------


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


def clipped_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347, Eq. 7), negated to a loss,
    token-level mean:

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


def sequence_sum(token_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C) per-token values -> (N,) sums over each completion's real tokens."""
    return (token_values * mask).sum(-1)
