"""REINFORCE (pure functions; plugin to follow)."""

from __future__ import annotations

import torch


def moving_average_baseline(baseline: float | None, rewards: torch.Tensor, decay: float) -> float:
    """Exponential moving average of past mean rewards, b ← d·b + (1-d)·mean(r) (Williams 1992, §4:
    the reinforcement-comparison baseline). The first batch initialises b to its mean."""
    mean = float(rewards.mean())
    return mean if baseline is None else decay * baseline + (1 - decay) * mean


def reinforce_loss(seq_logps: torch.Tensor, rewards: torch.Tensor, baseline: float) -> torch.Tensor:
    """-mean_i (r_i - b) log π(y_i|x) (Williams 1992, Eq. 11 with a sequence as the episode).

    b must not depend on the sampled y_i (here: past batches only), so the estimator stays unbiased.
    """
    return -((rewards - baseline).detach() * seq_logps).mean()
