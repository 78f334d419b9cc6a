"""`catalog import awesome`: parsing, idempotent merging, keeping hand-made fields, offline URLs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from posttrain.catalog.awesome import merge, parse, parse_badge
from posttrain.catalog.load import validate
from posttrain.cli.main import app

SHARED_LIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "awesome-llm-post-training" / "README.md"
CATALOG = Path(__file__).resolve().parents[1] / "catalog"

FIXTURE = """# Awesome list

## 📌 Contents
| [📖 Papers](#papers) | [Survey](#survey) |

## 🔍 Survey

| Title | Publication Date | Link |
|---------------------------------|----------------|---------------------------------|
| A Survey on Things | 16 July 2024 | [Arxiv](https://arxiv.org/abs/2407.11511) |
| Things in Journals | 8 Mar 2025 | [Springer](https://link.springer.com/article/10.1007/x) |

## 🤖 LLMs-in-RL

* Deepseekmath: Pushing the limits [[Paper]](https://arxiv.org/abs/2402.03300) ![](https://img.shields.io/badge/arXiv-2024.02-red)
* A Workshop Paper [[Paper]](https://openreview.net/forum?id=abc) ![](https://img.shields.io/badge/NeurIPS_WorkShop-2023-blue)
* * Doubled Bullet Paper [[Paper]](https://arxiv.org/abs/2406.07394v2) ![](https://img.shields.io/badge/arXiv-2024.06-red)
* Truncated Link Paper [[Paper]](https://arxiv.org/abs/2502.143) ![](https://img.shields.io/badge/arXiv-2025.02-red)

## Benchmark and Datasets
* DEEPSEEKMATH: pushing the limits. [[Paper]](https://arxiv.org/abs/2402.03300) ![](https://img.shields.io/badge/arXiv-2024.02-red)

## 🚀 RL & LLM Fine-Tuning Repositories

| #  | Repository & Link | Description |
|----|-------------------|-------------|
| 1  | [**TRL**](https://github.com/huggingface/trl) | A library. |

## ⚡ Applications & Benchmarks
- **"Old Style Entry"** - Someone (2023) [[Paper](https://arxiv.org/abs/2304.03442)]

## 📚 Tutorials & Courses
- 🎥 **Deep RL Bootcamp** [[Website](https://sites.google.com/view/deep-rl-bootcamp/)]

## 🛠️ Libraries & Implementations
- 🔹 [ReAct (GitHub)](https://github.com/ysymyth/ReAct)
"""


def make_catalog(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    (root / "methods").mkdir(parents=True)
    shutil.copy(CATALOG / "taxonomy.yaml", root / "taxonomy.yaml")
    return root


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.yaml"))}


def test_parse_fixture():
    items = parse(FIXTURE)
    titles = [i.title for i in items]
    assert "Deep RL Bootcamp" not in titles and "Papers" not in " ".join(titles)
    assert len(items) == 10
    by_title = {i.title: i for i in items}
    assert by_title["A Survey on Things"].date == "2024-07-16"
    assert by_title["A Survey on Things"].arxiv == "2407.11511"
    assert by_title["Doubled Bullet Paper"].arxiv == "2406.07394"
    assert by_title["A Workshop Paper"].venue == "NeurIPS WorkShop 2023"
    assert by_title["A Workshop Paper"].date == "2023"
    assert by_title["Truncated Link Paper"].arxiv is None and by_title["Truncated Link Paper"].note
    assert by_title["TRL"].kind == "repository"
    assert by_title["ReAct"].kind == "repository"
    assert by_title["Old Style Entry"].date == "2023"


def test_badges():
    assert parse_badge("https://img.shields.io/badge/arXiv-2025.02-red") == (None, "2025-02")
    assert parse_badge("https://img.shields.io/badge/ACL_Findings-2024-blue") == ("ACL Findings 2024", "2024")
    assert parse_badge(None) == (None, None)


def test_import_is_idempotent_and_deduplicates(tmp_path):
    root = make_catalog(tmp_path)
    source = tmp_path / "README.md"
    source.write_text(FIXTURE, encoding="utf-8")
    runner = CliRunner()
    first = runner.invoke(app, ["import", "awesome", "--from", str(source), "--catalog", str(root)])
    assert first.exit_code == 0, first.output
    files = snapshot(root / "papers")
    assert len(files) == 9  # DeepSeekMath is listed twice
    second = runner.invoke(app, ["import", "awesome", "--from", str(source), "--catalog", str(root)])
    assert second.exit_code == 0
    assert "0 new papers, 0 updated" in second.output
    assert snapshot(root / "papers") == files
    record = yaml.safe_load(files["deepseekmath-pushing-the-limits-2024.yaml"])
    assert record["sections"] == ["LLMs-in-RL", "Benchmark and Datasets"]
    _, problems = validate(root)
    assert [str(p) for p in problems] == []


def test_merge_keeps_hand_made_links(tmp_path):
    root = make_catalog(tmp_path)
    papers = root / "papers"
    papers.mkdir()
    (root / "methods" / "grpo.yaml").write_text(
        (CATALOG / "methods" / "dpo.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    hand = {
        "id": "deepseekmath-2024",
        "title": "DeepSeekMath: Pushing the Limits",
        "authors": ["Zhihong Shao", "et al."],
        "date": "2024-02",
        "arxiv": "2402.03300",
        "venue": "hand-set venue",
        "methods": ["grpo"],
        "note": "kept",
    }
    (papers / "deepseekmath-2024.yaml").write_text(yaml.safe_dump(hand, sort_keys=False), encoding="utf-8")
    report = merge(parse(FIXTURE), papers)
    merged = yaml.safe_load((papers / "deepseekmath-2024.yaml").read_text(encoding="utf-8"))
    assert merged["methods"] == ["grpo"]
    assert merged["authors"] == ["Zhihong Shao", "et al."]
    assert merged["note"] == "kept" and merged["venue"] == "hand-set venue"
    assert merged["sections"] == ["LLMs-in-RL", "Benchmark and Datasets"]
    assert "deepseekmath-2024" in report.updated
    again = merge(parse(FIXTURE), papers)
    assert again.added == [] and again.updated == []


def test_offline_url_gives_one_line_error(tmp_path, monkeypatch):
    import requests

    def offline(*args, **kwargs):
        raise requests.ConnectionError("no network")

    monkeypatch.setattr(requests, "get", offline)
    root = make_catalog(tmp_path)
    result = CliRunner().invoke(
        app, ["import", "awesome", "--from", "https://example.invalid/README.md", "--catalog", str(root)]
    )
    assert result.exit_code != 0
    assert "cannot reach" in str(result.exception)


def test_missing_file_is_a_user_error(tmp_path):
    from posttrain.errors import UserError

    result = CliRunner().invoke(app, ["import", "awesome", "--from", str(tmp_path / "nope.md")])
    assert isinstance(result.exception, UserError)
    assert "--from" in str(result.exception)


@pytest.mark.skipif(not SHARED_LIST.is_file(), reason="../shared is not available")
def test_full_list_into_empty_catalog(tmp_path):
    root = make_catalog(tmp_path)
    report = merge(parse(SHARED_LIST.read_text(encoding="utf-8")), root / "papers")
    assert report.parsed == 200
    assert len(report.added) == 181
    again = merge(parse(SHARED_LIST.read_text(encoding="utf-8")), root / "papers")
    assert again.added == [] and again.updated == []


@pytest.mark.skipif(not SHARED_LIST.is_file(), reason="../shared is not available")
def test_shipped_catalog_is_up_to_date_with_the_list(tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(CATALOG, copy)
    before = snapshot(copy / "papers")
    report = merge(parse(SHARED_LIST.read_text(encoding="utf-8")), copy / "papers")
    assert report.added == [] and report.updated == []
    assert snapshot(copy / "papers") == before


def test_validate_links_says_offline(monkeypatch, tmp_path):
    from posttrain.catalog import linkcheck

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(
        linkcheck,
        "check_url",
        lambda url, session=None: linkcheck.LinkResult(url, False, "could not connect", False),
    )
    result = CliRunner().invoke(app, ["validate", "--links"], env={"COLUMNS": "300"})
    assert result.exit_code == 3
    assert "offline" in result.output


def test_link_check_reports_broken_urls_and_caches_successes(monkeypatch, tmp_path):
    from posttrain.catalog import linkcheck

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def fake(url, session=None):
        calls.append(url)
        return linkcheck.LinkResult(url, "bad" not in url, "HTTP 200" if "bad" not in url else "HTTP 404")

    results = linkcheck.check_urls(["https://a.example/ok", "https://a.example/bad"], checker=fake)
    assert {r.url: r.ok for r in results} == {"https://a.example/ok": True, "https://a.example/bad": False}
    calls.clear()
    again = linkcheck.check_urls(["https://a.example/ok", "https://a.example/bad"], checker=fake)
    assert calls == ["https://a.example/bad"]
    assert any(r.detail == "cached" for r in again)
