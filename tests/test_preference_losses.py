"""The offline preference losses (ipo, cdpo, hinge, rdpo, simpo, cpo, orpo, kto, mdpo): hand-worked
numbers, the papers' limiting cases, and parity with TRL's implementations where TRL has the loss.

TRL parity tests run TRL's own loss code on identical random inputs. Where TRL keeps the loss
inside a trainer method that also runs the model (DPOTrainer / KTOTrainer ``_compute_loss``), the
trainer object is created with ``object.__new__`` and given only the attributes that method reads,
and the model is a stub whose per-token log-probs are chosen so their sums are the inputs; the
loss arithmetic that runs is TRL's, unchanged. CPOTrainer.cpo_loss and ORPOTrainer.odds_ratio_loss
take tensors and are called directly. They skip when TRL is not installed (extra ``trl``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from posttrain.training.preference import PairLogps, add_rpo_nll, chosen_nll_per_token, dpo_loss, rpo_dpo_loss
from posttrain_plugins.cdpo import cdpo_loss, robust_dpo_loss
from posttrain_plugins.cpo import cpo_loss
from posttrain_plugins.hinge import hinge_loss, slic_loss
from posttrain_plugins.ipo import ipo_loss
from posttrain_plugins.kto import kl_example, kto_loss, kto_reference_point, mismatched_partners, unpair
from posttrain_plugins.mdpo import mdpo_loss, mipo_loss
from posttrain_plugins.orpo import log_odds_ratio, orpo_loss
from posttrain_plugins.rdpo import rdpo_loss
from posttrain_plugins.simpo import simpo_loss

t = torch.tensor


def random_logps(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(n, generator=g) * 20 + 0.1) for _ in range(4)]


# --- IPO ------------------------------------------------------------------------------------


def test_ipo_at_reference_is_inverse_two_tau_squared():
    pc, pr = t([-3.0, -7.0]), t([-4.0, -1.0])
    losses, c, r = ipo_loss(pc, pr, pc, pr, tau=0.1)
    assert torch.allclose(losses, torch.full((2,), (1 / (2 * 0.1)) ** 2))  # 25
    assert torch.all(c == 0) and torch.all(r == 0)


def test_ipo_hand_worked_and_zero_at_target():
    # h = (-1 - -2) - (-3 - -2) = 2; tau 0.5 -> target 1; loss (2 - 1)^2 = 1
    losses, c, r = ipo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), tau=0.5)
    assert losses.item() == pytest.approx(1.0)
    assert c.item() == pytest.approx(0.5) and r.item() == pytest.approx(-0.5)
    # exactly at the target margin 1/(2 tau) = 1 the loss and its gradient vanish
    pc = t([-1.0], requires_grad=True)
    loss = ipo_loss(pc, t([-2.0]), t([-2.0]), t([-2.0]), tau=0.5)[0]
    loss.sum().backward()
    assert loss.item() == 0 and pc.grad.item() == 0
    # beyond the target the loss grows again (unlike DPO): overshooting is penalised
    assert ipo_loss(t([5.0]), t([-2.0]), t([-2.0]), t([-2.0]), tau=0.5)[0].item() == pytest.approx(36.0)


# --- cDPO / robust DPO ----------------------------------------------------------------------


def test_cdpo_and_robust_with_zero_epsilon_equal_dpo():
    pc, pr, rc, rr = random_logps()
    dpo = dpo_loss(pc, pr, rc, rr, 0.1)[0]
    assert torch.allclose(cdpo_loss(pc, pr, rc, rr, 0.1, 0.0)[0], dpo)
    assert torch.allclose(robust_dpo_loss(pc, pr, rc, rr, 0.1, 0.0)[0], dpo)


def test_cdpo_hand_worked_and_half_epsilon_learns_nothing():
    # beta 1, h = 1: -(0.9) log sigma(1) - 0.1 log sigma(-1)
    losses = cdpo_loss(t([0.0]), t([-1.0]), t([0.0]), t([0.0]), 1.0, 0.1)[0]
    expected = -0.9 * math.log(1 / (1 + math.exp(-1))) - 0.1 * math.log(1 / (1 + math.exp(1)))
    assert losses.item() == pytest.approx(expected)
    # eps = 1/2: the labels carry no information and the optimum is h = 0 (loss ln 2 there)
    h0 = torch.tensor([0.0], requires_grad=True)
    at_zero = cdpo_loss(h0, t([0.0]), t([0.0]), t([0.0]), 1.0, 0.5)[0]
    at_zero.sum().backward()
    assert at_zero.item() == pytest.approx(math.log(2)) and h0.grad.item() == pytest.approx(0.0)
    pc, pr, rc, rr = random_logps()
    assert torch.all(cdpo_loss(pc, pr, rc, rr, 0.1, 0.5)[0] >= math.log(2))
    # finite optimum: the gradient in h vanishes at h* = log((1 - eps) / eps)
    h = torch.tensor([math.log(0.9 / 0.1)], requires_grad=True)
    cdpo_loss(h, t([0.0]), t([0.0]), t([0.0]), 1.0, 0.1)[0].sum().backward()
    assert h.grad.item() == pytest.approx(0.0, abs=1e-6)


def test_robust_dpo_is_unbiased_under_label_flips():
    # E over flips with prob eps of the robust loss equals the clean DPO loss (Chowdhury et al. Lemma 3.1)
    pc, pr, rc, rr = random_logps(seed=3)
    eps = 0.2
    seen = robust_dpo_loss(pc, pr, rc, rr, 0.1, eps)[0]
    flipped = robust_dpo_loss(pr, pc, rr, rc, 0.1, eps)[0]
    assert torch.allclose((1 - eps) * seen + eps * flipped, dpo_loss(pc, pr, rc, rr, 0.1)[0], atol=1e-6)


# --- SLiC / hinge ---------------------------------------------------------------------------


def test_slic_hand_worked():
    losses, c, r = slic_loss(t([-2.0, -1.0, -5.0]), t([-2.5, -3.0, -4.0]), delta=1.0)
    assert losses.tolist() == pytest.approx([0.5, 0.0, 2.0])  # 1 - 0.5; margin 2 > 1; 1 + 1
    assert c.tolist() == [-2.0, -1.0, -5.0]


def test_hinge_is_one_at_reference_and_zero_past_margin():
    pc, pr, rc, rr = random_logps()
    assert torch.allclose(hinge_loss(pc, pr, pc, pr, 0.1)[0], torch.ones(8))
    # beta h = 0.1 * 20 = 2 > 1 -> 0
    assert hinge_loss(t([0.0]), t([-20.0]), t([0.0]), t([0.0]), 0.1)[0].item() == 0.0


# --- R-DPO ----------------------------------------------------------------------------------


def test_rdpo_reduces_to_dpo_and_hand_worked():
    pc, pr, rc, rr = random_logps()
    lc, lr = t([3.0] * 8), t([5.0] * 8)
    assert torch.allclose(rdpo_loss(pc, pr, rc, rr, lc, lr, 0.1, 0.0)[0], dpo_loss(pc, pr, rc, rr, 0.1)[0])
    assert torch.allclose(rdpo_loss(pc, pr, rc, rr, lc, lc, 0.1, 0.5)[0], dpo_loss(pc, pr, rc, rr, 0.1)[0])
    # at the reference: -log sigma(alpha (|y_w| - |y_l|)) = -log sigma(0.5 * (10 - 4)) = log(1 + e^-3)
    one = t([-1.0])
    loss = rdpo_loss(one, one, one, one, t([10.0]), t([4.0]), 0.1, 0.5)[0]
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-3)))


def test_rdpo_longer_winner_gets_less_push():
    # the length term explains part of a longer winner's preference: smaller gradient on the margin
    pc = t([-2.0], requires_grad=True)
    rdpo_loss(pc, t([-2.0]), t([-2.0]), t([-2.0]), t([12.0]), t([4.0]), 0.1, 0.1)[0].sum().backward()
    pc_plain = t([-2.0], requires_grad=True)
    dpo_loss(pc_plain, t([-2.0]), t([-2.0]), t([-2.0]), 0.1)[0].sum().backward()
    assert abs(pc.grad.item()) < abs(pc_plain.grad.item())


# --- SimPO ----------------------------------------------------------------------------------


def test_simpo_hand_worked_and_limits():
    losses, c, r = simpo_loss(t([-0.5]), t([-0.5]), beta=2.0, gamma=1.0)
    assert losses.item() == pytest.approx(math.log(1 + math.e))  # -log sigma(-1)
    assert simpo_loss(t([-0.5]), t([-0.5]), 2.0, 0.0)[0].item() == pytest.approx(math.log(2))
    # beta 2: rewards -0.2 and -1.0; margin 0.8 - gamma 0.3 = 0.5 -> log(1 + e^-0.5)
    losses, c, r = simpo_loss(t([-0.1]), t([-0.5]), 2.0, 0.3)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-0.5)))
    assert c.item() == pytest.approx(-0.2) and r.item() == pytest.approx(-1.0)


# --- CPO ------------------------------------------------------------------------------------


def test_cpo_hand_worked():
    # equal log-probs: ln 2 + alpha * nll
    total, prefer, c, r = cpo_loss(t([-3.0, -1.0]), t([-3.0, -1.0]), t(0.7), beta=0.1, alpha=1.0)
    assert total.item() == pytest.approx(math.log(2) + 0.7)
    assert prefer.tolist() == pytest.approx([math.log(2)] * 2)
    total, *_ = cpo_loss(t([-1.0]), t([-11.0]), t(0.0), beta=0.1, alpha=1.0)
    assert total.item() == pytest.approx(math.log(1 + math.exp(-1)))  # beta * 10 = 1


# --- ORPO -----------------------------------------------------------------------------------


def test_orpo_hand_worked():
    # p_w = 0.5, p_l = 0.2: odds 1 and 0.25 -> log odds ratio ln 4
    ratio = log_odds_ratio(t([math.log(0.5)]), t([math.log(0.2)]))
    assert ratio.item() == pytest.approx(math.log(4))
    loss, odds_losses, _ = orpo_loss(t([math.log(0.5)]), t([math.log(0.2)]), t(1.5), lam=0.1)
    assert odds_losses.item() == pytest.approx(math.log(1 + 1 / 4))  # -log sigma(ln 4) = log(1 + 1/4)
    assert loss.item() == pytest.approx(1.5 + 0.1 * math.log(1.25))
    # equal likelihoods give ln 2; a tiny weight leaves the SFT loss
    assert orpo_loss(t([-0.3]), t([-0.3]), t(0.0), 1.0)[1].item() == pytest.approx(math.log(2))
    assert orpo_loss(t([-0.3]), t([-2.0]), t(2.0), 1e-9)[0].item() == pytest.approx(2.0)


def test_orpo_is_finite_for_confident_models():
    # mean log-prob near 0 (p -> 1): the odds blow up but log1mexp keeps the ratio finite
    ratio = log_odds_ratio(t([-1e-7]), t([-2.0]))
    assert torch.isfinite(ratio).all() and ratio.item() > 10


# --- KTO ------------------------------------------------------------------------------------


def test_kto_at_reference_is_half_weight():
    lp = t([-3.0, -4.0, -5.0])
    desirable = t([True, False, True])
    losses, rewards = kto_loss(lp, lp, desirable, t(0.0), 0.1, 1.0, 1.33)
    assert losses.tolist() == pytest.approx([0.5, 0.665, 0.5])
    assert torch.all(rewards == 0)


def test_kto_hand_worked():
    # r = 2, z0 = 1, beta 1: desirable 1 - sigma(1); undesirable 1 - sigma(-1) = sigma(1)
    s1 = 1 / (1 + math.exp(-1))
    losses, _ = kto_loss(t([0.0, 0.0]), t([-2.0, -2.0]), t([True, False]), t(1.0), 1.0, 1.0, 2.0)
    assert losses.tolist() == pytest.approx([1 - s1, 2.0 * s1])


def test_kto_reference_point_is_clamped_and_detached():
    pol = torch.tensor([-1.0, -2.0], requires_grad=True)
    z0 = kto_reference_point(pol, t([0.0, 0.0]))
    assert z0.item() == 0.0 and not z0.requires_grad  # mean -1.5 -> max(0, .) = 0
    assert kto_reference_point(t([-1.0, -1.0]), t([-2.0, -4.0])).item() == pytest.approx(2.0)


def test_kto_mismatched_partners_rotate_and_avoid_own_prompt():
    assert mismatched_partners(["a", "b", "c"]) == [2, 0, 1]  # TRL: (x1, y3), (x2, y1), (x3, y2)
    prompts = ["a", "a", "b", "b"]  # chosen/rejected of the same prompt side by side
    partners = mismatched_partners(prompts)
    assert all(prompts[q] != prompts[p] for p, q in enumerate(partners))
    a = {"input_ids": [1, 2, 3, 4], "completion_mask": [0, 0, 1, 1]}
    b = {"input_ids": [5, 6, 7], "completion_mask": [0, 1, 1]}
    assert kl_example(a, b, 512) == {"input_ids": [1, 2, 6, 7], "completion_mask": [0, 0, 1, 1]}
    assert unpair([{"prompt": "p", "chosen": "c", "rejected": "r"}]) == [
        {"prompt": "p", "completion": "c", "label": True},
        {"prompt": "p", "completion": "r", "label": False},
    ]


# --- mDPO / mIPO ----------------------------------------------------------------------------


def test_mdpo_with_groups_of_one_is_dpo():
    pc, pr, rc, rr = random_logps()
    one = torch.ones(8, 1, dtype=torch.bool)
    got = mdpo_loss(pc[:, None], rc[:, None], one, pr[:, None], rr[:, None], one, 0.1)[0]
    assert torch.allclose(got, dpo_loss(pc, pr, rc, rr, 0.1)[0])
    got = mipo_loss(pc[:, None], rc[:, None], one, pr[:, None], rr[:, None], one, 0.1)[0]
    assert torch.allclose(got, ipo_loss(pc, pr, rc, rr, 0.1)[0])


def test_mdpo_hand_worked_group_means_and_padding():
    # chosen group: log-ratios +1 and +3 (mean 2); rejected: -1, -2, -3 (mean -2), one padded slot
    pc, rc = t([[1.0, 3.0, 99.0]]), t([[0.0, 0.0, 0.0]])
    cm = t([[True, True, False]])
    pr, rr = t([[-1.0, -2.0, -3.0]]), t([[0.0, 0.0, 0.0]])
    rm = t([[True, True, True]])
    losses, c, r = mdpo_loss(pc, rc, cm, pr, rr, rm, 0.5)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-2)))  # beta * (2 - -2) = 2
    assert c.item() == pytest.approx(1.0) and r.item() == pytest.approx(-1.0)
    assert mipo_loss(pc, rc, cm, pr, rr, rm, 0.5)[0].item() == pytest.approx((4 - 1) ** 2)
    # at the reference: ln 2 and (1/(2 beta))^2, whatever the group sizes
    assert mdpo_loss(rc, rc, cm, rr, rr, rm, 0.5)[0].item() == pytest.approx(math.log(2))
    assert mipo_loss(rc, rc, cm, rr, rr, rm, 0.5)[0].item() == pytest.approx(1.0)


def test_mdpo_group_of_copies_equals_single_sample():
    pc, pr, rc, rr = random_logps(4)
    k = torch.ones(4, 3, dtype=torch.bool)
    copies = mdpo_loss(pc[:, None].expand(-1, 3), rc[:, None].expand(-1, 3), k, pr[:, None], rr[:, None], k[:, :1], 0.1)
    assert torch.allclose(copies[0], dpo_loss(pc, pr, rc, rr, 0.1)[0])


# --- RPO's NLL term (dpo's default, optional in ipo / cdpo / rdpo / mdpo) --------------------


def test_rpo_nll_term_is_alpha_times_nll_per_chosen_token_of_the_batch():
    pc, pr, _, _ = random_logps()
    lc, lr = t([1.0, 2, 3, 4, 5, 6, 7, 8]), t([2.0] * 8)
    pol = PairLogps(pc, pr, lc, lr)
    base = t(0.7)
    same, metrics = add_rpo_nll(base, pol, 0.0)
    assert same is base and metrics == {}  # α = 0: the paper's loss, untouched
    nll = -pc.sum() / lc.sum()  # every chosen token of the batch weighs the same
    assert chosen_nll_per_token(pol).item() == pytest.approx(nll.item())
    total, metrics = add_rpo_nll(base, pol, 0.5)
    assert total.item() == pytest.approx(0.7 + 0.5 * nll.item()) and metrics["nll_loss"] == pytest.approx(nll.item())
    assert (-pc / lc).mean().item() != pytest.approx(nll.item(), rel=1e-2)  # not the mean of per-pair NLLs


def test_dpo_batch_loss_is_mean_dpo_loss_plus_rpo_term():
    pc, pr, rc, rr = random_logps(seed=4)
    pol = PairLogps(pc, pr, t([3.0] * 8), t([5.0] * 8))
    plain, metrics = rpo_dpo_loss(pol, rc, rr, 0.1, 0.0)
    assert plain.item() == pytest.approx(dpo_loss(pc, pr, rc, rr, 0.1)[0].mean().item()) and "nll_loss" not in metrics
    rpo, metrics = rpo_dpo_loss(pol, rc, rr, 0.1, 2.0)
    assert rpo.item() == pytest.approx(plain.item() + 2.0 * chosen_nll_per_token(pol).item(), rel=1e-6)
    assert metrics["nll_loss"] == pytest.approx(chosen_nll_per_token(pol).item())


# --- TRL parity -----------------------------------------------------------------------------


class StubLM:
    """Stands in for the model in TRL's _compute_loss: row i (marked by its first token) has the
    per-token log-probs ``table[i]``; entropy / logits statistics are zeros (only logged)."""

    training = True

    def __init__(self, table: torch.Tensor):
        self.table = table

    def __call__(self, input_ids, **kwargs):
        log_probs = self.table[input_ids[:, 0]]
        zeros = torch.zeros_like(log_probs)
        return SimpleNamespace(log_probs=log_probs, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


def stub_rows(values: torch.Tensor, lengths: torch.Tensor, first_id: int = 0):
    """input_ids, completion_mask and a log-prob table whose completion tokens sum to ``values``."""
    n, width = len(values), int(lengths.max()) + 2
    ids = torch.zeros(n, width, dtype=torch.long)
    ids[:, 0] = torch.arange(first_id, first_id + n)
    mask = torch.zeros(n, width, dtype=torch.long)
    table = torch.zeros(first_id + n, width - 1)
    for i, (v, length) in enumerate(zip(values.tolist(), lengths.tolist(), strict=True)):
        mask[i, width - length :] = 1
        table[first_id + i, width - 1 - length :] = v / length
    return ids, mask, table


def trl_stub_trainer(cls, **attrs):
    trainer = object.__new__(cls)
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x)
    base = dict(
        accelerator=accelerator,
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    for k, v in {**base, **attrs}.items():
        setattr(trainer, k, v)
    return trainer


def trl_dpo_batch_loss(loss_types, loss_weights, pc, pr, rc, rr, lc, lr, beta: float, label_smoothing: float = 0.0):
    """TRL's DPOTrainer._compute_loss on one batch of pairs: Σ_k weight_k · mean of loss type k."""
    from trl import DPOTrainer

    ids, mask, table = stub_rows(torch.cat([pc, pr]), torch.cat([lc, lr]))  # chosen rows, then rejected
    model = StubLM(table)
    trainer = trl_stub_trainer(
        DPOTrainer,
        model=model,
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        loss_types=loss_types,
        loss_weights=loss_weights,
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
    )
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "completion_mask": mask,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    return trainer._compute_loss(model, inputs, return_outputs=False)


def trl_dpo_losses(loss_type: str, pc, pr, rc, rr, lc, lr, beta: float, label_smoothing: float = 0.0):
    """Per-pair losses from TRL's DPOTrainer._compute_loss, one pair per call (it returns the mean)."""
    out = []
    for i in range(len(pc)):
        pair = (x[i : i + 1] for x in (pc, pr, rc, rr, lc, lr))
        out.append(trl_dpo_batch_loss([loss_type], [1.0], *pair, beta, label_smoothing))
    return torch.stack(out)


@pytest.fixture
def trl_inputs():
    pytest.importorskip("trl")
    pc, pr, rc, rr = random_logps(6, seed=7)
    g = torch.Generator().manual_seed(1)
    lc, lr = torch.randint(1, 9, (6,), generator=g), torch.randint(1, 9, (6,), generator=g)
    return pc, pr, rc, rr, lc, lr


def test_trl_parity_dpo_sigmoid_ipo_hinge_robust(trl_inputs):
    pc, pr, rc, rr, lc, lr = trl_inputs
    assert torch.allclose(trl_dpo_losses("sigmoid", *trl_inputs, 0.1), dpo_loss(pc, pr, rc, rr, 0.1)[0], atol=1e-5)
    ours = ipo_loss(pc / lc, pr / lr, rc / lc, rr / lr, 0.1)[0]  # TRL averages IPO log-probs per token
    assert torch.allclose(trl_dpo_losses("ipo", *trl_inputs, 0.1), ours, rtol=1e-5, atol=1e-4)
    assert torch.allclose(trl_dpo_losses("hinge", *trl_inputs, 0.1), hinge_loss(pc, pr, rc, rr, 0.1)[0], atol=1e-5)
    robust = robust_dpo_loss(pc, pr, rc, rr, 0.1, 0.2)[0]
    assert torch.allclose(trl_dpo_losses("robust", *trl_inputs, 0.1, label_smoothing=0.2), robust, atol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_trl_parity_dpo_with_rpo_nll_term(trl_inputs, alpha):
    # RPO in TRL 1.x: DPOConfig(loss_type=["sigmoid", "sft"], loss_weights=[1, α]); its "sft" term is
    # the mean NLL over all chosen completion tokens of the batch, as chosen_nll_per_token.
    pc, pr, rc, rr, lc, lr = trl_inputs
    theirs = trl_dpo_batch_loss(["sigmoid", "sft"], [1.0, alpha], *trl_inputs, 0.1)
    sigmoid_only = trl_dpo_batch_loss(["sigmoid"], [1.0], *trl_inputs, 0.1)
    pol = PairLogps(pc, pr, lc.float(), lr.float())
    ours, metrics = rpo_dpo_loss(pol, rc, rr, 0.1, alpha)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert metrics["nll_loss"] == pytest.approx((theirs - sigmoid_only).item() / alpha, rel=1e-5)
    per_pair_nll = (-pc / lc).mean().item()  # the inputs tell the per-pair mean (the old dpo.py term) apart
    assert sigmoid_only.item() + alpha * per_pair_nll != pytest.approx(theirs.item(), rel=1e-3)


def test_trl_parity_cdpo_label_smoothing(trl_inputs):
    # TRL 1.x dropped label smoothing from DPOTrainer's sigmoid loss; its CPOTrainer keeps the cDPO
    # form -(1-eps) log sigma(beta z) - eps log sigma(-beta z) on z = chosen - rejected "log-probs".
    # Feeding it the reference-normalised log-ratios gives Mitchell's cDPO loss.
    from trl.experimental.cpo import CPOTrainer

    pc, pr, rc, rr, _, _ = trl_inputs
    trainer = trl_stub_trainer(CPOTrainer, beta=0.1, label_smoothing=0.2, loss_type="sigmoid", alpha=0.0)
    theirs = trainer.cpo_loss(pc - rc, pr - rr)[0]
    assert torch.allclose(theirs, cdpo_loss(pc, pr, rc, rr, 0.1, 0.2)[0], atol=1e-6)


def test_trl_parity_cpo_and_simpo(trl_inputs):
    from trl.experimental.cpo import CPOTrainer

    pc, pr, _, _, lc, lr = trl_inputs
    nll = t(0.83)
    cpo = trl_stub_trainer(CPOTrainer, beta=0.1, label_smoothing=0.0, loss_type="sigmoid", alpha=0.0, cpo_alpha=1.0)
    losses, c_rew, r_rew = cpo.cpo_loss(pc, pr)
    total, prefer, c, r = cpo_loss(pc, pr, nll, 0.1, 1.0)
    assert torch.allclose(prefer, losses, atol=1e-6) and torch.allclose(c, c_rew) and torch.allclose(r, r_rew)
    assert total.item() == pytest.approx((losses.mean() + cpo.cpo_alpha * nll).item())  # get_batch_loss_metrics
    simpo = trl_stub_trainer(CPOTrainer, beta=2.0, label_smoothing=0.0, loss_type="simpo", alpha=0.0, simpo_gamma=1.0)
    theirs = simpo.cpo_loss(pc / lc, pr / lr)[0]
    assert torch.allclose(simpo_loss(pc / lc, pr / lr, 2.0, 1.0)[0], theirs, atol=1e-6)


def test_trl_parity_orpo(trl_inputs):
    from trl.experimental.orpo import ORPOTrainer

    pc, pr, _, _, lc, lr = trl_inputs
    chosen_avg, rejected_avg = pc / lc, pr / lr
    trainer = trl_stub_trainer(ORPOTrainer, beta=0.1)
    losses, c_rew, r_rew, mean_ratio, mean_log_odds = trainer.odds_ratio_loss(chosen_avg, rejected_avg)
    nll = t(1.2)
    loss, odds_losses, log_odds = orpo_loss(chosen_avg, rejected_avg, nll, 0.1)
    assert loss.item() == pytest.approx((nll - losses.mean()).item(), rel=1e-6)  # TRL: nll - mean(beta * ratio)
    assert torch.allclose(-odds_losses, losses / 0.1, atol=1e-6)
    assert log_odds.mean().item() == pytest.approx(mean_log_odds.item(), rel=1e-6)


def test_trl_parity_kto(trl_inputs):
    from trl import KTOTrainer

    pc, pr, rc, rr, lc, lr = trl_inputs
    n = len(pc)
    policy, ref = torch.cat([pc, pr]), torch.cat([rc, rr])
    lengths = torch.cat([lc, lr])
    labels = torch.tensor([True] * n + [False] * n)
    g = torch.Generator().manual_seed(5)
    kl_policy = -(torch.rand(2 * n, generator=g) * 5)
    kl_ref = kl_policy - torch.rand(2 * n, generator=g)  # positive KL estimate, so the clamp is inactive
    ids, mask, table = stub_rows(policy, lengths)
    kl_ids, kl_mask, kl_table = stub_rows(kl_policy, lengths, first_id=2 * n)
    table = torch.cat([table, kl_table[2 * n :]])
    model = StubLM(table)
    for desirable_weight, undesirable_weight in ((1.0, 1.0), (1.0, 1.5)):
        trainer = trl_stub_trainer(
            KTOTrainer,
            model=model,
            calculate_KL=True,
            loss_type="kto",
            beta=0.1,
            desirable_weight=desirable_weight,
            undesirable_weight=undesirable_weight,
        )
        inputs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "completion_mask": mask,
            "KL_input_ids": kl_ids,
            "KL_attention_mask": torch.ones_like(kl_ids),
            "KL_completion_mask": kl_mask,
            "label": labels,
            "ref_logps": ref,
            "ref_KL_logps": kl_ref,
        }
        theirs = trainer._compute_loss(model, inputs, return_outputs=False)
        z0 = kto_reference_point(kl_policy, kl_ref)
        ours = kto_loss(policy, ref, labels, z0, 0.1, desirable_weight, undesirable_weight)[0].mean()
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
        assert trainer._metrics["train"]["kl"][-1] == pytest.approx(z0.item(), rel=1e-5)


def test_trl_ipo_and_sigmoid_at_reference_match_paper_values(trl_inputs):
    pc, pr, _, _, lc, lr = trl_inputs
    same = (pc, pr, pc, pr, lc, lr)
    assert torch.allclose(trl_dpo_losses("ipo", *same, 0.1), torch.full((6,), 25.0))
    assert torch.allclose(trl_dpo_losses("sigmoid", *same, 0.1), torch.full((6,), math.log(2)))
    assert F.logsigmoid(t(0.0)).item() == pytest.approx(-math.log(2))
