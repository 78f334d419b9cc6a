"""Practitioner fields (#21 item 2): filled for the core methods, every claim sourced, mistakes caught.

The schema holds when_to_use, avoid_when, data, compute, failure_modes, results and objective_source;
`catalog validate` checks that each claim's source is a paper record or a committed report, that each
result names a paper and a table/figure/section, and that an objective's source is one of the entry's
papers.

FILLED_CATALOGUED holds the most-linked catalogued entries (no plugin, so every claim cites a paper).
An entry's links were counted as the paper records in catalog/papers/ whose ``methods`` name it, plus
the references to it from other entries' ``related``, ``related_one_way`` and ``lineage.parent``;
the entries without practitioner fields were ranked by that count (tis-mis and sdft were left to
colleagues).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from posttrain.catalog.load import load_catalog, validate

REPO = Path(__file__).resolve().parents[1]
# report-sourced compute blocks whose generations the test can read from the report (group RL: the
# batch line; test-time: n); the others' counts were read from the plugin's defaults
MIN_REPORT_COMPUTE_CHECKED = 19
# every runnable entry (one with a plugin) has them: the "every runnable method's page"
FILLED = sorted(
    path.stem
    for path in (REPO / "catalog" / "methods").glob("*.yaml")
    if yaml.safe_load(path.read_text(encoding="utf-8")).get("plugin")
)


@pytest.fixture(scope="module")
def cat():
    return load_catalog(REPO / "catalog")


# the most-linked catalogued entries (module docstring); no plugin, so claims cite papers only
FILLED_CATALOGUED = [
    "search-against-verifiers",
    "policy-gradient",
    "domain-finetuning",
    "rag",
    "orm",
    "react",
    "peft",
    "offline-batch-rl",
    "mcts-dpo",
    "implicit-prm",
    "r1-distill",
    "r1-zero",
    "r1-cold-start",
    "r1-reasoning-rl",
    "r1-alignment-rl",
    "gae",
    "trpo",
    "self-critique",
    "satori",
    "reft",
    "oreo",
    "minillm",
    "malt",
    "iterative-rm",
    "implicit-reward",
    "genrm",
    "explicit-reward",
    "chain-of-preference-optimization",
    "actor-critic",
    "stream-of-search",
]
# Every runnable entry has a compute block (from the paper, or else from the plugin's own report).
# Of the catalogued ones only peft (LoRA's abstract) and implicit-prm (8 samples per instruction)
# have a verified figure; the others have no block.
NO_COMPUTE = set(FILLED_CATALOGUED) - {"peft", "implicit-prm"}


@pytest.mark.parametrize("mid", FILLED + FILLED_CATALOGUED)
def test_core_methods_have_practitioner_fields(cat, mid):
    entry = cat.methods[mid]
    assert entry.when_to_use, mid
    assert entry.data and entry.data.formats, mid
    assert entry.results, mid
    if mid not in NO_COMPUTE:
        assert entry.compute, mid


def report_generations(report: dict) -> int | None:
    """Completions per prompt of a committed run: an RL run's group size (its batch line), or a test-time run's n."""
    group = re.search(r"x (\d+) completions", report.get("batch") or "")
    if group:
        return int(group.group(1))
    return report.get("n")


def test_a_compute_block_from_a_report_states_what_that_run_did(cat):
    """Where no paper figure was verified, the block cites the plugin's own run, and must match it."""
    checked = []
    for mid, entry in cat.methods.items():
        compute = entry.compute
        if compute is None or not compute.source.startswith("reports/"):
            continue
        report = json.loads((REPO / compute.source).read_text(encoding="utf-8"))
        assert report.get("method") in (mid, entry.plugin), (mid, compute.source)  # a run_as entry: its plugin
        expected = report_generations(report)
        if expected is not None:
            assert compute.generations_per_prompt == expected, (mid, compute.source, expected)
            checked.append(mid)
    assert len(checked) >= MIN_REPORT_COMPUTE_CHECKED, checked


def test_every_result_and_claim_cites_a_known_source(cat):
    for mid, entry in cat.methods.items():
        for result in entry.results:
            assert result.paper in cat.papers, (mid, result.paper)
        for claim in [*entry.when_to_use, *entry.avoid_when, *entry.failure_modes]:
            assert claim.source in cat.papers or (REPO / claim.source).is_file(), (mid, claim.source)


def test_paper_and_plugin_defaults_are_told_apart(cat):
    # the entry's defaults are the paper's; plugin_note says why the plugin runs another value
    assert cat.methods["dpo"].defaults["learning_rate"].value == 1e-6
    assert "1e-4" in cat.methods["dpo"].defaults["learning_rate"].plugin_note
    assert cat.methods["grpo"].defaults["num_generations"].value == 64
    assert "G = 8" in cat.methods["grpo"].defaults["num_generations"].plugin_note


def test_verified_objectives_name_their_equation(cat):
    assert cat.methods["dpo"].objective_source.equation == "Eq. 7"
    assert cat.methods["grpo"].objective_source.equation == "Eq. 3"
    assert cat.methods["bfpo"].objective_source.verified is False


# --- the validator on deliberate mistakes ---------------------------------------------------------


@pytest.fixture
def broken(tmp_path):
    root = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", root)
    (tmp_path / "reports" / "runs").mkdir(parents=True)
    shutil.copy(REPO / "reports" / "runs" / "kto.json", tmp_path / "reports" / "runs" / "kto.json")
    return root


def problems_in(root: Path, name: str) -> list[str]:
    return [str(p) for p in validate(root)[1] if p.file.endswith(f"/{name}")]


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text().rstrip("\n") + "\n" + text)


def test_claim_with_unknown_paper(broken):
    append(broken / "methods" / "lora.yaml", "when_to_use:\n- text: Always.\n  source: no-such-paper-2024\n")
    [problem] = problems_in(broken, "lora.yaml")
    assert "when_to_use.0.source: unknown paper id 'no-such-paper-2024'" in problem


def test_claim_with_missing_report(broken):
    append(broken / "methods" / "lora.yaml", "failure_modes:\n- text: Breaks.\n  source: reports/runs/nope.json\n")
    [problem] = problems_in(broken, "lora.yaml")
    assert "failure_modes.0.source: report 'reports/runs/nope.json' is not in the repository" in problem


def test_claim_with_a_committed_report_is_fine(broken):
    append(broken / "methods" / "lora.yaml", "failure_modes:\n- text: Breaks.\n  source: reports/runs/kto.json\n")
    assert problems_in(broken, "lora.yaml") == []


def test_result_needs_a_known_paper_and_a_place(broken):
    append(broken / "methods" / "lora.yaml", "results:\n- text: 99%.\n  paper: no-such-paper-2024\n  where: Table 2\n")
    [problem] = problems_in(broken, "lora.yaml")
    assert "results.0.paper: unknown paper id" in problem
    text = (broken / "methods" / "lora.yaml").read_text().replace("where: Table 2", "where: somewhere")
    (broken / "methods" / "lora.yaml").write_text(text)
    [problem] = problems_in(broken, "lora.yaml")
    assert "results.0.where" in problem


def test_objective_source_must_be_one_of_the_entry_papers(broken):
    append(
        broken / "methods" / "lora.yaml", "objective_source:\n  paper: kto-model-alignment-as-2024\n  equation: Eq. 1\n"
    )
    [problem] = problems_in(broken, "lora.yaml")
    assert "objective_source.paper: 'kto-model-alignment-as-2024' is not in this entry's papers" in problem


def test_verified_objective_without_equation(broken):
    papers_of_lora = load_catalog(broken).paper_refs["lora"]
    append(broken / "methods" / "lora.yaml", f"objective_source:\n  paper: {papers_of_lora[0][1]}\n")
    [problem] = problems_in(broken, "lora.yaml")
    assert "objective_source" in problem and "names its equation" in problem


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ("data:\n  formats: [pairs]\n", "data.formats.0"),
        (
            "compute:\n  models_in_memory: [policy, policy]\n  generations_per_prompt: 0\n  source: x\n"
            "  cost_vs_sft: {text: Same., source: x}\n",
            "compute.models_in_memory",
        ),
        ("when_to_use:\n- text: Always.\n  source: 'Not An Id'\n", "when_to_use.0.source"),
    ],
)
def test_schema_mistakes_name_the_field(broken, block, field):
    append(broken / "methods" / "lora.yaml", block)
    [problem] = problems_in(broken, "lora.yaml")
    assert f": {field}:" in problem
