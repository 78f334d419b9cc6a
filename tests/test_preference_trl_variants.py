"""TRL 1.16's DPO options that have their own plugin here: f-DPO (``f_divergence_type``: fdpo-forward-kl,
fdpo-js, fdpo-alpha), MPO (``loss_type=["sigmoid", "bco_pair", "sft"]`` with ``loss_weights``),
LD-DPO (``ld_alpha``) and WPO (``use_weighting``):
hand-worked numbers and limits, and parity with TRL's own loss code on identical random inputs
(loss, gradients w.r.t. the policy log-probs, logged reward metrics within 1e-6 in float64; the
harness is test_preference_trl_losses's). Skips the parity tests when TRL is not installed.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import test_preference_trl_losses as trl_harness
import torch
from test_preference_trl_losses import assert_parity, random_inputs, stub_rows, trl_dpo
from tiny_families import sft_examples, tiny_model

from posttrain.errors import UserError
from posttrain.logit_chunks import set_logit_chunk_size
from posttrain.runs.runner import prepare
from posttrain.training.preference import (
    PairLogps,
    chosen_nll_per_token,
    dpo_loss,
    pair_batch,
    pair_logps,
    reward_metrics,
)
from posttrain_plugins.f_dpo import MAX_EXPONENT, alpha_loss, forward_kl_loss, js_loss, power_scores
from posttrain_plugins.ld_dpo import SharedPrefixLogps, ld_dpo_loss, shared_prefix_logps, shared_prefix_sums
from posttrain_plugins.mpo import mpo_pair_loss
from posttrain_plugins.wpo import alignment_weights, log_sum_squared_probs, weighted_pair_logps, wpo_loss
from posttrain_plugins.wpo import run as wpo_run

t = torch.tensor


# --- f-DPO: hand-worked numbers and limits ----------------------------------------------------


def test_every_f_dpo_loss_is_ln_two_at_the_reference():
    pc, pr = t([-3.0, -7.0]), t([-4.0, -1.0])
    for losses, c, r in (
        forward_kl_loss(pc, pr, pc, pr, 0.1),
        js_loss(pc, pr, pc, pr, 0.1),
        alpha_loss(pc, pr, pc, pr, 0.1, 0.5),
    ):
        assert torch.allclose(losses, torch.full((2,), math.log(2))) and torch.all(c == 0) and torch.all(r == 0)


def test_f_dpo_hand_worked():
    # beta 1, log-ratios ln 2 (chosen) and -ln 2 (rejected): u_w = 2, u_l = 1/2
    args = (t([math.log(2)]), t([-math.log(2)]), t([0.0]), t([0.0]), 1.0)
    softplus = lambda x: math.log1p(math.exp(-x))  # noqa: E731  -log sigmoid(x)
    # forward KL: (1 - 1/2) - (1 - 2) = 1.5
    assert forward_kl_loss(*args)[0].item() == pytest.approx(softplus(1.5))
    # JS: log(4/3) - log(2/3) = log 2
    assert js_loss(*args)[0].item() == pytest.approx(softplus(math.log(2)))
    # alpha 1/2: (1 - 2^-1/2)/0.5 - (1 - 2^1/2)/0.5 = 2 (2^1/2 - 2^-1/2) = 2^1/2
    assert alpha_loss(*args, 0.5)[0].item() == pytest.approx(softplus(math.sqrt(2)))
    # rewards are DPO's beta * log-ratio, as TRL logs
    assert forward_kl_loss(*args)[1].item() == pytest.approx(math.log(2))


def test_alpha_divergence_spans_reverse_and_forward_kl():
    pc, pr, rc, rr = t([-1.0, -5.0]), t([-2.0, -3.0]), t([-1.5, -4.0]), t([-2.5, -2.0])
    pc, pr, rc, rr = (x.double() for x in (pc, pr, rc, rr))
    assert torch.allclose(alpha_loss(pc, pr, rc, rr, 0.1, 1.0)[0], forward_kl_loss(pc, pr, rc, rr, 0.1)[0])
    assert torch.allclose(alpha_loss(pc, pr, rc, rr, 0.1, 1e-7)[0], dpo_loss(pc, pr, rc, rr, 0.1)[0], atol=1e-6)


def test_power_scores_stay_finite_far_below_the_reference():
    scores = power_scores(t([-1e4], requires_grad=True), 1.0)
    scores.sum().backward()
    assert torch.isfinite(scores).all() and scores.item() == pytest.approx(-math.expm1(MAX_EXPONENT))


# --- MPO: hand-worked numbers -----------------------------------------------------------------


def test_mpo_at_the_reference_and_hand_worked():
    pc, pr = t([-3.0]), t([-4.0])
    assert mpo_pair_loss(pc, pr, pc, pr, 0.1, 0.8, 0.2)[0].item() == pytest.approx(1.2 * math.log(2))
    # beta 1, r_w = 1, r_l = -1: 0.8 log(1 + e^-2) + 0.2 * 2 log(1 + e^-1)
    got = mpo_pair_loss(t([1.0]), t([-1.0]), t([0.0]), t([0.0]), 1.0, 0.8, 0.2)[0].item()
    assert got == pytest.approx(0.8 * math.log1p(math.exp(-2)) + 0.4 * math.log1p(math.exp(-1)))


# --- TRL parity -------------------------------------------------------------------------------


@pytest.mark.parametrize(("beta", "seed"), [(0.1, 7), (0.5, 3)])
def test_trl_parity_f_dpo_forward_kl_and_js(beta, seed):
    forward = lambda pc, pr, rc, rr, lc, lr: forward_kl_loss(pc, pr, rc, rr, beta)  # noqa: E731
    js = lambda pc, pr, rc, rr, lc, lr: js_loss(pc, pr, rc, rr, beta)  # noqa: E731
    assert_parity("sigmoid", forward, beta=beta, seed=seed, f_divergence_type="forward_kl")
    assert_parity("sigmoid", js, beta=beta, seed=seed, f_divergence_type="js_divergence")


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.9])
def test_trl_parity_f_dpo_alpha(alpha):
    """TRL's alpha-divergence casts to float32 and knows no float64 cap, so this parity runs in
    float32 (relative tolerance 1e-5); TRL's coefficient is 1 − α."""
    pytest.importorskip("trl")
    pc, pr, rc, rr, lc, lr = (x.float() if x.is_floating_point() else x for x in random_inputs(seed=11))
    theirs_pc, theirs_pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    theirs, logged = trl_dpo(
        "sigmoid",
        theirs_pc,
        theirs_pr,
        rc,
        rr,
        lc,
        lr,
        0.1,
        f_divergence_type="alpha_divergence",
        f_alpha_divergence_coef=1 - alpha,
    )
    theirs.backward()
    ours_pc, ours_pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    losses, c_rew, r_rew = alpha_loss(ours_pc, ours_pr, rc, rr, 0.1, alpha)
    losses.mean().backward()
    assert losses.mean().item() == pytest.approx(theirs.item(), rel=1e-5)
    assert torch.allclose(ours_pc.grad, theirs_pc.grad, rtol=1e-5, atol=1e-7)
    assert torch.allclose(ours_pr.grad, theirs_pr.grad, rtol=1e-5, atol=1e-7)
    mine = reward_metrics(c_rew, r_rew, PairLogps(ours_pc, ours_pr, lc, lr))
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert mine[name] == pytest.approx(logged[name], rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize(("weights", "seed"), [((0.8, 0.2, 1.0), 7), ((0.5, 1.5, 0.3), 3)])
def test_trl_parity_mpo(weights, seed):
    preference, quality, generation = weights

    def ours(pc, pr, rc, rr, lc, lr):
        losses, c_rew, r_rew = mpo_pair_loss(pc, pr, rc, rr, 0.1, preference, quality)
        # the generation loss is one batch number (RPO's term); added to every pair it adds to the mean
        nll = chosen_nll_per_token(PairLogps(pc, pr, lc, lr))
        return losses + generation * nll, c_rew, r_rew

    assert_parity("sigmoid", ours, seed=seed, loss_types=["sigmoid", "bco_pair", "sft"], loss_weights=list(weights))


# --- LD-DPO and WPO: per-token helpers, hand-worked numbers, TRL parity ------------------------


def test_shared_prefix_sums_stop_at_the_shorter_response_of_each_pair():
    # pair 0: chosen 3 tokens, rejected 1 -> l = 1; pair 1: chosen 2, rejected 2 -> l = 2 (left padding)
    token_logps = t([[-1.0, -2.0, -3.0], [0.0, -4.0, -5.0], [0.0, 0.0, -6.0], [0.0, -7.0, -8.0]])
    mask = t([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    assert shared_prefix_sums(token_logps, mask).tolist() == [-1.0, -9.0, -6.0, -15.0]


def test_ld_dpo_alpha_one_is_dpo_and_alpha_zero_drops_the_tail():
    pol = SharedPrefixLogps(t([-6.0]), t([-2.0]), t([3]), t([1]), t([-1.0]), t([-2.0]))
    ref = SharedPrefixLogps(t([-5.0]), t([-3.0]), t([3]), t([1]), t([-2.0]), t([-3.0]))
    assert torch.allclose(
        ld_dpo_loss(pol, ref, 0.1, 1.0)[0], dpo_loss(t([-6.0]), t([-2.0]), t([-5.0]), t([-3.0]), 0.1)[0]
    )
    # alpha 0: shared parts only, log-ratios 1 and 1 -> margin 0
    assert ld_dpo_loss(pol, ref, 1.0, 0.0)[0].item() == pytest.approx(math.log(2))


def test_wpo_weights_hand_worked():
    # uniform over 4 tokens: p = 1/4, sum p^2 = 1/4 -> w = 1; one-hot on the token: w = 1; 1/2 on it, 1/2 elsewhere: w = 1
    logits = torch.zeros(1, 2, 4)
    targets = t([[0, 1]])
    lss = log_sum_squared_probs(logits, targets)
    assert lss.item() == pytest.approx(math.log(0.25))
    token_logps = torch.full((1, 1), math.log(0.25))
    assert alignment_weights(token_logps, lss, torch.ones(1, 1)).item() == pytest.approx(1.0)
    # p(y_t) = 0.1 with sum p^2 = 0.5 -> w = 0.2; the mean is over completion tokens only
    weights = alignment_weights(t([[math.log(0.1), 0.0]]), t([[math.log(0.5), 5.0]]), t([[1.0, 0.0]]))
    assert weights.item() == pytest.approx(0.2)
    losses = wpo_loss(t([-1.0]), t([-2.0]), t([-1.0]), t([-2.0]), 0.1, t([0.5]), t([0.2]))[0]
    assert losses.item() == pytest.approx(0.1 * math.log(2))


@pytest.mark.parametrize(("alpha", "seed"), [(0.5, 7), (0.0, 3), (0.8, 11)])
def test_trl_parity_ld_dpo(alpha, seed):
    """TRL with ``ld_alpha`` and precomputed reference log-probs (which TRL computes already
    desensitized): the stub's per-token log-probs feed both implementations."""
    pytest.importorskip("trl")
    pc, pr, rc, rr, lc, lr = random_inputs(seed=seed)
    theirs_pc, theirs_pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    theirs, logged = trl_dpo("sigmoid", theirs_pc, theirs_pr, rc, rr, lc, lr, 0.1, ld_alpha=alpha)
    theirs.backward()
    ours_pc, ours_pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    _, mask, table = stub_rows(torch.cat([ours_pc, ours_pr]), torch.cat([lc, lr]))
    shared_c, shared_r = shared_prefix_sums(table, mask[:, 1:].to(table.dtype)).chunk(2)
    policy = SharedPrefixLogps(ours_pc, ours_pr, lc, lr, shared_c, shared_r)
    reference = SharedPrefixLogps(rc, rr, lc, lr, rc, rr)  # all "shared": desensitized = the given values
    losses, c_rew, r_rew = ld_dpo_loss(policy, reference, 0.1, alpha)
    losses.mean().backward()
    assert losses.mean().item() == pytest.approx(theirs.item(), abs=1e-6)
    assert torch.allclose(ours_pc.grad, theirs_pc.grad, atol=1e-6) and torch.allclose(
        ours_pr.grad, theirs_pr.grad, atol=1e-6
    )
    ld_c, ld_r = policy.desensitized(alpha)
    mine = reward_metrics(c_rew, r_rew, PairLogps(ld_c, ld_r, lc, lr))
    for name in trl_harness.LOGGED_PAIR_METRICS:
        assert mine[name] == pytest.approx(logged[name], abs=1e-6), name


class WeightingStubLM(trl_harness.StubLM):
    """The harness's stub plus TRL's ``log_sum_sq_probs`` output (a fixed table per test)."""

    log_sum_sq: torch.Tensor

    def __call__(self, input_ids, **kwargs):
        out = super().__call__(input_ids, **kwargs)
        out.log_sum_sq_probs = self.log_sum_sq[input_ids[:, 0]]
        return out


@pytest.mark.parametrize(("beta", "seed"), [(0.1, 7), (0.5, 3)])
def test_trl_parity_wpo(beta, seed, monkeypatch):
    pytest.importorskip("trl")
    pc, pr, *_, lc, lr = random_inputs(seed=seed)
    width = int(torch.cat([lc, lr]).max()) + 2
    g = torch.Generator().manual_seed(seed)
    # log sum p^2 lies in [log p(y_t), 0]: draw it there so weights are below 1 as in a real model
    WeightingStubLM.log_sum_sq = -torch.rand(2 * len(pc), width - 1, generator=g, dtype=torch.float64) * 0.3
    monkeypatch.setattr(trl_harness, "StubLM", WeightingStubLM)

    def ours(pc, pr, rc, rr, lc, lr):
        _, mask, table = stub_rows(torch.cat([pc, pr]), torch.cat([lc, lr]))
        weights = alignment_weights(table.detach(), WeightingStubLM.log_sum_sq, mask[:, 1:].to(table.dtype))
        return wpo_loss(pc, pr, rc, rr, beta, *weights.chunk(2))

    assert_parity("sigmoid", ours, beta=beta, seed=seed, use_weighting=True)


# --- LD-DPO and WPO on a model: per-token numbers against the full float64 logits -----------------


def model_pairs():
    """Two pairs of completion lengths (6 vs 3) and (3 vs 9): a shared length of 3 in both."""
    chosen_long, chosen_short, rejected_short, rejected_long = sft_examples(lengths=(9, 6, 6, 12))
    return [(chosen_long, rejected_short), (chosen_short, rejected_long)]


def full_logit_token_numbers(model, batch):
    """Per-token log p(y_t) and log Σ_v p(v)² at every completion position, from the full logits."""
    log_probs = torch.log_softmax(model(input_ids=batch["input_ids"]).logits[:, :-1], -1)
    picked = log_probs.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return picked, torch.logsumexp(2 * log_probs, -1), batch["completion_mask"][:, 1:].to(picked.dtype)


def test_shared_prefix_logps_of_a_model_with_and_without_chunked_logits():
    model = tiny_model("llama")
    batch = pair_batch(model_pairs(), pad_id=0, device="cpu")
    picked, _, mask = full_logit_token_numbers(model, batch)
    first_three = mask * (mask.cumsum(-1) <= 3)
    expected_shared = (picked * first_three).sum(-1)
    ld = shared_prefix_logps(model, batch)
    plain = pair_logps(model, batch)
    torch.testing.assert_close(torch.cat([ld.chosen, ld.rejected]), torch.cat([plain.chosen, plain.rejected]))
    # token_logprobs works in float32, as on a float32 model
    torch.testing.assert_close(torch.cat([ld.chosen_shared, ld.rejected_shared]), expected_shared.float())
    # the shorter response of each pair is all shared
    torch.testing.assert_close(ld.rejected_shared[0], ld.rejected[0])
    torch.testing.assert_close(ld.chosen_shared[1], ld.chosen[1])
    set_logit_chunk_size(model, 4)
    chunked = shared_prefix_logps(model, batch)
    # the chunked head keeps the model's float64
    torch.testing.assert_close(chunked.chosen_shared.float(), ld.chosen_shared)
    torch.testing.assert_close(chunked.rejected_shared.float(), ld.rejected_shared)


def test_wpo_weights_of_a_model_against_the_full_logits():
    model = tiny_model("llama")
    batch = pair_batch(model_pairs(), pad_id=0, device="cpu")
    picked, log_sum_sq, mask = full_logit_token_numbers(model, batch)
    expected = torch.exp(((picked - log_sum_sq) * mask).sum(-1) / mask.sum(-1))
    weighted = weighted_pair_logps(model, batch)
    torch.testing.assert_close(torch.cat([weighted.chosen_weight, weighted.rejected_weight]), expected.float())
    assert not weighted.chosen_weight.requires_grad and weighted.chosen.requires_grad


def test_wpo_refuses_logit_chunking_in_one_line(tmp_path):
    prepared = prepare("wpo", output_dir=tmp_path, smoke=True, device="cpu")
    with pytest.raises(UserError, match="--logit-chunk-size") as caught:
        wpo_run(prepared.config, dataclasses.replace(prepared.ctx, logit_chunk_size=4))
    assert "\n" not in str(caught.value)
