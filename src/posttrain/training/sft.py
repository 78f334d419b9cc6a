"""The SFT recipe: maximum likelihood on demonstrations, the loss on the response tokens only.

Used by the ``sft`` plugin and every method of its family (the PEFT adapters, the SFT presets, the
distillation trainers). ``train_sft`` is the recipe, in order: data -> evaluate before -> train ->
evaluate after -> finish. Loading is the plugin's, because that is where the family's methods differ
(``load_policy`` with peft's settings, a bottleneck-adapter wrapper, a prompt-learning model).

What a plugin passes in:

- ``cfg``: its ``Config``, a subclass of ``SFTConfig`` (learning rate, steps, batch size, packing);
- ``model``, ``tokenizer``: the loaded (possibly adapter-wrapped) policy;
- ``data``: (train records, held-out records, source name) instead of the task's ``sft`` records;
- ``evaluate(model, tokenizer, heldout_records, heldout_tokens, cfg, embedded) -> dict``: the held-out
  metrics (default ``evaluate``: exact match and loss; ``evaluate_final_answer`` for reasoning traces);
- ``callbacks``: Trainer callbacks (AdaLoRA's budget allocation after each optimizer step);
- ``regularizer() -> (penalty tensor, metrics)``: added to the loss (AdaLoRA's orthogonality term);
- ``tokenize_train(record, tokenizer, max_length)``: replaces ``tokenize_sft`` for training examples;
- ``bare_base``: ``before`` is scored on the peft model's base without its adapter (prompt methods,
  whose untrained prompt already changes the outputs); the untrained-prompt score is ``initial``.

Memory options, both giving the default's loss: ``packing`` puts each micro-batch's examples in one
padding-free row (``posttrain.training.packing``); ``--logit-chunk-size N`` applies the LM head N tokens at a
time over the loss tokens only (``posttrain.logit_chunks``).
"""

from __future__ import annotations

import copy

import torch
from pydantic import Field

from posttrain import RunContext, RunResult, outcomes
from posttrain.answers import final_answer_correct
from posttrain.data import batch_indices, check_loss_tokens, pad_sequences, task_records, tokenize_sft
from posttrain.errors import UserError
from posttrain.evaluation import exact_match, mean_nll
from posttrain.generation.decode import generate
from posttrain.hf import parameter_counts
from posttrain.logit_chunks import check_logit_head, final_hidden_states, token_logprobs_chunked
from posttrain.logprobs import token_logprobs
from posttrain.training.config import TrainingConfig
from posttrain.training.packing import check_packing, pack_examples, packed_model_inputs
from posttrain.training.trainer import Trainer, finish, loop_settings

# The smoke-test settings of every SFT-family plugin (some add their own keys).
SMOKE = {"max_steps": 2, "train_examples": 64, "eval_examples": 16, "batch_size": 8, "log_every": 1}

TURN_END_TOKENS = ("<|end|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>")


class SFTConfig(TrainingConfig):
    learning_rate: float = Field(
        1e-3, gt=0, description="Peak learning rate η (InstructGPT tunes it per model; 1e-3 suits the embedded model)."
    )
    max_steps: int = Field(400, ge=1, description="Optimizer steps (InstructGPT trains 16 epochs).")
    batch_size: int = Field(64, ge=1, description="Sequences per micro-batch.")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps before the schedule.")
    schedule: str = Field(
        "cosine", pattern="^(cosine|linear|constant)$", description="Decay after warmup (InstructGPT: cosine)."
    )
    packing: bool = Field(
        False,
        description="Padding-free batches: each micro-batch's examples in one row, positions restarting per "
        "example, no attention across examples (TRL's padding_free); same loss, no padding computed.",
    )


# --- loss -----------------------------------------------------------------------------------


def sft_loss(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the tokens where ``loss_mask`` is 1.

    ``loss_mask`` marks the tokens to predict (the response); position t of the logits predicts
    token t+1, so the mask is shifted with the targets. Uniform logits over V tokens give ln V.
    """
    logps = token_logprobs(logits, input_ids)
    mask = loss_mask[:, 1:].to(logps.dtype)
    return -(logps * mask).sum() / mask.sum().clamp(min=1)


# --- batches: padded rows, or one packed row (cfg.packing) ----------------------------------------


def padded_batch(model, examples: list[dict], pad_id: int, device: str) -> tuple[dict, dict]:
    """(forward arguments, batch) of right-padded rows."""
    batch = pad_sequences(examples, pad_id, device)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, batch


def packed_batch(model, examples: list[dict], pad_id: int, device: str) -> tuple[dict, dict]:
    """(forward arguments, batch) of one padding-free row (posttrain.training.packing)."""
    check_packing(model, examples)
    batch = pack_examples(examples, device)
    return packed_model_inputs(batch), batch


# --- loss of a batch: from the full logits, or with the LM head in chunks (--logit-chunk-size) ---


def logits_loss(model, inputs: dict, batch: dict) -> torch.Tensor:
    return sft_loss(model(**inputs).logits, batch["input_ids"], batch["completion_mask"])


def chunked_loss(model, inputs: dict, batch: dict) -> torch.Tensor:
    """``sft_loss`` without the (B, T, V) logits: the head runs in chunks over the loss tokens only."""
    ids = batch["input_ids"]
    check_logit_head(model, **inputs)
    hidden = final_hidden_states(model, **inputs)[:, -ids.shape[1] :]  # virtual tokens dropped
    mask = batch["completion_mask"][:, 1:]
    logps = token_logprobs_chunked(model, hidden[:, :-1], ids[:, 1:], mask)
    mask = mask.to(logps.dtype)
    return -(logps * mask).sum() / mask.sum().clamp(min=1)


def require_full_logits(cfg, ctx: RunContext, method: str) -> None:
    """For the distillation trainers (kd, gkd): their losses compare the student's whole next-token
    distribution with the teacher's on padded rows, so neither option applies; a one-line error
    instead of silently ignoring it."""
    if ctx.logit_chunk_size:
        raise UserError(
            f"--logit-chunk-size: {method} compares full next-token distributions of student and teacher, "
            "so it needs the full logits; use the default (0)"
        )
    if getattr(cfg, "packing", False):
        raise UserError(f"packing: {method} scores student and teacher on padded rows; set packing=false")


# --- held-out evaluation -----------------------------------------------------------------------


def evaluate(model, tokenizer, heldout_records, heldout_tokens, cfg: SFTConfig, embedded: bool) -> dict:
    """Exact match of the generated completion and the mean NLL of the held-out targets."""
    scores = exact_match(
        model, tokenizer, heldout_records, max_new_tokens=cfg.max_new_tokens or (8 if embedded else 128)
    )
    return {"exact_match": scores["exact_match"], "loss": mean_nll(model, heldout_tokens, tokenizer.pad_token_id)}


def final_answer_accuracy(model, tokenizer, records: list[dict], max_new_tokens: int) -> float | None:
    """Share of records whose generated completion ends in the reference ``answer``."""
    scored = [r for r in records if "answer" in r]
    if not scored:
        return None
    outs = generate(model, tokenizer, [r["prompt"] for r in scored], max_new_tokens=max_new_tokens)
    correct = [final_answer_correct(o, r["answer"]) for o, r in zip(outs, scored, strict=True)]
    outcomes.record("exact_match", [r["prompt"] for r in scored], correct)
    return sum(correct) / len(scored)


def evaluate_final_answer(model, tokenizer, heldout_records, heldout_tokens, cfg: SFTConfig, embedded: bool) -> dict:
    """``evaluate`` for targets that reason before answering (cot-finetuning, cot-distill): exact match
    reads the final answer (after the last "#", else the last integer), with a longer generation budget."""
    budget = cfg.max_new_tokens or (32 if embedded else 256)
    return {
        "exact_match": final_answer_accuracy(model, tokenizer, heldout_records, budget),
        "loss": mean_nll(model, heldout_tokens, tokenizer.pad_token_id),
    }


def turn_end_tokenizer(tokenizer):
    """A copy of the tokenizer whose eos is the chat template's end-of-turn token (when that differs
    from eos), so generating a reply stops where the turn ends instead of running into the next one."""
    vocab = tokenizer.get_vocab()
    end = next((t for t in TURN_END_TOKENS if t in vocab), None)
    if end is None or end == tokenizer.eos_token:
        return tokenizer
    copy_ = copy.deepcopy(tokenizer)
    copy_.eos_token = end
    return copy_


# --- the recipe ----------------------------------------------------------------------------------


def train_sft(
    cfg: SFTConfig,
    ctx: RunContext,
    model,
    tokenizer,
    data=None,
    evaluate=evaluate,
    callbacks=(),
    regularizer=None,
    tokenize_train=None,
    bare_base: bool = False,
) -> RunResult:
    """SFT of a loaded model: data -> evaluate before -> train -> evaluate after -> finish.
    The arguments are described in the module docstring."""
    train_records, heldout_records, source = data or task_records(ctx, "sft", cfg.train_examples, cfg.eval_examples)
    train = [(tokenize_train or tokenize_sft)(r, tokenizer, cfg.max_length) for r in train_records]
    check_loss_tokens(train, train_records, source)
    heldout = [tokenize_sft(r, tokenizer, cfg.max_length) for r in heldout_records]
    embedded = ctx.dataset is None
    counts = parameter_counts(model)
    ctx.log(0, counts)

    before = evaluate(model, tokenizer, heldout_records, heldout, cfg, embedded)
    extra = {}
    if bare_base:
        extra["initial"] = before
        before = evaluate(model.get_base_model(), tokenizer, heldout_records, heldout, cfg, embedded)

    make_batch = packed_batch if getattr(cfg, "packing", False) else padded_batch
    batch_loss = chunked_loss if ctx.logit_chunk_size else logits_loss

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        inputs, batch = make_batch(model, [train[i] for i in idx], tokenizer.pad_token_id, ctx.device)
        loss = batch_loss(model, inputs, batch)
        metrics = {"tokens": sum(len(train[i]["input_ids"]) for i in idx)}
        if regularizer is not None:
            penalty, penalty_metrics = regularizer()
            loss = loss + penalty
            metrics.update(penalty_metrics)
        return loss, metrics

    with Trainer(model, ctx, loop_settings(cfg), f"sft on {source}", callbacks) as trainer:
        for step in trainer.steps():
            for micro in range(cfg.grad_accum):
                with trainer.micro_batch():
                    loss, metrics = loss_fn(step, micro)
                    trainer.step(loss, metrics)

    after = evaluate(model, tokenizer, heldout_records, heldout, cfg, embedded)
    return finish(ctx, model, tokenizer, trainer.result, before, after, data=source, **counts, **extra)
