"""The data formats of the preference plugins beyond plain pairs: KTO's unpaired
``prompt``/``completion``/``label`` (TRL's format) and mDPO's groups of completions."""

import json

import pytest

from posttrain.errors import UserError
from posttrain.runs.runner import execute, prepare

TINY = ["max_steps=2", "batch_size=4", "eval_examples=4", "log_every=1", "max_new_tokens=2"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_kto_reads_trl_unpaired_format(tmp_path):
    rows = [
        {"prompt": f"{a}+{b}=", "completion": str(a + b + (0 if i % 2 else 1)), "label": bool(i % 2)}
        for i, (a, b) in enumerate((a, b) for a in range(10, 16) for b in range(20, 24))
    ]
    folder = tmp_path / "feedback"  # train.jsonl + test.jsonl, as TRL users keep their splits
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows[4:])
    write_jsonl(folder / "test.jsonl", rows[:4])
    result = execute(
        prepare("kto", sets=TINY, dataset=str(folder), output_dir=tmp_path / "run", device="cpu"), progress=False
    )
    after = result.metrics["after"]
    assert 0 <= after["label_auc"] <= 1
    assert "preference_accuracy" not in after  # unpaired held-out data has no pairs


def test_kto_bad_label_is_one_line_error(tmp_path):
    rows = [{"prompt": "1+1=", "completion": "2", "label": True}] * 30 + [
        {"prompt": "1+2=", "completion": "4", "label": "bad"}
    ]
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError, match=r"bad.jsonl:31: label must be true or false"):
        execute(prepare("kto", sets=TINY, dataset=data, output_dir=tmp_path / "run", device="cpu"), progress=False)


def test_mdpo_reads_groups(tmp_path):
    rows = [
        {"prompt": f"{a}+{b}=", "chosen": [str(a + b)], "rejected": [str(a + b + 1), str(a + b - 10), str(a + b + 10)]}
        for a in range(10, 16)
        for b in range(30, 34)
    ]
    data = write_jsonl(tmp_path / "groups.jsonl", rows)
    result = execute(
        prepare("mdpo", sets=TINY, dataset=data, output_dir=tmp_path / "run", device="cpu"), progress=False
    )
    assert 0 <= result.metrics["after"]["preference_accuracy"] <= 1
