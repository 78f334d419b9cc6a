"""Every registered plugin runs 2 steps on the tiny model, changes its trainable weights, logs the
catalog's metrics, and leaves a run folder whose model reloads with transformers/peft."""

import json

import pytest
import torch
import yaml

from posttrain.catalog.load import load_catalog
from posttrain.registry import discover, load
from posttrain.runs.runner import execute, prepare
from posttrain.training.trainer import TrainerCallback, observe

pytestmark = pytest.mark.smoke


def _plugins_of_kind(*kinds: str) -> list[str]:
    return sorted(name for name in discover() if load(name).kind in kinds)


class WeightsBeforeAfter(TrainerCallback):
    """The weights when training starts and ends, and which parameters were trainable."""

    def on_start(self, trainer) -> None:
        self.before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        self.trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}

    def on_end(self, trainer) -> None:
        self.after = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("name", _plugins_of_kind("trainer"))
def test_trainer_plugin_smoke(name, tmp_path, monkeypatch):
    prepared = prepare(name, output_dir=tmp_path, smoke=True, device="cpu")
    if prepared.plugin.requires_gpu:  # on CPU it must stop with a one-line error naming the need
        from posttrain.errors import UserError

        with pytest.raises(UserError, match="CUDA GPU"):
            execute(prepared, progress=False)
        return
    captured = WeightsBeforeAfter()
    with observe(captured):
        execute(prepared, progress=False)

    changed = {n for n in captured.before if not torch.equal(captured.before[n], captured.after[n])}
    assert changed, "no parameter changed"
    assert changed <= captured.trainable, "a frozen parameter changed"
    if prepared.config.lora:
        assert all("lora_" in n for n in changed)

    for f in ("config.yaml", "metrics.jsonl", "summary.json", "plot.png"):
        assert (tmp_path / f).is_file(), f
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(isinstance(v, float) and v == v for v in losses)
    _check_catalog_metrics_logged(name, rows)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["plugin"] == name


@pytest.mark.parametrize("name", _plugins_of_kind("inference", "pipeline"))
def test_other_plugin_smoke(name, tmp_path):
    """Inference and pipeline plugins train nothing themselves: they must leave a complete run folder."""
    prepared = prepare(name, output_dir=tmp_path, smoke=True, device="cpu")
    result = execute(prepared, progress=False)
    for f in ("config.yaml", "metrics.jsonl", "summary.json"):
        assert (tmp_path / f).is_file(), f
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == name and result.metrics
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    _check_catalog_metrics_logged(name, rows + [summary, summary.get("after", {})])


def _check_catalog_metrics_logged(name: str, rows: list[dict]) -> None:
    logged = set().union(*rows) if rows else set()
    logged |= {f"eval/{k}" for row in rows for k in row}
    # the plugin's own entry, not one that runs it with other Config values (run_as)
    entry = next(e for e in load_catalog().methods.values() if e.plugin == name and e.run_as is None)
    missing = {m.name for m in entry.metrics} - logged
    assert not missing, f"catalog metrics not logged: {sorted(missing)}"


def test_saved_model_reloads_and_generates_the_same(tmp_path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.generation.decode import generate

    for name, loader in (("sft", AutoModelForCausalLM), ("lora", AutoPeftModelForCausalLM)):
        out = tmp_path / name
        prepared = prepare(name, output_dir=out, smoke=True, device="cpu")
        execute(prepared, progress=False)
        model = loader.from_pretrained(out / "model")
        tok = AutoTokenizer.from_pretrained(out / "model")
        assert (
            generate(model, tok, ["12+30="], max_new_tokens=4)[0]
            == generate(model, tok, ["12+30="], max_new_tokens=4)[0]
        )
