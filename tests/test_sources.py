"""Named model sources and the default task: the embedded package registers them in
posttrain.sources, and the low layers (posttrain.hf, posttrain.data) resolve --model / --dataset
there without importing posttrain.embedded (tests/test_import_contracts.py checks the imports)."""

import pytest

from posttrain import sources
from posttrain.data import task_records
from posttrain.embedded.task import DEFAULT_TASK
from posttrain.errors import UserError
from posttrain.hf import model_source
from posttrain.interface import RunContext


def test_no_model_is_the_embedded_base_and_embedded_names_resolve(tmp_path):
    from posttrain.embedded.model import base_model_dir, reasoning_model_dir

    assert model_source(RunContext(tmp_path)) == str(base_model_dir(seed=0))
    assert model_source(RunContext(tmp_path, model="embedded:reasoning")) == str(reasoning_model_dir(seed=0))
    assert "embedded:reasoning" in sources.named_models("embedded:")


def test_an_unknown_embedded_name_lists_the_registered_ones(tmp_path):
    with pytest.raises(UserError, match="no such embedded model .*embedded:reasoning-s1"):
        model_source(RunContext(tmp_path, model="embedded:nope"))


def test_a_registered_source_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.setitem(sources._MODELS, "mine:tiny", lambda seed=0, console=None: tmp_path / "tiny")
    assert model_source(RunContext(tmp_path, model="mine:tiny")) == str(tmp_path / "tiny")
    assert sources.model_source_for("some/hub-id") is None  # not registered: the caller checks the path


def test_no_dataset_is_the_registered_default_task(tmp_path):
    assert sources.default_task() is DEFAULT_TASK
    train, heldout, name = task_records(RunContext(tmp_path), "prompt", 3, 2)
    assert name == DEFAULT_TASK.name and len(train) == 3 and len(heldout) == 2
