"""Datasets: local JSONL or hub ids, in the formats TRL users already have.

SFT records: ``messages`` | ``prompt`` + ``completion`` | ``text``.
Preference records: ``prompt`` + ``chosen`` + ``rejected``.
Prompt records (evaluation, RL, search): ``prompt`` with an optional ``answer``.
Values are plain strings or conversational message lists (``[{"role", "content"}, ...]``), the
latter rendered with the tokenizer's chat template.

Every problem with a file is reported as one line naming the file, the line and the column.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from posttrain.errors import UserError

FORMATS = {
    "sft": [("messages",), ("prompt", "completion"), ("text",)],
    "preference": [("prompt", "chosen", "rejected")],
    "prompt": [("prompt",)],
}


# --- reading ------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"dataset file {path} does not exist")
    records = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{number}: expected a JSON object per line, found {type(obj).__name__}")
            obj["_line"] = number
            records.append(obj)
    if not records:
        raise UserError(f"{path}: the dataset is empty")
    return records


def looks_like_path(source: str) -> bool:
    return source.endswith((".jsonl", ".json")) or source.startswith((".", "/", "~")) or Path(source).exists()


def load_records(source: str, split: str = "train") -> tuple[list[dict[str, Any]], str]:
    """Records from a JSONL file, a folder holding ``{split}.jsonl``, or a hub dataset id."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / f"{split}.jsonl"
        return read_jsonl(path), str(path)
    if looks_like_path(source):
        return read_jsonl(path), str(path)
    try:
        import datasets
    except ImportError:
        raise UserError(
            f"--dataset {source}: not a local file; loading hub datasets needs: pip install 'posttrain-catalog[datasets]'"
        ) from None
    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as exc:  # the hub client raises many types; the user needs one line
        raise UserError(
            f"--dataset {source}: could not load split '{split}' from the hub: {str(exc).splitlines()[0]}"
        ) from None
    return [dict(r, _line=i + 1) for i, r in enumerate(ds)], source


def check_format(records: list[dict[str, Any]], kind: str, source: str) -> tuple[str, ...]:
    """The column set every record has (the first format of FORMATS[kind] that fits), or a clear error."""
    options = FORMATS[kind]
    for record in records:
        fits = [cols for cols in options if all(c in record for c in cols)]
        if not fits:
            expected = " | ".join("+".join(c) for c in options)
            have = (
                ", ".join(k if k.isprintable() and k else repr(k) for k in record if not k.startswith("_")) or "nothing"
            )
            raise UserError(f"{source}:{record.get('_line', '?')}: missing columns: expected {expected}, found {have}")
        cols = fits[0]
        for col in cols:
            check_value(record, col, source)
    return next(cols for cols in options if all(c in records[0] for c in cols))


def check_value(record: dict[str, Any], column: str, source: str) -> None:
    """A text column holds a string or a non-empty list of {"role": str, "content": str} messages
    (``chosen``/``rejected`` may also hold a non-empty list of strings: a group of responses)."""
    value = record[column]
    if isinstance(value, str) and column != "messages":
        return
    if (
        column in ("chosen", "rejected")
        and isinstance(value, list)
        and value
        and all(isinstance(v, str) for v in value)
    ):
        return  # a group of responses (multi-sample preference data, e.g. mdpo)
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
        )
    ):
        return
    expected = "a list of" if column == "messages" else "a string or a list of"
    raise UserError(
        f"{source}:{record.get('_line', '?')}: column '{column}': expected {expected} "
        f'{{"role": ..., "content": ...}} messages with string values, found {_describe(value)}'
    )


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "an empty list" if not value else "a list with a malformed message"
    return type(value).__name__


def split_heldout(
    records: list[dict], share: float = 0.05, cap: int = 200, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Deterministic train / held-out split of a single file (at least one held-out record)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, min(cap, int(len(records) * share))) if len(records) > 1 else 0
    heldout = [records[i] for i in order[:n_eval]]
    train = [records[i] for i in order[n_eval:]]
    return train, heldout


# --- tokenizing ---------------------------------------------------------------------------------


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def plain_chat_text(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    """Messages as plain text, for tokenizers with no chat template (base checkpoints such as GPT-2):
    one message's content per line, each assistant turn ended by EOS (so the model learns to stop),
    and a line break after the last message when a reply is to follow. Appending a reply to a
    rendered prompt extends its text, as a chat template does."""
    eos = tokenizer.eos_token or ""
    text = "\n".join(m["content"] + (eos if m.get("role") == "assistant" else "") for m in messages)
    return text + "\n" if add_generation_prompt else text


def chat_text(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    """The chat template's rendering of ``messages``, or ``plain_chat_text`` when there is none."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return plain_chat_text(tokenizer, messages, add_generation_prompt)


def _chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    if not has_chat_template(tokenizer):  # plain text, tokenized like a plain-text prompt (with BOS if it adds one)
        return list(tokenizer(plain_chat_text(tokenizer, messages, add_generation_prompt))["input_ids"])
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def prompt_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    if isinstance(prompt, list):
        return _chat_ids(tokenizer, prompt, add_generation_prompt=True)
    return list(tokenizer(prompt)["input_ids"])


def prompts_ids(tokenizer, prompts: list) -> list[list[int]]:
    """prompt_ids of each prompt; plain-text prompts in one batched tokenizer call."""
    if prompts and all(isinstance(p, str) for p in prompts):
        return [list(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    return [prompt_ids(tokenizer, p) for p in prompts]


def _eos(tokenizer) -> list[int]:
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def tokenize_prompt_completion(
    record: dict, tokenizer, max_length: int | None = None, completion_key: str = "completion"
) -> dict:
    """Token ids of prompt + completion with a mask that is 1 on the completion tokens only."""
    prompt, completion = record["prompt"], record[completion_key]
    if isinstance(prompt, list) or isinstance(completion, list):
        p_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        c_msgs = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        p_ids = _chat_ids(tokenizer, p_msgs, add_generation_prompt=True)
        full = _chat_ids(tokenizer, p_msgs + c_msgs, add_generation_prompt=False)
        if full[: len(p_ids)] != p_ids:  # template re-renders the prompt: fall back to a plain join
            full = p_ids + list(tokenizer(_text_of(c_msgs), add_special_tokens=False)["input_ids"]) + _eos(tokenizer)
        c_ids = full[len(p_ids) :]
    else:
        p_ids = prompt_ids(tokenizer, prompt)
        c_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"]) + _eos(tokenizer)
    return _pack(p_ids, c_ids, max_length)


def tokenize_messages(record: dict, tokenizer, max_length: int | None = None) -> dict:
    """A whole conversation; the loss mask covers the assistant turns only."""
    messages = record["messages"]
    ids: list[int] = []
    mask: list[int] = []
    for i, msg in enumerate(messages):
        upto = _chat_ids(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if msg.get("role") == "assistant":
            before = _chat_ids(tokenizer, messages[:i], add_generation_prompt=True) if i else []
            prefix = before if upto[: len(before)] == before else ids
            new = upto[len(prefix) :]
            mask += [0] * (len(prefix) - len(ids)) + [1] * len(new)
            ids = list(prefix) + new
        else:
            mask += [0] * (len(upto) - len(ids))
            ids = upto
    ids, mask = ids[:max_length], mask[:max_length]
    return {"input_ids": ids, "completion_mask": mask}


def tokenize_text(record: dict, tokenizer, max_length: int | None = None) -> dict:
    ids = list(tokenizer(record["text"])["input_ids"]) + _eos(tokenizer)
    mask = [0 if (i == 0 and t == tokenizer.bos_token_id) else 1 for i, t in enumerate(ids)]
    return {"input_ids": ids[:max_length], "completion_mask": mask[:max_length]}


def tokenize_sft(record: dict, tokenizer, max_length: int | None = None) -> dict:
    if "messages" in record:
        return tokenize_messages(record, tokenizer, max_length)
    if "prompt" in record and "completion" in record:
        return tokenize_prompt_completion(record, tokenizer, max_length)
    return tokenize_text(record, tokenizer, max_length)


def tokenize_preference(record: dict, tokenizer, max_length: int | None = None) -> tuple[dict, dict]:
    chosen = tokenize_prompt_completion(record, tokenizer, max_length, completion_key="chosen")
    rejected = tokenize_prompt_completion(record, tokenizer, max_length, completion_key="rejected")
    return chosen, rejected


def _text_of(messages: list[dict]) -> str:
    return "".join(str(m.get("content", "")) for m in messages)


def _pack(p_ids: list[int], c_ids: list[int], max_length: int | None) -> dict:
    ids = p_ids + c_ids
    mask = [0] * len(p_ids) + [1] * len(c_ids)
    if max_length is not None and len(ids) > max_length:
        # Keep the end of the prompt and the start of the completion (what the loss needs most).
        keep_prompt = max(1, max_length - len(c_ids))
        ids = (p_ids[-keep_prompt:] + c_ids)[:max_length]
        mask = ([0] * len(p_ids[-keep_prompt:]) + [1] * len(c_ids))[:max_length]
    return {"input_ids": ids, "completion_mask": mask}


# --- batching -----------------------------------------------------------------------------------


def pad_sequences(examples: list[dict], pad_id: int, device: str | None = None) -> dict:
    """Right-pad tokenized examples into tensors (input_ids, attention_mask, completion_mask)."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    # Padded Python lists, then one tensor per field: a tensor per example costs more than the model step.
    gaps = [width - len(e["input_ids"]) for e in examples]
    ids = torch.tensor([list(e["input_ids"]) + [pad_id] * g for e, g in zip(examples, gaps, strict=True)])
    attn = torch.tensor([[1] * (width - g) + [0] * g for g in gaps])
    comp = torch.tensor([list(e["completion_mask"]) + [0] * g for e, g in zip(examples, gaps, strict=True)])
    batch = {"input_ids": ids.long(), "attention_mask": attn.long(), "completion_mask": comp.long()}
    return {k: v.to(device) for k, v in batch.items()} if device else batch


def batch_indices(n_items: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Indices of the examples in batch ``step``: epoch-wise shuffles, a pure function of (step, seed).

    Being a function of the step, not of an iterator's state, is what makes --resume bit-identical.
    Under torchrun ``batch_size`` is the global batch and each rank gets its contiguous share
    (``posttrain.distributed.shard``), so a plugin needs no change to train on N processes.
    """
    per_epoch = max(1, n_items // batch_size)
    epoch, pos = divmod(step, per_epoch)
    order = _epoch_order(n_items, seed, epoch)
    chunk = list(order[pos * batch_size : (pos + 1) * batch_size])
    if len(chunk) < batch_size:  # fewer items than one batch: repeat them
        chunk = list((order * (batch_size // max(1, n_items) + 1))[:batch_size])
    from posttrain.distributed import shard

    return shard(chunk)


@functools.lru_cache(maxsize=4)
def _epoch_order(n_items: int, seed: int, epoch: int) -> tuple[int, ...]:
    """The shuffle of one epoch, computed once per epoch instead of once per step."""
    order = list(range(n_items))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def iterate_batches(items: list, batch_size: int) -> Iterator[list]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


# --- the data a plugin trains and evaluates on ---------------------------------------------------

EVAL_SEED = 1234  # the held-out set is the same for every method and run seed, so numbers compare


def task_records(ctx, kind: str, n_train: int, n_eval: int) -> tuple[list[dict], list[dict], str]:
    """(train, held-out, source) for ``kind`` in sft | preference | prompt.

    With no --dataset: the embedded addition task. With a JSONL file: its records, with a
    ``test.jsonl`` beside a folder's ``train.jsonl`` as held-out set, or else a fixed 5% split.
    """
    if ctx.dataset is None:
        from posttrain.embedded.task import DEFAULT_TASK as task

        if kind == "sft":
            return task.sft_examples(n_train, ctx.seed), task.sft_examples(n_eval, EVAL_SEED, "test"), task.name
        if kind == "preference":
            return task.preference_pairs(n_train, ctx.seed), task.preference_pairs(n_eval, EVAL_SEED, "test"), task.name
        return task.prompts(n_train, ctx.seed, "train"), task.prompts(n_eval, EVAL_SEED, "test"), task.name
    records, source = load_records(ctx.dataset, "train")
    check_format(records, kind, source)
    test_file = Path(ctx.dataset).expanduser() / "test.jsonl"
    if test_file.is_file():
        heldout = read_jsonl(test_file)
        check_format(heldout, kind, str(test_file))
        return records, heldout[:n_eval], source
    train, heldout = split_heldout(records, seed=ctx.seed)
    return train, heldout[:n_eval], source
