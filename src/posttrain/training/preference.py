"""The pairwise-preference recipe shared by the offline preference trainers (dpo, ipo, cdpo, hinge,
simpo, cpo, orpo, rdpo, mdpo, spin, kto, and TRL's other DPO loss types and options: apo, exo, nca,
bco, sppo, discopop, sigmoid_norm, aot, f_dpo, mpo, wpo, ld_dpo) and by step-dpo and online-dpo:
paired batches with chosen and rejected in one forward pass, reference log-probs computed once before training, and the held-out
preference metrics.

Two losses live here because several plugins share them: DPO's sigmoid loss (``dpo_loss``: dpo,
spin, step-dpo, online-dpo) and RPO's optional NLL term (``add_rpo_nll``, one definition for every
plugin that offers it). Every other plugin keeps its loss and its implicit reward in its own file
and either calls these helpers for data, log-probs and evaluation, or hands both functions to
``train_pairwise`` (load, reference, evaluate, train, evaluate, finish: the same for every method).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import outcomes
from posttrain.data import batch_indices, iterate_batches, pad_sequences, task_records, tokenize_preference
from posttrain.evaluation import exact_match
from posttrain.logprobs import sequence_logprobs, split_pairs
from posttrain.training.config import TrainingConfig


@dataclass
class PairLogps:
    """Summed completion log-probs and completion token counts, chosen and rejected, each (B,).
    A method that needs more per-pair numbers from the forward pass (LD-DPO's shared-prefix
    log-probs, WPO's weights) subclasses it with more (B,) fields; indexing and ``dataset_logps``
    carry every field."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor

    def __getitem__(self, idx) -> PairLogps:
        return type(self)(*(getattr(self, f.name)[idx] for f in fields(self)))

    def averaged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token mean log-probs (length-normalised), chosen and rejected."""
        return self.chosen / self.chosen_tokens.clamp(min=1), self.rejected / self.rejected_tokens.clamp(min=1)


def pair_batch(pairs: list[tuple[dict, dict]], pad_id: int, device: str) -> dict:
    """Chosen then rejected in one padded batch: one forward pass for both."""
    return pad_sequences([c for c, _ in pairs] + [r for _, r in pairs], pad_id, device)


def pair_logps(model, batch: dict) -> PairLogps:
    """Log-probs of a batch built by ``pair_batch`` (with grad when the caller has it on)."""
    logps, counts = sequence_logprobs(model, batch)
    (c, r), (nc, nr) = split_pairs(logps), split_pairs(counts)
    return PairLogps(c, r, nc, nr)


# (model, a ``pair_batch``) -> PairLogps or a subclass: ``pair_logps`` unless a method needs more
LogpsFn = Callable[[object, dict], PairLogps]


@torch.no_grad()
def dataset_logps(
    model,
    pairs: list[tuple[dict, dict]],
    pad_id: int,
    device: str,
    batch_size: int = 64,
    logps_of: LogpsFn = pair_logps,
) -> PairLogps:
    """Log-probs of every pair, in eval mode and without grad (reference values, held-out scores)."""
    was_training = model.training
    model.eval()
    parts = [logps_of(model, pair_batch(chunk, pad_id, device)) for chunk in iterate_batches(pairs, batch_size)]
    model.train(was_training)
    return type(parts[0])(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(parts[0])))


def all_logps(model, pairs, pad_id: int, device: str, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``dataset_logps`` as (chosen, rejected) summed log-probs, for loops that index the two tensors."""
    logps = dataset_logps(model, pairs, pad_id, device, batch_size)
    return logps.chosen, logps.rejected


@dataclass
class PreferenceData:
    """Tokenized train and held-out pairs of a run, plus what evaluation needs."""

    train: list[tuple[dict, dict]]
    heldout: list[tuple[dict, dict]]
    heldout_records: list[dict]
    source: str
    embedded: bool
    pad_id: int


def load_pairs(ctx, cfg, tokenizer) -> PreferenceData:
    """Preference pairs (embedded task, or --dataset with prompt/chosen/rejected), tokenized."""
    train_records, heldout_records, source = task_records(ctx, "preference", cfg.train_examples, cfg.eval_examples)
    return PreferenceData(
        train=[tokenize_preference(r, tokenizer, cfg.max_length) for r in train_records],
        heldout=[tokenize_preference(r, tokenizer, cfg.max_length) for r in heldout_records],
        heldout_records=heldout_records,
        source=source,
        embedded=ctx.dataset is None,
        pad_id=tokenizer.pad_token_id,
    )


def pair_preferences(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Per pair: 1 when the chosen reward is higher, 1/2 on an exact tie, else 0."""
    return (chosen_rewards > rejected_rewards).float() + 0.5 * (chosen_rewards == rejected_rewards).float()


def preference_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Share of pairs whose chosen reward is higher; exact ties count 1/2 (chance). TRL's
    ``rewards/accuracies`` counts ties as 0, so it reads 0 where this reads 0.5 at policy = reference."""
    return pair_preferences(chosen_rewards, rejected_rewards).mean()


def heldout_preference_accuracy(prompts: list, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> float:
    """``preference_accuracy`` of held-out pairs; the per-pair values (1, 1/2, 0) are recorded as
    outcomes of the pairs' prompts, so the run's paired statistics cover this metric too."""
    per_pair = pair_preferences(chosen_rewards, rejected_rewards)
    outcomes.record("preference_accuracy", prompts, per_pair.tolist(), outcomes.SCORE)
    return per_pair.mean().item()


def reward_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, policy: PairLogps) -> dict:
    """The per-step metrics every preference trainer logs (TRL's names)."""
    return {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "rewards/accuracies": preference_accuracy(chosen_rewards, rejected_rewards).item(),
        "logps/chosen": policy.chosen.detach().mean().item(),
        "logps/rejected": policy.rejected.detach().mean().item(),
    }


RewardFn = Callable[[PairLogps, "PairLogps | None"], tuple[torch.Tensor, torch.Tensor]]


def evaluate_pairs(
    policy,
    tokenizer,
    data: PreferenceData,
    reward_fn: RewardFn,
    ref: PairLogps | None,
    cfg,
    logps_of: LogpsFn = pair_logps,
) -> dict:
    """Held-out metrics: preference accuracy under the method's implicit reward, the plain
    log-prob accuracy, the mean chosen log-prob per token (falls under likelihood displacement),
    and greedy exact match on the chosen answers."""
    device = str(next(policy.parameters()).device)
    logps = dataset_logps(policy, data.heldout, data.pad_id, device, logps_of=logps_of)
    c_rew, r_rew = reward_fn(logps, ref)
    prompts = [r["prompt"] for r in data.heldout_records]
    answers = [{"prompt": p, "completion": r["chosen"]} for p, r in zip(prompts, data.heldout_records, strict=True)]
    em = exact_match(policy, tokenizer, answers, max_new_tokens=cfg.max_new_tokens or (8 if data.embedded else 128))
    return {
        "preference_accuracy": heldout_preference_accuracy(prompts, c_rew, r_rew),
        "reward_margin": (c_rew - r_rew).mean().item(),
        "logprob_preference_accuracy": preference_accuracy(logps.chosen, logps.rejected).item(),
        "chosen_logp_per_token": logps.averaged()[0].mean().item(),
        "exact_match": em["exact_match"],
    }


def reference_logps(
    policy, data: PreferenceData, device: str, logps_of: LogpsFn = pair_logps
) -> tuple[PairLogps, PairLogps]:
    """Reference log-probs of the train and held-out pairs, computed once before training.

    The reference is the policy as loaded (with LoRA: the adapter-disabled base, no copy). The
    frozen copy is bound to no name outside this function, so it is freed on return and training
    holds one model in memory, not two.
    """
    from posttrain.hf import frozen_reference, reference_mode

    with reference_mode(policy, frozen_reference(policy)) as ref:
        return dataset_logps(ref, data.train, data.pad_id, device, logps_of=logps_of), dataset_logps(
            ref, data.heldout, data.pad_id, device, logps_of=logps_of
        )


def chosen_nll_per_token(logps: PairLogps) -> torch.Tensor:
    """Mean negative log-likelihood per chosen token over the batch (the SFT / NLL regulariser):
    all chosen tokens of the batch weigh the same, as in TRL's DPOTrainer ``sft`` loss term."""
    return -logps.chosen.sum() / logps.chosen_tokens.sum().clamp(min=1)


def add_rpo_nll(loss: torch.Tensor, logps: PairLogps, rpo_alpha: float) -> tuple[torch.Tensor, dict]:
    """``loss`` + α · NLL per chosen token (RPO's term, Pang et al. 2024, arXiv:2404.19733) and the
    NLL to log as ``nll_loss``; ``loss`` itself and no metric when α = 0."""
    if not rpo_alpha:
        return loss, {}
    nll = chosen_nll_per_token(logps)
    return loss + rpo_alpha * nll, {"nll_loss": nll.item()}


def step_objective(
    loss: torch.Tensor,
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    policy: PairLogps,
    rpo_alpha: float,
    metrics: dict | None = None,
) -> tuple[torch.Tensor, dict]:
    """A method's batch loss plus RPO's NLL term (α > 0), and the step metrics: TRL's reward and
    log-prob metrics, the method's own ``metrics``, then ``nll_loss``."""
    loss, nll = add_rpo_nll(loss, policy, rpo_alpha)
    return loss, {**reward_metrics(chosen_rewards, rejected_rewards, policy), **(metrics or {}), **nll}


class PairwiseConfig(TrainingConfig):
    """Training defaults shared by the offline pairwise trainers, sized for the embedded model."""

    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (sized for the embedded model).")
    max_steps: int = Field(150, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Preference pairs per micro-batch.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    train_examples: int = Field(4800, ge=1, description="Pairs drawn from the embedded task (ignored with --dataset).")


class ReferencePairwiseConfig(PairwiseConfig):
    """PairwiseConfig of the reference-based losses, with RPO's optional NLL term."""

    rpo_alpha: float = Field(
        0.0, ge=0, description="α of RPO's NLL term on the chosen response (Pang et al. 2024: 1); 0 gives the paper."
    )


class NllAnchoredPairwiseConfig(ReferencePairwiseConfig):
    """ReferencePairwiseConfig with RPO's NLL term on by default, for the losses that, measured alone,
    lower held-out exact match on the embedded task (each plugin's docstring gives its numbers)."""

    rpo_alpha: float = Field(
        1.0,
        ge=0,
        description="α of RPO's NLL term on the chosen response, per chosen token (Pang et al. 2024: 1); "
        "0 gives the paper's loss.",
    )


def reward_pair(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's implicit rewards β log(π/π_ref) of the chosen and rejected responses (summed log-probs in)."""
    return beta * (policy_chosen - ref_chosen), beta * (policy_rejected - ref_rejected)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss (Rafailov et al. 2023, arXiv:2305.18290, Eq. 7) and the implicit rewards of
    chosen and rejected.

    Inputs are summed log-probs of each response, shape (B,). The implicit reward is
    r = β (log π(y|x) − log π_ref(y|x)) (``reward_pair``); the loss is −log σ(r_chosen − r_rejected).
    When policy = reference every reward is 0 and the loss is ln 2 ≈ 0.6931.
    """
    chosen_rewards, rejected_rewards = reward_pair(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def rpo_dpo_loss(
    policy: PairLogps, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float, rpo_alpha: float
) -> tuple[torch.Tensor, dict]:
    """Batch loss: mean DPO loss plus α · NLL per chosen token (RPO), and TRL's step metrics."""
    losses, c_rew, r_rew = dpo_loss(policy.chosen, policy.rejected, ref_chosen, ref_rejected, beta)
    return step_objective(losses.mean(), c_rew, r_rew, policy, rpo_alpha)


def batch_loss(policy, batch: dict, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, cfg):
    """DPO (plus RPO's NLL term when ``cfg.rpo_alpha``) on a ``pair_batch``, and TRL's step metrics:
    the step of loops that build their own batches (online-dpo)."""
    loss, metrics = rpo_dpo_loss(pair_logps(policy, batch), ref_chosen, ref_rejected, cfg.beta, cfg.rpo_alpha)
    return loss, {**metrics, "tokens": int(batch["attention_mask"].sum())}


def implicit_rewards(beta: float) -> RewardFn:
    """``reward_pair`` as a trainer's reward function of (policy, reference) log-probs."""

    def rewards(pol: PairLogps, ref: PairLogps | None) -> tuple[torch.Tensor, torch.Tensor]:
        return reward_pair(pol.chosen, pol.rejected, ref.chosen, ref.rejected, beta)

    return rewards


def train_with_reference(cfg, ctx, name: str, loss_of, *loss_args):
    """``train_pairwise`` for a per-pair loss ``loss_of(policy chosen, policy rejected, reference
    chosen, reference rejected, cfg.beta, *loss_args) -> (losses, chosen rewards, rejected rewards)``
    (summed log-probs in), reporting DPO's implicit rewards at ``cfg.beta``."""

    def pair_loss(pol: PairLogps, ref: PairLogps | None):
        losses, chosen, rejected = loss_of(pol.chosen, pol.rejected, ref.chosen, ref.rejected, cfg.beta, *loss_args)
        return losses.mean(), chosen, rejected, {}

    return train_pairwise(cfg, ctx, name, pair_loss, implicit_rewards(cfg.beta), reference=True)


PAIRWISE_SMOKE = {"max_steps": 2, "train_examples": 32, "eval_examples": 16, "batch_size": 8, "log_every": 1}

# (policy log-probs of a batch, reference log-probs or None) -> (loss, chosen rewards, rejected rewards, metrics)
PairLoss = Callable[[PairLogps, "PairLogps | None"], tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]]


def train_pairwise(
    cfg,
    ctx,
    name: str,
    pair_loss: PairLoss,
    rewards: RewardFn,
    reference: bool,
    load_data=None,
    logps_of: LogpsFn = pair_logps,
    **summary,
):
    """Train a policy on preference pairs with a method's ``pair_loss`` and report its implicit
    ``rewards`` before and after. With ``reference`` the reference log-probs are computed once
    before training and passed to both functions (else they get None). A config with
    ``rpo_alpha`` > 0 (``ReferencePairwiseConfig``) adds RPO's NLL term to the method's loss.
    ``load_data(ctx, cfg, tokenizer, policy) -> PreferenceData`` replaces ``load_pairs`` for methods
    that build their pairs with the loaded model (SPIN: its own answers are the rejected ones).
    ``logps_of`` replaces ``pair_logps`` (training, reference and held-out log-probs) for methods
    whose loss needs more from the forward pass than summed log-probs (LD-DPO, WPO)."""
    from posttrain.hf import load_policy, lora_settings, parameter_counts
    from posttrain.training.trainer import Trainer, finish, loop_settings

    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    data = load_data(ctx, cfg, tokenizer, policy) if load_data else load_pairs(ctx, cfg, tokenizer)
    counts = parameter_counts(policy)
    ctx.log(0, counts)
    ref_train, ref_heldout = reference_logps(policy, data, ctx.device, logps_of) if reference else (None, None)
    before = evaluate_pairs(policy, tokenizer, data, rewards, ref_heldout, cfg, logps_of)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(data.train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pair_batch([data.train[i] for i in idx], data.pad_id, ctx.device)
        pol = logps_of(policy, batch)
        loss, c_rew, r_rew, metrics = pair_loss(pol, None if ref_train is None else ref_train[idx])
        loss, metrics = step_objective(loss, c_rew, r_rew, pol, getattr(cfg, "rpo_alpha", 0.0), metrics)
        return loss, {**metrics, "tokens": int(batch["attention_mask"].sum())}

    with Trainer(policy, ctx, loop_settings(cfg), f"{name} on {data.source}") as trainer:
        for step in trainer.steps():
            for micro in range(cfg.grad_accum):
                with trainer.micro_batch():
                    loss, metrics = loss_fn(step, micro)
                    trainer.step(loss, metrics)
    after = evaluate_pairs(policy, tokenizer, data, rewards, ref_heldout, cfg, logps_of)
    return finish(ctx, policy, tokenizer, trainer.result, before, after, data=data.source, **summary, **counts)
