"""Helpers shared by tests/test_site.py and tests/test_site_browser.py (loaded by path).

``build_site`` runs ``mkdocs build --strict`` in-process, so a test can point the hooks at a
fixture catalog, fixture reports and a fixture plugin without installing anything.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "site"
CONFIG = SITE / "mkdocs.yml"
FIXTURES = Path(__file__).resolve().parent

# A method page's sections, in this order; a section with nothing to say is left out.
ANATOMY = [
    "Objective",
    "Use it",
    "In practice",  # a catalogued method's practitioner fields (a runnable one has them in "Use it")
    "Papers",
    "Lineage",
    "How to run it",
    "Logged metrics",
    "Implementation notes and deviations from the paper",
    "Reference parity",
    "Results",
    "Related methods",
    "Implementations in other libraries",
    "Run it elsewhere",
]
# The sections every page of a method in that state has (a catalogued method has a "not runnable
# yet" box instead of its run, metrics, notes and results).
REQUIRED = {
    "runnable": ["Objective", "Use it", "Papers", "How to run it", ANATOMY[7], "Results"],
    "plugin-missing": ["Objective", "Papers", "How to run it", ANATOMY[7], "Results"],
    "catalogued": ["Objective", "Papers"],
}
NOT_FOR_CATALOGUED = ["Use it", "How to run it", "Logged metrics", ANATOMY[7], "Results"]


def anatomy_problem(headings: list[str], state: str) -> str | None:
    """Why a page's h2 headings do not follow ANATOMY for a method in ``state``, or None."""
    if headings != [h for h in ANATOMY if h in headings]:
        return f"sections out of order or unknown: {headings}"
    missing = [h for h in REQUIRED[state] if h not in headings]
    if missing:
        return f"missing sections {missing}: {headings}"
    if state == "catalogued" and any(h in headings for h in NOT_FOR_CATALOGUED):
        return f"a catalogued method's page has run sections: {headings}"
    return None


def load_hooks() -> ModuleType:
    """site/hooks.py as a module (mkdocs loads it the same way)."""
    sys.path.insert(0, str(SITE))
    try:
        spec = importlib.util.spec_from_file_location("posttrain_site_hooks", SITE / "hooks.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SITE))
    return module


def build_site(
    dest: Path,
    *,
    catalog: Path | None = None,
    reports: Path | None = None,
    plugins: dict[str, Any] | None = None,
    papers: list[Any] | None = None,
) -> Path:
    """Build the site into ``dest`` with --strict; optionally swap the catalog, reports, plugins, papers."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    from posttrain import registry
    from posttrain.catalog import load as catalog_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_MKDOCS_2_WARNING", "1")
        if catalog is not None:
            mp.setenv("POSTTRAIN_CATALOG", str(catalog))
        mp.setenv("POSTTRAIN_REPORTS", str(reports or dest.parent / "no-reports"))
        if plugins is not None:
            mp.syspath_prepend(str(FIXTURES))
            mp.setattr(registry, "discover", lambda: dict(plugins))
        if papers is not None:
            mp.setattr(catalog_module, "load_papers", lambda *a: list(papers), raising=False)
        config = load_config(config_file=str(CONFIG), site_dir=str(dest), strict=True)
        build(config)
    return dest


def demo_spec(name: str):
    from posttrain.registry import PluginSpec

    return PluginSpec(name, "site_demo_plugin:plugin", "site-fixtures", "0.0")


def fixture_catalog(root: Path) -> Path:
    """A catalog with one entry in each state: runnable, plugin not installed, catalogued only."""
    cat = root / "catalog"
    (cat / "methods").mkdir(parents=True)
    shutil.copy(REPO / "catalog" / "taxonomy.yaml", cat / "taxonomy.yaml")
    common = {
        "description": "A fixture entry; inline math $\\beta \\log \\pi_\\theta$ renders.",
        "objective": "\\mathcal{L}(\\theta) = -\\log\\sigma(\\beta\\,\\Delta)",
        "papers": [{"title": "A Fixture Paper", "authors": ["A. Author"], "year": 2024, "arxiv": "2401.00001"}],
    }
    entries = {
        "demo-runnable": {
            "name": "Demo Runnable",
            "family": "preference-optimization",
            "summary": "A fixture method whose plugin is installed.",
            "plugin": "demo",
            "status": "experimental",
            "defaults": {"beta": {"value": 0.1, "source": "Fixture paper, section 1"}},
            "metrics": [{"name": "loss", "description": "The fixture loss."}],
            "related": ["demo-catalogued"],
            "implementations": [{"name": "Elsewhere", "url": "https://example.org/impl"}],
        },
        "demo-missing": {
            "name": "Demo Missing Plugin",
            "family": "policy-optimization",
            "summary": "A fixture method whose plugin is not installed.",
            "plugin": "not-installed-plugin",
            "status": "experimental",
        },
        "demo-catalogued": {
            "name": "Demo Catalogued",
            "family": "search",
            "summary": "A fixture method with no plugin.",
            "plugin": None,
            "status": "catalogued",
            "status_note": "Needs a process reward model first.",
            "lineage": {"parent": "demo-runnable", "changes": ["Searches instead of training."]},
        },
    }
    for mid, body in entries.items():
        data = {"id": mid, **common, **body}
        (cat / "methods" / f"{mid}.yaml").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return cat


def fixture_reports(root: Path) -> Path:
    """Reports for the fixture catalog (test data only: they never reach the real site)."""
    rep = root / "reports"
    (rep / "runs").mkdir(parents=True)
    smoke = [
        {
            "plugin": "demo",
            "ok": True,
            "seconds": 1.5,
            "detail": "2 steps",
            "device": "cpu",
            "date": "2026-01-02",
        }
    ]
    (rep / "smoke-cpu.json").write_text(json.dumps(smoke), encoding="utf-8")
    run = {
        "method": "demo-runnable",
        "command": "catalog run demo-runnable",
        "device": "cpu",
        "seconds": 12.0,
        "before": {"eval/exact_match": 0.25},
        "after": {"eval/exact_match": 0.5},
    }
    (rep / "runs" / "demo-runnable.json").write_text(json.dumps(run), encoding="utf-8")
    return rep


def fixture_reports_paired(root: Path) -> Path:
    """Reports in the paired format for the fixture catalog (test data only): demo-runnable samples,
    so it has three seeds and a pooled test (a gain); demo-missing has one run whose preference
    accuracy rose significantly while its exact match fell significantly (a harm)."""
    from posttrain import stats

    rep = root / "reports-paired"
    (rep / "runs").mkdir(parents=True)
    n = 500

    def paired(fixed: int, broken: int, before: float) -> dict[str, Any]:
        test = stats.paired_counts(fixed, broken, n)
        return {"n": n, "before": before, "after": round(before + test["difference"], 6), **test}

    seeds = []
    for seed, (b, c) in enumerate([(60, 27), (30, 25), (30, 23)]):
        test = paired(b, c, 0.784)
        seeds.append(
            {
                "seed": seed,
                "before": {"exact_match": test["before"]},
                "after": {"exact_match": test["after"]},
                "paired": {"exact_match": test},
            }
        )
    sampled = {
        "method": "demo-runnable",
        "command": "catalog run demo-runnable",
        "device": "cpu",
        "seed": 0,
        "seconds": 30.0,
        "date": "2026-12-03",
        "before": seeds[0]["before"] | {"loss": 1.0},
        "after": seeds[0]["after"] | {"loss": 0.5},
        "paired": seeds[0]["paired"],
        "seeds": seeds,
        "pooled": {"exact_match": stats.pool_seeds([s["paired"]["exact_match"] for s in seeds])},
    }
    em, pa = paired(37, 88, 0.784), paired(120, 20, 0.5)
    single = {
        "method": "demo-missing",
        "command": "catalog run demo-missing",
        "device": "cpu",
        "seed": 0,
        "seconds": 20.0,
        "date": "2026-12-03",
        "before": {"preference_accuracy": pa["before"], "exact_match": em["before"]},
        "after": {"preference_accuracy": pa["after"], "exact_match": em["after"]},
        "paired": {"exact_match": em, "preference_accuracy": pa},
    }
    for run in (sampled, single):
        (rep / "runs" / f"{run['method']}.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    return rep


# Script payloads planted in catalog text by payload_catalog(): every one calls alert(), so a page
# is safe when no alert() call survives anywhere that a browser would run it.
PAYLOADS = {
    "name": "</title><script>alert('name')</script> {: onclick=\"alert('name-attr')\" }",
    "summary": "Summary <script>alert('summary')</script> {: onclick=alert('summary-attr') }.",
    "description": (
        "Text <script>alert('description')</script> and <img src=x onerror=alert('img')> and "
        "[a markdown link](javascript:alert('md-link')), ![an image](javascript:alert('md-image')), "
        "[an entity link](&#106;avascript:alert('entity-link')), [a reference][r], "
        "<a href=\"javascript:alert('a-tag')\">a tag</a>, a [page link](demo-runnable.md) and $a<b$.\n\n"
        "[r]: javascript:alert('reference')\n\n"
        "A paragraph\n{: onclick=\"alert('description-attr')\" }\n"
    ),
    "objective": "x\n$$\n<script>alert('objective')</script>\n$$\ny",
    "status_note": "Note <img src=x onerror=alert('status-note')> {: onclick=alert('status-note-attr') }",
    "tag": "t`<img src=x onerror=alert('tag')>`",
    "metric": "<img src=x onerror=alert('metric')>",  # no backticks: nothing but the site's own escaping
    "default": "k`<img src=x onerror=alert('default')>`",
    "plugin": "x`<img src=x onerror=alert('plugin')>`",
    "url": "https://example.org/)<script>alert('url')</script>",
    "family": "<script>alert('family')</script>",
}


def payload_catalog(root: Path) -> Path:
    """fixture_catalog() with PAYLOADS planted in every kind of text field (test data only).

    catalog validate refuses all of them; a test that builds the site from this catalog turns the
    validator's text check off (posttrain.catalog.textsafety.text_problem) to show that the site escapes
    them by itself."""
    import yaml

    cat = fixture_catalog(root)
    taxonomy = yaml.safe_load((cat / "taxonomy.yaml").read_text(encoding="utf-8"))
    taxonomy["branches"][0]["families"][0]["name"] = PAYLOADS["family"]
    (cat / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy), encoding="utf-8")
    path = cat / "methods" / "demo-catalogued.yaml"
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry.update(
        name=PAYLOADS["name"],
        aliases=[PAYLOADS["summary"]],
        summary=PAYLOADS["summary"],
        description=PAYLOADS["description"],
        objective=PAYLOADS["objective"],
        status_note=PAYLOADS["status_note"],
        tags=[PAYLOADS["tag"]],
        metrics=[{"name": PAYLOADS["metric"], "description": PAYLOADS["summary"]}],
        defaults={PAYLOADS["default"]: {"value": PAYLOADS["default"], "source": PAYLOADS["summary"]}},
        implementations=[{"name": PAYLOADS["family"], "url": PAYLOADS["url"]}],
        papers=[{"title": PAYLOADS["family"], "authors": [PAYLOADS["family"]], "year": 2024, "url": PAYLOADS["url"]}],
    )
    entry["lineage"]["changes"] = [PAYLOADS["summary"]]
    path.write_text(json.dumps(entry), encoding="utf-8")
    path = cat / "methods" / "demo-missing.yaml"
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry["plugin"] = PAYLOADS["plugin"]
    path.write_text(json.dumps(entry), encoding="utf-8")
    return cat
