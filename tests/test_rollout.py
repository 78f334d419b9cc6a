"""Rollout plumbing and reward registry: batch semantics, masks, stop strings, log-probs that match
the sampler exactly, rollout selection/concatenation, and the reward functions."""

import pytest
import torch

from posttrain.errors import UserError
from posttrain.generation.logprobs import completion_logprobs
from posttrain.generation.sampler import (
    Sampling,
    completion_masks,
    cut_at_stop,
    draw,
    native_generate,
    position_ids,
    sampling_scores,
    single_token_stops,
)
from posttrain.rl.rollout import (
    BatchSemantics,
    attach_logprobs,
    concat_rollouts,
    sample_completions,
    score_rollout,
)
from posttrain.scoring.rewards import combined_reward, length_penalty


@pytest.fixture(scope="module")
def tiny():
    from posttrain.embedded.model import build_model
    from posttrain.embedded.tokenizer import build_tokenizer

    tok = build_tokenizer()
    model = build_model(tok, seed=0)
    model.eval()
    return model, tok


RECORDS = [
    {"prompt": "12+30=", "answer": "42"},
    {"prompt": "7+5=", "answer": "12"},
    {"prompt": "99+1=", "answer": "100"},
]


# --- batch semantics ------------------------------------------------------------------------------


def test_batch_semantics_steps_and_rows():
    s = BatchSemantics(prompts_per_step=4, completions_per_prompt=8, micro_batch=8, grad_accum=2, policy_epochs=2)
    assert s.completions_per_rollout == 32 and s.completions_per_step == 16
    assert s.steps_per_epoch == 2 and s.steps_per_rollout == 4 and s.reuses_rollouts
    assert s.locate(0, 0) == (0, 0, slice(0, 8))
    assert s.locate(0, 1) == (0, 0, slice(8, 16))
    assert s.locate(1, 1) == (0, 0, slice(24, 32))
    assert s.locate(2, 0) == (0, 1, slice(0, 8))  # second policy epoch over the same rollout
    assert s.locate(4, 0) == (1, 0, slice(0, 8))  # next rollout
    text = s.describe()
    for part in ("4 prompts x 8 completions", "micro-batch 8", "grad_accum 2", "2 policy epoch(s)", "4 optimizer step"):
        assert part in text


def test_batch_semantics_single_step_does_not_reuse():
    s = BatchSemantics(8, 8, 64)
    assert s.steps_per_rollout == 1 and not s.reuses_rollouts


def test_batch_semantics_rejects_non_dividing_batch():
    with pytest.raises(UserError, match="must divide"):
        BatchSemantics(3, 4, 5).check()


# --- masks and stop strings -----------------------------------------------------------------------


def test_completion_masks_end_at_first_eos_inclusive():
    ids = torch.tensor([[5, 6, 2, 7], [5, 6, 7, 8], [2, 0, 0, 0]])
    mask, truncated = completion_masks(ids, stop_ids=[2])
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]


def test_completion_masks_stop_string(tiny):
    _, tok = tiny
    ids = torch.tensor([tok("12 ok\nmore", add_special_tokens=False)["input_ids"]])
    mask, truncated = completion_masks(ids, stop_ids=[tok.eos_token_id], tokenizer=tok, stop=["\n"])
    assert int(mask.sum()) == len("12 ok\n") and not truncated.item()
    assert cut_at_stop("12 ok\nmore\n", ["\n", "ok"]) == "12 ok"


def test_position_ids_match_left_padding():
    attn = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids(attn).tolist() == [[1, 1, 0, 1, 2], [0, 1, 2, 3, 4]]


# --- sampling and log-probs -----------------------------------------------------------------------


def test_sample_completions_layout(tiny):
    model, tok = tiny
    torch.manual_seed(0)
    r = sample_completions(model, tok, RECORDS, 4, Sampling(max_new_tokens=5))
    assert len(r) == 12 and r.num_generations == 4
    assert [rec["prompt"] for rec in r.records[:5]] == ["12+30="] * 4 + ["7+5="]
    assert r.group.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert r.completion_mask.shape == r.completion_ids.shape and r.completion_mask.shape[1] <= 5
    assert r.input_ids.shape[1] == r.prompt_width + r.completion_mask.shape[1]
    # prompts are left-padded: the last prompt column is a real token in every row
    assert bool(r.attention_mask[:, r.prompt_width - 1].all())
    assert len(r.texts) == 12 and "generate" in r.timings


@pytest.mark.parametrize("backend", ["hf", "native"])
def test_logprobs_equal_the_samplers(tiny, backend):
    """The log-probs we train on are those of the distribution the tokens were sampled from."""
    model, tok = tiny
    torch.manual_seed(1)
    sampling = Sampling(max_new_tokens=6, temperature=0.7, backend=backend)
    r = sample_completions(model, tok, RECORDS, 3, sampling)
    from posttrain.generation.sampler import eos_ids, generation_config, left_pad

    prompt, attn = left_pad([tok(rec["prompt"])["input_ids"] for rec in r.records], tok.pad_token_id)
    cfg = generation_config(tok, sampling, eos_ids(tok, model))
    cfg.do_sample = False  # replay the sampled tokens: score them with generate's own logits
    width = r.completion_mask.shape[1]
    ids = torch.cat([prompt, r.completion_ids], 1)
    step_logits = []
    for j in range(width):
        out = model(
            input_ids=ids[:, : prompt.shape[1] + j],
            attention_mask=torch.cat([attn, torch.ones(len(r), j, dtype=torch.long)], 1),
            position_ids=position_ids(torch.cat([attn, torch.ones(len(r), j, dtype=torch.long)], 1)),
        )
        step_logits.append(out.logits[:, -1])
    expected = torch.stack([torch.log_softmax(lg / 0.7, -1) for lg in step_logits], 1)
    expected = torch.gather(expected, -1, r.completion_ids.unsqueeze(-1)).squeeze(-1)
    got = completion_logprobs(model, r, temperature=0.7)
    m = r.completion_mask.bool()
    assert torch.allclose(got[m], expected[m], atol=1e-5)
    if backend == "native":  # the sampler's own log-probs are the same numbers, 0 off the mask
        assert torch.allclose(r.sample_logps[m], expected[m], atol=1e-5)
        assert not r.sample_logps[~m].any()


def test_logprobs_match_generate_output_logits(tiny):
    model, tok = tiny
    torch.manual_seed(2)
    sampling = Sampling(max_new_tokens=4)
    from posttrain.generation.sampler import eos_ids, generation_config, left_pad

    prompt, attn = left_pad([tok(rec["prompt"])["input_ids"] for rec in RECORDS], tok.pad_token_id)
    cfg = generation_config(tok, sampling, eos_ids(tok, model))
    out = model.generate(
        input_ids=prompt, attention_mask=attn, generation_config=cfg, output_logits=True, return_dict_in_generate=True
    )
    sampled = out.sequences[:, prompt.shape[1] :]
    gen_logps = torch.stack([torch.log_softmax(lg.float(), -1) for lg in out.logits], 1)
    gen_logps = torch.gather(gen_logps, -1, sampled.unsqueeze(-1)).squeeze(-1)
    mask, _ = completion_masks(sampled, eos_ids(tok, model))
    from posttrain.rl.rollout import Rollout

    r = Rollout(
        records=RECORDS,
        num_generations=1,
        input_ids=torch.cat([prompt, sampled], 1),
        attention_mask=torch.cat([attn, mask.long()], 1),
        prompt_width=prompt.shape[1],
        completion_mask=mask,
        texts=[""] * 3,
        truncated=torch.zeros(3, dtype=torch.bool),
    )
    got = completion_logprobs(model, r)
    assert torch.allclose(got[mask.bool()], gen_logps[mask.bool()], atol=1e-5)


# --- the native sampling loop ---------------------------------------------------------------------


def test_sampling_scores_hand_worked():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    inf = float("-inf")
    assert sampling_scores(logits, 1.0, 0, 1.0).tolist() == [[2.0, 1.0, 0.0]]
    assert sampling_scores(logits, 2.0, 0, 1.0).tolist() == [[1.0, 0.5, 0.0]]
    assert sampling_scores(logits, 1.0, 2, 1.0).tolist() == [[2.0, 1.0, inf]]
    # softmax([2, 1, 0]) = [0.665, 0.245, 0.090]: top_p 0.6 keeps the first, 0.7 the first two
    assert sampling_scores(logits, 1.0, 0, 0.6).tolist() == [[2.0, inf, inf]]
    assert sampling_scores(logits, 1.0, 0, 0.7).tolist() == [[2.0, 1.0, inf]]
    assert sampling_scores(logits, 1.0, 1, 1.0).tolist() == [[2.0, inf, inf]]  # top_k 1: argmax only
    assert sampling_scores(torch.tensor([[1.0, 1.0, 0.0]]), 1.0, 1, 1.0).tolist() == [[1.0, 1.0, inf]]  # ties kept


def test_sampling_scores_match_transformers_warpers():
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    torch.manual_seed(0)
    logits = torch.randn(6, 50)
    for temperature, k, p in [(0.7, 0, 0.9), (1.3, 10, 1.0), (1.0, 5, 0.5), (0.5, 0, 0.3)]:
        expected = TemperatureLogitsWarper(temperature)(None, logits.clone())
        if k:
            expected = TopKLogitsWarper(k)(None, expected)
        if p < 1:
            expected = TopPLogitsWarper(p)(None, expected)
        assert torch.equal(sampling_scores(logits, temperature, k, p), expected)


def test_draw_follows_the_distribution():
    torch.manual_seed(0)
    scores = torch.log(torch.tensor([0.5, 0.3, 0.2, 0.0])).expand(20000, 4)
    freq = torch.bincount(draw(scores), minlength=4).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.015)
    assert freq[3] == 0  # a token with probability 0 (filtered: -inf) is never drawn


def test_native_greedy_equals_generate_greedy(tiny):
    model, tok = tiny
    from posttrain.generation.sampler import eos_ids, left_pad

    prompts = [tok(rec["prompt"])["input_ids"] for rec in RECORDS]
    ids, _ = native_generate(model, prompts, 1, Sampling(max_new_tokens=7, top_k=1), eos_ids(tok, model), 0)
    prompt, attn = left_pad(prompts, tok.pad_token_id)
    out = model.generate(
        input_ids=prompt, attention_mask=attn, do_sample=False, max_new_tokens=7,
        pad_token_id=tok.pad_token_id, eos_token_id=eos_ids(tok, model),
    )  # fmt: skip
    expected = out[:, prompt.shape[1] :]
    assert torch.equal(ids[:, : expected.shape[1]], expected)
    assert not ids[:, expected.shape[1] :].any()  # only padding beyond generate's (early-stopped) width


def test_native_rows_share_their_prompt_and_low_temperature_is_greedy(tiny):
    """G rows per prompt, contiguous; temperature -> 0 concentrates every row on the greedy tokens."""
    model, tok = tiny
    from posttrain.generation.sampler import eos_ids

    prompts = [tok(rec["prompt"])["input_ids"] for rec in RECORDS]
    stops = eos_ids(tok, model)
    greedy, _ = native_generate(model, prompts, 1, Sampling(max_new_tokens=5, top_k=1), stops, 0)
    torch.manual_seed(0)
    cold, logps = native_generate(model, prompts, 4, Sampling(max_new_tokens=5, temperature=1e-4), stops, 0)
    assert cold.shape[0] == 12 and torch.equal(cold, greedy.repeat_interleave(4, 0))
    assert torch.allclose(logps, torch.zeros_like(logps), atol=1e-4)  # log p of the argmax at T -> 0 is 0
    torch.manual_seed(0)
    hot, _ = native_generate(model, prompts, 4, Sampling(max_new_tokens=5, temperature=3.0), stops, 0)
    assert not torch.equal(hot, cold)


def test_native_finished_rows_get_pad_and_mask_zero(tiny):
    model, tok = tiny
    eos = tok.eos_token_id
    torch.manual_seed(5)
    # a large eos bias makes most rows stop at once, others a little later
    bias = torch.zeros(len(tok))
    bias[eos] = 6.0  # p(eos) about 0.6 per step
    original = model.lm_head.forward
    model.lm_head.forward = lambda x: original(x) + bias
    try:
        ids, logps = native_generate(model, [tok("12+30=")["input_ids"]], 16, Sampling(max_new_tokens=12), [eos], 0)
    finally:
        del model.lm_head.forward
    ends = (ids == eos).float().argmax(-1)
    assert (ids == eos).any(-1).all()
    for row, end in enumerate(ends.tolist()):
        assert (ids[row, end + 1 :] == 0).all() and (logps[row, end + 1 :] == 0).all()
        assert (logps[row, : end + 1] < 0).all()
    assert ends.min() < ends.max()  # rows finish at different steps
    assert ids.shape[1] == int(ends.max()) + 1 < 12  # early exit once every row has finished
    mask, truncated = completion_masks(ids, [eos])
    assert mask.sum(-1).tolist() == (ends + 1).tolist() and not truncated.any()


def test_native_stop_strings(tiny):
    model, tok = tiny
    one = tok("1", add_special_tokens=False)["input_ids"][0]
    assert single_token_stops(tok, ["\n", "1"]) == [tok("\n", add_special_tokens=False)["input_ids"][0], one]
    assert single_token_stops(tok, ["ab"]) is None  # two tokens: sample_completions uses generate
    bias = torch.zeros(len(tok))
    bias[one] = 5.0  # make the stop string likely
    original = model.lm_head.forward
    model.lm_head.forward = lambda x: original(x) + bias
    try:
        for backend in ("native", "hf"):
            torch.manual_seed(0)
            r = sample_completions(model, tok, RECORDS, 4, Sampling(max_new_tokens=12, stop=("1",), backend=backend))
            for text, truncated in zip(r.texts, r.truncated.tolist(), strict=True):
                assert "1" not in text[:-1] and text.endswith("1") != truncated
            assert not r.truncated.all()
            assert (r.sample_logps is not None) == (backend == "native")
            if backend == "native":  # every row ended at its stop token: nothing but pad after it
                ends = r.lengths.long()
                ids = r.completion_ids
                for row, end in enumerate(ends.tolist()):
                    assert (ids[row, end:] == tok.pad_token_id).all()
    finally:
        del model.lm_head.forward


def test_attach_logprobs_reference_and_old(tiny):
    import copy

    model, tok = tiny
    torch.manual_seed(3)
    r = sample_completions(model, tok, RECORDS, 2, Sampling(max_new_tokens=4))
    reference = copy.deepcopy(model)
    attach_logprobs(r, model, reference, old=True, ref=True, micro_batch=4)
    assert r.old_logps.shape == r.completion_mask.shape and not r.old_logps.requires_grad
    assert torch.allclose(r.old_logps, r.ref_logps)  # policy = reference at the start


def test_native_rollout_brings_its_old_logprobs(tiny):
    """attach_logprobs(old=True) takes the native sampler's log-probs instead of a forward pass,
    and they equal that forward pass."""
    from posttrain.generation.logprobs import batched_logprobs

    model, tok = tiny
    torch.manual_seed(6)
    r = sample_completions(model, tok, RECORDS, 3, Sampling(max_new_tokens=5, temperature=0.8, backend="native"))
    expected = batched_logprobs(model, r, 4, temperature=0.8) * r.completion_mask
    attach_logprobs(r, model, None, old=True, ref=False, micro_batch=4, temperature=0.8)
    assert r.old_logps is r.sample_logps
    assert torch.allclose(r.old_logps, expected, atol=1e-5)


def test_select_and_concat_rollouts(tiny):
    model, tok = tiny
    torch.manual_seed(4)
    a = sample_completions(model, tok, RECORDS[:1], 2, Sampling(max_new_tokens=3))
    b = sample_completions(model, tok, RECORDS[2:], 2, Sampling(max_new_tokens=6))
    reward = combined_reward(["exact-match"])
    score_rollout(a, reward)
    score_rollout(b, reward)
    both = concat_rollouts([a, b], tok.pad_token_id)
    assert len(both) == 4 and both.prompt_width == max(a.prompt_width, b.prompt_width)
    assert both.texts == a.texts + b.texts
    got = completion_logprobs(model, both)
    assert torch.allclose(
        got[2:][b.completion_mask.bool()], completion_logprobs(model, b)[b.completion_mask.bool()], atol=1e-5
    )
    second = both.select_groups([1])
    assert second.texts == b.texts and second.rewards.tolist() == b.rewards.tolist()


def test_evaluate_policy_keeps_each_prompts_reward_for_the_paired_test(tiny):
    from posttrain import outcomes
    from posttrain.rl.rollout import evaluate_policy

    model, tok = tiny
    reward = combined_reward(["exact-match"])
    with outcomes.recording() as log:
        got = evaluate_policy(model, tok, RECORDS, reward, Sampling(max_new_tokens=4), 4)
    kept = {e.metric: e for e in log.evaluations}
    assert set(kept) == {"exact_match", "reward"}
    assert kept["reward"].kind == outcomes.SCORE and kept["reward"].problems == tuple(r["prompt"] for r in RECORDS)
    assert kept["reward"].mean == pytest.approx(got["reward"])


# --- rewards --------------------------------------------------------------------------------------


def test_exact_match_and_format_rewards_combined():
    reward = combined_reward(["exact-match", "format"], [1.0, 0.5])
    records = [{"prompt": "1+1=", "answer": "2"}] * 3
    completions = ["2", "<think>1+1</think><answer>2</answer>", "3"]
    totals, parts = reward(["1+1="] * 3, completions, records)
    assert parts["exact-match"] == [1.0, 0.0, 0.0]  # the checker takes the first integer: 1 != 2
    assert parts["format"] == [0.0, 1.0, 0.0]
    assert totals == [1.0, 0.5, 0.0]


def test_length_penalty_values():
    assert length_penalty(10, 10) == 0.0
    assert length_penalty(15, 10) == -0.5
    assert length_penalty(40, 10) == -1.0


def test_reward_errors_are_user_errors():
    with pytest.raises(UserError, match="unknown reward"):
        combined_reward(["accuracy"])
    with pytest.raises(UserError, match="expected 2 weights"):
        combined_reward(["exact-match", "format"], [1.0])
    with pytest.raises(UserError, match="needs a path"):
        combined_reward(["reward-model"])
    with pytest.raises(UserError, match="no 'answer'"):
        combined_reward(["exact-match"])(["x"], ["1"], [{"prompt": "x"}])


def test_reward_model_reward_scores_with_a_classifier(tmp_path, tiny_classifier):
    tiny_classifier(tmp_path)
    reward = combined_reward([f"reward-model:{tmp_path}"])
    totals, parts = reward(["1+1="] * 2, ["2", "3"], [{}, {}])
    assert list(parts) == ["reward-model"] and len(totals) == 2 and totals[0] != totals[1]
