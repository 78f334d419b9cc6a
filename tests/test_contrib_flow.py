"""A contribution played end to end in a temporary copy of the repository, and a broken one.

The first test does what CONTRIBUTING.md tells a newcomer to do: `catalog new` (offline: the arXiv
API is unreachable), validate, see the scaffold fail smoke, write a small real loss, its tests and
its plugin, register it, link the entry, validate, smoke, record a run with tools/record_run.py and
build the site with the method's page. The second submits broken files and checks the messages a
contributor sees.

"Registering" is what `pip install -e .` would do, done in-process so the test environment is not
touched: the copy's plugin folder is added to ``posttrain_plugins.__path__`` and a distribution's
metadata declaring the new entry point is put on ``sys.path``; discovery then finds it through
``importlib.metadata`` like any installed plugin.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from posttrain.cli.scaffold import TODO

REPO = Path(__file__).resolve().parents[1]
ARXIV = "2510.00042"  # not in catalog/papers: the scaffold writes its record
UNREACHABLE = "http://127.0.0.1:9/api/query"
SMOKE_SETS = ["max_steps=2", "train_examples=32", "eval_examples=16", "batch_size=8", "log_every=1"]

PLUGIN = '''"""Toy Margin: a hinge on the log-probability margin of preference pairs.

Paper: Ada Lovelace, Alan Turing, 2025, "A Margin Loss for Preference Learning", arXiv:2510.00042.
Catalog entry: catalog/methods/toy-margin.yaml.

    catalog run toy-margin

Data: ``prompt`` + ``chosen`` + ``rejected``.

Deviations from the paper:
1. None; this method exists only to test the contribution path.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.config import TrainingConfig
from posttrain.data import batch_indices, pad_sequences, task_records, tokenize_preference
from posttrain.hf import load_policy, lora_settings
from posttrain.logprobs import sequence_logprobs, split_pairs
from posttrain.training.trainer import finish, loop_settings, train_loop


class Config(TrainingConfig):
    delta: float = Field(1.0, gt=0, description="δ, the margin the chosen log-prob must clear (Eq. 1).")


def toy_margin_loss(chosen: torch.Tensor, rejected: torch.Tensor, delta: float) -> torch.Tensor:
    """Per-pair max(0, δ − (chosen − rejected)); inputs are summed log-probs, shape (B,)."""
    return torch.clamp(delta - (chosen - rejected), min=0.0)


def run(cfg: Config, ctx: RunContext) -> RunResult:
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    train_records, heldout_records, source = task_records(ctx, "preference", cfg.train_examples, cfg.eval_examples)
    train = [tokenize_preference(r, tokenizer, cfg.max_length) for r in train_records]
    heldout = [tokenize_preference(r, tokenizer, cfg.max_length) for r in heldout_records]

    def batch(pairs):
        return pad_sequences([c for c, _ in pairs] + [r for _, r in pairs], tokenizer.pad_token_id, ctx.device)

    @torch.no_grad()
    def evaluate():
        chosen, rejected = split_pairs(sequence_logprobs(policy, batch(heldout))[0])
        return {"margin_accuracy": (chosen > rejected).float().mean().item()}

    before = evaluate()

    def loss_fn(step: int, micro: int):
        idx = batch_indices(len(train), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        b = batch([train[i] for i in idx])
        chosen, rejected = split_pairs(sequence_logprobs(policy, b)[0])
        loss = toy_margin_loss(chosen, rejected, cfg.delta).mean()
        return loss, {"margin": (chosen - rejected).mean().item(), "tokens": int(b["attention_mask"].sum())}

    loop = train_loop(policy, ctx, loop_settings(cfg), loss_fn, description=f"toy-margin on {source}")
    return finish(ctx, policy, tokenizer, loop, before, evaluate(), data=source)


plugin = Plugin(
    id="toy-margin",
    config=Config,
    run=run,
    summary="A hinge on the log-probability margin.",
    smoke={"max_steps": 2, "train_examples": 32, "eval_examples": 16, "batch_size": 8, "log_every": 1},
)
'''

TESTS = '''import pytest

torch = pytest.importorskip("torch")

from posttrain_plugins.toy_margin import toy_margin_loss  # noqa: E402


def test_toy_margin_loss_hand_worked_example():
    """δ=1: margins 3, 0.5, -1 give losses max(0, 1-3)=0, 1-0.5=0.5, 1+1=2."""
    chosen, rejected = torch.tensor([-1.0, -2.0, -4.0]), torch.tensor([-4.0, -2.5, -3.0])
    assert toy_margin_loss(chosen, rejected, 1.0).tolist() == [0.0, 0.5, 2.0]


def test_toy_margin_loss_limiting_case():
    """Equal log-probs cost exactly δ."""
    assert toy_margin_loss(torch.zeros(2), torch.zeros(2), 0.25).tolist() == [0.25, 0.25]
'''

ENTRY = """id: toy-margin
name: Toy Margin
family: preference-optimization
summary: A hinge on the log-probability margin between the chosen and the rejected response.
description: |
  Trains on preference pairs with a hinge loss on the difference of their summed log-probabilities.
objective: |
  \\mathcal{L} = \\max\\big(0,\\ \\delta - \\log\\pi_\\theta(y_w\\mid x) + \\log\\pi_\\theta(y_l\\mid x)\\big)
papers:
  - arxiv-2510-00042-2025
plugin: toy-margin
status: experimental
status_note: Written by a test of the contribution path.
defaults:
  delta: {value: 1.0, source: "Eq. 1"}
metrics:
  - {name: loss, description: The hinge loss.}
  - {name: margin, description: Mean chosen minus rejected log-prob.}
tags: [preference]
"""

PAPER = f"""id: arxiv-2510-00042-2025
title: A Margin Loss for Preference Learning
authors: [Ada Lovelace, Alan Turing]
date: 2025-10
arxiv: '{ARXIV}'
"""


def copy_repository(dest: Path) -> Path:
    patterns = shutil.ignore_patterns(
        ".venv", ".git", "build", "__pycache__", ".ruff_cache", ".pytest_cache", "*.egg-info"
    )

    def ignore(folder: str, names: list[str]) -> set[str]:
        # the checkout's own runs/ output folder stays out; committed reports/runs/ come along (entries cite them)
        top_level_runs = {"runs"} if Path(folder) == REPO and "runs" in names else set()
        return set(patterns(folder, names)) | top_level_runs

    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def load_by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch) -> Path:
    root = copy_repository(tmp_path / "repo")
    monkeypatch.chdir(root)
    monkeypatch.setenv("POSTTRAIN_ARXIV_API", UNREACHABLE)
    return root


@pytest.fixture
def register(monkeypatch, tmp_path):
    """Make a plugin of the copy discoverable through its entry point (what `pip install -e .` does)."""
    import posttrain_plugins
    from posttrain import registry

    builtins = sorted(registry.discover())

    def install(root: Path, name: str, module: str) -> None:
        info = tmp_path / "site-packages" / "toy_contrib-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-contrib\nVersion: 0.0\n")
        (info / "entry_points.txt").write_text(f"[posttrain.plugins]\n{name} = posttrain_plugins.{module}:plugin\n")
        monkeypatch.syspath_prepend(str(info.parent))
        monkeypatch.setattr(
            posttrain_plugins, "__path__", [*posttrain_plugins.__path__, str(root / "plugins" / "posttrain_plugins")]
        )
        monkeypatch.delenv("POSTTRAIN_BUILTIN_ONLY", raising=False)
        monkeypatch.setenv("POSTTRAIN_PLUGINS", ",".join([*builtins, name]))
        registry.discover.cache_clear()

    yield install
    registry.discover.cache_clear()
    for name in [m for m in sys.modules if m.startswith("posttrain_plugins.toy_")]:
        del sys.modules[name]


def test_a_whole_contribution(checkout: Path, cli, register, tmp_path: Path) -> None:
    # 1. scaffold, offline: the entry validates at once and says what is left to do
    code, out = cli("new", "toy-margin", "--family", "preference-optimization", "--paper", ARXIV)
    assert code == 0, out
    assert "were not fetched" in out and "pip install -e ." in out
    plugin_file = checkout / "plugins" / "posttrain_plugins" / "toy_margin.py"
    entry_file = checkout / "catalog" / "methods" / "toy-margin.yaml"
    paper_file = checkout / "catalog" / "papers" / "arxiv-2510-00042-2025.yaml"
    test_file = checkout / "tests" / "test_toy_margin.py"
    assert all(p.is_file() for p in (plugin_file, entry_file, paper_file, test_file))
    code, out = cli("validate", str(entry_file))
    assert code == 0, out

    # 2. the scaffold is visibly unfinished: smoke fails and says what to write; placeholders are listed
    code, out = cli("smoke", str(plugin_file), "--device", "cpu", "--report", str(tmp_path / "smoke0.json"))
    assert code == 1
    [failed] = json.loads((tmp_path / "smoke0.json").read_text())
    assert "is not written yet: fill in toy_margin_loss() and run()" in failed["detail"]
    placeholders = load_by_path("check_placeholders_copy", checkout / "tools" / "check_placeholders.py")
    left = {f for f, _, _ in placeholders.placeholders(checkout)}
    assert left == {
        "catalog/methods/toy-margin.yaml",
        "catalog/papers/arxiv-2510-00042-2025.yaml",
        "plugins/posttrain_plugins/toy_margin.py",
        "tests/test_toy_margin.py",
    }

    # 3. write the loss, its tests and the plugin; register it (pip install -e .)
    plugin_file.write_text(PLUGIN)
    test_file.write_text(TESTS)
    paper_file.write_text(PAPER)
    register(checkout, "toy-margin", "toy_margin")
    tests = load_by_path("test_toy_margin_copy", test_file)
    tests.test_toy_margin_loss_hand_worked_example()
    tests.test_toy_margin_loss_limiting_case()

    # registered while the entry still says plugin: null -> validation says what to change
    code, out = cli("validate", str(checkout / "catalog"))
    assert code == 2
    assert (
        "catalog/methods/toy-margin.yaml:15: plugin: registered plugin 'toy-margin' (toy-contrib) is not linked" in out
    )

    # 4. link the entry: everything validates, no placeholder is left
    entry_file.write_text(ENTRY)
    code, out = cli("validate", str(checkout / "catalog"))
    assert code == 0, out
    assert placeholders.placeholders(checkout) == []

    # 5. smoke it by name, then record a run the way CONTRIBUTING.md says
    code, out = cli("smoke", "toy-margin", "--device", "cpu", "--report", str(tmp_path / "smoke1.json"))
    assert code == 0, out
    assert json.loads((tmp_path / "smoke1.json").read_text())[0]["ok"]
    record_run = load_by_path("record_run_copy", checkout / "tools" / "record_run.py")
    run_dir = tmp_path / "run"
    assert record_run.main(["toy-margin", "--keep", str(run_dir), *[a for s in SMOKE_SETS for a in ("--set", s)]]) == 0
    report = json.loads((checkout / "reports" / "runs" / "toy-margin.json").read_text())
    assert set(report["before"]) == set(report["after"]) == {"margin_accuracy"}
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*rows)
    assert {m["name"] for m in yaml.safe_load(ENTRY)["metrics"]} <= logged

    # 6. the method's page renders, with the objective, the config table, the docstring and the result
    sitebuild = load_by_path("sitebuild_flow", REPO / "tests" / "site_fixtures" / "sitebuild.py")
    out_dir = sitebuild.build_site(tmp_path / "site", catalog=checkout / "catalog", reports=checkout / "reports")
    page = (out_dir / "methods" / "toy-margin.html").read_text(encoding="utf-8")
    assert "catalog run toy-margin" in page and '<div class="arithmatex">' in page
    assert "<code>delta</code>" in page and "the margin the chosen log-prob must clear" in page
    assert "this method exists only to test the contribution path" in page
    assert "A Margin Loss for Preference Learning" in page and "margin_accuracy" in page


BROKEN_SCHEMA = """id: toy-margin
name: Toy Margin
family: preference-optimization
summary: A hinge on the log-probability margin
sumary: A typo of a field name.
description: Trains on preference pairs.
objective: x
papers:
  - arxiv-2510-00042-2025
plugin: null
status: catalogued
"""

BROKEN_REFERENCES = """id: toy-margin
name: Toy Margin
family: preference-optimisation
summary: A hinge on the log-probability margin.
description: Trains on preference pairs.
objective: x
papers:
  - toy-margin-2025
plugin: null
status: catalogued
related: [dpo]
"""


def test_a_broken_contribution_gets_file_line_messages(checkout: Path, cli) -> None:
    code, out = cli("new", "toy-margin", "--family", "preference-optimization", "--paper", ARXIV, "--entry-only")
    assert code == 0, out
    entry = checkout / "catalog" / "methods" / "toy-margin.yaml"
    catalog = str(checkout / "catalog")

    # a first submission with schema mistakes: each is named with its line
    entry.write_text(BROKEN_SCHEMA)
    code, out = cli("validate", catalog)
    assert code == 2
    assert "catalog/methods/toy-margin.yaml:4: summary: summary should end with a period" in out
    assert "catalog/methods/toy-margin.yaml:5: sumary: unknown field (check the spelling; see `catalog schema`)" in out
    code, out = cli("validate", catalog, "--format", "github")
    assert code == 2
    assert "::error file=catalog/methods/toy-margin.yaml,line=5,title=sumary::unknown field" in out

    # fixed, but its references are wrong: unknown family (with a suggestion), paper id, one-way related link
    entry.write_text(BROKEN_REFERENCES)
    code, out = cli("validate", catalog)
    assert code == 2
    assert (
        "catalog/methods/toy-margin.yaml:3: family: unknown family 'preference-optimisation' (not in taxonomy.yaml)"
        in out
    )
    assert (
        "catalog/methods/toy-margin.yaml:8: papers.0: unknown paper id 'toy-margin-2025' "
        "(no papers/toy-margin-2025.yaml)" in out
    )
    assert "catalog/methods/toy-margin.yaml:11: related.0: 'dpo' does not list 'toy-margin' in its related" in out

    # a YAML syntax error points at its line; a paper record missing its date too
    entry.write_text("id: toy-margin\nname: [Toy\n")
    code, out = cli("validate", catalog)
    assert code == 2 and "catalog/methods/toy-margin.yaml:3: (yaml): invalid YAML" in out
    entry.unlink()
    paper = checkout / "catalog" / "papers" / "arxiv-2510-00042-2025.yaml"
    paper.write_text(f"id: arxiv-2510-00042-2025\ntitle: A Margin Loss\narxiv: '{ARXIV}'\n")
    code, out = cli("validate", catalog, "--format", "github")
    assert code == 2
    assert (
        "::error file=catalog/papers/arxiv-2510-00042-2025.yaml,line=1,title=(entry)::date is required "
        "(only repositories may leave it out)" in out
    )

    # a plugin file with a syntax error is a one-line error with its line, not a traceback
    broken = checkout / "mine.py"
    broken.write_text('"""A fork."""\n\ndef run(cfg, ctx)\n    pass\n')
    code, out = cli("run", str(broken))
    assert code == 2 and f"{broken}:3: syntax error: expected ':'" in out

    # placeholders left in a submission are listed with file:line, as GitHub annotations in CI
    scaffolded = load_by_path("check_placeholders_copy2", checkout / "tools" / "check_placeholders.py")
    code = scaffolded.main(["--repo", str(checkout), "--format", "github"])
    assert code == 0  # the broken entry is gone and the paper was rewritten
    paper.write_text(f"id: arxiv-2510-00042-2025\ntitle: '{TODO}: title'\ndate: 2025-10\narxiv: '{ARXIV}'\n")
    assert scaffolded.placeholders(checkout) == [
        ("catalog/papers/arxiv-2510-00042-2025.yaml", 2, f"title: '{TODO}: title'")
    ]
