"""`catalog validate` finds one paper under two identities, trailing punctuation and dates off arXiv v1 (#21 item 1).

Each test adds one deliberate mistake to a two-record catalog and expects exactly one problem line
naming the file, line and field; the CLI exits 2 on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.catalog.load import validate
from posttrain.cli.main import app

CATALOG = Path(__file__).resolve().parents[1] / "catalog"

FIRST = """id: first-2024
title: Value-Guided Search for Better Reasoning
date: 2024-02
arxiv: "2402.00001"
url: https://aclanthology.org/2024.acl-long.999.pdf
doi: 10.1234/first.2024
"""
SECOND_OPENREVIEW = """id: second-2024
title: An Unrelated Paper About Rewards
date: '2024'
url: https://openreview.net/forum?id=AbC123xyz
"""


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    (root / "methods").mkdir(parents=True)
    (root / "papers").mkdir()
    shutil.copy(CATALOG / "taxonomy.yaml", root / "taxonomy.yaml")
    (root / "papers" / "first-2024.yaml").write_text(FIRST)
    (root / "papers" / "second-2024.yaml").write_text(SECOND_OPENREVIEW)
    return root


def only_problem(root: Path) -> str:
    found = [str(p) for p in validate(root)[1]]
    assert len(found) == 1, found
    return found[0]


def add_paper(root: Path, body: str) -> None:
    (root / "papers" / "third-2024.yaml").write_text("id: third-2024\n" + body)


def test_the_two_records_are_valid(root):
    assert [str(p) for p in validate(root)[1]] == []


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        pytest.param(
            "title: Other\ndate: 2024-02\narxiv: 2402.00001v2\n",
            "third-2024.yaml:4: arxiv:",
            "arXiv 2402.00001 is already 'first-2024'",
            id="same_arxiv_id",
        ),
        pytest.param(
            "title: Other\ndate: '2024'\nurl: https://arxiv.org/pdf/2402.00001\n",
            "third-2024.yaml:4: url:",
            "arXiv 2402.00001 is already 'first-2024'",
            id="arxiv_id_in_url",
        ),
        pytest.param(
            "title: Other\ndate: '2024'\nurl: https://example.org/p\ndoi: 10.1234/FIRST.2024\n",
            "third-2024.yaml:5: doi:",
            "DOI 10.1234/first.2024 is already 'first-2024'",
            id="same_doi",
        ),
        pytest.param(
            "title: Other\ndate: '2024'\nurl: https://doi.org/10.1234/first.2024\n",
            "third-2024.yaml:4: url:",
            "DOI 10.1234/first.2024 is already 'first-2024'",
            id="doi_in_url",
        ),
        pytest.param(
            "title: Other\ndate: '2024'\nurl: https://aclanthology.org/2024.acl-long.999/\n",
            "third-2024.yaml:4: url:",
            "ACL Anthology 2024.acl-long.999 is already 'first-2024'",
            id="same_acl_anthology_id",
        ),
        pytest.param(
            "title: Other\ndate: '2024'\nurl: https://openreview.net/pdf?id=AbC123xyz\n",
            "third-2024.yaml:4: url:",
            "OpenReview AbC123xyz is already 'second-2024'",
            id="same_openreview_id",
        ),
        pytest.param(
            "title: 'VALUE-GUIDED search for better reasoning'\ndate: '2024'\nurl: https://example.org/p\n",
            "third-2024.yaml:2: title:",
            "same title as 'first-2024'",
            id="same_title",
        ),
        pytest.param(
            "title: Value Guided Searches for Better Reasoning\ndate: '2024'\nurl: https://example.org/p\n",
            "third-2024.yaml:2: title:",
            "title nearly identical to 'first-2024'",
            id="near_identical_title",
        ),
    ],
)
def test_one_paper_under_two_identities(root, body, where, message):
    add_paper(root, body)
    problem = only_problem(root)
    assert problem.startswith(f"catalog/papers/{where}") and "duplicate paper" in problem, problem
    assert message in problem


def test_same_title_with_different_arxiv_ids_is_two_papers(root):
    # two surveys may share a title; distinct arXiv ids keep them apart
    add_paper(root, "title: Value-Guided Search for Better Reasoning\ndate: 2024-03\narxiv: '2403.00002'\n")
    assert [str(p) for p in validate(root)[1]] == []


def test_different_titles_are_not_near_duplicates(root):
    add_paper(root, "title: Value-Guided Search for Better Planning\ndate: '2024'\nurl: https://example.org/p\n")
    assert [str(p) for p in validate(root)[1]] == []


@pytest.mark.parametrize("title", ["Let's Verify Step by Step.", "A Title,", "A Title:"])
def test_trailing_punctuation_in_a_title(root, title):
    add_paper(root, f"title: \"{title}\"\ndate: '2024'\nurl: https://example.org/p\n")
    assert "title ends in" in only_problem(root)


def test_question_mark_is_part_of_a_title(root):
    add_paper(
        root, "title: \"Is ChatGPT a General-Purpose NLP Task Solver?\"\ndate: '2024'\nurl: https://example.org/p\n"
    )
    assert [str(p) for p in validate(root)[1]] == []


@pytest.mark.parametrize(
    ("date", "arxiv", "verdict"),
    [
        ("2023-05", "2305.20050", None),
        ("'2023'", "2305.20050", None),
        ("'2023-05-31'", "2305.20050", None),
        ("'2024-03-30'", "2404.00282", None),  # submitted after March's last cut-off, announced in April
        ("'2022'", "2301.00001", None),  # a January id: the year before is possible at year precision
        ("2024-05", "2305.20050", "later"),  # Lightman et al. dated by the ICLR version
        ("'2024'", "2310.09430", "later"),
        ("2023-04", "2305.20050", "earlier"),
        ("'2024-03-20'", "2404.00282", "earlier"),
        ("'2022'", "2305.20050", "earlier"),
    ],
)
def test_date_against_the_arxiv_v1_month(root, date, arxiv, verdict):
    add_paper(root, f"title: A Dated Paper\ndate: {date}\narxiv: '{arxiv}'\n")
    found = [str(p) for p in validate(root)[1]]
    if verdict is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith("catalog/papers/third-2024.yaml:3: date:"), found
        assert f"is {verdict} than arXiv {arxiv}'s first version" in found[0]


def test_cli_exits_2_with_one_line_per_problem(root, monkeypatch):
    import posttrain.registry

    monkeypatch.setattr(posttrain.registry, "discover", lambda: {})
    add_paper(root, "title: Other.\ndate: 2023-01\narxiv: '2402.00001'\n")
    result = CliRunner().invoke(app, ["validate", str(root)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("catalog/")]
    assert len(lines) == 3, lines  # duplicate arXiv id, trailing dot, date earlier than v1
    assert all(line.count(":") >= 3 for line in lines)
