"""The one ``completion_logprobs`` contract: log p(completion token | prefix) under a model, for
the batches the sampler (``posttrain.generation.sampler``) produces.

Inputs: any batch with the sampler's layout (a ``posttrain.rl.rollout.Rollout`` is one):

    input_ids       (N, Tp + C) long   prompt left-padded to Tp | completion right-padded to C
    attention_mask  (N, Tp + C) long   0 on the prompt's left padding, 1 elsewhere*
    prompt_width    int                Tp

(*completion padding may be 0 or 1: a token's log-prob only depends on the tokens before it, and
callers mask the completion positions they use with the batch's completion mask.)

Output: (n, C) float32, n the selected ``rows``; entry [i, j] = log softmax(logits / temperature)
at completion token j of row i, with generate's left-padding position ids (``position_ids``).
``temperature`` must be the sampling temperature to reproduce the sampler's log-probs (top-k /
top-p shape the draw, not the log-prob, as in training). Grad flows when enabled
(``batched_logprobs`` is the no-grad, micro-batched form for old-policy and reference log-probs).
"""

from __future__ import annotations

from typing import Protocol

import torch

from posttrain.errors import UserError
from posttrain.generation.fastpath import lean_decoder
from posttrain.generation.sampler import position_ids


class PromptCompletionBatch(Protocol):
    input_ids: torch.Tensor  # (N, Tp + C)
    attention_mask: torch.Tensor  # (N, Tp + C)
    prompt_width: int  # Tp

    def __len__(self) -> int: ...


def completion_logprobs(
    model, rollout: PromptCompletionBatch, rows: slice | torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """log p(completion token | prefix) under ``model`` for ``rows``, (n, C); grad flows if enabled.

    For Llama / Qwen2 models posttrain.generation.fastpath's forward (the prompt part once per run of rows
    sharing it); else one padded forward over prompt + completion, keeping the last C + 1 logits.
    """
    from posttrain.logit_chunks import logit_chunk_size

    if logit_chunk_size(model):
        return chunked_completion_logprobs(model, rollout, rows, temperature)
    logits, targets = _completion_logits(model, rollout, rows, temperature)
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def completion_logprobs_and_entropies(
    model, rollout: PromptCompletionBatch, rows: slice | torch.Tensor | None = None, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``completion_logprobs`` and the entropy of each completion position's next-token distribution,
    -sum p log p of softmax(logits / temperature), (n, C) each; the entropies carry no grad.

    Needs the full logits, so a model with ``--logit-chunk-size`` is refused (one line, exit 2).
    """
    from posttrain.logit_chunks import logit_chunk_size

    if logit_chunk_size(model):
        raise UserError(
            "--logit-chunk-size: token entropies need the full logits; use --logit-chunk-size 0 with "
            "top_entropy_fraction < 1"
        )
    logits, targets = _completion_logits(model, rollout, rows, temperature)
    log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    picked = torch.gather(log_probs, -1, targets.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropies = -(log_probs.exp() * log_probs).sum(-1)
    return picked, entropies


def _completion_logits(
    model, rollout: PromptCompletionBatch, rows: slice | torch.Tensor | None, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 logits / temperature at the completion positions (n, C, V) and the completion tokens (n, C)."""
    rows = slice(None) if rows is None else rows
    ids, attn = rollout.input_ids[rows], rollout.attention_mask[rows]
    width = ids.shape[1] - rollout.prompt_width
    lean = lean_decoder(model)
    if lean is not None:
        logits = lean.completion_logits(ids, attn, rollout.prompt_width)
    else:
        logits = _model_logits(model, ids, attn, width + 1)[:, :-1]
    return logits.float() / temperature, ids[:, rollout.prompt_width :]


def chunked_completion_logprobs(
    model, rollout: PromptCompletionBatch, rows: slice | torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """``completion_logprobs`` with the LM head applied in chunks (``--logit-chunk-size``,
    posttrain.logit_chunks): hidden states from the lean forward or the model's, no (n, C, V) logits."""
    from posttrain.logit_chunks import check_logit_head, final_hidden_states, token_logprobs_chunked

    rows = slice(None) if rows is None else rows
    ids, attn = rollout.input_ids[rows], rollout.attention_mask[rows]
    width = ids.shape[1] - rollout.prompt_width
    positions = position_ids(attn)
    check_logit_head(model, ids, attention_mask=attn, position_ids=positions)
    lean = lean_decoder(model)
    if lean is not None:
        hidden = lean.completion_hidden(ids, attn, rollout.prompt_width)
    else:
        hidden = final_hidden_states(model, input_ids=ids, attention_mask=attn, position_ids=positions)
        hidden = hidden[:, -width - 1 : -1]
    return token_logprobs_chunked(model, hidden, ids[:, rollout.prompt_width :], temperature=temperature)


def _model_logits(model, ids, attn, keep: int) -> torch.Tensor:
    kwargs = dict(input_ids=ids, attention_mask=attn, position_ids=position_ids(attn))
    try:
        return model(**kwargs, logits_to_keep=keep).logits[:, -keep:]
    except TypeError:  # architectures without logits_to_keep
        return model(**kwargs).logits[:, -keep:]


@torch.no_grad()
def batched_logprobs(model, rollout: PromptCompletionBatch, micro_batch: int, temperature: float = 1.0) -> torch.Tensor:
    """completion_logprobs for every row, in micro-batches, without grad (old policy, reference)."""
    was_training = model.training
    model.eval()
    parts = [
        completion_logprobs(model, rollout, slice(i, i + micro_batch), temperature)
        for i in range(0, len(rollout), micro_batch)
    ]
    model.train(was_training)
    return torch.cat(parts)
