"""Tiny random causal LMs of several architectures, in float64 and eval mode (no dropout), for
tests that compare two computations of the same numbers."""

from __future__ import annotations

import torch

SHAPE = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def tiny_config(family: str):
    import transformers as tf

    configs = {
        "llama": lambda: tf.LlamaConfig(num_key_value_heads=2, **SHAPE),
        "qwen2": lambda: tf.Qwen2Config(num_key_value_heads=2, tie_word_embeddings=True, **SHAPE),  # q/k/v biases
        "gpt2": lambda: tf.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_inner=64),  # tied, Conv1D
        # a cap small enough that tanh bends the random model's logits
        "gemma2": lambda: tf.Gemma2Config(num_key_value_heads=2, head_dim=8, final_logit_softcapping=0.5, **SHAPE),
        "cohere": lambda: tf.CohereConfig(num_key_value_heads=2, logit_scale=0.25, **SHAPE),  # logits x scale
        "granite": lambda: tf.GraniteConfig(num_key_value_heads=2, logits_scaling=4.0, **SHAPE),  # logits / scaling
        "opt": lambda: tf.OPTConfig(
            vocab_size=64,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
        ),
    }
    return configs[family]()


def tiny_model(family: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(family)).double().eval()


def sft_examples(lengths=(9, 6, 12), prompt=3, seed: int = 1) -> list[dict]:
    """Tokenized prompt + completion examples of the given lengths (loss on all but the prompt)."""
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(3, 64, (n,), generator=g).tolist(),
            "completion_mask": [0] * prompt + [1] * (n - prompt),
        }
        for n in lengths
    ]


def grads(model, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    found = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {n: g for (n, _), g in zip(named, found, strict=True) if g is not None}


def assert_same_grads(a: dict, b: dict, atol: float = 1e-10) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-7, msg=name)
