"""ReMax (pure functions; plugin to follow)."""

from __future__ import annotations

import torch


def remax_advantages(sample_rewards: torch.Tensor, greedy_rewards: torch.Tensor) -> torch.Tensor:
    """A(x, y) = r(x, y) - r(x, ȳ) with ȳ the greedy response to the same prompt (Li et al. 2023,
    Algorithm 1). Zero when the sample is the greedy response (same reward)."""
    return sample_rewards - greedy_rewards


def remax_loss(seq_logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-mean_x A(x, y) Σ_t log π(y_t | x, y_<t): the log-probs are summed over the response (paper
    Eq. 7), so every token of a response gets the same weight A."""
    return -(advantages.detach() * seq_logps).mean()
