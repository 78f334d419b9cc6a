"""The documentation site: it builds with --strict, and its generated pages have the promised anatomy.

No browser here (tests/test_site_browser.py drives Chromium); these run in the default suite.
"""

from __future__ import annotations

import html
import importlib.util
import json
import posixpath
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("material", reason="the site needs the docs extra: pip install -e '.[docs]'")

_spec = importlib.util.spec_from_file_location("sitebuild", Path(__file__).parent / "site_fixtures" / "sitebuild.py")
assert _spec and _spec.loader
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)


def h2s(page: str) -> list[str]:
    found = re.findall(r"<h2[^>]*>(.*?)</h2>", page, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", m)).replace("¶", "").strip() for m in found]


@pytest.fixture(scope="module")
def catalog():
    from posttrain.catalog.load import load_catalog

    return load_catalog()


@pytest.fixture(scope="module")
def real_site(tmp_path_factory) -> Path:
    """The real site, built the way a user builds it: `catalog site build`."""
    out = tmp_path_factory.mktemp("site") / "build"
    proc = subprocess.run(
        [sys.executable, "-m", "posttrain", "site", "build", "--site-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def test_every_page_is_generated(real_site: Path, catalog) -> None:
    for page in ("index", "taxonomy", "papers", "status", "results", "evidence", "contributing", "cli", "404"):
        assert (real_site / f"{page}.html").is_file(), page
    for branch in catalog.taxonomy.branches:
        assert (real_site / "branches" / branch.id / "index.html").is_file()
        for family in branch.families:
            assert (real_site / "families" / family.id / "index.html").is_file()
    for mid in catalog.methods:
        assert (real_site / "methods" / f"{mid}.html").is_file()


def test_method_pages_share_one_anatomy(real_site: Path, catalog) -> None:
    for mid, entry in catalog.methods.items():
        page = (real_site / "methods" / f"{mid}.html").read_text(encoding="utf-8")
        state = "catalogued" if entry.plugin is None else "runnable"
        assert sb.anatomy_problem(h2s(page), state) is None, mid
        assert '<div class="arithmatex">' in page, f"{mid}: objective is not marked up as display math"
        for paper in entry.papers:
            assert html.escape(paper.link) in page, f"{mid}: paper link missing"
        assert "None listed." not in page and "No related methods listed." not in page, mid
        if entry.plugin is None:
            assert "Not runnable yet" in page and f"catalog new {mid} --family {entry.family} --paper" in untagged(page)
        else:
            assert f"catalog run {mid}" in page or "Plugin not installed" in page or "Plugin source not found" in page


def test_reference_parity_section_comes_from_the_parity_table(real_site: Path, catalog) -> None:
    from posttrain.catalog.parity import load_parity

    table = load_parity(catalog.root).methods
    for mid in catalog.methods:
        page = (real_site / "methods" / f"{mid}.html").read_text(encoding="utf-8")
        assert ("Reference parity" in h2s(page)) == (mid in table), mid
    grpo = html.unescape((real_site / "methods" / "grpo.html").read_text(encoding="utf-8"))
    assert "tests/test_rl_parity.py::test_grpo_matches_trl" in grpo and 'loss_type="grpo"' in grpo
    assert "float64" in grpo and "absolute 1e-6" in grpo


def test_an_option_entry_shows_its_command_and_report(real_site: Path, catalog) -> None:
    page = (real_site / "methods" / "high-entropy-token-rl.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "An option of grpo" in text and "catalog run grpo --set top_entropy_fraction=0.2" in text
    assert "From reports/runs/grpo-top-entropy.json" in text and "Run on the embedded task" in text
    assert "0.794" in text  # the report's before value, seed 0


def test_taxonomy_figure_links_every_method(real_site: Path, catalog) -> None:
    page = (real_site / "taxonomy.html").read_text(encoding="utf-8")
    assert page.count('<svg class="taxonomy-svg"') == 1
    links = dict(re.findall(r'<a href="([^"]+)" data-method="([^"]+)"', page))
    assert sorted(links.values()) == sorted(catalog.methods)
    families = re.findall(r'<a href="([^"]+)" data-family="([^"]+)"', page)
    assert len(families) == sum(len(b.families) for b in catalog.taxonomy.branches)
    for href, _ in [*links.items(), *families]:
        assert (real_site / posixpath.normpath(href)).is_file(), href


def test_no_asset_is_fetched_from_another_host(real_site: Path) -> None:
    for path in real_site.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r'<script[^>]+src="(https?:)?//', text), path
        assert not re.search(r'<link[^>]+rel="stylesheet"[^>]+href="(https?:)?//', text), path
        assert not re.search(r'<link[^>]+href="(https?:)?//[^"]+"[^>]+rel="stylesheet"', text), path
    for path in real_site.rglob("*.css"):
        assert not re.search(r"(@import|url\()\s*['\"]?(https?:)?//", path.read_text(encoding="utf-8")), path
    katex = real_site / "assets" / "vendor" / "katex"
    assert (katex / "katex.min.js").is_file() and (katex / "fonts" / "KaTeX_Main-Regular.woff2").is_file()


def test_cli_reference_lists_every_command(real_site: Path) -> None:
    import typer

    from posttrain.cli.main import app

    page = (real_site / "cli.html").read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="catalog")
    for name in root.list_commands(ctx):
        assert f"catalog {name}" in page, name
    assert "catalog site build" in page and "catalog site serve" in page


def test_papers_and_status_pages(real_site: Path, catalog) -> None:
    hooks = sb.load_hooks()
    papers = (real_site / "papers.html").read_text(encoding="utf-8")
    assert 'id="papers-table"' in papers and 'id="papers-search"' in papers
    if not hooks.load_papers(catalog):
        assert "No papers index yet" in papers
    for entry in catalog.methods.values():
        for paper in entry.papers:
            assert html.escape(paper.title) in papers
    status = (real_site / "status.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr>\s*<td><a href=\"methods/", status)
    assert len(rows) == len(catalog.methods)


def test_three_entry_states_results_and_papers(tmp_path: Path) -> None:
    cat = sb.fixture_catalog(tmp_path)
    reports = sb.fixture_reports(tmp_path)
    papers = [
        {
            "title": "An Awesome-List Paper",
            "arxiv": "2501.00002",
            "date": "2025-01",
            "sections": ["Reward Learning"],
        },
        SimpleNamespace(title="A Fixture Paper", link="https://arxiv.org/abs/2401.00001", year=2024, sections=["RL"]),
    ]
    out = sb.build_site(
        tmp_path / "build",
        catalog=cat,
        reports=reports,
        plugins={"demo": sb.demo_spec("demo")},
        papers=papers,
    )
    runnable = (out / "methods" / "demo-runnable.html").read_text(encoding="utf-8")
    assert sb.anatomy_problem(h2s(runnable), "runnable") is None
    assert "catalog run demo-runnable" in runnable
    assert re.search(r"<th[^>]*>option</th>\s*<th[^>]*>type</th>\s*<th[^>]*>default</th>", runnable)
    assert "the fixture&rsquo;s KL strength" in runnable or "the fixture's KL strength" in runnable
    text = html.unescape(re.sub(r"<[^>]+>", "", runnable))
    assert "Deviations from the paper:" in text and "class Config(BaseModel):" in text
    assert '<span class="result-pass">pass</span> (1.5 s)' in runnable and "0.25" in runnable and "0.5" in runnable
    assert "Methods that modify this one" in runnable and "https://example.org/impl" in runnable

    missing = (out / "methods" / "demo-missing.html").read_text(encoding="utf-8")
    assert sb.anatomy_problem(h2s(missing), "plugin-missing") is None
    assert "Plugin not installed" in missing and "not-installed-plugin" in missing
    assert "Not yet measured" in missing

    catalogued = (out / "methods" / "demo-catalogued.html").read_text(encoding="utf-8")
    assert sb.anatomy_problem(h2s(catalogued), "catalogued") is None
    assert "Not runnable yet" in catalogued and "Needs a process reward model first." in catalogued
    assert "catalog new demo-catalogued --family search --paper 2401.00001" in untagged(catalogued)
    assert 'href="demo-runnable.html"' in catalogued and "Searches instead of training." in catalogued

    status = (out / "status.html").read_text(encoding="utf-8")
    assert "2026-01-02" in status and "not yet measured" in status
    # A report from before paired tests (no "paired" key) still renders, and says it has no test.
    assert "no paired test" in status and "This report has no per-problem outcomes" in runnable
    results = (out / "results.html").read_text(encoding="utf-8")
    assert 'href="methods/demo-runnable.html"' in results and "no per-problem outcomes" in results
    assert "0.25 → 0.5" in results

    index = (out / "papers.html").read_text(encoding="utf-8")
    assert "No papers index yet" not in index
    assert "An Awesome-List Paper" in index and '<option value="Reward Learning">' in index
    assert '<option value="2025">' in index
    # The awesome-list record and the entry's citation of the same paper are one row.
    assert index.count("A Fixture Paper") == 1

    home = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="methods/demo-runnable.html"' in home and "catalog run demo-runnable" in home


def test_normalise_paper_accepts_dicts_and_objects() -> None:
    hooks = sb.load_hooks()
    a = hooks.normalise_paper({"title": "T", "arxiv": "2401.00001", "date": "2024-03-01", "section": "S"})
    assert a["link"] == "https://arxiv.org/abs/2401.00001" and a["year"] == 2024 and a["sections"] == ["S"]
    b = hooks.normalise_paper(SimpleNamespace(title="U", url="https://x.org/u", year=2023, venue="V"))
    assert b["link"] == "https://x.org/u" and b["year"] == 2023 and b["venue"] == "V"
    assert hooks.normalise_paper({"link": "https://x.org"}) is None


def test_site_build_says_how_to_install_mkdocs(monkeypatch) -> None:
    from typer.testing import CliRunner

    from posttrain.cli import site as cli_site
    from posttrain.cli.main import app

    monkeypatch.setattr(cli_site, "have_mkdocs_material", lambda: False)
    result = CliRunner().invoke(app, ["site", "build"])
    assert result.exit_code == 1
    assert "pip install 'posttrain-catalog[docs]'" in result.output


def untagged(page: str) -> str:
    """The page's text with its tags removed and nothing put in their place (code keeps its words whole)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_paired_tests_on_method_results_and_status_pages(tmp_path: Path) -> None:
    out = sb.build_site(
        tmp_path / "build",
        catalog=sb.fixture_catalog(tmp_path),
        reports=sb.fixture_reports_paired(tmp_path),
        plugins={"demo": sb.demo_spec("demo")},
    )
    # A method that samples: seed 0's paired test, each seed's, and the pooled line.
    sampled = (out / "methods" / "demo-runnable.html").read_text(encoding="utf-8")
    assert sb.anatomy_problem(h2s(sampled), "runnable") is None
    text = text_of(sampled)
    assert "fixed / broken" in text and "difference ± SE (points)" in text
    assert "60 / 27 +6.6 ± 1.8 0.00052 ▲ gain" in text
    assert "1 exact_match 0.784 0.794 30 / 25 +1.0 ± 1.5 0.59 no significant change" in text
    assert "2 exact_match 0.784 0.798 30 / 23 +1.4 ± 1.5 0.41 no significant change" in text
    assert "exact_match : +3.0 ± 3.1 points over 3 seeds, 120 fixed / 75 broken, pooled p = 0.0016: ▲ gain" in text
    assert "exact two-sided sign test" in text and "p < 0.05" in text
    assert 'href="../evidence.html"' in sampled
    assert '<span class="verdict verdict-gain">' in sampled
    # One run: a significant gain in the target metric and a significant harm in exact match.
    single = text_of((out / "methods" / "demo-missing.html").read_text(encoding="utf-8"))
    assert "exact_match 0.784 0.682 37 / 88 -10.2 ± 2.2 5.8e-06 ▼ harm" in single
    assert "preference_accuracy 0.5 0.7 120 / 20 +20.0 ± 2.2 1.4e-18 ▲ gain" in single
    assert "Seeds" not in h2s(single) and "pooled" not in single

    results = (out / "results.html").read_text(encoding="utf-8")
    rtext = text_of(results)
    assert "2 with a paired test of the headline metric: 1 gain, 0 no significant change, 1 harm" in rtext
    assert "exact_match 0.784 → 0.814 +3.0 ± 3.1 (sd) 120 / 75 pooled 0.0016 ▲ gain 3" in rtext
    assert "exact_match 0.784 → 0.682 -10.2 (SE 2.2) 37 / 88 5.8e-06 ▼ harm seed 0" in rtext
    assert "preference_accuracy ▲ gain (p = 1.4e-18)" in rtext
    assert '<span class="verdict verdict-harm">' in results and 'href="evidence.html"' in results

    status = text_of((out / "status.html").read_text(encoding="utf-8"))
    assert "▲ gain (exact_match, pooled p = 0.0016, 3 seeds)" in status
    assert "▼ harm (exact_match, p = 5.8e-06)" in status

    evidence = text_of((out / "evidence.html").read_text(encoding="utf-8"))
    assert "outcomes.jsonl" in evidence and "catalog embedded verify" in evidence
    assert 'href="evidence.html"' in (out / "results.html").read_text(encoding="utf-8")


def test_malformed_paired_tests_are_warnings(tmp_path: Path, caplog) -> None:
    hooks = sb.load_hooks()
    good = {"fixed": 10, "broken": 0, "difference": 0.02, "se": 0.006, "p": 0.00195, "verdict": "gain"}
    run = {
        "method": "m",
        "paired": {"exact_match": good, "accuracy": {"fixed": 1}},
        "seeds": [{"seed": 0, "paired": {"exact_match": good}}, {"paired": {}}],
        "pooled": {"exact_match": {**good, "verdict": "maybe"}},
    }
    with caplog.at_level("WARNING", logger="mkdocs.hooks.posttrain"):
        checked = hooks.check_paired(run, tmp_path / "m.json")
    assert list(checked["paired"]) == ["exact_match"] and checked["pooled"] == {}
    assert [s["seed"] for s in checked["seeds"]] == [0]
    assert len(caplog.records) == 3
    top = hooks.headline(checked)
    assert top["metric"] == "exact_match" and not top["pooled"]
    assert hooks.verdict_cell(checked).endswith("(exact\\_match, p = 0.0019)")
    assert hooks.headline(hooks.check_paired({"before": {"a": 1}, "after": {"a": 2}}, tmp_path / "old.json")) is None


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", sb.REPO / "tools" / "gpu_check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_pages_say_not_measured_until_reports_gpu_has_results(real_site: Path) -> None:
    if any((sb.REPO / "reports" / "gpu").glob("*.json")):
        pytest.skip("reports/gpu/ holds results")
    for page in ("status", "benchmarks"):
        assert "not measured on gpu yet" in text_of((real_site / f"{page}.html").read_text(encoding="utf-8")).lower()


def test_gpu_results_section_from_the_check_reports(tmp_path: Path, caplog) -> None:
    """The section the status and Benchmarks pages show, from records written by tools/gpu_check.py."""
    hooks, gc = sb.load_hooks(), _gpu_check_module()
    data = SimpleNamespace(methods={}, smoke={"cpu": {}, "gpu": {}}, runs={}, reports_dir=tmp_path)
    assert "not measured on gpu yet" in hooks.status_page(data).lower()
    assert hooks.marker_gpu_results(data, "benchmarks.md") == hooks.NOT_ON_GPU

    env = {"date": "2026-12-07", "gpu": "NVIDIA H100 80GB HBM3", "versions": {"torch": "2.13.0", "peft": "0.21.2"}}
    run = {"method": "sft", "side": "ours", "tokens_per_second": 50_000.0, "step_seconds_median": 0.164}
    runs = [
        gc.with_mfu({**run, "peak_memory_gib": 12.34}, 494_032_768, 989.0),
        {"method": "sft", "side": "trl", "error": "CUDA out of memory"},
    ]
    result = {"parameters": 494_032_768, "peak_tflops": 989.0, "trl": "1.16.0", "runs": runs}
    folder = tmp_path / "gpu"
    gc.write_record(folder, gc.record("throughput", "failed", 180.0, "sft/ours 50,000 tok/s", result, env))
    gc.write_record(folder, gc.record("smoke", "ok", 95.2, "60 of 60 plugins passed", {}, env))
    gc.write_record(folder, gc.record("qlora", "ok", 9.0, "2 steps", {}, {**env, "device": "cpu"}))  # a rehearsal
    (folder / "stray.json").write_text("[1, 2]")
    with caplog.at_level("WARNING", logger="mkdocs.hooks.posttrain"):
        section = hooks.marker_gpu_results(data, "benchmarks.md")
    assert len(caplog.records) == 1 and "stray.json" in caplog.records[0].getMessage()
    assert "not measured" not in section.lower() and "qlora" not in section
    assert "NVIDIA H100 80GB HBM3, 2026-12-07 (torch 2.13.0, peft 0.21.2)" in section
    assert section.index("| smoke |") < section.index("| throughput |")  # in step order
    assert "| sft | posttrain | 50,000 | 15.0% | 18.8% | 0.164 | 12.3 |" in section
    assert "| sft | TRL | failed: CUDA out of memory |" in section
    assert section in hooks.status_page(data)
    assert "<!-- catalog:gpu-results -->" in (sb.SITE / "docs" / "benchmarks.md").read_text(encoding="utf-8")


def article_text(page: str, inline_code: bool = False) -> str:
    """The rendered text of a page's article without code blocks, math and scripts (and without inline
    code unless ``inline_code``)."""
    body = page[page.find("<article") : page.find("</article>")]
    body = re.sub(r"<(script|pre)\b.*?</\1>", " ", body, flags=re.S)
    if not inline_code:
        body = re.sub(r"<code\b.*?</code>", " ", body, flags=re.S)
    body = re.sub(r'<(div|span) class="arithmatex">.*?</\1>', " ", body, flags=re.S)
    return text_of(body)


def test_no_markdown_escapes_or_backticks_leak_into_the_text(real_site: Path) -> None:
    leaks = {}
    for path in real_site.rglob("*.html"):
        page = path.read_text(encoding="utf-8")
        text, with_code = article_text(page), article_text(page, inline_code=True)
        found = [s for s in ("\\[", "\\|", "\\_", "\\<") if s in with_code] + (["`"] if "`" in text else [])
        if found:
            leaks[str(path.relative_to(real_site))] = found
    assert leaks == {}
    ia3 = (real_site / "methods" / "ia3.html").read_text(encoding="utf-8")
    assert re.search(r"<h1[^>]*>\(IA\)³", ia3)  # the name with its superscript, not a caret


def test_every_runnable_method_page_has_a_use_it_block(real_site: Path, catalog) -> None:
    from posttrain.registry import discover

    runs = {p.stem for p in (sb.REPO / "reports" / "runs").glob("*.json")}
    for mid, entry in catalog.methods.items():
        if entry.plugin is None or entry.plugin not in discover():
            continue
        page = (real_site / "methods" / f"{mid}.html").read_text(encoding="utf-8")
        use = text_of(page[page.index('id="use-it"') : page.index('id="papers"')])
        assert "Data." in use and "The recorded run" in use, mid
        if "runs on the embedded task only" not in use:
            assert f"catalog run {mid} --model Qwen/Qwen2.5-0.5B-Instruct" in use, mid
            assert re.search(r"about \d+\.\d GiB\s*: \d bytes × parameters", use), mid
        if mid in runs:
            assert "problems fixed" in use or "no per-problem outcomes" in use, mid
        assert "(IA)^3" not in use


def test_every_page_shows_its_entry_practitioner_fields(real_site: Path, catalog) -> None:
    """Runnable methods show them in "Use it", catalogued ones in "In practice" (#21 item 2)."""
    for mid, entry in catalog.methods.items():
        if not entry.when_to_use:
            continue
        text = text_of((real_site / "methods" / f"{mid}.html").read_text(encoding="utf-8"))
        assert "When to use it" in text, mid
        assert entry.when_to_use[0].text.split()[0] in text, mid
    rag = text_of((real_site / "methods" / "rag.html").read_text(encoding="utf-8"))
    assert "In practice" in rag and "Not runnable yet" in rag


def test_objective_says_where_it_was_checked(real_site: Path) -> None:
    """#21 item 6: each objective names the paper's equation, or says it is not verified yet."""

    def objective_part(mid: str) -> str:
        page = (real_site / "methods" / f"{mid}.html").read_text(encoding="utf-8")
        return text_of(page[page.index('id="objective"') : page.index('id="papers"')])

    assert "As in" in objective_part("dpo") and "Eq. 7" in objective_part("dpo")
    assert "Not verified against the paper's text yet" in objective_part("bfpo")
    assert "As in" in objective_part("peft")  # an umbrella entry: the survey's section


def test_every_objective_says_where_it_comes_from(real_site: Path, catalog) -> None:
    says = ("As in", "Not verified against the paper's text yet", "Not yet matched to an equation")
    for mid in catalog.methods:
        page = (real_site / "methods" / f"{mid}.html").read_text(encoding="utf-8")
        objective = text_of(page[page.index('id="objective"') :][:20000])
        assert any(s in objective for s in says), mid


def test_use_it_parts_come_from_the_plugin_and_its_config(tmp_path: Path) -> None:
    out = sb.build_site(
        tmp_path / "build",
        catalog=sb.fixture_catalog(tmp_path),
        reports=sb.fixture_reports_paired(tmp_path),
        plugins={"demo": sb.demo_spec("demo")},
    )
    use = text_of((out / "methods" / "demo-runnable.html").read_text(encoding="utf-8"))
    # The objective uses β and σ: β is the Config field's symbol, σ shared notation.
    assert "β the fixture's KL strength (paper symbol β). beta" in use
    assert "σ the logistic function" in use
    assert "120 problems fixed, 75 broken, sign-test p = 0.0016, pooled over 3 seeds" in use


def test_method_use_reads_data_formats_and_estimates_memory() -> None:
    sys.path.insert(0, str(sb.SITE))
    try:
        import method_use
    finally:
        sys.path.remove(str(sb.SITE))
    from posttrain.cli.configinfo import module_file

    dpo = method_use.plugin_facts(module_file("posttrain_plugins.dpo"))
    assert dpo.kind == "trainer" and dpo.data_kinds == ["preference"]
    lora = method_use.plugin_facts(module_file("posttrain_plugins.lora"))  # its data is sft's
    assert lora.data_kinds == ["sft"]
    kto = method_use.plugin_facts(module_file("posttrain_plugins.kto"))
    assert "unpaired" in kto.data_kinds and kto.has_reference
    best = method_use.plugin_facts(module_file("posttrain_plugins.best_of_n"))
    assert best.kind == "inference" and best.data_kinds == ["prompt"]
    records = [json.loads(line) for line in method_use.example_records("sft")]
    assert [tuple(r) for r in records] == [tuple(c) for c in method_use.FORMATS["sft"]]
    # 8 bytes per trained parameter, 2 per frozen one: 1 GiB of parameters is 8 GiB, 10 with a reference.
    text = method_use.memory_estimate(dpo, peft=False, parameters=2**30)
    assert text.startswith("about **8.0 GiB**") and "10.0 GiB when a frozen reference copy" in text
    assert method_use.memory_estimate(best, peft=False, parameters=2**30).startswith("about **2.0 GiB**")


def test_inline_markdown_keeps_code_spans_and_escapes_the_rest() -> None:
    hooks = sb.load_hooks()
    assert hooks.inline_md("Regex of the `format` reward (default: <think>)") == (
        "Regex of the `format` reward (default: &lt;think&gt;)"
    )
    assert hooks.inline_md("a | b [c] *d*") == "a \\| b \\[c\\] \\*d\\*"
    assert hooks.code_text("Literal['a', 'b'] | None") == "`Literal['a', 'b'] | None`"
    assert hooks.code_text("a`b") == "`` a`b ``"


def test_search_offline_repo_link_and_404_under_a_sub_path(real_site: Path) -> None:
    index = json.loads((real_site / "search" / "search_index.json").read_text(encoding="utf-8"))
    sources = [d["location"] for d in index["docs"] if "class Config(" in d["text"]]
    assert all(not loc.startswith("methods/") for loc in sources), sources  # plugin source is not indexed
    assert (real_site / "search" / "search_index.js").is_file()  # the offline plugin: search from file://
    home = (real_site / "index.html").read_text(encoding="utf-8")
    assert "unpkg.com" not in home and "assets/javascripts/file-worker.js" in home
    assert 'class="md-source"' in home and 'data-md-component="source"' not in home  # no GitHub API calls
    not_found = (real_site / "404.html").read_text(encoding="utf-8")
    sub_path = re.search(r'href="(/[^"]*/)assets/stylesheets/extra.css"', not_found)
    assert sub_path, "the 404 page's links do not start at the site's path"
    nav_titles = re.findall(r"<h1[^>]*>(.*?)<", (real_site / "test-time-scaling.html").read_text(encoding="utf-8"))
    assert nav_titles and nav_titles[0].strip() != "Test-time scaling"  # the branch has that name


def test_status_page_says_when_and_how_many_smoke_tests_passed(tmp_path: Path) -> None:
    hooks = sb.load_hooks()
    reports = sb.fixture_reports(tmp_path)
    smoke, runs = hooks.load_reports(reports)
    data = SimpleNamespace(methods={}, smoke=smoke, runs=runs, reports_dir=reports)
    cpu = hooks.smoke_summary(data, "cpu")
    assert "run on 2026-01-02 on cpu): 1 of 1 plugins pass, 0 fail." in cpu
    assert "no run is committed yet" in hooks.smoke_summary(data, "gpu")
    skipped = {"plugin": "q", "ok": True, "seconds": 0.0, "detail": "skipped: needs a CUDA GPU"}
    assert "skipped" in hooks.smoke_cell(skipped) and "pass" not in hooks.smoke_cell(skipped)


def test_nav_names_are_distinct() -> None:
    from mkdocs.config import load_config

    hooks = sb.load_hooks()
    config = hooks.on_config(load_config(config_file=str(sb.CONFIG)))
    names: list[str] = []

    def walk(items: list) -> None:
        for item in items:
            if isinstance(item, dict):
                for name, value in item.items():
                    names.append(name)
                    if isinstance(value, list):
                        walk(value)

    walk(config["nav"])
    assert len(names) > 100 and sorted({n for n in names if names.count(n) > 1}) == []


def test_practitioner_fields_come_from_the_entry_with_their_sources() -> None:
    sys.path.insert(0, str(sb.SITE))
    try:
        import method_use
    finally:
        sys.path.remove(str(sb.SITE))
    hooks = sb.load_hooks()

    def claim(text: str, source: str, where: str | None = None) -> SimpleNamespace:
        return SimpleNamespace(text=text, source=source, where=where)

    entry = SimpleNamespace(
        when_to_use=[claim("You have `pairs`.", "dpo-2023", "Abstract")],
        avoid_when=[],
        failure_modes=[claim("Likelihood displacement.", "reports/runs/dpo-plain.json"), claim("Long answers.", "p")],
        results=[SimpleNamespace(text="+3 points", paper="dpo-2023", where="Table 2")],
        data=None,
        compute=None,
    )

    def cite(source: str, where: str | None) -> str:
        return f"<{source}|{where}>"

    text = "\n".join(method_use.advice_part(entry, hooks.inline_md, cite))
    assert "**When to use it**\n\n- You have `pairs`. (<dpo-2023|Abstract>)" in text
    assert "**Failure modes**\n\n- Likelihood displacement. (<reports/runs/dpo-plain.json|None>)" in text
    assert "- Long answers. (<p|None>)" in text
    assert "**What the paper reports**\n\n- +3 points (<dpo-2023|Table 2>)" in text
    assert "Avoid it when" not in text
    assert method_use.advice_part(SimpleNamespace(), hooks.inline_md, cite) == []


def test_status_page_shows_the_architecture_matrix_and_its_gaps() -> None:
    hooks = sb.load_hooks()
    matrix = {
        "date": "2026-12-06",
        "device": "cpu",
        "families": {"llama": {}, "olmo2": {}},
        "cells": [
            {"family": "llama", "plugin": "prm", "outcome": "ok", "detail": "x"},
            {"family": "olmo2", "plugin": "prm", "outcome": "error", "detail": "prm needs a `token` head"},
        ],
    }
    text = "\n".join(hooks.families_section(matrix))
    assert "| `prm` | ✓ | ✗ (see below) |" in text
    assert "- prm on olmo2: prm needs a `token` head" in text
    assert "No architecture matrix" in "\n".join(hooks.families_section(None))
