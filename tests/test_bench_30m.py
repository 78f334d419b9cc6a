"""tools/bench_30m.py (issue #18 item 4): run order, per-pair ratios, and the Benchmarks page
section being exactly what the committed reports give."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # bench_30m imports gpu_bench as a sibling, as when run as a script

import bench_30m  # noqa: E402


def test_sides_alternate_between_repeats():
    assert bench_30m.order_for("sft", 0) == ["ours", "trl"]
    assert bench_30m.order_for("sft", 1) == ["trl", "ours"]
    assert bench_30m.order_for("grpo", 1) == ["ours-plain", "trl", "ours"]


def run(repeat: int, side: str, cpu: float, wall: float, net_rss: float, generated: float = 100.0) -> dict:
    return {"repeat": repeat, "side": side, "step_cpu_seconds_mean": cpu, "step_seconds_median": wall,
            "peak_rss_net_gib": net_rss, "tokens": 200, "steps_measured": 2,
            "generated_tokens_per_step": generated}  # fmt: skip


def test_ratios_are_per_pair_with_their_spread():
    runs = [
        run(0, "ours", 2.0, 4.0, 1.0),
        run(0, "trl", 3.0, 4.0, 2.0),
        run(1, "trl", 4.0, 9.0, 2.0),
        run(1, "ours", 2.0, 3.0, 1.5),
        run(2, "ours", 1.0, 1.0, 1.0),
        run(2, "trl", 1.2, 1.0, 1.0),
        run(3, "ours", 1.0, 1.0, 1.0),  # its pair is missing: not counted
    ]
    out = bench_30m.pair_ratios("sft", runs, "ours", "trl")
    assert out["pairs"] == 3
    assert out["cpu_throughput_ratio_per_pair"] == pytest.approx([1.5, 2.0, 1.2])
    assert out["cpu_throughput_ratio"] == pytest.approx({"min": 1.2, "median": 1.5, "max": 2.0})
    assert out["wall_throughput_ratio"] == pytest.approx({"min": 1.0, "median": 1.0, "max": 3.0})
    assert out["peak_rss_net_ratio"] == pytest.approx({"min": 0.5, "median": 0.75, "max": 1.0})


def test_grpo_throughput_is_per_generated_token():
    """A side that generated 10% fewer tokens in the same CPU time is not faster per token."""
    runs = [run(0, "ours", 1.0, 1.0, 1.0, generated=90.0), run(0, "trl", 1.0, 1.0, 1.0, generated=100.0)]
    out = bench_30m.pair_ratios("grpo", runs, "ours", "trl")
    assert out["cpu_step_time_ratio"]["median"] == pytest.approx(1.0)
    assert out["cpu_throughput_ratio"]["median"] == pytest.approx(0.9)


def test_the_30m_shape_has_about_30m_parameters():
    torch = pytest.importorskip("torch")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**bench_30m.SHAPES["30m"]))
    parameters = sum(p.numel() for p in model.parameters())
    assert 28e6 < parameters < 32e6
    for report in bench_30m.committed_reports().values():
        assert report["config"]["parameters"] == parameters


def test_the_page_section_is_the_committed_reports():
    reports = bench_30m.committed_reports()
    if not reports:
        pytest.skip("no 30M report committed yet")
    page = bench_30m.PAGE.read_text(encoding="utf-8")
    section = page.split(bench_30m.BEGIN, 1)[1].split(bench_30m.END, 1)[0]
    assert section.strip() == bench_30m.page_section(reports).strip(), "run: python tools/bench_30m.py --page-only"


@pytest.mark.parametrize("method", bench_30m.METHODS)
def test_committed_reports_hold_what_the_issue_asks(method):
    path = bench_30m.report_path(method)
    if not path.is_file():
        pytest.skip(f"{path.name} not committed yet")
    report = json.loads(path.read_text())
    assert report["config"]["repeats"] >= 5 and report["config"]["threads"] == 1
    assert {"date", "versions", "machine", "runs"} <= set(report)
    assert all(r["threads"] == 1 and "load_average" in r for r in report["runs"])
    assert report["summary"]["ours_vs_trl"]["pairs"] >= 5
    if method == "dpo":
        assert all(r["trl_precompute_ref_log_probs"] for r in report["runs"] if r["side"] == "trl")
    if method == "grpo":
        assert not any(r["fast_forward"] for r in report["runs"] if r["side"] == "ours-plain")
