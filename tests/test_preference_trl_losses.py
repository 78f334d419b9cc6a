"""TRL 1.16 DPO loss types that have their own plugin here (apo-zero, apo-down, exo-pair, nca-pair,
bco-pair, sppo-hard, discopop, sigmoid-norm, aot, aot-unpaired, spin): hand-worked
numbers and limits, and parity with TRL's own loss code.

Parity runs TRL's ``DPOTrainer._compute_loss`` on identical random inputs in float64, on a trainer
made with ``object.__new__`` holding only the attributes that method reads, and a stub model whose
per-token log-probs sum to the inputs (differentiably, so the gradients reach the inputs through
TRL's code too). Loss, gradients with respect to the policy log-probs and TRL's logged reward
metrics must agree within 1e-6. Skips when TRL is not installed (extra ``trl``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from posttrain.training.preference import PairLogps, dpo_loss, reward_metrics
from posttrain_plugins.aot import aot_paired_loss, aot_unpaired_loss
from posttrain_plugins.apo import apo_down_loss, apo_zero_loss
from posttrain_plugins.bco import bco_pair_loss
from posttrain_plugins.discopop import discopop_loss
from posttrain_plugins.exo import exo_pair_loss
from posttrain_plugins.nca import nca_pair_loss
from posttrain_plugins.sigmoid_norm import sigmoid_norm_loss
from posttrain_plugins.spin import spin_loss
from posttrain_plugins.sppo import sppo_hard_loss

t = torch.tensor
TOL = 1e-6

# the metrics TRL 1.16 logs for every DPO loss type, compared with reward_metrics' own
LOGGED_PAIR_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)


# --- hand-worked numbers and limits -----------------------------------------------------------


def test_apo_losses_are_one_at_reference():
    pc, pr = t([-3.0, -7.0]), t([-4.0, -1.0])
    for loss_of in (apo_zero_loss, apo_down_loss):
        losses, c, r = loss_of(pc, pr, pc, pr, 0.1)
        assert torch.allclose(losses, torch.ones(2)) and torch.all(c == 0) and torch.all(r == 0)


def test_apo_zero_hand_worked_and_gradient_directions():
    # beta 1: r_w = 1, r_l = -2 -> 1 - sigma(1) + sigma(-2)
    losses = apo_zero_loss(t([0.0]), t([-3.0]), t([-1.0]), t([-1.0]), 1.0)[0]
    assert losses.item() == pytest.approx(1 - 1 / (1 + torch.e**-1) + 1 / (1 + torch.e**2))
    pc, pr = t([-2.0], requires_grad=True), t([-2.0], requires_grad=True)
    apo_zero_loss(pc, pr, t([-2.0]), t([-2.0]), 1.0)[0].sum().backward()
    assert pc.grad.item() == pytest.approx(-0.25) and pr.grad.item() == pytest.approx(0.25)  # chosen up, rejected down


def test_apo_down_pushes_both_likelihoods_down_and_rejected_more():
    pc, pr = t([-2.0], requires_grad=True), t([-2.0], requires_grad=True)
    apo_down_loss(pc, pr, t([-2.0]), t([-2.0]), 1.0)[0].sum().backward()
    # d/dr_w [sigma(r_w) - sigma(r_w - r_l)] = 1/4 - 1/4 = 0 at the reference; d/dr_l = +1/4
    assert pc.grad.item() == pytest.approx(0.0) and pr.grad.item() == pytest.approx(0.25)
    # once the rejected reward has fallen, descent lowers the chosen likelihood too
    pc = t([-2.0], requires_grad=True)
    apo_down_loss(pc, t([-6.0]), t([-2.0]), t([-2.0]), 1.0)[0].sum().backward()
    assert pc.grad.item() > 0


def test_exo_at_reference_and_its_finite_optimum():
    eps = 1e-3
    losses = exo_pair_loss(t([-3.0]), t([-4.0]), t([-3.0]), t([-4.0]), 0.1, eps)[0]
    assert losses.item() == pytest.approx(-math.log(2) - 0.5 * math.log(eps * (1 - eps)))
    # zero (the KL's minimum) where beta*h = log((1 - eps)/eps)
    h = math.log((1 - eps) / eps)
    assert exo_pair_loss(t([h]), t([0.0]), t([0.0]), t([0.0]), 1.0, eps)[0].item() == pytest.approx(0.0, abs=1e-9)
    # beyond it the loss rises again: reverse KL penalises over-confidence
    assert exo_pair_loss(t([h + 3]), t([0.0]), t([0.0]), t([0.0]), 1.0, eps)[0].item() > 1e-4


def test_nca_hand_worked_and_chosen_optimum():
    log_sigmoid = torch.nn.functional.logsigmoid
    assert nca_pair_loss(t([-2.0]), t([-2.0]), t([-2.0]), t([-2.0]), 0.1)[0].item() == pytest.approx(2 * math.log(2))
    # beta 1, r_w = 1, r_l = -1
    expected = -log_sigmoid(t(1.0)) - 0.5 * log_sigmoid(t(-1.0)) - 0.5 * log_sigmoid(t(1.0))
    assert nca_pair_loss(t([1.0]), t([-1.0]), t([0.0]), t([0.0]), 1.0)[0].item() == pytest.approx(expected.item())
    # the chosen term stops pulling once sigma(r_w) = 2/3, i.e. r_w = ln 2
    pc = t([math.log(2)], requires_grad=True)
    nca_pair_loss(pc, t([0.0]), t([0.0]), t([0.0]), 1.0)[0].sum().backward()
    assert pc.grad.item() == pytest.approx(0.0, abs=1e-7)


def test_bco_is_two_ln_two_at_reference_and_hand_worked():
    assert bco_pair_loss(t([-5.0]), t([-2.0]), t([-5.0]), t([-2.0]), 0.1)[0].item() == pytest.approx(2 * math.log(2))
    # beta 1, r_w = 2, r_l = 1: log(1 + e^-2) + log(1 + e^1)
    got = bco_pair_loss(t([2.0]), t([1.0]), t([0.0]), t([0.0]), 1.0)[0].item()
    assert got == pytest.approx(math.log1p(math.exp(-2)) + math.log1p(math.exp(1)))


def test_sppo_hard_at_reference_and_at_targets():
    assert sppo_hard_loss(t([-3.0]), t([-1.0]), t([-3.0]), t([-1.0]), 10.0)[0].item() == pytest.approx(50.0)
    losses, c, r = sppo_hard_loss(t([2.0]), t([-6.0]), t([-3.0]), t([-1.0]), 10.0)  # log-ratios +5 and -5
    assert losses.item() == pytest.approx(0.0) and c.item() == pytest.approx(0.5) and r.item() == pytest.approx(-0.5)


def test_discopop_at_reference_and_its_two_regimes():
    losses = discopop_loss(t([-3.0]), t([-4.0]), t([-3.0]), t([-4.0]), 0.1, 0.05)[0]
    assert losses.item() == pytest.approx((math.log(2) + 1) / 2)
    # far below zero margin it is DPO's logistic loss, far above it the exponential loss
    below = discopop_loss(t([-20.0]), t([0.0]), t([0.0]), t([0.0]), 0.1, 0.05)[0]
    assert below.item() == pytest.approx(dpo_loss(t([-20.0]), t([0.0]), t([0.0]), t([0.0]), 0.1)[0].item(), rel=1e-6)
    above = discopop_loss(t([20.0]), t([0.0]), t([0.0]), t([0.0]), 0.1, 0.05)[0]
    assert above.item() == pytest.approx(math.exp(-2.0), rel=1e-6)


def test_discopop_slope_at_the_reference_pushes_the_margin_negative_at_the_paper_tau():
    # d loss / d rho at rho = 0 is 1/(4 tau) (1 - ln 2) - 3/4: +0.78 at tau = 0.05, -0.60 at tau = 0.5
    for tau, slope in ((0.05, 0.25 / 0.05 * (1 - math.log(2)) - 0.75), (0.5, 0.25 / 0.5 * (1 - math.log(2)) - 0.75)):
        pc = t([0.0], dtype=torch.float64, requires_grad=True)
        zero = t([0.0], dtype=torch.float64)
        discopop_loss(pc, zero, zero, zero, 1.0, tau)[0].sum().backward()
        assert pc.grad.item() == pytest.approx(slope)
    assert 0.25 / 0.05 * (1 - math.log(2)) - 0.75 == pytest.approx(0.784, abs=1e-3)
    # the local minimum below zero margin at tau = 0.05
    rho = torch.linspace(-1.0, 0.0, 10001, dtype=torch.float64)
    zeros = torch.zeros_like(rho)
    losses = discopop_loss(rho, zeros, zeros, zeros, 1.0, 0.05)[0]
    assert rho[int(torch.argmin(losses))].item() == pytest.approx(-0.119, abs=2e-3)


def test_sigmoid_norm_divides_each_log_ratio_by_its_length():
    # beta 1: log-ratios 4 over 4 tokens and -2 over 2 tokens -> margin 1 + 1 = 2
    losses, c, r = sigmoid_norm_loss(t([0.0]), t([-3.0]), t([-4.0]), t([-1.0]), t([4]), t([2]), 1.0)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-2.0)))
    assert c.item() == pytest.approx(1.0) and r.item() == pytest.approx(-1.0)
    # equal lengths of one token: plain DPO
    pc, pr, rc, rr = t([-1.0, -5.0]), t([-2.0, -3.0]), t([-1.5, -4.0]), t([-2.5, -2.0])
    one = torch.ones(2, dtype=torch.long)
    assert torch.allclose(sigmoid_norm_loss(pc, pr, rc, rr, one, one, 0.1)[0], dpo_loss(pc, pr, rc, rr, 0.1)[0])


def test_aot_with_one_pair_is_dpo_and_sorting_matches_quantiles():
    pc, pr, rc, rr = t([-1.0]), t([-3.0]), t([-2.0]), t([-2.5])
    dpo = dpo_loss(pc, pr, rc, rr, 0.1)[0]
    assert torch.allclose(aot_paired_loss(pc, pr, rc, rr, 0.1, 0.0)[0], dpo)
    assert torch.allclose(aot_unpaired_loss(pc, pr, rc, rr, 0.1, 0.0)[0], dpo)
    # unpaired: chosen log-ratios (3, -1) and rejected (0, 2) are compared rank by rank: -1 vs 0, 3 vs 2
    losses = aot_unpaired_loss(t([3.0, -1.0]), t([0.0, 2.0]), t([0.0, 0.0]), t([0.0, 0.0]), 1.0, 0.0)[0]
    assert torch.allclose(losses, -torch.nn.functional.logsigmoid(t([-1.0, 1.0])))


def test_spin_pair_whose_self_answer_is_the_human_answer_teaches_nothing():
    # y' = y: both log-ratios are the same number for every theta, so the margin and its gradient are 0
    pc = t([-2.0], requires_grad=True)
    loss = spin_loss(pc, pc, t([-2.5]), t([-2.5]), 0.1)[0]
    loss.sum().backward()
    assert loss.item() == pytest.approx(math.log(2)) and pc.grad.item() == pytest.approx(0.0)


# --- TRL parity (float64) ---------------------------------------------------------------------


class StubLM:
    """Row i (marked by its first token) has per-token log-probs ``table[i]``; the statistics TRL
    only logs (entropy, mean logits, top-1) are zeros."""

    training = True

    def __init__(self, table: torch.Tensor):
        self.table = table

    def __call__(self, input_ids, **kwargs):
        log_probs = self.table[input_ids[:, 0]]
        zeros = torch.zeros_like(log_probs).detach()
        return SimpleNamespace(log_probs=log_probs, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


def stub_rows(values: torch.Tensor, lengths: torch.Tensor):
    """input_ids, completion_mask and a per-token log-prob table whose completion tokens sum to
    ``values``, built from ``values`` with autograd so gradients flow back to them."""
    n, width = len(values), int(lengths.max()) + 2
    ids = torch.zeros(n, width, dtype=torch.long)
    ids[:, 0] = torch.arange(n)
    positions = torch.arange(width)
    mask = (positions >= width - lengths[:, None]).long()
    table = mask[:, 1:].to(values.dtype) * (values / lengths.to(values.dtype))[:, None]
    return ids, mask, table


def trl_dpo(loss_type: str, pc, pr, rc, rr, lc, lr, beta: float, **attrs):
    """TRL's DPOTrainer._compute_loss on one batch: (mean loss, its logged train metrics)."""
    from trl import DPOTrainer

    ids, mask, table = stub_rows(torch.cat([pc, pr]), torch.cat([lc, lr]))
    model = StubLM(table)
    trainer = object.__new__(DPOTrainer)
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x)
    settings = dict(
        accelerator=accelerator,
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        model=model,
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
    )
    for key, value in {**settings, **attrs}.items():
        setattr(trainer, key, value)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "completion_mask": mask,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    loss = trainer._compute_loss(model, inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in trainer._metrics["train"].items()}


def random_inputs(n: int = 6, seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    pc, pr, rc, rr = (-(torch.rand(n, generator=g, dtype=torch.float64) * 20 + 0.1) for _ in range(4))
    lc, lr = torch.randint(1, 9, (n,), generator=g), torch.randint(1, 9, (n,), generator=g)
    return pc, pr, rc, rr, lc, lr


def assert_parity(loss_type: str, ours, beta: float = 0.1, seed: int = 7, trl_rewards=None, **trl_attrs):
    """``ours(pc, pr, rc, rr, lc, lr)`` -> (per-pair losses, chosen rewards, rejected rewards)
    against TRL's loss type: loss, gradients w.r.t. the policy log-probs, logged reward metrics.
    ``trl_rewards(pc, pr, rc, rr)`` stands in for the plugin's rewards where TRL logs a different
    reward than the plugin's own (sigmoid-norm: TRL logs the unnormalised β log-ratio)."""
    pytest.importorskip("trl")
    pc, pr, rc, rr, lc, lr = random_inputs(seed=seed)
    theirs_pc, theirs_pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    theirs, logged = trl_dpo(loss_type, theirs_pc, theirs_pr, rc, rr, lc, lr, beta, **trl_attrs)
    theirs.backward()
    ours_pc, ours_pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    losses, c_rew, r_rew = ours(ours_pc, ours_pr, rc, rr, lc, lr)
    loss = losses.mean()
    loss.backward()
    assert loss.item() == pytest.approx(theirs.item(), abs=TOL)
    assert torch.allclose(ours_pc.grad, theirs_pc.grad, atol=TOL) and torch.allclose(
        ours_pr.grad, theirs_pr.grad, atol=TOL
    )
    # TRL logs beta * log-ratio as rewards for every loss type; the plugins log their own implicit reward
    if trl_rewards is not None:
        c_rew, r_rew = trl_rewards(pc, pr, rc, rr)
    mine = reward_metrics(c_rew, r_rew, PairLogps(ours_pc, ours_pr, lc, lr))
    for name in LOGGED_PAIR_METRICS:
        assert mine[name] == pytest.approx(logged[name], abs=TOL), name
    assert loss.dtype == torch.float64


def test_trl_parity_apo_zero():
    assert_parity("apo_zero", lambda pc, pr, rc, rr, lc, lr: apo_zero_loss(pc, pr, rc, rr, 0.1))
    assert_parity("apo_zero", lambda pc, pr, rc, rr, lc, lr: apo_zero_loss(pc, pr, rc, rr, 0.5), beta=0.5, seed=3)


def test_trl_parity_apo_down():
    assert_parity("apo_down", lambda pc, pr, rc, rr, lc, lr: apo_down_loss(pc, pr, rc, rr, 0.1))
    assert_parity("apo_down", lambda pc, pr, rc, rr, lc, lr: apo_down_loss(pc, pr, rc, rr, 0.5), beta=0.5, seed=3)


@pytest.mark.parametrize("epsilon", [1e-3, 0.2])
def test_trl_parity_exo_pair(epsilon):
    # TRL takes EXO's epsilon from label_smoothing
    ours = lambda pc, pr, rc, rr, lc, lr: exo_pair_loss(pc, pr, rc, rr, 0.1, epsilon)  # noqa: E731
    assert_parity("exo_pair", ours, label_smoothing=epsilon)


def test_trl_parity_nca_pair():
    assert_parity("nca_pair", lambda pc, pr, rc, rr, lc, lr: nca_pair_loss(pc, pr, rc, rr, 0.1))
    assert_parity("nca_pair", lambda pc, pr, rc, rr, lc, lr: nca_pair_loss(pc, pr, rc, rr, 0.5), beta=0.5, seed=3)


def test_trl_parity_bco_pair():
    assert_parity("bco_pair", lambda pc, pr, rc, rr, lc, lr: bco_pair_loss(pc, pr, rc, rr, 0.1))
    assert_parity("bco_pair", lambda pc, pr, rc, rr, lc, lr: bco_pair_loss(pc, pr, rc, rr, 0.5), beta=0.5, seed=3)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_trl_parity_sppo_hard(beta):
    # eta = 1/beta: TRL's targets 0.5/beta are eta/2, its logged rewards beta*log-ratio are log-ratio/eta
    assert_parity("sppo_hard", lambda pc, pr, rc, rr, lc, lr: sppo_hard_loss(pc, pr, rc, rr, 1 / beta), beta=beta)


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_trl_parity_discopop(tau):
    args = SimpleNamespace(discopop_tau=tau)
    ours = lambda pc, pr, rc, rr, lc, lr: discopop_loss(pc, pr, rc, rr, 0.1, tau)  # noqa: E731
    assert_parity("discopop", ours, args=args)
    # small margins, where the mixing weight is between 0 and 1
    assert_parity(
        "discopop", lambda pc, pr, rc, rr, lc, lr: discopop_loss(pc, pr, rc, rr, 0.01, tau), beta=0.01, args=args
    )


@pytest.mark.parametrize(("beta", "seed"), [(0.1, 7), (2.0, 3)])
def test_trl_parity_sigmoid_norm(beta, seed):
    # TRL logs beta * summed log-ratio as rewards; the plugin logs its loss's per-token reward instead
    ours = lambda pc, pr, rc, rr, lc, lr: sigmoid_norm_loss(pc, pr, rc, rr, lc, lr, beta)  # noqa: E731
    trl_rewards = lambda pc, pr, rc, rr: (beta * (pc - rc), beta * (pr - rr))  # noqa: E731
    assert_parity("sigmoid_norm", ours, beta=beta, seed=seed, trl_rewards=trl_rewards)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_trl_parity_aot_and_aot_unpaired(label_smoothing):
    paired = lambda pc, pr, rc, rr, lc, lr: aot_paired_loss(pc, pr, rc, rr, 0.1, label_smoothing)  # noqa: E731
    unpaired = lambda pc, pr, rc, rr, lc, lr: aot_unpaired_loss(pc, pr, rc, rr, 0.1, label_smoothing)  # noqa: E731
    assert_parity("aot", paired, label_smoothing=label_smoothing)
    assert_parity("aot_unpaired", unpaired, label_smoothing=label_smoothing)


def test_trl_parity_spin_is_trl_sigmoid_on_self_play_pairs():
    # SPIN's loss is TRL's sigmoid (DPO) loss with the human answer chosen and the model's own rejected
    assert_parity("sigmoid", lambda pc, pr, rc, rr, lc, lr: spin_loss(pc, pr, rc, rr, 0.1))
