"""``--logit-chunk-size``: log-probs and gradients equal to the full-logits path on several
architectures (float64), the full logits never created, and a one-line error where the chunked
head cannot reproduce the model's logits."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from test_fastpath import rollout_batch
from tiny_families import assert_same_grads, grads, sft_examples, tiny_config, tiny_model

from posttrain.data import pad_sequences
from posttrain.errors import UserError
from posttrain.generation.fastpath import lean_decoder
from posttrain.logit_chunks import set_logit_chunk_size
from posttrain.logprobs import sequence_logprobs

FAMILIES = ["llama", "qwen2", "gpt2", "gemma2", "cohere", "granite"]


def reference_sequence_logprobs(model, batch) -> torch.Tensor:
    """Summed completion log-probs from the model's full float64 logits (log-softmax, gather)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    picked = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (picked * batch["completion_mask"][:, 1:]).sum(-1)


@pytest.mark.parametrize("family", FAMILIES)
def test_sequence_logprobs_and_grads_equal_the_full_logits(family):
    model = tiny_model(family)
    batch = pad_sequences(sft_examples(), pad_id=0)
    expected = reference_sequence_logprobs(model, batch)
    expected_grads = grads(model, (expected * torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)).sum())
    set_logit_chunk_size(model, 5)  # 5 does not divide the 22 completion tokens: a ragged last chunk
    chunked, counts = sequence_logprobs(model, batch)
    torch.testing.assert_close(chunked, expected, atol=1e-10, rtol=0)
    assert counts.tolist() == [6, 3, 9]
    chunked_grads = grads(model, (chunked * torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)).sum())
    assert_same_grads(chunked_grads, expected_grads)
    if family in ("qwen2", "gpt2"):  # tied: the head's gradient reaches the shared embedding matrix
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_float32_default_path_agrees():
    """The chunked path against posttrain's own full path (float32 log-softmax) on a float32 model."""
    model = tiny_model("llama").float()
    batch = pad_sequences(sft_examples(), pad_id=0)
    full = sequence_logprobs(model, batch)[0]
    set_logit_chunk_size(model, 4)
    torch.testing.assert_close(sequence_logprobs(model, batch)[0], full, atol=1e-5, rtol=1e-6)


def head_output_rows(model) -> list[int]:
    """Records the number of positions of every LM head call (forward and recomputation)."""
    rows: list[int] = []
    model.get_output_embeddings().register_forward_hook(lambda m, i, out: rows.append(out[..., 0].numel()))
    return rows


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_full_logits_never_exist(family):
    model = tiny_model(family)
    batch = pad_sequences(sft_examples(lengths=(20, 17, 25)), pad_id=0)
    set_logit_chunk_size(model, 8)
    sequence_logprobs(model, batch)  # the first call checks the head against the model's forward
    rows = head_output_rows(model)
    logps, _ = sequence_logprobs(model, batch)
    logps.sum().backward()
    # one position per row from the forward (logits_to_keep=1), then chunks of <= 8 positions,
    # each run twice (forward, and recomputed in the backward)
    assert rows[0] == 3 and max(rows[1:]) <= 8
    assert sum(rows[1:]) == 2 * int(batch["completion_mask"][:, 1:].sum())


def test_sft_chunked_loss_equals_logits_loss():
    from posttrain.training.sft import chunked_loss, logits_loss, padded_batch

    model = tiny_model("qwen2")
    inputs, batch = padded_batch(model, sft_examples(), 0, "cpu")
    expected = logits_loss(model, inputs, batch)
    expected_grads = grads(model, expected)
    set_logit_chunk_size(model, 3)
    loss = chunked_loss(model, inputs, batch)
    torch.testing.assert_close(loss.float(), expected, atol=1e-6, rtol=0)  # sft_loss takes float32 log-probs
    assert_same_grads(grads(model, loss), expected_grads, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "gpt2"])  # the lean forward (llama) and the model's own (gpt2)
def test_rollout_logprobs_equal_the_full_logits(family):
    from posttrain.generation.logprobs import completion_logprobs

    model = tiny_model(family)
    ids, attn, completion_attn = rollout_batch()
    rollout = type("R", (), {"input_ids": ids, "attention_mask": attn, "prompt_width": 5})()
    expected = completion_logprobs(model, rollout, temperature=0.7)  # float32 log-softmax of float64 logits
    expected_grads = grads(model, (expected * completion_attn).sum())
    set_logit_chunk_size(model, 5)
    chunked = completion_logprobs(model, rollout, temperature=0.7)
    torch.testing.assert_close(chunked, expected.to(chunked.dtype), atol=1e-5, rtol=0)
    assert_same_grads(grads(model, (chunked * completion_attn).sum()), expected_grads, atol=1e-5)
    # transformers' output-capturing hooks, left by the first output_hidden_states call, are inert:
    # the lean forward (posttrain.generation.fastpath) still applies to Llama afterwards
    assert (lean_decoder(model) is not None) == (family == "llama")


def test_unreproduced_logits_are_a_one_line_error():
    """An architecture with a logit transform the chunked head does not know (here: doubled logits)."""
    from transformers import LlamaForCausalLM

    class DoubledLogits(LlamaForCausalLM):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 2
            return out

    torch.manual_seed(0)
    model = DoubledLogits(tiny_config("llama")).double().eval()
    set_logit_chunk_size(model, 4)
    with pytest.raises(UserError, match=r"^--logit-chunk-size: llama models compute their logits in a way"):
        sequence_logprobs(model, pad_sequences(sft_examples(), pad_id=0))


def test_negative_chunk_size_is_one_line_exit_2(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "posttrain", "run", "sft", "--logit-chunk-size", "-1", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--logit-chunk-size -1: expected 0 (off) or a positive number of tokens" in res.stderr


@pytest.mark.parametrize("plugin", ["sft", "dpo", "grpo"])
def test_trainers_run_with_chunked_logprobs(plugin, tmp_path, monkeypatch):
    """Each trainer family through the runner, as ``catalog run ID --logit-chunk-size 16`` runs it."""
    import json

    from posttrain import logit_chunks
    from posttrain.runs.runner import execute, prepare

    sizes: list[int] = []
    original = logit_chunks.chunked_logprobs

    def spy(head, hidden, targets, chunk_size, temperature=1.0):
        sizes.append(chunk_size)
        return original(head, hidden, targets, chunk_size, temperature)

    monkeypatch.setattr(logit_chunks, "chunked_logprobs", spy)
    prepared = prepare(plugin, output_dir=tmp_path, device="cpu", smoke=True, logit_chunk_size=16)
    execute(prepared, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2
    assert sizes and set(sizes) == {16}


@pytest.mark.parametrize(
    ("plugin", "sets", "chunk", "message"),
    [
        ("kd", [], 8, "--logit-chunk-size: kd compares full next-token distributions"),
        ("gkd", ["packing=true"], 0, "packing: gkd scores student and teacher on padded rows; set packing=false"),
    ],
)
def test_distillation_trainers_name_the_option_they_cannot_take(plugin, sets, chunk, message, tmp_path):
    from posttrain.runs.runner import execute, prepare

    prepared = prepare(plugin, sets=sets, output_dir=tmp_path, device="cpu", smoke=True, logit_chunk_size=chunk)
    with pytest.raises(UserError, match=f"^{message}"):
        execute(prepared, progress=False)
