"""``--dtype`` and ``--gradient-checkpointing``: the memory and precision options every trainer takes
(through ``hf.load_policy``), bf16 tested on CPU."""

import json
import subprocess
import sys

import pytest
import torch

from posttrain.errors import UserError
from posttrain.hf import load_policy, lora_settings, weights_dtype
from posttrain.interface import RunContext


def test_dtype_names_and_their_limits():
    assert weights_dtype("auto", "cpu") == torch.float32
    assert weights_dtype("auto", "cuda") == torch.bfloat16
    assert weights_dtype("bf16", "cpu") == torch.bfloat16
    assert weights_dtype("fp32", "cuda") == torch.float32
    with pytest.raises(UserError, match="--dtype fp16: needs a CUDA device"):
        weights_dtype("fp16", "cpu")
    with pytest.raises(UserError, match="--dtype fp8: expected one of"):
        weights_dtype("fp8", "cpu")


def test_bf16_weights_and_checkpointing_with_and_without_lora(tmp_path):
    from posttrain.training.config import TrainingConfig

    model, _ = load_policy(RunContext(output_dir=tmp_path, dtype="bf16", gradient_checkpointing=True))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.model.gradient_checkpointing and not model.config.use_cache
    lora = lora_settings(TrainingConfig(lora=True))
    adapted, _ = load_policy(RunContext(output_dir=tmp_path, gradient_checkpointing=True), lora)
    adapted.train()
    ids = torch.tensor([[5, 6, 7, 8]])
    adapted(input_ids=ids, labels=ids).loss.backward()  # frozen base, checkpointed layers: grads still reach LoRA
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in adapted.named_parameters() if "lora_" in n)


@pytest.mark.parametrize("plugin", ["sft", "dpo"])
def test_trainers_run_in_bf16_with_checkpointing(plugin, tmp_path):
    out = tmp_path / plugin
    sets = ["max_steps=2", "eval_examples=16", "train_examples=32", "batch_size=8"]
    args = [sys.executable, "-m", "posttrain", "run", plugin, "--device", "cpu", "--output-dir", str(out)]
    args += ["--dtype", "bf16", "--gradient-checkpointing", *[a for s in sets for a in ("--set", s)]]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    assert json.loads((out / "model" / "config.json").read_text()).get("dtype") == "bfloat16"


def test_bad_dtype_is_one_line_before_any_work(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "posttrain", "run", "sft", "--dtype", "half", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--dtype half: expected one of auto, bf16, fp16, fp32" in res.stderr


def test_benchmarks_page_shows_the_memory_report():
    """The Benchmarks page's "Memory options" table is reports/benchmarks/memory-options.json."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "reports" / "benchmarks" / "memory-options.json").read_text())
    page = (root / "site" / "docs" / "benchmarks.md").read_text()
    section = page.split("## Memory options", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    shown = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        shown[cells[0]] = cells[1:]
    assert len(shown) == len(report["summary"]["sft"])
    for trainer, first in (("sft", 0), ("dpo", 3)):
        by_option = report["summary"][trainer]
        for (label, cells), option in zip(shown.items(), report["summary"]["sft"], strict=True):
            if option not in by_option:
                assert cells[first] == "n/a", label
                continue
            row = by_option[option]
            assert cells[first : first + 3] == [
                f"{row['peak_mb']:,}",
                f"{row['peak_vs_baseline']:.2f}",
                f"{row['tokens_per_cpu_second']:,}",
            ], label
