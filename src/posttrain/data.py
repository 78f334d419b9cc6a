"""Datasets as users have them: JSON Lines, parquet, JSON arrays, CSV, a folder of ``{split}.*`` files,
a folder written by ``datasets``' ``save_to_disk``, or a hub id; in the formats TRL users already have.

SFT records: ``messages`` | ``prompt`` + ``completion`` | ``text``.
Preference records: ``prompt`` + ``chosen`` + ``rejected``, or ``chosen`` + ``rejected`` conversations
that share their leading messages (TRL's implicit prompt, made explicit by ``with_implicit_prompts``).
Prompt records (evaluation, RL, search): ``prompt`` with an optional ``answer``.
Values are plain strings or conversational message lists (``[{"role", "content"}, ...]``), the
latter rendered with the tokenizer's chat template.

Every problem with a file is reported as one line naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import functools
import importlib
import io
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
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        obj = parse_json(line, f"{path}:{number}")
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{number}: expected a JSON object per line, found {type(obj).__name__}")
        obj["_line"] = number
        records.append(obj)
    if not records:
        raise UserError(f"{path}: the dataset is empty")
    return records


def read_text(path: Path) -> str:
    """A data file's text; bytes that are not UTF-8 are a one-line error naming the line and column."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); save the file as UTF-8"
        ) from None


def parse_json(text: str, where: str) -> Any:
    """json.loads with its failures as one line naming ``where`` (file:line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply (expected records of strings and message lists)") from None


def read_json(path: Path) -> list[dict[str, Any]]:
    """A JSON array of objects, or JSON Lines under a ``.json`` name."""
    text = read_text(path)
    if not text.lstrip().startswith("["):
        return read_jsonl(path)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply (expected an array of records)") from None
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise UserError(f"{path}: item {bad + 1}: expected a JSON array of objects, found {type(rows[bad]).__name__}")
    return table_records(rows, path)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """A CSV file with a header row; every value is a string (line numbers count the header)."""
    text = read_text(path)
    return table_records(list(csv.DictReader(io.StringIO(text, newline=""))), path, first_line=2)


def read_parquet(path: Path) -> list[dict[str, Any]]:
    pq = _require("pyarrow.parquet", f"{path}: reading parquet")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file; the user needs one line
        raise UserError(f"{path}: not a readable parquet file ({_first_line(exc)})") from None
    return table_records(rows, path)


def table_records(rows: list[dict], source: Any, first_line: int = 1) -> list[dict[str, Any]]:
    """Rows of a table as records numbered from ``first_line``; null cells are dropped (a column the
    row does not use, as when one file mixes ``messages`` and ``prompt`` rows)."""
    records = [
        {k: v for k, v in row.items() if isinstance(k, str) and v is not None} | {"_line": number}
        for number, row in enumerate(rows, start=first_line)
    ]
    if not records:
        raise UserError(f"{source}: the dataset is empty")
    return records


def read_file(path: Path) -> list[dict[str, Any]]:
    """Records of one data file, read by its suffix: .parquet, .csv, .json (an array), else JSON Lines."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise not_a_data_file(path)
    if not path.is_file():
        raise UserError(f"dataset file {path} does not exist")
    readers = {".parquet": read_parquet, ".csv": read_csv, ".json": read_json}
    return readers.get(path.suffix.lower(), read_jsonl)(path)


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk``: a DatasetDict's or a single Dataset's."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def saved_splits(path: Path) -> list[str]:
    """The splits of a saved DatasetDict; a single saved Dataset is the ``train`` split."""
    index = path / "dataset_dict.json"
    if not index.is_file():
        return ["train"]
    try:
        splits = json.loads(index.read_text(encoding="utf-8"))["splits"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{index}: expected the JSON that save_to_disk writes, with a 'splits' list") from None
    return [str(s) for s in splits]


def read_saved_dataset(path: Path, split: str) -> tuple[list[dict[str, Any]], str]:
    splits = saved_splits(path)
    if split not in splits:
        have = ", ".join(splits) or "none"
        raise UserError(f"{path}: expected a '{split}' split in the saved dataset, found splits: {have}")
    datasets = _require("datasets", f"{path}: reading a dataset saved with save_to_disk")
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types; the user needs one line
        raise UserError(f"{path}: could not load the saved dataset ({_first_line(exc)})") from None
    source = path
    if isinstance(ds, datasets.DatasetDict):
        ds, source = ds[split], path / split
    return table_records(ds.to_list(), source), str(source)


SPLIT_SUFFIXES = (".jsonl", ".parquet", ".json", ".csv")


def split_file(folder: Path, split: str) -> Path | None:
    """``{split}.jsonl`` (or .parquet, .json, .csv) in ``folder``: the first that exists."""
    return next((folder / f"{split}{s}" for s in SPLIT_SUFFIXES if (folder / f"{split}{s}").is_file()), None)


def looks_like_path(source: str) -> bool:
    return source.endswith(SPLIT_SUFFIXES) or source.startswith((".", "/", "~")) or Path(source).exists()


def has_split(source: str, split: str) -> bool:
    """Whether a local folder (of files or a saved DatasetDict) holds ``split``; never for a hub id."""
    path = Path(source).expanduser()
    if not path.is_dir():
        return False
    return split in saved_splits(path) if is_saved_dataset(path) else split_file(path, split) is not None


def not_a_data_file(source: Any) -> UserError:
    return UserError(
        f"--dataset {source}: not a regular file (a device, pipe or socket); expected a data file or folder"
    )


def check_dataset_path(source: str) -> None:
    """A --dataset that names a local path exists as a file or folder (a hub id is checked on load)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return
    if looks_like_path(source) or path.exists():
        if path.exists() and not path.is_file():
            raise not_a_data_file(source)
        if not path.exists():
            raise UserError(f"dataset file {path} does not exist")


def load_records(source: str, split: str = "train") -> tuple[list[dict[str, Any]], str]:
    """Records of ``split`` from a data file, a folder holding ``{split}.jsonl`` (or .parquet, .json,
    .csv), a folder written by ``save_to_disk``, or a hub dataset id."""
    path = Path(source).expanduser()
    if path.is_dir() and is_saved_dataset(path):
        return read_saved_dataset(path, split)
    if path.is_dir():
        file = split_file(path, split)
        if file is None:
            names = ", ".join(f"{split}{s}" for s in SPLIT_SUFFIXES)
            raise UserError(f"{path}: expected {names} in the folder, or a dataset saved with save_to_disk")
        return read_file(file), str(file)
    if looks_like_path(source):
        return read_file(path), str(path)
    datasets = _require("datasets", f"--dataset {source}: not a local file; loading hub datasets")
    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as exc:  # the hub client raises many types; the user needs one line
        raise UserError(
            f"--dataset {source}: could not load split '{split}' from the hub: {_first_line(exc)}"
        ) from None
    return [dict(r, _line=i + 1) for i, r in enumerate(ds)], source


def _require(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs: pip install 'posttrain-catalog[datasets]'") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


# --- checking -----------------------------------------------------------------------------------


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


def with_implicit_prompts(records: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Preference records with no ``prompt`` whose ``chosen`` and ``rejected`` are conversations get
    their shared leading messages as ``prompt`` (TRL's implicit prompt, as its ``extract_prompt``)."""
    return [split_implicit_prompt(r, source) if _is_implicit(r) else r for r in records]


def _is_implicit(record: dict[str, Any]) -> bool:
    convs = [record.get("chosen"), record.get("rejected")]
    return "prompt" not in record and all(isinstance(c, list) and c and isinstance(c[0], dict) for c in convs)


def split_implicit_prompt(record: dict[str, Any], source: str) -> dict[str, Any]:
    check_value(record, "chosen", source)
    check_value(record, "rejected", source)
    chosen, rejected = record["chosen"], record["rejected"]
    n = shared_prefix_length(chosen, rejected)
    where = f"{source}:{record.get('_line', '?')}"
    if n == 0:
        raise UserError(
            f"{where}: 'chosen' and 'rejected' share no leading messages: with no 'prompt' column, "
            "expected two conversations that start with the same prompt messages"
        )
    roles = [c[n]["role"] if n < len(c) else "nothing" for c in (chosen, rejected)]
    if roles != ["assistant", "assistant"]:
        raise UserError(
            f"{where}: after the {n} messages 'chosen' and 'rejected' share, expected each to go on with an "
            f"assistant message, found {roles[0]} and {roles[1]}"
        )
    return {**record, "prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}


def shared_prefix_length(a: list[dict], b: list[dict]) -> int:
    """How many leading messages two conversations share (same role and content)."""
    n = 0
    while n < min(len(a), len(b)) and (a[n]["role"], a[n]["content"]) == (b[n]["role"], b[n]["content"]):
        n += 1
    return n


HELDOUT_SPLIT_SEED = 1234  # the split of a single file: the same for every --seed, as README says


def split_heldout(
    records: list[dict], source: Any = "the dataset", share: float = 0.05, cap: int = 200
) -> tuple[list[dict], list[dict]]:
    """A fixed train / held-out split of a single file (at least one record each), independent of
    the run's seed, so runs with different seeds are measured on the same held-out problems."""
    if len(records) < 2:
        count = f"{len(records)} record" + ("" if len(records) == 1 else "s")
        raise UserError(
            f"{source}: {count}: too few to split off a held-out set; expected at least 2 "
            "(or a folder with train and test files)"
        )
    order = list(range(len(records)))
    random.Random(HELDOUT_SPLIT_SEED).shuffle(order)
    n_eval = max(1, min(cap, int(len(records) * share)))
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


def check_loss_tokens(examples: list[dict], records: list[dict], source: str) -> None:
    """Tokenized training examples must have tokens to learn (completion_mask 1): none at all is an
    error, some without is a warning (each such record adds nothing to the loss)."""
    empty = [r for e, r in zip(examples, records, strict=True) if not any(e["completion_mask"])]
    if not empty:
        return
    why = "no assistant turn, an empty completion, or a prompt longer than max_length"
    where = f"{source}:{empty[0].get('_line', '?')}"
    if len(empty) == len(examples):
        raise UserError(f"{where}: no training record has a token to learn ({why}); nothing to train on")
    from posttrain.console import warn

    warn(f"{where}: {len(empty)} of {len(examples)} training records have no token to learn ({why})")


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

    With no --dataset: the registered default task (``posttrain.sources``: the embedded addition
    task). Else the ``train`` split's records, with the ``test`` split (a folder's ``test.jsonl`` or
    ``test.parquet``, a saved DatasetDict's ``test``) as held-out set when there is one, or else a
    fixed 5% split.
    """
    if ctx.dataset is None:
        from posttrain.sources import default_task

        task = default_task()

        if kind == "sft":
            return task.sft_examples(n_train, ctx.seed), task.sft_examples(n_eval, EVAL_SEED, "test"), task.name
        if kind == "preference":
            return task.preference_pairs(n_train, ctx.seed), task.preference_pairs(n_eval, EVAL_SEED, "test"), task.name
        return task.prompts(n_train, ctx.seed, "train"), task.prompts(n_eval, EVAL_SEED, "test"), task.name
    records, source = load_records(ctx.dataset, "train")
    records = checked_records(records, kind, source)
    if has_split(ctx.dataset, "test"):
        heldout, heldout_source = load_records(ctx.dataset, "test")
        return records, checked_records(heldout, kind, heldout_source)[:n_eval], source
    train, heldout = split_heldout(records, source)
    return train, heldout[:n_eval], source


def checked_records(records: list[dict], kind: str, source: str) -> list[dict]:
    """``records`` in one of FORMATS[kind] (implicit preference prompts made explicit), or a clear error."""
    if kind == "preference":
        records = with_implicit_prompts(records, source)
    check_format(records, kind, source)
    return records
