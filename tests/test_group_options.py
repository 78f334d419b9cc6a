"""GroupConfig's token-level options of the group-RL recipe (issue #22): truncated / masked importance
sampling against the sampler (TIS, MIS), KL-Cov, and training on the high-entropy tokens only.

Hand-worked numbers for each pure function, the limiting cases (C = inf, rho = 1, no token selected give
the plain GRPO loss), the refusals, and a smoke run of grpo with each option on. Every group plugin's loss
(grpo, dr-grpo, dapo, gspo, cispo, sapo, gmpo) takes the options: unit weights leave it unchanged, zero
weights remove its policy-gradient term, and each plugin runs with each option. TRL parity for TIS/MIS
and the entropy mask is in tests/test_rl_parity.py. On CPU the sampler and the trainer run the same
code, so the sampler weights are 1 in a real run: they are tested on constructed tensors here.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from posttrain.errors import UserError
from posttrain.rl.group import (
    TokenShaping,
    clip_cov_keep,
    kl_cov_penalty,
    masked_is_weights,
    token_covariance,
    top_covariance_mask,
    top_entropy_mask,
    truncated_is_weights,
)
from posttrain.runs.runner import execute, prepare
from posttrain_plugins.cispo import cispo_loss
from posttrain_plugins.dapo import dapo_loss
from posttrain_plugins.dr_grpo import dr_grpo_loss
from posttrain_plugins.gmpo import gmpo_loss
from posttrain_plugins.grpo import Config, grpo_loss
from posttrain_plugins.gspo import gspo_loss
from posttrain_plugins.gspo import sequence_ratio as gspo_sequence_ratio
from posttrain_plugins.sapo import sapo_loss

LOG3, LOG_HALF = math.log(3.0), math.log(0.5)


def test_tis_truncates_and_mis_drops_ratios_above_the_cap():
    sample = torch.zeros(1, 3, dtype=torch.float64)
    old = torch.tensor([[LOG3, LOG_HALF, 0.0]], dtype=torch.float64)
    mask = torch.ones(1, 3, dtype=torch.float64)
    assert torch.allclose(
        truncated_is_weights(old, sample, mask, 2.0), torch.tensor([[2.0, 0.5, 1.0]], dtype=torch.float64)
    )
    assert torch.allclose(
        masked_is_weights(old, sample, mask, 2.0), torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    )
    # C = inf: the plain importance ratio for both
    plain = torch.tensor([[3.0, 0.5, 1.0]], dtype=torch.float64)
    assert torch.allclose(truncated_is_weights(old, sample, mask, math.inf), plain)
    assert torch.allclose(masked_is_weights(old, sample, mask, math.inf), plain)


def test_entropy_mask_keeps_the_top_fraction_of_real_tokens():
    entropies = torch.tensor([[0.1, 0.5, 0.9, 1.3, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])  # the last is padding, however high its entropy
    assert top_entropy_mask(entropies, mask, 0.5).tolist() == [[0.0, 0.0, 1.0, 1.0, 0.0]]  # 0.5 quantile 0.7
    assert top_entropy_mask(entropies, mask, 1.0).tolist() == mask.tolist()


def test_covariance_and_kl_cov_selection_by_hand():
    # tokens (log pi, A): (-1, 2), (-3, 2), (-2, 0), (-2, 0); means -2 and 1
    logps = torch.tensor([[-1.0, -3.0], [-2.0, -2.0]])
    advantages = torch.tensor([2.0, 0.0])
    mask = torch.ones(2, 2)
    covariance = token_covariance(logps, advantages, mask)
    assert covariance.tolist() == [[1.0, -1.0], [0.0, 0.0]]
    assert top_covariance_mask(covariance, mask, 0.25).tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert top_covariance_mask(covariance, mask, 0.2).sum() == 0  # floor(0.8) = 0 tokens
    live = torch.tensor([[-1.0, -3.0]], requires_grad=True)
    penalty = kl_cov_penalty(live, torch.tensor([[-1.5, -3.0]]), torch.tensor([[1.0, 1.0]]), 2.0)
    assert penalty.tolist() == [[1.0, 0.0]]  # 2 * |-1 + 1.5| on the first, pi = pi_old on the second
    penalty.sum().backward()
    assert live.grad.tolist() == [[2.0, 0.0]]


def test_clip_cov_cuts_random_tokens_inside_the_covariance_band():
    covariance = torch.tensor([[1.5, 2.0], [0.5, 6.0]])  # only the first row lies inside (1, 5)
    mask = torch.ones(2, 2)
    assert clip_cov_keep(covariance, mask, 0.5, 1.0, 5.0).tolist() == [[0.0, 0.0], [1.0, 1.0]]  # 2 tokens: both
    one = clip_cov_keep(covariance, mask, 0.25, 1.0, 5.0, torch.Generator().manual_seed(0))
    assert one[1].tolist() == [1.0, 1.0] and one[0].sum() == 1  # 1 token, drawn from the band
    assert clip_cov_keep(covariance, mask, 0.2, 1.0, 5.0).tolist() == mask.tolist()  # floor(0.8) = 0 tokens
    assert clip_cov_keep(covariance, mask, 1.0, 6.0, 9.0).tolist() == mask.tolist()  # nothing in the band


def rl_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(4, 5, generator=g, dtype=torch.float64) * 3
    logps = old + (torch.rand(4, 5, generator=g, dtype=torch.float64) - 0.5)
    ref = old + (torch.rand(4, 5, generator=g, dtype=torch.float64) - 0.5) * 0.5
    mask = (torch.arange(5)[None, :] < torch.tensor([5, 2, 4, 3])[:, None]).to(torch.float64)
    return {
        "logps": logps,
        "old": old,
        "ref": ref,
        "advantages": torch.randn(4, generator=g, dtype=torch.float64),
        "mask": mask,
    }


def loss_and_grad(x, shaping):
    logps = x["logps"].clone().requires_grad_(True)
    loss, _ = grpo_loss(logps, x["old"], x["ref"], x["advantages"], x["mask"], 0.2, 0.04, shaping)
    loss.backward()
    return loss.detach(), logps.grad


def test_grpo_loss_with_a_weight_by_hand():
    # one completion of 2 tokens, A = 1, on-policy: surrogate 1 per token; weights [1, 0] -> -(1 + 0) / 2
    logps = torch.zeros(1, 2)
    shaping = TokenShaping(weights=torch.tensor([[1.0, 0.0]]), penalty=torch.zeros(1, 2), stats={})
    loss, _ = grpo_loss(logps, logps, None, torch.ones(1), torch.ones(1, 2), 0.2, 0.0, shaping)
    assert float(loss) == -0.5


@pytest.mark.parametrize(
    "case", ["tis-inf-same-sampler", "mis-same-sampler", "rho-1", "no-kl-cov-token", "no-clip-cov-token"]
)
def test_limiting_cases_give_the_plain_grpo_loss(case):
    x = rl_batch()
    ones, zeros = torch.ones_like(x["logps"]), torch.zeros_like(x["logps"])
    weights = {
        "tis-inf-same-sampler": truncated_is_weights(x["old"], x["old"], x["mask"], math.inf),
        "mis-same-sampler": masked_is_weights(x["old"], x["old"], x["mask"], 2.0),
        "rho-1": top_entropy_mask(torch.rand(4, 5, dtype=torch.float64), x["mask"], 1.0),
        "no-kl-cov-token": ones,
        "no-clip-cov-token": clip_cov_keep(
            token_covariance(x["logps"], x["advantages"], x["mask"]), x["mask"], 0.01, -9.0, 9.0
        ),
    }[case]
    selected = top_covariance_mask(token_covariance(x["logps"], x["advantages"], x["mask"]), x["mask"], 0.01)
    penalty = kl_cov_penalty(x["logps"], x["old"], selected, 1.0)
    plain_loss, plain_grad = loss_and_grad(x, None)
    loss, grad = loss_and_grad(
        x, TokenShaping(weights=weights, penalty=penalty if case == "no-kl-cov-token" else zeros, stats={})
    )
    assert torch.equal(loss, plain_loss) and torch.equal(grad, plain_grad)


def test_options_are_off_by_default():
    cfg = Config()
    options = (cfg.sampler_correction, cfg.top_entropy_fraction, cfg.kl_cov_fraction, cfg.clip_cov_fraction)
    assert options == ("off", 1.0, 0.0, 0.0)


def run_grpo(tmp_path, **values):
    prepared = prepare("grpo", output_dir=tmp_path, smoke=True, device="cpu", extra=values)
    execute(prepared, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r]


@pytest.mark.parametrize(
    ("values", "logged"),
    [
        ({"sampler_correction": "tis"}, "sampler_weight"),
        ({"sampler_correction": "mis", "policy_epochs": 2}, "sampler_weight"),
        ({"top_entropy_fraction": 0.2}, "entropy_kept"),
        ({"kl_cov_fraction": 0.05, "policy_epochs": 2}, "kl_cov_selected"),
        ({"clip_cov_fraction": 0.5, "clip_cov_lower": -100.0, "clip_cov_upper": 100.0}, "clip_cov_cut"),
    ],
)
def test_grpo_runs_with_each_option(tmp_path, values, logged):
    rows = run_grpo(tmp_path, **values)
    assert rows and all(math.isfinite(r["loss"]) and logged in r for r in rows)
    if "sampler_correction" in values:  # the native sampler and the trainer run the same code on CPU
        assert all(abs(r["sampler_weight"] - 1) < 1e-4 for r in rows)
    if "top_entropy_fraction" in values:
        assert all(0 < r["entropy_kept"] <= 0.5 for r in rows)
    if "clip_cov_fraction" in values:  # every token lies in the band: half of them are cut
        assert all(0.4 < r["clip_cov_cut"] <= 0.5 for r in rows)


def test_sampler_correction_needs_the_native_sampler(tmp_path):
    with pytest.raises(UserError, match=r"^--set sampler_correction=tis: needs the sampler's log-probs"):
        run_grpo(tmp_path, sampler_correction="tis", backend="hf")


def test_high_entropy_tokens_refuse_logit_chunks_in_one_line(cli, tmp_path):
    code, text = cli(
        "run",
        "grpo",
        "--device",
        "cpu",
        "--set",
        "top_entropy_fraction=0.2",
        "--logit-chunk-size",
        "8",
        "--output-dir",
        str(tmp_path / "out"),
    )
    assert code == 2 and len(text.strip().splitlines()) == 1, text
    assert "--logit-chunk-size 8: top_entropy_fraction=0.2 needs each token's entropy" in text


# --- every group plugin's loss takes the options (issue #22) ------------------------------------------

EPS_LOW, EPS_HIGH = 0.1, 0.1  # rl_batch's sequence ratios 0.86, 1.08, 0.95, 1.17: two inside, two clipped
GROUP_LOSSES = {
    "grpo": lambda logps, x, shaping: grpo_loss(
        logps, x["old"], x["ref"], x["advantages"], x["mask"], 0.2, 0.04, shaping
    ),
    "dr-grpo": lambda logps, x, shaping: dr_grpo_loss(
        logps, x["old"], x["ref"], x["advantages"], x["mask"], 0.2, 0.04, 8, shaping=shaping
    ),
    "dapo": lambda logps, x, shaping: dapo_loss(
        logps, x["old"], x["advantages"], x["mask"], 0.2, 0.28, shaping=shaping
    ),
    "gspo": lambda logps, x, shaping: gspo_loss(
        logps, x["old"], x["ref"], x["advantages"], x["mask"], EPS_LOW, EPS_HIGH, 0.04, shaping=shaping
    ),
    "cispo": lambda logps, x, shaping: cispo_loss(
        logps, x["old"], x["ref"], x["advantages"], x["mask"], None, 4.0, 0.04, shaping=shaping
    ),
    "sapo": lambda logps, x, shaping: sapo_loss(
        logps, x["old"], x["ref"], x["advantages"], x["mask"], 1.0, 1.05, 0.04, shaping=shaping
    ),
    "gmpo": lambda logps, x, shaping: gmpo_loss(
        logps, x["old"], x["ref"], x["advantages"], x["mask"], 0.4, 0.4, 0.04, shaping=shaping
    ),
}
# gspo and gmpo are per response: with options their loss is written per token (the plugins' docstrings),
# which has the same value and gradient up to rounding; the token-level losses apply the weights exactly.
TOKEN_FORM = {"gspo", "gmpo"}


def group_loss_and_grad(name: str, x: dict, shaping: TokenShaping | None):
    logps = x["logps"].clone().requires_grad_(True)
    loss, stats = GROUP_LOSSES[name](logps, x, shaping)
    loss.backward()
    assert all(torch.isfinite(v).all() for v in stats.values())
    return loss.detach(), logps.grad


def test_rl_batch_has_clipped_and_unclipped_gspo_responses():
    x = rl_batch()
    ratio = gspo_sequence_ratio(x["logps"], x["old"], x["mask"])
    inside = (ratio > 1 - EPS_LOW) & (ratio < 1 + EPS_HIGH)
    assert inside.any() and not inside.all()


@pytest.mark.parametrize("name", sorted(GROUP_LOSSES))
def test_unit_weights_and_no_penalty_leave_each_loss_unchanged(name):
    x = rl_batch()
    ones = TokenShaping(weights=torch.ones_like(x["logps"]), penalty=torch.zeros_like(x["logps"]), stats={})
    plain_loss, plain_grad = group_loss_and_grad(name, x, None)
    loss, grad = group_loss_and_grad(name, x, ones)
    if name in TOKEN_FORM:
        assert torch.allclose(loss, plain_loss, rtol=1e-12, atol=1e-14)
        assert torch.allclose(grad, plain_grad, rtol=1e-10, atol=1e-14)
    else:
        assert torch.equal(loss, plain_loss) and torch.equal(grad, plain_grad)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(GROUP_LOSSES))
def test_zero_weights_remove_the_policy_gradient_term(name):
    # what is left is the KL term's gradient, which zero advantages (no policy-gradient signal) also leave
    x = rl_batch()
    zeros = TokenShaping(weights=torch.zeros_like(x["logps"]), penalty=torch.zeros_like(x["logps"]), stats={})
    _, grad = group_loss_and_grad(name, x, zeros)
    _, kl_only = group_loss_and_grad(name, {**x, "advantages": torch.zeros_like(x["advantages"])}, None)
    assert torch.allclose(grad, kl_only, rtol=1e-12, atol=1e-15)
    plain_grad = group_loss_and_grad(name, x, None)[1]
    assert not torch.allclose(grad, plain_grad)


@pytest.mark.parametrize("name", sorted(GROUP_LOSSES))
def test_a_zero_weight_removes_only_its_token_gradient(name):
    # pi_ref = pi: the k3 KL has zero gradient, so a token's gradient is its policy-gradient term alone
    x = {**rl_batch(), "ref": rl_batch()["logps"]}
    _, plain_grad = group_loss_and_grad(name, x, None)
    live = (plain_grad != 0) & x["mask"].bool()  # tokens outside any clip
    token = tuple(int(i) for i in live.nonzero()[0])
    weights = torch.ones_like(x["logps"])
    weights[token] = 0.0
    _, grad = group_loss_and_grad(name, x, TokenShaping(weights=weights, penalty=torch.zeros_like(weights), stats={}))
    others = torch.ones_like(weights, dtype=torch.bool)
    others[token] = False
    assert float(grad[token]) == 0.0
    assert torch.allclose(grad[others], plain_grad[others], rtol=1e-10, atol=1e-15)


OPTION_LOGS = [
    ({"sampler_correction": "tis"}, "sampler_weight"),
    ({"sampler_correction": "mis"}, "sampler_weight"),
    ({"top_entropy_fraction": 0.2}, "entropy_kept"),
    ({"kl_cov_fraction": 0.05}, "kl_cov_selected"),
    ({"clip_cov_fraction": 0.5, "clip_cov_lower": -100.0, "clip_cov_upper": 100.0}, "clip_cov_cut"),
]


@pytest.mark.parametrize("plugin", ["dr-grpo", "dapo", "gspo", "cispo", "sapo", "gmpo"])
@pytest.mark.parametrize(
    ("values", "logged"), OPTION_LOGS, ids=[v[1] + "-" + str(i) for i, v in enumerate(OPTION_LOGS)]
)
def test_every_group_plugin_runs_with_each_option(tmp_path, plugin, values, logged):
    prepared = prepare(plugin, output_dir=tmp_path, smoke=True, device="cpu", extra=values)
    execute(prepared, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert rows and all(math.isfinite(r["loss"]) and logged in r for r in rows)
