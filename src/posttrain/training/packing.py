"""Padding-free SFT batches (``--set packing=true``): the examples of a micro-batch concatenated
into one row, with no padding token computed.

Each example's ``position_ids`` restart at 0 and no attention mask is passed, which is how
transformers marks packed sequences: its mask builder (sdpa, eager, flex) then lets a token attend
only within its own example, and flash-attention kernels get the example boundaries from the
positions. The loss weights every completion token of the micro-batch the same, as the padded
batch does, so packed and padded training compute the same loss.

An architecture that ignores restarted positions or mixes examples anyway (state-space layers,
ALiBi, positions derived from the attention mask) is caught by ``check_packing`` on the first
batch and stopped with a one-line error naming the option.
"""

from __future__ import annotations

import torch

from posttrain.errors import UserError

OPTION = "packing"
_CHECKED_ATTRIBUTE = "_posttrain_packing_checked"


def pack_examples(examples: list[dict], device=None) -> dict:
    """Tokenized examples -> one row: input_ids, position_ids and completion_mask (1, total length).

    The first token of each example has completion_mask 0: the position before it belongs to the
    previous example, so nothing predicts it (as position 0 of a padded row)."""
    ids: list[int] = []
    positions: list[int] = []
    completion: list[int] = []
    for example in examples:
        n = len(example["input_ids"])
        ids += list(example["input_ids"])
        positions += range(n)
        completion += [0] + list(example["completion_mask"])[1:n]
    batch = {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "completion_mask": torch.tensor([completion], dtype=torch.long),
    }
    return {k: v.to(device) for k, v in batch.items()} if device else batch


def packed_model_inputs(batch: dict) -> dict:
    """The forward arguments of a packed row: no attention mask and no cache, so transformers
    derives the example boundaries from the positions."""
    return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}


def _model_type(model) -> str:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return str(getattr(getattr(inner, "config", None), "model_type", type(model).__name__))


def _row_logits(model, examples: list[dict]) -> torch.Tensor:
    device = next(model.parameters()).device
    return model(**packed_model_inputs(pack_examples(examples, device))).logits[0].float()


def check_packing(model, examples: list[dict]) -> None:
    """Once per model, on two short examples a and b: b's logits packed after a must equal b's own
    (positions restart), and must not change when a's tokens do (no attention across examples)."""
    if getattr(model, _CHECKED_ATTRIBUTE, False):
        return
    active = getattr(model, "active_peft_config", None)
    if active is not None and active.is_prompt_learning:
        raise UserError(f"{OPTION}: prompt-learning adapters prepend virtual tokens to a row; set packing=false")
    a, b = ({k: list(e[k])[:12] for k in ("input_ids", "completion_mask")} for e in (examples * 2)[:2])
    other = dict(a, input_ids=a["input_ids"][::-1])  # same length, other tokens
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = _row_logits(model, [b])
            after_a = _row_logits(model, [a, b])[len(a["input_ids"]) :]
            after_other = _row_logits(model, [other, b])[len(a["input_ids"]) :]
    finally:
        model.train(was_training)
    precise = next(model.parameters()).dtype in (torch.float32, torch.float64)
    scale = 1 + float(alone.abs().max())
    restarts = float((alone - after_a).abs().max()) <= (1e-4 if precise else 3e-2) * scale
    separate = float((after_a - after_other).abs().max()) <= 1e-5 * scale
    if not (restarts and separate):
        raise UserError(
            f"{OPTION}: {_model_type(model)} models do not keep packed examples apart (checked on the first batch: "
            "restarted positions and no attention across examples); set packing=false"
        )
    object.__setattr__(model, _CHECKED_ATTRIBUTE, True)
