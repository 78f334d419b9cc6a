"""The 2025-2026 methods of issue #21 item 5 are catalogued with their papers, lineage and objective source;
those that got a plugin (issue #22), or run as an option of one (run_as), are experimental or stable, never
listed as runnable without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrain.catalog.load import load_catalog

REPO = Path(__file__).resolve().parents[1]

# method id -> (arXiv id of its paper, or None for a blog post; lineage parent)
RECENT = {
    "gmpo": ("2507.20673", "grpo"),
    "vapo": ("2504.05118", "ppo"),
    "prime": ("2502.01456", "rloo"),
    "lite-ppo": ("2508.08221", "ppo"),
    "high-entropy-token-rl": ("2506.01939", "dapo"),
    "clip-cov": ("2505.22617", "grpo"),
    "tis-mis": (None, "policy-gradient"),
    "m2po": ("2510.01161", "grpo"),
    "gdpo": ("2601.05242", "grpo"),
    "gpg": ("2504.02546", "grpo"),
    "scalerl": ("2510.13786", "grpo"),
    "reinforce-pp-baseline": ("2501.03262", "reinforce-pp"),
    "on-policy-distillation": (None, "gkd"),
    "sdft": ("2601.19897", "on-policy-distillation"),
    "sdpo": ("2601.20802", "grpo"),
    "ttrl": ("2504.16084", "grpo"),
    "gigpo": ("2505.10978", "grpo"),
}


@pytest.fixture(scope="module")
def cat():
    return load_catalog(REPO / "catalog")


@pytest.mark.parametrize("mid", sorted(RECENT))
def test_recent_method_is_catalogued_with_paper_and_parent(cat, mid):
    arxiv, parent = RECENT[mid]
    entry = cat.methods[mid]
    if entry.plugin is None:
        assert entry.status.value == "catalogued"
    else:
        assert entry.status.value in ("experimental", "stable")
        assert entry.plugin == mid or entry.run_as is not None  # its own plugin, or an option of another
    assert entry.lineage is not None and entry.lineage.parent == parent
    canonical = cat.papers_of(mid)[0]
    if arxiv:
        assert canonical.arxiv == arxiv
    else:
        assert canonical.kind.value == "post" and canonical.url
    # the objective names its source; an unverified equation number is said so, not guessed
    assert entry.objective_source is not None
    assert entry.objective_source.paper in [p.id for p in cat.papers_of(mid)]
    assert entry.objective_source.verified == (entry.objective_source.equation is not None)


def test_tis_and_mis_cite_both_sources(cat):
    ids = [p.id for p in cat.papers_of("tis-mis")]
    assert cat.papers[ids[1]].arxiv == "2510.18855"
