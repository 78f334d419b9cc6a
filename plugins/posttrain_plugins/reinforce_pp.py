"""REINFORCE++ (pure functions; plugin to follow)."""

from __future__ import annotations

import torch


def kl_shaped_returns(
    scores: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Token-level advantage before normalisation (Hu 2025, Eq. 5-6), with γ = 1 and no critic:

        A_t = r(x, y) - β Σ_{i ≥ t} KL_i,   KL_i = log π_old(y_i) - log π_ref(y_i)

    i.e. the reward-to-go of the per-token rewards r_t = -β KL_t + [t = last] r(x, y). (N, C).
    """
    kl = (old_logps - ref_logps) * mask
    rewards = -kl_coef * kl
    lengths = mask.sum(-1).long()
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, (lengths - 1).clamp(min=0)] += scores * (lengths > 0)
    return torch.flip(torch.cumsum(torch.flip(rewards, [-1]), -1), [-1]) * mask


def group_mean_baseline(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The REINFORCE++-baseline variant (OpenRLHF `reinforce_baseline`): subtract the mean reward of
    the prompt's k samples before shaping; the global normalisation still follows."""
    grouped = scores.view(-1, k)
    return (grouped - grouped.mean(-1, keepdim=True)).reshape(-1)
