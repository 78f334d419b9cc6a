"""Log-probs of chosen tokens without the full (tokens, vocabulary) logits: ``--logit-chunk-size N``.

With a 150K-token vocabulary the logits of a batch dwarf everything else a step holds: 2,048
tokens x 151,936 x 4 bytes is 1.2 GB, and the backward pass holds that much again. Here the model
runs to its final hidden states (its own forward, asked for one position of logits), and the LM
head is applied N tokens at a time: each chunk's log-prob of the chosen token (logit minus
logsumexp) is all that is kept, and the backward pass recomputes the chunk's logits
(``torch.utils.checkpoint``), so at most one chunk of logits exists at a time, forward or backward.

Works on any causal LM whose forward takes ``logits_to_keep`` and returns ``hidden_states``: the
head is ``get_output_embeddings()`` (tied or not, LoRA-wrapped or not), and the logit transforms
transformers applies after it are applied here too: Gemma 2/3's final soft-capping, Cohere's
``logit_scale`` and Granite's ``logits_scaling``. The first call on a model checks its chunked
logits against the model's own on a few positions; an architecture that computes its logits some
other way gets a one-line error naming the option instead of wrong numbers.

Model calls go through the model's ``forward``, so PEFT wrappers, gradient checkpointing and
DDP's gradient hooks apply as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from posttrain.errors import UserError

OPTION = "--logit-chunk-size"
_SIZE_ATTRIBUTE = "_posttrain_logit_chunk_size"
_CHECKED_ATTRIBUTE = "_posttrain_logit_head_checked"


def set_logit_chunk_size(model, size: int) -> None:
    """Make the log-prob helpers (posttrain.logprobs, posttrain.rl.rollout) chunk ``model``'s LM head
    ``size`` tokens at a time; 0 turns it off (full logits, the default)."""
    if size < 0:
        raise UserError(f"{OPTION} {size}: expected 0 (off) or a positive number of tokens")
    object.__setattr__(model, _SIZE_ATTRIBUTE, int(size))


def logit_chunk_size(model) -> int:
    """The chunk size set on ``model`` (or on the model a PEFT wrapper holds), 0 when off."""
    return int(getattr(model, _SIZE_ATTRIBUTE, 0) or 0)


def _transformers_model(model):
    """The transformers model under a PEFT wrapper (the wrapper delegates its forward to it)."""
    return model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model


@dataclass
class LogitHead:
    """The LM head and the transforms transformers applies to its output."""

    module: torch.nn.Module
    softcap: float | None = None  # Gemma 2/3: cap * tanh(logits / cap)
    scale: float = 1.0  # Cohere multiplies by logit_scale; Granite divides by logits_scaling

    def logits(self, hidden: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Float logits of ``hidden`` (..., E) -> (..., V), divided by ``temperature``."""
        logits = self.module(hidden)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float32 at least
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits / temperature if temperature != 1.0 else logits


def logit_head(model) -> LogitHead:
    """The LogitHead of a causal LM (possibly PEFT-wrapped)."""
    inner = _transformers_model(model)
    module = inner.get_output_embeddings()
    if module is None:
        raise UserError(f"{OPTION}: {_model_type(model)} models have no output embeddings (LM head) to chunk")
    config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    scale = float(getattr(inner, "logit_scale", None) or 1.0)  # Cohere: an attribute of the model
    scaling = getattr(config, "logits_scaling", None)  # Granite: divides
    if scaling:
        scale /= float(scaling)
    return LogitHead(module, getattr(config, "final_logit_softcapping", None), scale)


def _model_type(model) -> str:
    return str(getattr(getattr(_transformers_model(model), "config", None), "model_type", type(model).__name__))


def final_hidden_states(model, **inputs) -> torch.Tensor:
    """(B, T', E) final hidden states (after the last norm) from the model's own forward, which is
    asked for the logits of one position only (the LM head's cost is ours to spend, in chunks).
    T' includes any virtual tokens a prompt-learning adapter prepends."""
    try:
        out = model(**{**inputs, "use_cache": False}, logits_to_keep=1, output_hidden_states=True)
    except TypeError:
        raise UserError(
            f"{OPTION}: {_model_type(model)} models' forward has no logits_to_keep, so the full logits would "
            "be computed anyway; use the default (0)"
        ) from None
    if getattr(out, "hidden_states", None) is None:
        raise UserError(f"{OPTION}: {_model_type(model)} models do not return hidden states; use the default (0)")
    return out.hidden_states[-1]


def _chunk_logprobs(head: LogitHead, hidden: torch.Tensor, targets: torch.Tensor, temperature: float):
    logits = head.logits(hidden, temperature)
    return torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def chunked_logprobs(
    head: LogitHead, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int, temperature: float = 1.0
) -> torch.Tensor:
    """log p(target) for each row of ``hidden`` (N, E) and ``targets`` (N,) -> (N,) float, with the
    head applied ``chunk_size`` rows at a time. With grad on, each chunk is a checkpoint: its logits
    are freed after the forward and recomputed in the backward, one chunk at a time."""
    parts = []
    for h, t in zip(hidden.split(chunk_size), targets.split(chunk_size), strict=True):
        if torch.is_grad_enabled():
            parts.append(checkpoint(_chunk_logprobs, head, h, t, temperature, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(head, h, t, temperature))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.promote_types(hidden.dtype, torch.float32))


def token_logprobs_chunked(
    model, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """(B, T) log-probs of ``targets`` (B, T) predicted from ``hidden`` (B, T, E); only positions where
    ``mask`` is nonzero are computed (the others are 0), all when ``mask`` is None."""
    head = logit_head(model)
    size = logit_chunk_size(model)
    if mask is None:
        flat = chunked_logprobs(head, hidden.flatten(0, 1), targets.flatten(), size, temperature)
        return flat.view(targets.shape)
    keep = mask.bool()
    picked = chunked_logprobs(head, hidden[keep], targets[keep], size, temperature)
    out = picked.new_zeros(targets.shape)
    out[keep] = picked
    return out


def check_logit_head(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_) -> None:
    """Once per model: the chunked head's logits must equal the model's own on the first row's first
    8 real tokens; otherwise the architecture computes logits in a way this path does not reproduce."""
    if getattr(model, _CHECKED_ATTRIBUTE, False):
        return
    row = input_ids[0] if attention_mask is None else input_ids[0][attention_mask[0].bool()]
    ids = row[:8][None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            full = model(input_ids=ids, use_cache=False).logits[:, -ids.shape[1] :].float()
            hidden = final_hidden_states(model, input_ids=ids)[:, -ids.shape[1] :]
            mine = logit_head(model).logits(hidden)
    finally:
        model.train(was_training)
    precise = hidden.dtype in (torch.float32, torch.float64)  # bf16/fp16: rounding differs by up to ~1%
    tolerance = (1e-4 if precise else 3e-2) * (1 + float(full.abs().max()))
    if full.shape != mine.shape or not float((full - mine).abs().max()) <= tolerance:  # NaN fails too
        raise UserError(
            f"{OPTION}: {_model_type(model)} models compute their logits in a way the chunked path does not "
            "reproduce (checked against the model's own forward); use the default (0)"
        )
    object.__setattr__(model, _CHECKED_ATTRIBUTE, True)
