"""Security: safe YAML only, catalog plugin names resolve only through entry points, trust_remote_code
off by default, checkpoints cannot run code, and model-written code runs in a limited sandbox."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

from posttrain.errors import UserError
from posttrain.scoring.sandbox import code_execution_reward, extract_code, outputs_match, run_untrusted

REPO = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for folder in ("src", "plugins", "tools", "site")
    if (REPO / folder).is_dir()
    for p in (REPO / folder).rglob("*.py")
    if ".venv" not in p.parts
]
SAFE_LOADER = re.compile(r"yaml\.load\([^)]*Loader=(_Loader|yaml\.SafeLoader|yaml\.CSafeLoader|SafeLoader)\)")


# --- YAML -----------------------------------------------------------------------------------------


def test_yaml_is_only_loaded_safely():
    assert len(SOURCES) > 20
    offenders = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"yaml\.(load|load_all|full_load|unsafe_load|unsafe_load_all|full_load_all)\(", text):
            line = text[m.start() : text.index("\n", m.start())]
            if not SAFE_LOADER.search(line):
                offenders.append(f"{path.relative_to(REPO)}: {line.strip()}")
        for name in ("UnsafeLoader", "FullLoader", "yaml.Loader"):
            if re.search(rf"\b{re.escape(name)}\b", text):
                offenders.append(f"{path.relative_to(REPO)}: uses {name}")
    assert not offenders, offenders


def test_catalog_loader_is_a_safe_loader():
    from posttrain.catalog import load as catalog

    assert issubclass(catalog._Loader, yaml.SafeLoader) or catalog._Loader.__name__ == "CSafeLoader"


def test_python_tags_in_yaml_are_not_executed(tmp_path):
    from posttrain.runs.runner import read_run_file

    marker = tmp_path / "pwned"
    evil = tmp_path / "run.yaml"
    evil.write_text(f'max_steps: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(UserError, match="invalid YAML"):
        read_run_file(evil)
    assert not marker.exists()


def test_python_tags_in_a_catalog_entry_are_a_validation_problem(tmp_path, repo):
    from posttrain.catalog.load import validate

    root = tmp_path / "catalog"
    shutil.copytree(repo / "catalog", root)
    marker = tmp_path / "pwned"
    entry = root / "methods" / "sft.yaml"
    entry.write_text(entry.read_text() + f'\nextra: !!python/object/apply:os.system ["touch {marker}"]\n')
    _, problems = validate(root)
    assert any(p.file.endswith("methods/sft.yaml") and "invalid YAML" in p.message for p in problems)
    assert not marker.exists()


# --- plugin names -----------------------------------------------------------------------------------


def test_a_module_path_as_plugin_name_is_rejected_and_never_imported(tmp_path, repo, monkeypatch, cli):
    import importlib

    from posttrain.catalog.load import validate
    from posttrain.registry import discover

    root = tmp_path / "catalog"
    shutil.copytree(repo / "catalog", root)
    registered_names = set(discover())
    catalogued = sorted(p.stem for p in (root / "methods").glob("*.yaml") if p.stem not in registered_names)
    method = catalogued[0]  # an entry without a plugin of its own name, so only the catalog can name one
    entry = root / "methods" / f"{method}.yaml"
    text = entry.read_text()
    text = re.sub(r"^plugin: .*$", "plugin: os:system", text, flags=re.M)
    text = re.sub(r"^status: .*$", "status: experimental", text, flags=re.M)
    entry.write_text(text)

    imported = []
    real_import = importlib.import_module
    monkeypatch.setattr(
        importlib, "import_module", lambda name, *a, **k: imported.append(name) or real_import(name, *a, **k)
    )

    registered = {name: spec.distribution for name, spec in discover().items()}
    _, problems = validate(root, registered)
    assert any(p.file.endswith(f"methods/{method}.yaml") and p.field == "plugin" for p in problems), problems

    monkeypatch.setenv("POSTTRAIN_CATALOG", str(root))
    code, out = cli("run", method, "--output-dir", str(tmp_path / "run"))
    assert code == 2 and "no plugin named 'os:system'" in out
    assert "os" not in imported and not (tmp_path / "run").exists()


# --- trust_remote_code ------------------------------------------------------------------------------


def test_trust_remote_code_is_off_unless_passed(tmp_path, monkeypatch):
    import transformers

    from posttrain import hf
    from posttrain.runs.runner import prepare

    seen = []

    def fake(source, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    for passed in (False, True):
        prepared = prepare("sft", output_dir=tmp_path / str(passed), device="cpu", trust_remote_code=passed)
        assert prepared.ctx.trust_remote_code is passed
        with pytest.raises(UserError, match="could not load the tokenizer"):
            hf.load_policy(prepared.ctx)
    assert seen == [False, True]


def test_no_source_hard_codes_trust_remote_code():
    hits = [str(p) for p in SOURCES if re.search(r"trust_remote_code\s*=\s*True", p.read_text(encoding="utf-8"))]
    assert not hits


# --- checkpoints cannot run code --------------------------------------------------------------------


def test_a_pickled_payload_in_a_checkpoint_is_not_executed(tmp_path):
    import json
    import pickle

    from posttrain.files import file_sha256
    from posttrain.training.trainer import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    ckpt = tmp_path / "step-0000001"
    ckpt.mkdir()
    with (ckpt / "state.pt").open("wb") as fh:
        pickle.dump({"step": 1, "model": Payload()}, fh, protocol=2)
    (ckpt / "manifest.json").write_text(json.dumps({"step": 1, "sha256": file_sha256(ckpt / "state.pt")}))
    with pytest.raises(UserError, match="could not be read"):
        load_checkpoint(ckpt, None, None, None)
    assert not (tmp_path / "pwned").exists()


# --- sandbox ----------------------------------------------------------------------------------------


def test_sandbox_runs_code_with_stdin():
    result = run_untrusted("print(int(input()) * 2)", "21", timeout=10)
    assert result.ok and result.stdout == "42\n"


def test_sandbox_reports_errors_without_raising():
    result = run_untrusted("raise ValueError('boom')", timeout=10)
    assert result.returncode == 1 and "ValueError: boom" in result.stderr and not result.timed_out


def test_sandbox_kills_an_endless_loop():
    result = run_untrusted("while True: pass", timeout=1.0)
    assert result.timed_out and not result.ok and result.returncode is None  # killed, not exited


def test_sandbox_refuses_fork_exec_and_sockets():
    for code in (
        "import os; os.fork()",
        "import os; os.system('true')",
        "import subprocess; subprocess.run(['true'])",
        "import socket; socket.socket()",
        "import ctypes",
    ):
        result = run_untrusted(code, timeout=10)
        assert not result.ok, code
        assert "not allowed" in result.stderr or "Error" in result.stderr, (code, result.stderr)


def test_sandbox_sets_resource_limits():
    code = "print(open('/proc/self/limits').read())"
    limits = run_untrusted(code, timeout=10, memory_mb=256).stdout
    rows = {line[:26].strip(): line[26:].split() for line in limits.splitlines()[1:]}
    assert rows["Max processes"][:2] == ["0", "0"]
    assert rows["Max address space"][0] == str(256 * 1024 * 1024)
    assert rows["Max open files"][0] == "32"
    assert rows["Max cpu time"][0] == "10"


def test_sandbox_memory_limit_stops_a_huge_allocation():
    result = run_untrusted("x = bytearray(2_000_000_000)", timeout=10, memory_mb=256)
    assert not result.ok and "MemoryError" in result.stderr


def test_sandbox_cannot_write_outside_its_folder(tmp_path):
    import os

    target = tmp_path / "outside.txt"
    result = run_untrusted(f"open({str(target)!r}, 'w').write('x')", timeout=10)
    if os.geteuid() == 0:  # dropped to nobody: the test folder is not theirs
        assert not result.ok and not target.exists()
    assert run_untrusted("open('here.txt', 'w').write('x'); print(open('here.txt').read())", timeout=10).ok


def test_code_execution_reward_counts_passed_tests():
    tests = [{"input": "2 3", "output": "5"}, {"input": "10 -4", "output": "6"}, {"input": "1 1", "output": "3"}]
    good = "Here:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert code_execution_reward(good, {"tests": tests}, timeout=10) == pytest.approx(2 / 3)
    assert code_execution_reward("```python\nwhile True: pass\n```", {"tests": tests[:1]}, timeout=1) == 0.0
    assert code_execution_reward(good, {}) == 0.0


def test_extract_code_and_output_matching():
    assert extract_code("a\n```py\nx=1\n```\nb\n```python\ny=2\n```") == "y=2\n"
    assert extract_code("print(1)") == "print(1)"
    assert outputs_match("5\n", "5") and outputs_match("1  2\n3", "1 2 3") and not outputs_match("5", "6")


def test_code_execution_reward_in_the_rewards_registry_shape():
    from posttrain.scoring.sandbox import code_execution_factory

    reward = code_execution_factory(None, "10")
    records = [{"tests": [{"input": "3", "output": "9"}]}] * 2
    completions = ["```python\nn = int(input())\nprint(n * n)\n```", "print(n)"]
    assert reward(["p", "p"], completions, records) == [1.0, 0.0]
    with pytest.raises(UserError, match="has no 'tests'"):
        reward(["p"], ["x"], [{"_line": 4}])
    with pytest.raises(UserError, match="expected a timeout in seconds"):
        code_execution_factory(None, "soon")
