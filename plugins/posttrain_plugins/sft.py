"""Supervised fine-tuning (SFT): maximum likelihood on demonstrations, loss on the response only.

Papers: Ouyang et al. 2022, "Training language models to follow instructions with human
feedback" (InstructGPT), arXiv:2203.02155, the SFT stage; Wei et al. 2021 (FLAN), arXiv:2109.01652.
Catalog entry: catalog/methods/sft.yaml.

    catalog run sft                                   # embedded tiny model + addition task
    catalog run sft --model Qwen/Qwen2.5-0.5B --dataset data.jsonl --set lora=true
    catalog run sft --model Qwen/Qwen2.5-0.5B --set packing=true --logit-chunk-size 1024   # less memory

Data: ``messages`` (loss on assistant turns), ``prompt`` + ``completion`` (loss on the
completion), or ``text`` (loss on every token).

Memory: ``packing=true`` puts each micro-batch's examples in one padding-free row
(posttrain.packing); ``--logit-chunk-size N`` computes the loss with the LM head applied N tokens at
a time, never the full logits (posttrain.logit_chunks). Both give the same loss as the default.

Deviations from the paper:
1. Training length is counted in optimizer steps, not epochs (InstructGPT: 16 epochs), and the
   default learning rate and step count are sized for the embedded tiny model; set them for yours.
2. No residual dropout (InstructGPT: 0.2); the tiny model underfits rather than overfits.
3. InstructGPT selects the SFT checkpoint by reward-model score; we keep the last one and report
   held-out exact match and loss before and after.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.config import TrainingConfig
from posttrain.data import batch_indices, check_loss_tokens, pad_sequences, task_records, tokenize_sft
from posttrain.errors import UserError
from posttrain.evaluation import exact_match, mean_nll
from posttrain.hf import load_policy, lora_settings, parameter_counts
from posttrain.logit_chunks import check_logit_head, final_hidden_states, token_logprobs_chunked
from posttrain.logprobs import token_logprobs
from posttrain.packing import check_packing, pack_examples, packed_model_inputs
from posttrain.train import finish, loop_settings, train_loop


class Config(TrainingConfig):
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
    """(forward arguments, batch) of one padding-free row (posttrain.packing)."""
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


# --- run ------------------------------------------------------------------------------------


def evaluate(model, tokenizer, heldout_records, heldout_tokens, cfg: Config, embedded: bool) -> dict:
    scores = exact_match(
        model, tokenizer, heldout_records, max_new_tokens=cfg.max_new_tokens or (8 if embedded else 128)
    )
    return {"exact_match": scores["exact_match"], "loss": mean_nll(model, heldout_tokens, tokenizer.pad_token_id)}


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = load_policy(ctx, lora_settings(cfg))
    return train_sft(cfg, ctx, model, tokenizer)


def train_sft(
    cfg: Config,
    ctx: RunContext,
    model,
    tokenizer,
    data=None,
    evaluate=evaluate,
    loop_fn=None,
    regularizer=None,
    tokenize_train=None,
    bare_base: bool = False,
) -> RunResult:
    """The SFT loop on a loaded (possibly adapter-wrapped) model, reused by PEFT plugins and SFT presets.

    ``data`` = (train records, held-out records, source) replaces the task's; ``evaluate`` the
    held-out metrics; ``loop_fn`` the training loop (the caller's ``train_loop``, so tests can spy on
    it); ``regularizer()`` -> (penalty tensor, metrics) is added to the loss (e.g. AdaLoRA's);
    ``tokenize_train(record, tokenizer, max_length)`` replaces ``tokenize_sft`` for training examples;
    ``bare_base``: ``before`` is the peft model's base without its adapter (prompt methods, whose
    untrained prompt already changes the outputs) and the untrained-prompt score is ``initial``.
    """
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
            penalty, extra = regularizer()
            loss = loss + penalty
            metrics.update(extra)
        return loss, metrics

    loop = (loop_fn or train_loop)(model, ctx, loop_settings(cfg), loss_fn, description=f"sft on {source}")
    after = evaluate(model, tokenizer, heldout_records, heldout, cfg, embedded)
    return finish(ctx, model, tokenizer, loop, before, after, data=source, **counts, **extra)


plugin = Plugin(
    id="sft",
    config=Config,
    run=run,
    summary="Supervised fine-tuning on demonstrations.",
    smoke={"max_steps": 2, "train_examples": 64, "eval_examples": 16, "batch_size": 8, "log_every": 1},
)
