"""The shared inference plumbing: batched sampling with a shared prompt cache, the compute meter,
problems from a JSONL file, budget sweeps, the step-level judges and self-refine's localized loop."""

import json
from pathlib import Path

import pytest
import torch

from posttrain.errors import UserError
from posttrain.generation.decode import sample
from posttrain.inference.recipe import ComputeMeter, evaluator_scorer, load_model, load_problems
from posttrain.interface import RunContext
from posttrain.runs.sweeps import find_sweep, plot_sweeps, sweepable_fields


@pytest.fixture(scope="module")
def tiny():
    return load_model(RunContext(output_dir=Path(".")))


def test_greedy_sampling_with_the_shared_prompt_cache_matches_plain_generate(tiny):
    from posttrain.generation.decode import generate

    model, tok = tiny
    prompts = ["12+30=", "7+5=", "99+99="]  # different lengths: left padding and the cache must agree
    plain = generate(model, tok, prompts, max_new_tokens=5)
    ours = sample(model, tok, prompts, 3, 5, greedy=True)
    for p, row in zip(plain, ours.texts, strict=True):
        assert row == [p.strip()] * 3 or row == [p] * 3


def test_sampled_logprobs_are_the_models(tiny):
    model, tok = tiny
    out = sample(model, tok, ["12+30="], 2, 4, temperature=1.0)
    text = out.texts[0][0]
    ids = tok("12+30=")["input_ids"]
    gen = tok(text, add_special_tokens=False)["input_ids"]
    logits = model(input_ids=torch.tensor([ids + gen])).logits[0].float()
    want = torch.log_softmax(logits, -1)[len(ids) - 1 : len(ids) - 1 + len(gen)].gather(-1, torch.tensor(gen)[:, None])
    assert out.token_logprobs[0][0][: len(gen)] == pytest.approx(want.squeeze(-1).tolist(), abs=1e-4)


def test_compute_meter_counts_generated_tokens_and_model_calls(tiny):
    model, tok = tiny
    meter = ComputeMeter(model)
    out = sample(model, tok, ["1+2=", "3+4="], 4, 6, meter)
    meter.close()
    assert meter.generated_tokens == sum(sum(r) for r in out.lengths()) > 0
    assert 2 <= meter.forward_passes <= 1 + 6  # one prefill + at most one call per new token
    snap = meter.snapshot(2)
    assert snap["generated_tokens_per_problem"] == meter.generated_tokens / 2


def test_evaluator_scorer_counts_the_prms_forward_passes(tiny, tmp_path, tiny_classifier):
    model, tok = tiny
    prm = str(tiny_classifier(tmp_path / "prm", head="token"))
    ctx = RunContext(output_dir=tmp_path)
    meter = ComputeMeter(model)
    score, name = evaluator_scorer("prm", prm, ctx, model, tok, meter)
    assert name == f"prm:{prm}"
    scores = score(["12+3=", "7+5="], ["5;1;#15", "12;#12"])  # one batch of 2 rows
    assert len(scores) == 2 and all(0 < s < 1 for s in scores)
    assert meter.forward_passes == 1  # the PRM's one batched forward; the policy was not called
    # right-padded to the longer row: bos + "12+3=" + "5;1;#15" = 1 + 5 + 7 = 13 positions per row
    assert meter.forward_tokens == 2 * 13
    meter.reset()  # a new phase: counts start again from zero, the PRM is still watched
    score(["12+3="], ["5;"])
    assert (meter.forward_passes, meter.forward_tokens) == (1, 1 + 5 + 2)
    meter.close()
    score(["12+3="], ["5;"])
    assert meter.forward_passes == 1  # closed: no longer counting
    unmetered, _ = evaluator_scorer("prm", prm, ctx, model, tok)
    assert unmetered(["12+3="], ["5;1;#15"]) == pytest.approx(scores[:1])


def test_verify_step_scores_rate_every_step_prefix(tiny):
    from posttrain.inference.recipe import verify_scores, verify_step_scores

    model, tok = tiny
    out = verify_step_scores(model, tok, ["12+3=", "7+5="], [["5;", "1;", "#15"], []])
    assert [len(r) for r in out] == [3, 0]
    want = verify_scores(model, tok, ["12+3="] * 3, ["5;", "5;1;", "5;1;#15"])
    assert out[0] == pytest.approx(want, abs=1e-5)


def test_self_refine_step_loop_keeps_the_approved_prefix(tiny):
    from posttrain.inference.recipe import PerProblem
    from posttrain_plugins.self_refine import Config, step_loop

    model, tok = tiny
    calls = []

    def judge(prompts, step_lists):  # doubts every second step: the flagged step is always index 1
        calls.append(len(prompts))
        return [[0.9 if k != 1 else 0.1 for k in range(len(s))] for s in step_lists]

    cfg = Config(iterations=2, samples=3)
    meter, per_problem = ComputeMeter(model), PerProblem.of(1)
    history, ratings, refined = step_loop(cfg, model, tok, ["347+285="], ["12;12;6;#622"], 6, meter, per_problem, judge)
    meter.close()
    assert refined == len(history[0]) - 1 >= 1
    assert all(h.startswith("12;") for h in history[0])  # the step before the flagged one is kept
    assert ratings[0][0] == pytest.approx(0.9)  # the first attempt's last step
    assert len(ratings[0]) == len(history[0])
    # judge calls: the first attempt, then the 3 samples of each refinement (the kept one is not re-scored)
    assert calls[0] == 1 and set(calls[1:]) <= {3, 1}
    assert per_problem.rows[0]["generated_tokens"] == meter.generated_tokens > 0


def test_problems_from_a_jsonl_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "2+2=", "answer": "4"}) + "\n" + json.dumps({"prompt": "hi"}) + "\n")
    problems = load_problems(RunContext(output_dir=tmp_path, dataset=str(path)), 10)
    assert [r["prompt"] for r in problems.records] == ["2+2=", "hi"]
    assert problems.check("4", problems.records[0]) is True
    assert problems.check("anything", problems.records[1]) is None  # no answer: not scored
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "x"}) + "\n")
    with pytest.raises(UserError, match="missing columns"):
        load_problems(RunContext(output_dir=tmp_path, dataset=str(bad)), 10)


def test_find_sweep_only_for_budget_fields():
    from posttrain_plugins.best_of_n import Config

    assert "n" in sweepable_fields(Config)
    assert find_sweep(Config, ["n=1,4,16", "temperature=0.5"]) == ("n", ["1", "4", "16"], ["temperature=0.5"])
    assert find_sweep(Config, ["n=4"]) is None
    assert find_sweep(Config, ["reward_model=a,b"]) is None  # not a budget field: passed through as is


def test_plot_sweeps_writes_a_png(tmp_path):
    sweep = {
        "method": "m",
        "field": "n",
        "points": [
            {"value": 1, "accuracy": 0.5, "generated_tokens_per_problem": 4},
            {"value": 4, "accuracy": 0.6, "generated_tokens_per_problem": 16},
        ],
        "greedy": {"accuracy": 0.55, "generated_tokens_per_problem": 4},
    }
    path = plot_sweeps([sweep, {**sweep, "method": "k"}], tmp_path / "s.png")
    assert path.stat().st_size > 1000


@pytest.mark.smoke
def test_a_sweep_runs_once_per_value(tmp_path):
    from posttrain.runs.runner import run_sweep

    result = run_sweep(
        "self-consistency", "n", ["1", "2"], ["eval_examples=4", "task=addition"], tmp_path, device="cpu"
    )
    assert [p["value"] for p in result["points"]] == [1, 2]
    assert (tmp_path / "sweep.png").is_file() and (tmp_path / "n=2" / "predictions.jsonl").is_file()
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["points"][1]["generated_tokens_per_problem"] > saved["points"][0]["generated_tokens_per_problem"]
