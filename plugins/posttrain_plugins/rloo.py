"""RLOO (pure functions; plugin to follow)."""

from __future__ import annotations

import torch


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Leave-one-out advantages (Ahmadian et al. 2024, Eq. 5; Kool et al. 2019):

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
    """Sequence-level RLHF reward r(x, y) = r_φ(x, y) - β log(π(y|x) / π_ref(y|x)) (paper §3, the
    whole response is one action); logps and ref_logps are summed over the response, shape (N,)."""
    return scores - kl_coef * (logps - ref_logps)


def policy_gradient_loss(seq_logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE loss -mean_i A_i log π(y_i|x); seq_logps (N,) summed over each response (with grad),
    advantages (N,) treated as constants."""
    return -(advantages.detach() * seq_logps).mean()
