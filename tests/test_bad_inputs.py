"""No tracebacks and no silent nonsense (#23 items 3 and 4): each bad input ends in one line and exit
status 2 (the ``cli`` fixture re-raises anything that is not a UserError), and runs with nothing to
learn from, a tiny held-out set or NaN values say so instead of reporting numbers quietly.

GPT-2-style models (no pad token, no chat template) in sft, dpo and kto: tests/test_architecture_matrix.py
(every matrix plugin on GPT-2, conversational data on a model without a chat template).
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from posttrain.errors import UserError
from posttrain.runs.runner import execute, prepare

EMBEDDED_BASE = Path(__file__).resolve().parents[1] / "src" / "posttrain" / "embedded" / "models" / "base"
FAST = ["--device", "cpu", "--set", "max_steps=1", "--set", "train_examples=16", "--set", "eval_examples=4"]


def _fails(cli, tmp_path, *args: str) -> str:
    """Run ``catalog run ARGS`` in-process; it must end in exit 2 with one line and leave no run folder."""
    out = tmp_path / "runs" / "out"
    code, text = cli("run", *args, "--output-dir", str(out))
    assert code == 2, text
    assert len(text.strip().splitlines()) == 1, text
    assert not (tmp_path / "runs").exists()
    return text


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# --- item 3: one line, exit 2 ------------------------------------------------------------------------


def test_non_utf8_bytes_in_a_dataset(cli, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"prompt": "1+1=", "completion": "2"}\n{"prompt": "1+2=", "completion": "3\xff"}\n')
    assert f"{data}:2: not UTF-8 text (byte 0xff at column 36)" in _fails(cli, tmp_path, "sft", "--dataset", str(data))


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_a_one_record_preference_file(cli, tmp_path, method):
    data = _jsonl(tmp_path / "p.jsonl", [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}])
    text = _fails(cli, tmp_path, method, "--dataset", data, *FAST)
    assert f"{data}: 1 record: too few to split off a held-out set" in text


@pytest.mark.parametrize("option", ["--model", "--dataset"])
def test_an_empty_option_value(cli, tmp_path, option):
    assert f"{option}: expected a name or a path, got an empty string" in _fails(cli, tmp_path, "sft", option, "")


def test_empty_strings_in_records_run_or_stop_with_one_line(cli, tmp_path):
    data = _jsonl(tmp_path / "e.jsonl", [{"prompt": "", "completion": ""}] * 30)
    code, text = cli("run", "sft", "--dataset", data, *FAST, "--output-dir", str(tmp_path / "run"))
    assert code == 0, text


def test_deeply_nested_json(cli, tmp_path):
    data = tmp_path / "n.jsonl"
    data.write_text('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + ', "completion": "x"}\n')
    assert f"{data}:1: JSON nested too deeply" in _fails(cli, tmp_path, "sft", "--dataset", str(data))
    data.write_text("[" * 100_000 + "]" * 100_000)
    array = data.rename(tmp_path / "n.json")
    assert f"{array}: JSON nested too deeply" in _fails(cli, tmp_path, "sft", "--dataset", str(array))


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_out_of_range(cli, tmp_path, seed):
    assert f"--seed {seed}: expected an integer from 0 to 4294967295" in _fails(cli, tmp_path, "sft", "--seed", seed)


def _model_folder(tmp_path: Path, weights: str, data: bytes) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for f in EMBEDDED_BASE.iterdir():
        if f.name != "model.safetensors" and f.suffix in (".json", ".jinja"):
            (folder / f.name).write_bytes(f.read_bytes())
    (folder / weights).write_bytes(data)
    return folder


@pytest.mark.parametrize(
    "data",
    [(EMBEDDED_BASE / "model.safetensors").read_bytes()[:1000], b"garbage" * 500],
    ids=["truncated", "garbage"],
)
def test_a_damaged_safetensors_file_is_named(cli, tmp_path, data):
    folder = _model_folder(tmp_path, "model.safetensors", data)
    text = _fails(cli, tmp_path, "sft", "--model", str(folder), *FAST)
    assert f"{folder / 'model.safetensors'}: not a valid safetensors file, truncated or damaged" in text


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "should-not-exist",))


def test_a_pickle_bin_is_refused_and_never_run(cli, tmp_path):
    import io

    buffer = io.BytesIO()
    torch.save({"model.embed_tokens.weight": _Payload()}, buffer)
    folder = _model_folder(tmp_path, "pytorch_model.bin", buffer.getvalue())
    text = _fails(cli, tmp_path, "sft", "--model", str(folder), *FAST)
    assert f"{folder / 'pytorch_model.bin'}: a pickle holding more than tensors, not loaded" in text
    assert not (Path(__file__).parent / "should-not-exist").exists()


def test_the_disk_filling_while_the_model_is_saved(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full_disk)
    out = tmp_path / "run"
    prepared = prepare("sft", output_dir=out, device="cpu", smoke=True)
    with pytest.raises(
        UserError, match=r"could not save the model to .*model: No space left on device; the run's chec"
    ):
        execute(prepared, progress=False)
    assert (out / "checkpoints").is_dir() and not (out / "model").exists() and not (out / ".tmp-model").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_the_disk_filling_while_a_json_file_is_written(tmp_path, monkeypatch):
    import os

    from posttrain.files import write_json

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(UserError, match=r"could not write .*summary.json: No space left on device"):
        write_json(tmp_path / "summary.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_plugin_file_that_raises_at_import_is_named(cli, tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text("import os\n\nraise RuntimeError('boom')\n")
    assert f"{plugin}:3: failed at import: RuntimeError: boom" in _fails(cli, tmp_path, str(plugin))


def test_a_device_file_as_dataset_gets_an_honest_message(cli, tmp_path):
    text = _fails(cli, tmp_path, "sft", "--dataset", "/dev/null")
    assert "--dataset /dev/null: not a regular file (a device, pipe or socket)" in text


def test_a_missing_reward_model_path_gets_an_honest_message():
    from posttrain.scoring.scorers import load_reward_model

    with pytest.raises(UserError, match=r"reward_model runs/rm/x/model: no such folder, and not a hub model id"):
        load_reward_model("runs/rm/x/model")


def test_errors_reach_the_terminal_as_one_line(tmp_path):
    """The same through the console script's entry point: stderr is one line, exit status 2."""
    res = subprocess.run(
        [sys.executable, "-m", "posttrain", "run", "sft", "--seed", "-1", "--output-dir", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == ["error: --seed -1: expected an integer from 0 to 4294967295"]


# --- item 4: no silent nonsense ---------------------------------------------------------------------


def test_conversations_with_no_assistant_turn_are_an_error(cli, tmp_path):
    data = _jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": f"hi {i}"}]} for i in range(30)])
    assert "no training record has a token to learn" in _fails(cli, tmp_path, "sft", "--dataset", data, *FAST)


def test_a_zero_gradient_warns_then_stops_the_run(tmp_path, capsys):
    from posttrain.interface import RunContext
    from posttrain.training.trainer import NO_SIGNAL_STOP_STEPS, LoopSettings, train_loop

    model = torch.nn.Linear(2, 1)

    def no_reward_variance(step, micro):
        return (model.weight * 0).sum(), {"reward_std": 0.0}

    with pytest.raises(UserError, match=f"stopped at step {NO_SIGNAL_STOP_STEPS}: .*no reward variance"):
        train_loop(
            model, RunContext(output_dir=tmp_path), LoopSettings(max_steps=50, learning_rate=0.1), no_reward_variance
        )
    assert "warning: the gradient has been exactly zero for 5 steps in a row" in capsys.readouterr().err


def test_an_occasional_zero_gradient_does_not_stop_the_run(tmp_path):
    from posttrain.interface import RunContext
    from posttrain.training.trainer import LoopSettings, train_loop

    model = torch.nn.Linear(2, 1)

    def every_other_step(step, micro):
        return (model.weight * (step % 2)).sum(), {}

    loop = train_loop(
        model, RunContext(output_dir=tmp_path), LoopSettings(max_steps=45, learning_rate=0.1), every_other_step
    )
    assert loop.step == 45


def test_a_loss_that_saturates_after_learning_is_warned_about_not_stopped(tmp_path, capsys):
    """A hinge that met its margin has a zero gradient too, after steps that had one: the run ends."""
    from posttrain.interface import RunContext
    from posttrain.training.trainer import LoopSettings, train_loop

    model = torch.nn.Linear(2, 1)

    def saturating(step, micro):
        return (model.weight * (step < 3)).sum(), {}

    loop = train_loop(model, RunContext(output_dir=tmp_path), LoopSettings(max_steps=40, learning_rate=0.1), saturating)
    assert loop.step == 40
    assert "the weights no longer change" in capsys.readouterr().err


def test_the_heldout_size_is_recorded_and_a_small_one_warned(tmp_path):
    from rich.console import Console

    rows = [{"prompt": f"{i}+1=", "completion": str(i + 1), "answer": str(i + 1)} for i in range(60)]
    data = _jsonl(tmp_path / "d.jsonl", rows)
    console = Console(record=True, width=200)
    sets = ["max_steps=1", "train_examples=16", "eval_examples=50"]
    execute(
        prepare("sft", output_dir=tmp_path / "run", device="cpu", dataset=data, sets=sets),
        console=console,
        progress=False,
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["heldout_examples"] == 3  # 5% of 60 records
    text = console.export_text()
    assert "warning: the held-out set has only 3 problems (fewer than 50)" in text
    assert f"summary: {tmp_path / 'run' / 'summary.json'}" in text


def test_the_heldout_split_of_a_file_does_not_depend_on_the_seed(tmp_path):
    from posttrain.data import task_records
    from posttrain.interface import RunContext

    data = _jsonl(tmp_path / "d.jsonl", [{"prompt": f"{i}+1=", "completion": str(i + 1)} for i in range(100)])
    splits = [task_records(RunContext(output_dir=tmp_path, seed=s, dataset=data), "sft", 100, 100)[1] for s in (0, 7)]
    assert [r["_line"] for r in splits[0]] == [r["_line"] for r in splits[1]]


def test_nan_in_a_dataset_writes_valid_json_and_the_summary_path_is_right(cli, tmp_path):
    data = tmp_path / "nan.jsonl"
    data.write_text("".join(f'{{"prompt": "1+{i}=", "answer": NaN}}\n' for i in range(30)))
    out = tmp_path / "bon"
    code, text = cli("run", "best-of-n", "--dataset", str(data), "--device", "cpu", "--set", "n=2",
                     "--set", "eval_examples=3", "--output-dir", str(out))  # fmt: skip
    assert code == 0, text
    assert f"summary: {out / 'summary.json'}" in text

    def strict(constant):
        raise ValueError(f"{constant} is not JSON")

    for name in ("predictions.jsonl", "metrics.jsonl", "outcomes.jsonl"):
        for line in (out / name).read_text().splitlines():
            json.loads(line, parse_constant=strict)
    json.loads((out / "summary.json").read_text(), parse_constant=strict)


def test_grpo_with_an_all_zero_reward_stops_instead_of_reporting_loss_zero(tmp_path, capsys):
    from posttrain.training.trainer import NO_SIGNAL_STOP_STEPS

    data = _jsonl(tmp_path / "p.jsonl", [{"prompt": f"{i}+{i}=", "answer": "never"} for i in range(40)])
    sets = ["max_steps=30", "prompts_per_step=1", "num_generations=2", "max_completion_length=4", "eval_examples=2"]
    prepared = prepare("grpo", output_dir=tmp_path / "run", device="cpu", dataset=data, sets=sets)
    with pytest.raises(UserError, match=f"stopped at step {NO_SIGNAL_STOP_STEPS}: .*no reward variance"):
        execute(prepared, progress=False)
    assert "warning: the gradient has been exactly zero" in capsys.readouterr().err
