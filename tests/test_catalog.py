"""The shipped catalog validates, and the validator reports every kind of mistake with file:line."""

import shutil
from pathlib import Path

import pytest
import yaml

from posttrain.catalog.load import load_catalog, validate
from posttrain.registry import discover

REPO = Path(__file__).resolve().parents[1]
METHOD_FILES = sorted((REPO / "catalog" / "methods").glob("*.yaml"))


@pytest.mark.parametrize("path", METHOD_FILES, ids=lambda p: p.stem)
def test_each_entry_is_valid(path):
    _, problems = validate(REPO / "catalog", {n: s.distribution for n, s in discover().items()})
    mine = [str(p) for p in problems if p.file.endswith("/" + path.name)]
    assert mine == []


def test_whole_catalog_validates_and_every_plugin_has_an_entry():
    registered = {n: s.distribution for n, s in discover().items()}
    cat, problems = validate(REPO / "catalog", registered)
    assert [str(p) for p in problems] == []
    assert {"sft", "dpo", "lora"} <= set(registered)
    assert {e.plugin for e in cat.methods.values() if e.plugin} >= set(registered)


def test_taxonomy_has_the_three_branches():
    cat = load_catalog(REPO / "catalog")
    assert [b.id for b in cat.taxonomy.branches][:3] == ["fine-tuning", "reinforcement-learning", "test-time-scaling"]


@pytest.fixture
def broken(tmp_path):
    root = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", root)
    return root


def _edit(path: Path, **changes):
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_validator_reports_all_problems_with_file_and_line(broken):
    methods = broken / "methods"
    _edit(methods / "dpo.yaml", family="no-such-family", related=["sft", "nope"])
    _edit(methods / "lora.yaml", aliases=["DPO"])  # alias clashes with dpo's alias
    (methods / "sft.yaml").write_text(
        (methods / "sft.yaml").read_text().replace('arxiv: "2203.02155"', 'arxiv: "22-03"')
    )
    shutil.copy(methods / "lora.yaml", methods / "lora2.yaml")  # file name != id
    (methods / "broken.yaml").write_text("id: broken\nname: [unclosed\n")
    _, problems = validate(broken, {"sft": "x", "dpo": "x", "lora": "x", "ghost": "third-party"})
    text = "\n".join(map(str, problems))
    assert "catalog/methods/dpo.yaml:5: family: unknown family 'no-such-family'" in text
    assert "related.1: unknown method id 'nope'" in text
    assert "catalog/methods/lora.yaml:" in text and "'DPO' is already used by 'dpo'" in text
    assert "catalog/methods/lora2.yaml:1: id: 'lora' must equal the file name 'lora2'" in text
    assert "catalog/methods/broken.yaml:3: (yaml): invalid YAML" in text
    assert "registered plugin 'ghost' (third-party) has no catalog entry" in text
    assert len(problems) >= 6  # malformed arXiv ids: tests/test_validation_errors.py


def test_unknown_field_and_plugin_not_registered(broken):
    _edit(broken / "methods" / "dpo.yaml", plugn="dpo", plugin="dpo-x")
    _, problems = validate(broken, {"sft": "x", "lora": "x"})
    text = "\n".join(map(str, problems))
    assert "plugn: unknown field" in text
    _edit(broken / "methods" / "dpo.yaml", plugn=None)
    data = yaml.safe_load((broken / "methods" / "dpo.yaml").read_text())
    data.pop("plugn")
    (broken / "methods" / "dpo.yaml").write_text(yaml.safe_dump(data))
    _, problems = validate(broken, {"sft": "x", "lora": "x"})
    assert any("'dpo-x' is not a registered plugin" in str(p) for p in problems)


def test_cli_validate_exit_codes(cli, broken):
    code, out = cli("validate", str(REPO / "catalog"))
    assert code == 0 and "ok:" in out
    _edit(broken / "methods" / "dpo.yaml", family="nowhere")
    code, out = cli("validate", str(broken))
    assert code == 2 and "dpo.yaml:5: family: unknown family 'nowhere'" in out
    code, out = cli("validate", str(broken / "methods" / "dpo.yaml"))
    assert code == 2 and "sft.yaml" not in out
