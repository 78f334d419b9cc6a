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
def test_online_dpo_learns(tmp_path):
    from posttrain.runner import execute, prepare

    result = execute(prepare("online-dpo", output_dir=tmp_path, device="cpu", seed=0), progress=False)
    before, after = result.metrics["before"], result.metrics["after"]
    assert after["exact_match"] >= before["exact_match"] + 0.05, result.metrics
    assert after["preference_accuracy"] > 0.6, result.metrics


def test_reward_model_as_annotator(tmp_path, tiny_classifier):
    """With --set reward_model the RM's scores (continuous, rarely tied) form the pairs."""
    import json

    from posttrain.runner import execute, prepare

    tiny_classifier(tmp_path / "rm")
    sets = [f"reward_model={tmp_path / 'rm'}"]
    result = execute(
        prepare("online-dpo", output_dir=tmp_path / "out", sets=sets, smoke=True, device="cpu"), progress=False
    )
    assert "reward" in result.metrics["after"]
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("samples/pairs", 0) > 0 for r in rows)
