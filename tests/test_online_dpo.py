"""Online DPO: the best-vs-worst pairing rule on hand-worked reward groups, and a slow learning
run on the embedded task (on-policy pairs judged by the checker)."""

import pytest
import torch

from posttrain_plugins.online_dpo import best_worst_pairs


def test_best_worst_pairs():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert best_worst_pairs(rewards).tolist() == [[0, 0, 1], [2, 1, 0]]  # the tied prompt 1 gives no pair


def test_best_worst_pairs_k4_and_limits():
    rewards = torch.tensor([[0.2, 0.9, -0.3, 0.9], [1.0, 1.0, 1.0, 1.0]])
    assert best_worst_pairs(rewards).tolist() == [[0, 1, 2]]
    assert best_worst_pairs(torch.zeros(3, 2)).shape == (0, 3)


@pytest.mark.slow
@pytest.mark.extended  # 3 seeds x 44 s (reports/runs/online-dpo.json)
@pytest.mark.timeout(3600)
def test_online_dpo_learns(tmp_path):
    """On-policy pairs depend on the sampling seed: 3 seeds, every seed's held-out exact match up and
    the pooled paired test significant."""
    from learning import assert_pooled_gain, run_seeds

    runs = run_seeds("online-dpo", tmp_path)
    assert_pooled_gain(runs, "exact_match")
    # Held-out pairs: the initial policy's samples, judged once (the same pairs before and after;
    # before, policy = reference: every implicit reward 0, accuracy 1/2).
    if all("preference_accuracy" in (m.get("paired") or {}) for m in runs):
        assert_pooled_gain(runs, "preference_accuracy")
    else:  # per-pair outcomes not recorded by the plugin: clearly above chance on every seed (0.663, seed 0)
        assert all(m["after"]["preference_accuracy"] > 0.6 for m in runs), [m["after"] for m in runs]


def test_reward_model_as_annotator(tmp_path, tiny_classifier):
    """With --set reward_model the RM's scores (continuous, rarely tied) form the pairs."""
    import json

    from posttrain.runs.runner import execute, prepare

    tiny_classifier(tmp_path / "rm")
    sets = [f"reward_model={tmp_path / 'rm'}"]
    result = execute(
        prepare("online-dpo", output_dir=tmp_path / "out", sets=sets, smoke=True, device="cpu"), progress=False
    )
    assert "reward" in result.metrics["after"]
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("samples/pairs", 0) > 0 for r in rows)
