"""SFT ``packing=true``: one padding-free row per micro-batch whose loss and gradients equal the
padded batch's (same token weighting), and a one-line error where an architecture mixes examples."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_families import assert_same_grads, grads, sft_examples, tiny_model

from posttrain.errors import UserError
from posttrain.logit_chunks import set_logit_chunk_size
from posttrain.training.packing import pack_examples


def test_pack_examples_restarts_positions_and_drops_boundary_predictions():
    examples = [
        {"input_ids": [5, 6, 7], "completion_mask": [1, 1, 1]},
        {"input_ids": [8, 9], "completion_mask": [1, 1]},
    ]
    batch = pack_examples(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # token 8 starts an example: the position before it (token 7) must not be trained to predict it
    assert batch["completion_mask"].tolist() == [[0, 1, 1, 0, 1]]


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_packed_loss_and_grads_equal_the_padded_batch(family):
    from posttrain.training.sft import logits_loss, packed_batch, padded_batch

    model = tiny_model(family)
    examples = sft_examples(lengths=(9, 6, 12, 4))
    expected = logits_loss(model, *padded_batch(model, examples, 0, "cpu"))
    expected_grads = grads(model, expected)
    inputs, batch = packed_batch(model, examples, 0, "cpu")
    assert batch["input_ids"].shape == (1, 31) and "attention_mask" not in inputs
    loss = logits_loss(model, inputs, batch)
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)  # sft_loss: float32 log-probs
    assert_same_grads(grads(model, loss), expected_grads, atol=1e-6)


def test_packing_with_chunked_logprobs():
    from posttrain.training.sft import chunked_loss, logits_loss, packed_batch, padded_batch

    model = tiny_model("llama")
    examples = sft_examples(lengths=(9, 6, 12))
    expected = logits_loss(model, *padded_batch(model, examples, 0, "cpu"))
    set_logit_chunk_size(model, 4)
    loss = chunked_loss(model, *packed_batch(model, examples, 0, "cpu"))
    torch.testing.assert_close(loss.float(), expected, atol=1e-6, rtol=0)


def test_architecture_that_mixes_packed_examples_is_one_line_error():
    """OPT derives positions from the attention mask, so restarted position_ids are ignored."""
    from posttrain.training.sft import packed_batch

    model = tiny_model("opt")
    with pytest.raises(UserError, match=r"^packing: opt models do not keep packed examples apart .*set packing=false$"):
        packed_batch(model, sft_examples(), 0, "cpu")


def test_prompt_learning_adapters_cannot_pack():
    from peft import PromptTuningConfig, get_peft_model

    from posttrain.training.sft import packed_batch

    model = get_peft_model(tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    with pytest.raises(UserError, match=r"^packing: prompt-learning adapters prepend virtual tokens"):
        packed_batch(model, sft_examples(), 0, "cpu")


def test_sft_runs_packed(tmp_path, monkeypatch):
    from posttrain.runs.runner import execute, prepare
    from posttrain.training import sft

    rows = []
    monkeypatch.setattr(
        sft, "pack_examples", lambda examples, device: rows.append(len(examples)) or pack_examples(examples, device)
    )
    prepared = prepare("sft", sets=["packing=true"], output_dir=tmp_path, device="cpu", smoke=True)
    execute(prepared, progress=False)
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2
    assert rows == [8, 8]  # the smoke batch size: one packed row per step
