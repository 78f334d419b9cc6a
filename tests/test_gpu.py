"""Checks that need CUDA: ``python -m pytest -m gpu`` (tools/gpu_check.py runs them first).

The default selection leaves them out (pyproject's addopts); on a machine without CUDA they skip.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_fastpath_equals_the_models_forward_on_cuda():
    """posttrain.generation.fastpath's shared-prompt training forward, values and gradients, on the GPU (fp32)."""
    from test_fastpath import check_completion_logits_and_gradients, tiny

    check_completion_logits_and_gradients(tiny("qwen2").cuda().train(), device="cuda", tolerance=1e-4)


def test_models_load_in_bf16_on_cuda_and_train_a_step():
    from posttrain.embedded.model import base_model_dir
    from posttrain.hf import load_model, load_tokenizer

    model = load_model(str(base_model_dir()), "cuda")
    tok = load_tokenizer(str(base_model_dir()))
    assert next(model.parameters()).dtype == torch.bfloat16 and next(model.parameters()).is_cuda
    batch = tok(["12+34=46", "5+5=10"], return_tensors="pt", padding=True).to("cuda")
    model.train()
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    before = [p.detach().clone() for p in model.parameters()]
    out.loss.backward()
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_native_sampler_runs_on_cuda():
    """The native sampling loop (prefill once, cached decode) on the GPU: shapes and finite log-probs."""
    from posttrain.embedded.model import base_model_dir
    from posttrain.generation.sampler import Sampling, native_generate
    from posttrain.hf import load_model, load_tokenizer

    model = load_model(str(base_model_dir()), "cuda").eval()
    tok = load_tokenizer(str(base_model_dir()))
    prompts = [tok(p)["input_ids"] for p in ("12+34=", "5+5=")]
    sampling = Sampling(max_new_tokens=6, temperature=1.0)
    ids, logps = native_generate(model, prompts, 3, sampling, [tok.eos_token_id], tok.pad_token_id)
    assert ids.shape[0] == 6 and ids.shape[1] <= 6 and ids.is_cuda
    assert torch.isfinite(logps[ids != tok.pad_token_id]).all()
