"""Knowledge distillation (KD): the student matches the teacher's temperature-softened distribution.

Paper: Hinton, Vinyals, Dean, 2015, "Distilling the Knowledge in a Neural Network",
arXiv:1503.02531. Catalog entry: catalog/methods/kd.yaml.

    catalog run kd                                      # embedded teacher -> embedded base student
    catalog run kd --model Qwen/Qwen2.5-0.5B --set teacher=Qwen/Qwen2.5-7B --dataset sft.jsonl

For every completion token the loss mixes the soft-target term and the usual hard-label term:

    L = α · T² · KL(softmax(z_t / T) || softmax(z_s / T)) + (1 − α) · CE(y, softmax(z_s))

with teacher logits z_t, student logits z_s and temperature T. The T² keeps the soft term's
gradients the same size as T changes (paper §2); as T → ∞ its gradient tends to (z_s − z_t) / V
for zero-mean logits, i.e. logit matching (paper §2.1). The teacher is frozen; token-level KD on
the SFT data (prompt + reference completion), the sequence-model form most LLM KD code uses.
The embedded default teacher is ``posttrain.embedded.teacher`` (0.47M parameters, 0.902 held-out
exact match) and the student the embedded base (148K, 0.778; both in reports/runs/kd.json). With ``--model`` pass
``--set teacher=ID_OR_PATH`` with the same tokenizer.

Deviations from the paper:
1. Applied per token of a sequence model (the paper's experiments are classifiers).
2. α = 0.5 and T = 2 (the paper uses a higher weight on the soft term and T from 2.5 to 20,
   tuned per task); learning rate and steps for the embedded model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.data import batch_indices, pad_sequences, task_records, tokenize_sft
from posttrain.hf import load_policy, lora_settings, parameter_counts
from posttrain.training.distill import completion_positions, load_teacher, same_width, teacher_logits
from posttrain.training.sft import SMOKE, SFTConfig, evaluate, require_full_logits
from posttrain.training.trainer import finish, loop_settings, train_loop


class Config(SFTConfig):
    teacher: str | None = Field(
        None, description="Teacher model id or folder (default: the embedded teacher; embedded-base: the base)."
    )
    temperature: float = Field(2.0, gt=0, description="Softmax temperature T of both distributions (paper: 2.5-20).")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight α of the soft-target term; 1 − α on the hard labels.")
    max_steps: int = Field(200, ge=1, description="Optimizer steps.")


# --- loss -----------------------------------------------------------------------------------


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(p_teacher^T || p_student^T), averaged over rows of (N, V) logits.

    Zero when the logits are equal. Teacher logits (ln 3, 0), student (0, 0), T = 1:
    0.75 ln 1.5 + 0.25 ln 0.5 = 0.13081.
    """
    t = temperature
    teacher_logp = F.log_softmax(teacher_logits.float() / t, dim=-1)
    student_logp = F.log_softmax(student_logits.float() / t, dim=-1)
    kl = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    return t * t * kl.mean()


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(α · soft + (1 − α) · hard, soft, hard) on aligned (N, V) logits and (N,) labels."""
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(student_logits.float(), labels)
    return alpha * soft + (1 - alpha) * hard, soft, hard


# --- run ------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    require_full_logits(cfg, ctx, "kd")
    model, tokenizer = load_policy(ctx, lora_settings(cfg))
    teacher, _, teacher_source = load_teacher(ctx, cfg.teacher, tokenizer)
    train_records, heldout_records, source = task_records(ctx, "sft", cfg.train_examples, cfg.eval_examples)
    train = [tokenize_sft(r, tokenizer, cfg.max_length) for r in train_records]
    heldout = [tokenize_sft(r, tokenizer, cfg.max_length) for r in heldout_records]
    embedded = ctx.dataset is None
    counts = parameter_counts(model)
    ctx.log(0, counts)
    before = evaluate(model, tokenizer, heldout_records, heldout, cfg, embedded)
    teacher_scores = evaluate(teacher, tokenizer, heldout_records, heldout, cfg, embedded)

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pad_sequences([train[i] for i in idx], tokenizer.pad_token_id, ctx.device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, t_logits = same_width(logits, teacher_logits(teacher, batch))
        mask = batch["completion_mask"]
        labels = batch["input_ids"][:, 1:][mask[:, 1:].bool()]
        loss, soft, hard = kd_loss(
            completion_positions(logits, mask),
            completion_positions(t_logits, mask),
            labels,
            cfg.temperature,
            cfg.alpha,
        )
        return loss, {"soft_loss": soft.item(), "hard_loss": hard.item(), "tokens": int(batch["attention_mask"].sum())}

    loop = train_loop(model, ctx, loop_settings(cfg), loss_fn, description=f"kd on {source}")
    after = evaluate(model, tokenizer, heldout_records, heldout, cfg, embedded)
    return finish(
        ctx,
        model,
        tokenizer,
        loop,
        before,
        after,
        data=source,
        teacher=teacher_source,
        teacher_heldout=teacher_scores,
        **counts,
    )


plugin = Plugin(
    id="kd",
    config=Config,
    run=run,
    summary="Hinton KD: temperature-softened forward KL to a teacher, mixed with the hard-label loss.",
    smoke={**SMOKE, "teacher": "embedded-base"},
)
