"""--dataset as users have it: parquet, JSON arrays, CSV, folders written by ``datasets``' save_to_disk,
and TRL's conversational shapes (system messages, multi-turn ``messages``, implicit-prompt preference pairs).
Every file here is written by the test, a few records each."""

import json
from types import SimpleNamespace

import pytest

from posttrain.data import load_records, task_records, tokenize_preference, tokenize_sft
from posttrain.embedded.tokenizer import build_tokenizer
from posttrain.errors import UserError
from posttrain.runs.runner import execute, prepare

TINY = ["max_steps=2", "batch_size=4", "eval_examples=4", "log_every=1", "max_new_tokens=2"]
SYSTEM = {"role": "system", "content": "Add."}


def conversation(a: int, b: int, answer: int) -> list[dict]:
    """System, a first exchange, then the question whose answer differs between chosen and rejected."""
    return [
        SYSTEM,
        {"role": "user", "content": "1+1="},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": f"{a}+{b}="},
        {"role": "assistant", "content": str(answer)},
    ]


def implicit_pairs(n: int) -> list[dict]:
    return [{"chosen": conversation(a, 20, a + 20), "rejected": conversation(a, 20, a + 21)} for a in range(10, 10 + n)]


def sft_rows(n: int) -> list[dict]:
    return [{"messages": conversation(a, 30, a + 30)} for a in range(10, 10 + n)]


def write_parquet(path, rows):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def save_dataset_dict(path, splits: dict[str, list[dict]]):
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(str(path))
    return path


def ctx_for(dataset) -> SimpleNamespace:
    return SimpleNamespace(dataset=str(dataset), seed=0)


# --- readers --------------------------------------------------------------------------------------


def test_parquet_folder_uses_its_test_split(tmp_path):
    write_parquet(tmp_path / "train.parquet", [{"prompt": f"{a}+1=", "completion": str(a + 1)} for a in range(8)])
    write_parquet(tmp_path / "test.parquet", [{"prompt": "9+1=", "completion": "10"}])
    train, heldout, source = task_records(ctx_for(tmp_path), "sft", 8, 4)
    assert source == str(tmp_path / "train.parquet") and len(train) == 8
    assert [(r["prompt"], r["completion"], r["_line"]) for r in heldout] == [("9+1=", "10", 1)]


def test_parquet_keeps_message_lists_and_drops_null_cells(tmp_path):
    rows = [{"messages": sft_rows(1)[0]["messages"], "text": None}, {"messages": None, "text": "plain"}]
    records, _ = load_records(str(write_parquet(tmp_path / "d.parquet", rows)))
    assert records[0]["messages"][0] == SYSTEM and "text" not in records[0]
    assert records[1] == {"text": "plain", "_line": 2}


def test_json_array_and_csv(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "1+1=", "completion": "2"}, {"text": "3"}]))
    records, _ = load_records(str(tmp_path / "a.json"))
    assert [r.get("prompt", r.get("text")) for r in records] == ["1+1=", "3"]
    (tmp_path / "a.csv").write_text('prompt,completion\n1+1=,2\n"2,2",4\n')
    records, source = load_records(str(tmp_path / "a.csv"))
    assert records == [
        {"prompt": "1+1=", "completion": "2", "_line": 2},
        {"prompt": "2,2", "completion": "4", "_line": 3},
    ]
    (tmp_path / "bad.json").write_text('[{"text": "a"}, 3]')
    with pytest.raises(UserError, match=r"bad.json: item 2: expected a JSON array of objects, found int"):
        load_records(str(tmp_path / "bad.json"))


def test_saved_dataset_dict_uses_train_and_test(tmp_path):
    path = save_dataset_dict(tmp_path / "saved", {"train": sft_rows(6), "test": sft_rows(2)})
    train, heldout, source = task_records(ctx_for(path), "sft", 6, 4)
    assert source == str(path / "train") and len(train) == 6 and len(heldout) == 2
    assert train[0]["messages"] == conversation(10, 30, 40)


def test_saved_single_dataset_is_the_train_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(sft_rows(6)).save_to_disk(str(tmp_path / "one"))
    train, heldout, source = task_records(ctx_for(tmp_path / "one"), "sft", 6, 4)
    assert source == str(tmp_path / "one") and len(train) + len(heldout) == 6 and len(heldout) == 1


# --- conversational shapes ------------------------------------------------------------------------


def test_multi_turn_loss_covers_every_assistant_turn_only():
    tok = build_tokenizer()
    out = tokenize_sft(sft_rows(1)[0], tok)
    learned = tok.decode([t for t, m in zip(out["input_ids"], out["completion_mask"], strict=True) if m])
    assert learned == "2<|end|>40<|end|>"  # both answers; not the system message, not the user turns


def test_implicit_prompt_is_the_shared_prefix(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in implicit_pairs(2)))
    train, heldout, _ = task_records(ctx_for(data), "preference", 2, 1)
    record = next(r for r in train + heldout if r["_line"] == 1)
    assert record["prompt"] == conversation(10, 20, 30)[:4]  # system, first exchange, the question
    assert record["chosen"] == [{"role": "assistant", "content": "30"}]
    assert record["rejected"] == [{"role": "assistant", "content": "31"}]
    tok = build_tokenizer()
    chosen, _ = tokenize_preference(record, tok)
    assert (
        tok.decode([t for t, m in zip(chosen["input_ids"], chosen["completion_mask"], strict=True) if m]) == "30<|end|>"
    )


# --- bad input: one line naming the file and what was expected ------------------------------------


def test_parquet_missing_columns(tmp_path):
    data = write_parquet(tmp_path / "p.parquet", [{"prompt": "1+1=", "chosen": "2"}])
    with pytest.raises(UserError, match=r"p.parquet:1: missing columns: expected prompt\+chosen\+rejected"):
        task_records(ctx_for(data), "preference", 1, 1)


def test_saved_dataset_without_train_split(tmp_path):
    path = save_dataset_dict(tmp_path / "saved", {"test": sft_rows(2)})
    with pytest.raises(UserError, match=r"saved: expected a 'train' split in the saved dataset, found splits: test$"):
        task_records(ctx_for(path), "sft", 2, 1)


def test_folder_with_no_split_file(tmp_path):
    with pytest.raises(UserError, match=r"expected train.jsonl, train.parquet, train.json, train.csv in the folder"):
        load_records(str(tmp_path))


@pytest.mark.parametrize(
    ("rejected", "message"),
    [
        ([{"role": "user", "content": "other"}, {"role": "assistant", "content": "1"}], "share no leading messages"),
        (conversation(10, 20, 30), "expected each to go on with an assistant message, found nothing and nothing"),
    ],
)
def test_implicit_pairs_that_share_no_prompt(tmp_path, rejected, message):
    rows = [{"chosen": conversation(10, 20, 30), "rejected": rejected}]
    data = write_parquet(tmp_path / "pairs.parquet", rows)
    with pytest.raises(UserError, match=rf"pairs.parquet:1: .*{message}"):
        task_records(ctx_for(data), "preference", 1, 1)


# --- end to end: 2 training steps on such datasets ------------------------------------------------


def test_sft_trains_on_a_saved_dataset_dict(tmp_path):
    path = save_dataset_dict(tmp_path / "saved", {"train": sft_rows(8), "test": sft_rows(4)})
    result = execute(
        prepare("sft", sets=TINY, dataset=str(path), output_dir=tmp_path / "run", device="cpu"), progress=False
    )
    metrics = result.metrics
    assert metrics["steps"] == 2 and metrics["data"] == str(path / "train")
    assert 0 < metrics["after"]["loss"] < float("inf")  # held-out loss on the saved test split


def test_dpo_trains_on_implicit_prompt_parquet(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    write_parquet(folder / "train.parquet", implicit_pairs(8))
    write_parquet(folder / "test.parquet", implicit_pairs(4))
    result = execute(
        prepare("dpo", sets=TINY, dataset=str(folder), output_dir=tmp_path / "run", device="cpu"), progress=False
    )
    assert 0 <= result.metrics["after"]["preference_accuracy"] <= 1
