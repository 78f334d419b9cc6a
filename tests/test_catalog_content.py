"""The shipped catalog validates, covers the survey's method tables and holds each awesome-list paper once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.catalog.awesome import parse
from posttrain.catalog.load import arxiv_key, catalog_dir, load_catalog, normalise_title, validate
from posttrain.cli.main import app

SHARED_LIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "awesome-llm-post-training" / "README.md"

# Every row of the method tables in shared/reference/survey-taxonomy.md §3.1-3.6 -> the entry covering it.
SURVEY_ROWS = {
    "RL-0 MLE / next-token training": "sft",
    "RL-1 policy gradient with advantage": "policy-gradient",
    "RL-2 REINFORCE": "reinforce",
    "RL-3 MIXER": "mixer",
    "RL-4 SCST": "scst",
    "RL-5 MRT": "mrt",
    "RL-6 A2C/A3C": "actor-critic",
    "RL-7 SeqGAN": "seqgan",
    "RL-8 GAE": "gae",
    "F1 Offline Batch": "offline-batch-rl",
    "F1 Behavior Cloning": "behavior-cloning",
    "F1 Self-Critique": "self-critique",
    "RM-1 Bradley-Terry": "reward-model",
    "RM-2 Plackett-Luce": "plackett-luce-rm",
    "RM-3 explicit": "explicit-reward",
    "RM-4 implicit": "implicit-reward",
    "RM-5 ORM": "orm",
    "RM-6 PRM": "prm",
    "RM-7 iterative RL with adaptive RMs": "iterative-rm",
    "PO-1 ORPO": "orpo",
    "PO-2 PPO": "ppo",
    "PO-3 RLHF": "rlhf",
    "PO-4 RLAIF": "rlaif",
    "PO-5 TRPO": "trpo",
    "PO-6 DPO": "dpo",
    "PO-6a perplexity filtering": "perplexity-filtering",
    "PO-7 OREO": "oreo",
    "PO-8 GRPO": "grpo",
    "PO-9 multi-sample comparison": "mdpo",
    "R1-0 R1-Zero": "r1-zero",
    "R1-1 cold start": "r1-cold-start",
    "R1-2 rejection sampling + SFT": "rejection-sampling-ft",
    "R1-3 reasoning-oriented RL": "r1-reasoning-rl",
    "R1-4 second RL stage": "r1-alignment-rl",
    "R1-5 distillation": "r1-distill",
    "FT-1 instruction": "instruction-tuning",
    "FT-2 dialogue": "dialogue-tuning",
    "FT-3 CoT finetuning": "cot-finetuning",
    "FT-4 domain-specific": "domain-finetuning",
    "FT-5 distillation-based": "distill-step-by-step",
    "FT-6 preference & alignment SFT": "alignment-sft",
    "FT-7 PEFT umbrella": "peft",
    "FT-8 LoRA": "lora",
    "FT-9 QLoRA": "qlora",
    "FT-10 AdaLoRA": "adalora",
    "FT-11 adapters": "adapters",
    "FT-12 prefix tuning": "prefix-tuning",
    "FT-13 P-Tuning v2": "p-tuning-v2",
    "FT-14 prompt tuning": "prompt-tuning",
    "FT-15 full-model": "full-finetuning",
    "FT-16 distilled small models": "kd",
    "FT-17 GPTQ": "gptq",
    "FT-18 SparseGPT": "sparsegpt",
    "FT-19 bitsandbytes": "llm-int8",
    "FT-20 CURLoRA": "curlora",
    "TTS-1 beam search": "beam-search",
    "TTS-2 best-of-N": "best-of-n",
    "TTS-2a speculative rejection": "speculative-rejection",
    "TTS-3 compute-optimal": "compute-optimal",
    "TTS-4 CoT": "cot",
    "TTS-4a zero-shot CoT": "zero-shot-cot",
    "TTS-5 self-consistency": "self-consistency",
    "TTS-5a USC": "universal-self-consistency",
    "TTS-6 ToT": "tree-of-thoughts",
    "TTS-6a multi-agent ToT": "multi-agent-tot",
    "TTS-7 GoT": "graph-of-thoughts",
    "TTS-8 confidence": "confidence-sampling",
    "TTS-9 search against verifiers": "search-against-verifiers",
    "TTS-10 Self-Refine": "self-refine",
    "TTS-11 Self-Polish": "self-polish",
    "TTS-12 MCTS": "mcts",
    "TTS-12a Monte Carlo Thought Search": "mc-thought-search",
    "TTS-12b MCTS RTL": "mcts-rtl",
    "TTS-12c LE-MCTS": "le-mcts",
    "TTS-12d MCTS-DPO": "mcts-dpo",
    "TTS-12e AlphaLLM": "alphallm",
    "TTS-13 COAT / Satori": "satori",
    "TTS-13a MALT": "malt",
    "TTS-13b BFPO": "bfpo",
    "TTS-13c MVoT": "mvot",
    "TTS-14 pretraining vs TTS": "pretraining-vs-tts",
    "TTS-15 particle filtering": "particle-filtering",
}
# Ids other engineers' plugins will use; they must exist exactly like this.
PLANNED_IDS = """
sft lora qlora dora adalora ia3 adapters prefix-tuning p-tuning-v2 prompt-tuning
instruction-tuning dialogue-tuning cot-finetuning kd gkd distill-step-by-step cot-distill dpo
ipo cdpo hinge kto orpo simpo cpo rdpo mdpo step-dpo online-dpo reward-model prm
rejection-sampling-ft grpo dr-grpo dapo gspo ppo rloo reinforce-pp remax reinforce scst rlhf
rlaif r1-recipe trpo oreo cot best-of-n self-consistency beam-search dvts mcts tree-of-thoughts
graph-of-thoughts self-refine self-polish confidence-sampling particle-filtering
speculative-rejection budget-forcing compute-optimal
""".split()


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_catalog_validates():
    _, problems = validate(catalog_dir(), registered=None)
    assert [str(p) for p in problems] == []


def test_cli_validate_passes():
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output


@pytest.mark.parametrize("row", sorted(SURVEY_ROWS))
def test_survey_row_has_an_entry(cat, row):
    entry = cat.methods.get(SURVEY_ROWS[row])
    assert entry is not None, f"{row}: no entry '{SURVEY_ROWS[row]}'"
    assert entry.family in cat.taxonomy.families()


def test_planned_ids_exist_and_wait_for_plugins(cat):
    missing = [i for i in PLANNED_IDS if i not in cat.methods]
    assert missing == []
    for mid in PLANNED_IDS:
        entry = cat.methods[mid]
        if entry.plugin is not None:  # runnable: the plugin carries the entry's id
            assert entry.plugin == mid and entry.status.value != "catalogued", mid
        else:
            assert entry.plugin is None and entry.status.value == "catalogued", mid
            assert entry.status_note == "No plugin yet.", mid


def test_every_entry_is_complete(cat):
    for mid, entry in cat.methods.items():
        assert entry.papers, mid
        assert entry.objective.strip(), mid
        if entry.plugin is None:
            assert entry.status_note, mid
        for name, default in entry.defaults.items():
            assert default.source.strip(), f"{mid}.{name}"


@pytest.mark.parametrize(
    ("method", "arxiv"),
    [
        ("grpo", "2402.03300"),
        ("ppo", "1707.06347"),
        ("dpo", "2305.18290"),
        ("self-consistency", "2203.11171"),
        ("zero-shot-cot", "2205.11916"),
        ("orpo", "2403.07691"),
        ("dapo", "2503.14476"),
        ("lora", "2106.09685"),
    ],
)
def test_show_gives_the_canonical_paper(method, arxiv):
    result = CliRunner().invoke(app, ["show", method], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    links = re.findall(r"https://arxiv\.org/abs/(\S+)", result.output)
    assert links and links[0] == arxiv, links
    if method == "zero-shot-cot":
        assert "2305.04091" not in links  # the survey's wrong citation (Plan-and-Solve)
    if method == "self-consistency":
        assert "Self-Instruct" not in result.output


def test_show_prints_the_objective():
    result = CliRunner().invoke(app, ["show", "grpo"], env={"COLUMNS": "300"})
    assert "\\mathrm{clip}" in result.output and "\\mathrm{std}" in result.output


def test_list_shows_branch_and_family():
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if line.split()[:1] == ["mcts"])  # piped: plain rows
    assert "test-time-scaling" in row and "search" in row


def test_lineage_of_variants(cat):
    assert cat.methods["dapo"].lineage.parent == "grpo"
    assert len(cat.methods["dapo"].lineage.changes) >= 4
    assert cat.methods["dr-grpo"].lineage.parent == "grpo"
    assert cat.methods["grpo"].lineage.parent == "ppo"


@pytest.mark.skipif(not SHARED_LIST.is_file(), reason="../shared is not available")
def test_every_awesome_list_paper_is_in_the_catalog_once(cat):
    listed = parse(SHARED_LIST.read_text(encoding="utf-8"))
    assert len(listed) >= 190
    for item in listed:
        matches = []
        for pid, rec in cat.papers.items():
            if item.arxiv:
                same = rec.arxiv is not None and arxiv_key(rec.arxiv) == item.arxiv
                if not same and rec.arxiv is None:
                    same = normalise_title(rec.title) == normalise_title(item.title)
            else:
                same = normalise_title(rec.title) == normalise_title(item.title) or (
                    item.url is not None and rec.url == item.url
                )
            if same:
                matches.append(pid)
        assert len(matches) == 1, f"{item.title!r} (line {item.line}): {matches}"
        assert item.section in cat.papers[matches[0]].sections


def test_paper_records_link_to_methods(cat):
    assert "grpo" in cat.methods_of("deepseekmath-pushing-the-limits-2024")
    assert "mcts" in cat.methods_of("rstar-math-small-llms-2025")
