"""Log-probabilities of completion tokens: the shared tensor plumbing of every trainer.

A batch is the dict made by ``posttrain.data.pad_sequences``: ``input_ids``, ``attention_mask``
and ``completion_mask`` (1 on the tokens the loss is about), all (B, T), right-padded.
"""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(x_t | x_<t) for t = 1..T-1; logits (B, T, V), input_ids (B, T) -> (B, T-1)."""
    # Prompt tuning prepends virtual tokens to the logits; keep the positions of the real tokens.
    logits = logits[:, -input_ids.shape[1] : -1].float()
    targets = input_ids[:, 1:]
    # logsumexp form avoids materialising the full (B, T, V) log-softmax a second time.
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum(-1)


def first_completion_position(completion_mask: torch.Tensor) -> int:
    """Index of the earliest completion token in the batch (at least 1: token 0 has no prediction)."""
    columns = completion_mask.any(0).nonzero()
    return max(1, int(columns[0])) if len(columns) else 1


def completion_logits(model, batch: dict[str, torch.Tensor], keep: int) -> torch.Tensor:
    """Logits of the last ``keep`` positions only: the LM head (and the float log-softmax after it)
    skips the prompt, which is most of the cost with large vocabularies. Models whose forward has
    no ``logits_to_keep`` get the full logits, sliced."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    try:
        return model(**inputs, logits_to_keep=keep).logits[:, -keep:]
    except TypeError:
        return model(**inputs).logits[:, -keep:]


def sequence_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-prob per sequence (B,) and the completion token count (B,)."""
    logps, mask = completion_token_logprobs(model, batch)
    return masked_sum(logps, mask), mask.sum(-1)


def completion_token_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs from the batch's first completion position on (B, T') and the completion
    mask there (B, T', float): what ``sequence_logprobs`` sums, for losses that weigh tokens."""
    from posttrain.logit_chunks import logit_chunk_size

    if logit_chunk_size(model):
        return chunked_completion_token_logprobs(model, batch)
    ids = batch["input_ids"]
    start = first_completion_position(batch["completion_mask"])
    logits = completion_logits(model, batch, keep=ids.shape[1] - start + 1)
    logps = token_logprobs(logits, ids[:, start - 1 :])
    return logps, batch["completion_mask"][:, start:].to(logps.dtype)


def chunked_completion_token_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``completion_token_logprobs`` with the LM head applied in chunks to the completion tokens only
    (``--logit-chunk-size``, posttrain.logit_chunks): no (B, T, V) logits, forward or backward."""
    from posttrain.logit_chunks import check_logit_head, final_hidden_states, token_logprobs_chunked

    ids, attn = batch["input_ids"], batch["attention_mask"]
    check_logit_head(model, ids, attention_mask=attn)
    start = first_completion_position(batch["completion_mask"])
    # Prompt tuning prepends virtual tokens: keep the positions of the real tokens, as token_logprobs.
    hidden = final_hidden_states(model, input_ids=ids, attention_mask=attn)[:, -ids.shape[1] :]
    mask = batch["completion_mask"][:, start:]
    logps = token_logprobs_chunked(model, hidden[:, start - 1 : -1], ids[:, start:], mask)
    return logps, mask.to(logps.dtype)


def completion_nll(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood per completion token over the batch (the SFT loss)."""
    logps, counts = sequence_logprobs(model, batch)
    return -logps.sum() / counts.sum().clamp(min=1)


def split_pairs(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a batch built chosen-first: the first half is chosen, the second rejected."""
    half = values.shape[0] // 2
    return values[:half], values[half:]
