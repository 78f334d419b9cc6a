"""The embedded models ship as frozen artifacts: loading one never trains, and a missing or altered
file is a one-line error naming it (exit status 2 from the command line)."""

import json
import shutil
import subprocess
import sys

import pytest

from posttrain.embedded import frozen
from posttrain.errors import UserError


def test_every_recipe_ships_intact():
    for name in frozen.RECIPES:
        assert frozen.verify(name) == [], name


def test_loading_never_trains(monkeypatch):
    from posttrain.embedded import model, teacher

    def no_training(*args, **kwargs):
        raise AssertionError("a shipped model was rebuilt")

    monkeypatch.setattr(model, "_pretrain", no_training)
    monkeypatch.setattr(model, "build_reasoning", no_training)
    monkeypatch.setattr(teacher, "_train_teacher", no_training)
    assert model.base_model_dir() == frozen.MODELS_ROOT / "base"
    assert model.reasoning_model_dir() == frozen.MODELS_ROOT / "reasoning"
    assert teacher.teacher_model_dir() == frozen.MODELS_ROOT / "teacher"


def test_build_record_names_recipe_packages_and_hashes():
    record = json.loads((frozen.MODELS_ROOT / "base" / frozen.BUILD_RECORD).read_text())
    assert record["recipe_version"] == frozen.recipe("base").version()
    assert {"torch", "transformers", "tokenizers"} <= set(record["packages"])
    assert "model.safetensors" in record["files"] and "tokenizer.json" in record["files"]
    assert record["checks"]["heldout_exact_match"] > 0


@pytest.fixture
def copied_base(tmp_path, monkeypatch):
    root = tmp_path / "models"
    shutil.copytree(frozen.MODELS_ROOT / "base", root / "base")
    monkeypatch.setattr(frozen, "MODELS_ROOT", root)
    monkeypatch.setattr(frozen, "_verified", set())
    return root / "base"


def test_altered_weights_are_named(copied_base):
    weights = copied_base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"model\.safetensors: sha256 differs"):
        frozen.shipped_dir("base")


def test_missing_file_is_named(copied_base):
    (copied_base / "tokenizer.json").unlink()
    with pytest.raises(UserError, match=r"tokenizer\.json: missing"):
        frozen.shipped_dir("base")


def test_stale_recipe_version_is_named(copied_base, monkeypatch):
    from posttrain.embedded import model

    monkeypatch.setattr(model, "BASE_VERSION", "v999")
    with pytest.raises(UserError, match=r"build\.json: recipe version 'v1', the code expects 'v999'"):
        frozen.shipped_dir("base")


def test_verify_command_exits_2_with_one_line_on_tampering(tmp_path):
    root = tmp_path / "pkg"
    shutil.copytree(frozen.MODELS_ROOT.parents[2], root / "src")  # src/posttrain with its models
    weights = root / "src" / "posttrain" / "embedded" / "models" / "base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    env = {"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-m", "posttrain", "embedded", "verify"], capture_output=True, text=True, env=env
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "model.safetensors: sha256 differs" in res.stderr


def test_list_and_unknown_name_need_no_torch():
    code = (
        "import sys; sys.argv = ['catalog', 'embedded', 'list']\n"
        "from posttrain.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'catalog embedded list imported torch'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "base" in res.stdout and "MB" in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "posttrain", "embedded", "build", "nope", "--output", "x"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "embedded model 'nope': unknown" in res.stderr
