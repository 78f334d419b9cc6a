"""Shared plumbing: the embedded task, tokenization and masks, batching, schedule, checkpoints, resume."""

import random
from pathlib import Path

import pytest
import torch

from posttrain.answers import is_correct
from posttrain.data import (
    batch_indices,
    pad_sequences,
    prompt_ids,
    prompts_ids,
    tokenize_messages,
    tokenize_prompt_completion,
    tokenize_text,
)
from posttrain.embedded.task import DEFAULT_TASK, AdditionTask, plausible_mistake
from posttrain.embedded.tokenizer import build_tokenizer
from posttrain.errors import UserError
from posttrain.interface import RunContext
from posttrain.training.trainer import LoopSettings, latest_checkpoint, lr_factor, train_loop


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_checker():
    assert is_correct("82", "82") and is_correct(" 82 and more", "82")
    assert not is_correct("28", "82") and not is_correct("", "82")


def test_heldout_split_is_disjoint_and_stable():
    task = AdditionTask()
    train = {r["prompt"] for r in task.sft_examples(3000, seed=0)}
    test = {r["prompt"] for r in task.prompts(300, seed=5, split="test")}
    assert not train & test
    assert all(task.is_heldout(tuple(map(int, p[:-1].split("+")))) for p in test)


def test_rejected_answers_are_wrong_but_plausible():
    rng = random.Random(0)
    for nums in [(37, 45), (0, 0), (99, 99), (5, 5)]:
        for _ in range(20):
            wrong = plausible_mistake(nums, rng)
            assert wrong != str(sum(nums)) and int(wrong) >= 0
            assert abs(int(wrong) - sum(nums)) <= 110  # dropping both carries of 99+99 gives 88


def test_batched_prompt_ids_equal_one_by_one(tok):
    texts = ["12+34=", "7+5=", ""]
    assert prompts_ids(tok, texts) == [prompt_ids(tok, t) for t in texts]
    chats = [[{"role": "user", "content": "1+1="}], "2+2="]  # mixed: one call per prompt
    assert prompts_ids(tok, chats) == [prompt_ids(tok, p) for p in chats]


def test_prompt_completion_mask(tok):
    ex = tokenize_prompt_completion({"prompt": "37+45=", "completion": "82"}, tok)
    assert tok.decode(ex["input_ids"]) == "<bos>37+45=82<eos>"
    assert ex["completion_mask"] == [0] * 7 + [1, 1, 1]


def test_conversational_prompt_completion_mask(tok):
    rec = {"prompt": [{"role": "user", "content": "1+1="}], "completion": [{"role": "assistant", "content": "2"}]}
    ex = tokenize_prompt_completion(rec, tok)
    masked = [t for t, m in zip(ex["input_ids"], ex["completion_mask"], strict=False) if m]
    assert tok.decode(masked) == "2<|end|>"


def test_messages_mask_covers_assistant_turns_only(tok):
    rec = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
        ]
    }
    ex = tokenize_messages(rec, tok)
    masked = tok.decode([t for t, m in zip(ex["input_ids"], ex["completion_mask"], strict=False) if m])
    assert masked == "b<|end|>d<|end|>"
    assert tok.decode(ex["input_ids"]).startswith("<bos><|user|>a")


def test_text_format_trains_on_every_token_but_bos(tok):
    ex = tokenize_text({"text": "hi"}, tok)
    assert ex["completion_mask"] == [0, 1, 1, 1]


def test_pad_and_batch_indices():
    batch = pad_sequences(
        [{"input_ids": [1, 2, 3], "completion_mask": [0, 1, 1]}, {"input_ids": [1, 2], "completion_mask": [0, 1]}],
        pad_id=0,
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3], [1, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    a = [batch_indices(100, 32, s, seed=3) for s in range(6)]
    assert a == [batch_indices(100, 32, s, seed=3) for s in range(6)]
    assert len(set(sum(a[:3], []))) == 96  # no repeats within an epoch


def test_lr_schedule_warmup_then_cosine():
    s = LoopSettings(max_steps=110, learning_rate=1.0, warmup_steps=10)
    assert lr_factor(0, s) == pytest.approx(0.1) and lr_factor(9, s) == pytest.approx(1.0)
    assert lr_factor(10, s) == pytest.approx(1.0) and lr_factor(60, s) == pytest.approx(0.5)
    assert lr_factor(110, s) == pytest.approx(0.0, abs=1e-12)


def _tiny_run(out: Path, resume: bool, crash_at: int | None = None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    target = data.sum(-1, keepdim=True)

    def loss_fn(step, micro):
        if crash_at is not None and step == crash_at:
            raise RuntimeError("simulated crash")
        idx = batch_indices(64, 8, step, seed=0)
        return torch.nn.functional.mse_loss(model(data[idx]), target[idx]), {}

    ctx = RunContext(output_dir=out, resume=resume)
    train_loop(
        model, ctx, LoopSettings(max_steps=20, learning_rate=0.05, warmup_steps=2, save_every=5, log_every=5), loss_fn
    )
    return model


def test_resume_after_crash_is_bit_identical(tmp_path):
    straight = _tiny_run(tmp_path / "a", resume=False)
    with pytest.raises(RuntimeError):
        _tiny_run(tmp_path / "b", resume=False, crash_at=13)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-0000010"
    resumed = _tiny_run(tmp_path / "b", resume=True)
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=False):
        assert torch.equal(p, q)


def test_corrupt_checkpoint_is_named_and_skipped(tmp_path):
    _tiny_run(tmp_path, resume=False)
    newest = sorted((tmp_path / "checkpoints").glob("step-*"))[-1]
    with (newest / "state.pt").open("ab") as fh:
        fh.write(b"garbage")
    warnings = []
    found = latest_checkpoint(tmp_path / "checkpoints", warn=warnings.append)
    assert found is not None and found != newest
    assert str(newest) in warnings[0] and "corrupt" in warnings[0]


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no valid checkpoint"):
        _tiny_run(tmp_path, resume=True)


def test_nan_loss_stops_with_message(tmp_path):
    model = torch.nn.Linear(2, 1)
    ctx = RunContext(output_dir=tmp_path)
    with pytest.raises(UserError, match="loss is nan at step 1"):
        train_loop(
            model,
            ctx,
            LoopSettings(max_steps=3, learning_rate=0.1),
            lambda s, m: (model(torch.ones(1, 2)).sum() * float("nan"), {}),
        )


def test_default_task_defaults():
    assert DEFAULT_TASK.name == "add2x2"
