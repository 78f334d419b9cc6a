"""SCST (pure functions; plugin to follow)."""

from __future__ import annotations

import torch


def self_critical_advantages(sample_rewards: torch.Tensor, greedy_rewards: torch.Tensor) -> torch.Tensor:
    """r(w^s) - r(ŵ): the sampled sequence's reward minus the reward of the model's own greedy
    (test-time) decode of the same input (Rennie et al. 2017, Eq. 8-9)."""
    return sample_rewards - greedy_rewards


def scst_loss(token_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-Σ_{i,t} A_i log p(w^s_t) / Σ mask: the token-averaged loss of the reference SCST code
    (self-critical.pytorch's RewardCriterion). token_logps (N, C), advantages (N,), mask (N, C)."""
    weighted = advantages.detach().unsqueeze(-1) * token_logps * mask
    return -weighted.sum() / mask.sum().clamp(min=1)
