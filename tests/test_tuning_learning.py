"""Learning tests (slow): each fine-tuning / PEFT / distillation plugin, run with its defaults on the
embedded task, improves held-out exact match. The committed evidence is reports/runs/<id>.json
(tools/record_run.py); run these with ``python -m pytest -m slow tests/test_tuning_learning.py``."""

import json

import pytest

from posttrain.runner import execute, prepare

METHODS = [
    "dora",
    "adalora",
    "ia3",
    "adapters",
    "prefix-tuning",
    "p-tuning-v2",
    "prompt-tuning",
    "instruction-tuning",
    "dialogue-tuning",
    "cot-finetuning",
    "completion-only-loss",
    "kd",
    "gkd",
    "distill-step-by-step",
    "cot-distill",
]


# Prompt methods report the bare base as "before" and the untrained prompt as "initial". These
# improve on their initial prompt but end below the bare base (recorded: prompt-tuning 0.074 ->
# 0.734, bare base 0.778), as their status notes say; the others must beat the bare base.
BELOW_BARE_BASE = {"prompt-tuning"}


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_defaults_improve_heldout_exact_match(name, tmp_path):
    execute(prepare(name, output_dir=tmp_path, device="cpu"), progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    start = summary["initial"] if name in BELOW_BARE_BASE else summary["before"]
    assert summary["after"]["exact_match"] > start["exact_match"] + 0.02, summary


# Held-out exact match the distillation defaults reach with the embedded teacher (recorded runs:
# kd 0.866, gkd 0.88, distill-step-by-step 0.836, cot-distill 0.862; the student base is 0.64).
DISTILLATION_FLOOR = {"kd": 0.8, "gkd": 0.8, "distill-step-by-step": 0.78, "cot-distill": 0.8}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DISTILLATION_FLOOR))
def test_distillation_defaults_reach_recorded_accuracy(name, tmp_path):
    execute(prepare(name, output_dir=tmp_path, device="cpu"), progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["after"]["exact_match"] >= DISTILLATION_FLOOR[name], summary
