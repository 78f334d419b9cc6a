"""Teacher plumbing for the distillation plugins (kd, gkd, distill-step-by-step, cot-distill):
load the teacher (the embedded one, found in ``posttrain.sources``, or ``--set teacher=ID_OR_PATH``),
check it shares the student's vocabulary, and get its logits or its generations. No method logic here.
"""

from __future__ import annotations

import torch

from posttrain import sources
from posttrain.errors import UserError
from posttrain.interface import RunContext

EMBEDDED_BASE = "embedded-base"


def load_teacher(ctx: RunContext, teacher: str | None, student_tokenizer, console=None):
    """(frozen teacher model in eval mode on ctx.device, its tokenizer, its source).

    ``teacher`` None means the embedded teacher when the student is the embedded base (a user's
    student needs a user's teacher); "embedded-base" the embedded base itself. Logit distillation needs one vocabulary, so the tokenizers
    must map the same strings to the same ids (checked on a probe string).
    """
    from posttrain.hf import load_model, load_tokenizer, quiet_transformers

    quiet_transformers()
    if teacher == EMBEDDED_BASE:  # self-distillation from the base; the smoke tests use it to skip the teacher build
        teacher = sources.model_source_for(None, console)
    if teacher is None:
        if ctx.model is not None:
            raise UserError("--set teacher: required with --model (a teacher sharing the student's tokenizer)")
        source = sources.default_teacher_source(console)
    else:
        source = teacher
    try:
        tokenizer = load_tokenizer(source, ctx.trust_remote_code)
    except UserError as exc:  # its message names --model; here the bad value is the teacher's
        raise UserError(str(exc).replace(f"--model {source}:", f"--set teacher={source}:", 1)) from None
    probe = "Distil 12+30=42 ok"
    if tokenizer(probe)["input_ids"] != student_tokenizer(probe)["input_ids"]:
        raise UserError(f"--set teacher={source}: its tokenizer differs from the student's (distillation needs one)")
    model = load_model(source, ctx.device, ctx.trust_remote_code)
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer, source


def teacher_logits(teacher, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The frozen teacher's logits on a padded batch."""
    with torch.no_grad():
        return teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def same_width(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut both logits to the shared vocabulary (models pad their embedding matrices differently)."""
    width = min(student.shape[-1], teacher.shape[-1])
    return student[..., :width], teacher[..., :width]


def completion_positions(logits: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Logits at the positions that predict completion tokens, flattened to (N, V).

    Position t predicts token t+1, so the mask is shifted like the targets.
    """
    mask = completion_mask[:, 1:].bool()
    return logits[:, :-1][mask]
