"""posttrain.generation.fastpath: the lean forward must equal the model's own (values and gradients), and step
aside whenever it could differ."""

from __future__ import annotations

import pytest
import torch

from posttrain.generation.fastpath import lean_decoder, padded_causal_mask, prompt_run_lengths, repeat_rows
from posttrain.generation.sampler import Sampling, native_generate, position_ids


def tiny(kind: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(num_key_value_heads=4, **shape))
    return Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=2, **shape))  # GQA, q/k/v biases


def rollout_batch(counts=(2, 3, 1), prompt_width=5, completion_width=4):
    """Rows of a rollout: left-padded prompts repeated per sample, right-padded completions."""
    torch.manual_seed(1)
    p = len(counts)
    prompt = torch.randint(3, 50, (p, prompt_width))
    prompt_attn = torch.ones_like(prompt)
    prompt_attn[0, :2] = 0
    if p > 1:
        prompt_attn[1, :1] = 0
    repeats = torch.tensor(counts)
    prompt, prompt_attn = prompt.repeat_interleave(repeats, 0), prompt_attn.repeat_interleave(repeats, 0)
    prompt = prompt.masked_fill(prompt_attn == 0, 0)
    n = int(repeats.sum())
    completion = torch.randint(3, 50, (n, completion_width))
    completion_attn = torch.ones_like(completion)
    completion_attn[0, 2:] = 0
    completion_attn[n - 1, 1:] = 0
    completion_attn[:, 0] = 1  # every completion has at least one token
    return torch.cat([prompt, completion], 1), torch.cat([prompt_attn, completion_attn], 1), completion_attn


def reference_completion_logits(model, ids, attn, completion_width):
    out = model(
        input_ids=ids, attention_mask=attn, position_ids=position_ids(attn), logits_to_keep=completion_width + 1
    )
    return out.logits[:, :-1]


# --- pure parts -----------------------------------------------------------------------------------


def test_prompt_run_lengths_counts_consecutive_equal_prompts():
    a, b = [5, 6], [7, 8]
    ids = torch.tensor([a, a, b, a])
    attn = torch.ones_like(ids)
    assert prompt_run_lengths(ids, attn).tolist() == [2, 1, 1]
    # same ids, different padding: different prompts
    attn2 = torch.tensor([[1, 1], [0, 1], [0, 1], [1, 1]])
    assert prompt_run_lengths(ids, attn2).tolist() == [1, 1, 1, 1]


def test_repeat_rows_equal_and_unequal_counts():
    x = torch.tensor([[1.0], [2.0]])
    assert repeat_rows(x, torch.tensor([2, 2])).squeeze(-1).tolist() == [1, 1, 2, 2]
    assert repeat_rows(x, torch.tensor([1, 3])).squeeze(-1).tolist() == [1, 2, 2, 2]


def test_padded_causal_mask_by_hand():
    mask = padded_causal_mask(torch.tensor([[0, 1, 1]]))[0, 0].int().tolist()
    # the pad query sees only itself; real queries see real keys up to themselves
    assert mask == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


# --- equal to the model's forward -------------------------------------------------------------------


@pytest.mark.parametrize("counts,width", [((2, 3, 1), 4), ((4, 4), 4), ((2, 1), 1)])
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_shared_prompt_completion_logits_and_gradients_equal_full_forward(kind, counts, width):
    check_completion_logits_and_gradients(tiny(kind).train(), counts, width)


def check_completion_logits_and_gradients(model, counts=(2, 3, 1), width=4, device="cpu", tolerance=1e-5):
    """The fast path's completion logits and their gradients equal the model's own forward, within
    ``tolerance`` for the logits and ten times it for the gradients."""
    ids, attn, completion_attn = (t.to(device) for t in rollout_batch(counts, completion_width=width))
    weights = completion_attn[..., None].float()  # padding after a completion's end is never used
    expected = reference_completion_logits(model, ids, attn, width)
    got = lean_decoder(model).completion_logits(ids, attn, 5)
    torch.testing.assert_close(got * weights, expected * weights, atol=tolerance, rtol=tolerance)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_weights = torch.randn_like(expected) * weights
    grads_expected = torch.autograd.grad((expected * loss_weights).sum(), params)
    grads_got = torch.autograd.grad((got * loss_weights).sum(), params)
    for g_got, g_expected in zip(grads_got, grads_expected, strict=True):
        torch.testing.assert_close(g_got, g_expected, atol=10 * tolerance, rtol=10 * tolerance)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_prefill_and_decode_equal_full_forward(kind):
    check_prefill_and_decode(tiny(kind).eval())


def check_prefill_and_decode(model):
    ids, attn, _ = rollout_batch(counts=(1, 1, 1))
    prompt, prompt_attn = ids[:, :5], attn[:, :5]
    positions = position_ids(prompt_attn)
    lean = lean_decoder(model)
    logits, cache = lean.prefill(prompt, prompt_attn, positions, 2, 8)
    tokens = torch.randint(3, 50, (6, 2))
    steps = [logits]
    position = positions.repeat_interleave(2, 0)[:, -1:] + 1
    for j in range(2):
        steps.append(lean.decode(tokens[:, j], position + j, cache))
    full_ids = torch.cat([prompt.repeat_interleave(2, 0), tokens], 1)
    full_attn = torch.cat([prompt_attn.repeat_interleave(2, 0), torch.ones_like(tokens)], 1)
    expected = model(input_ids=full_ids, attention_mask=full_attn, position_ids=position_ids(full_attn)).logits
    torch.testing.assert_close(torch.stack(steps, 1), expected[:, -3:], atol=1e-5, rtol=1e-5)


def test_lora_adapter_applies_and_disable_adapter_gives_the_base():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # a non-zero adapter
    model.eval()
    ids, attn, completion_attn = rollout_batch()
    weights = completion_attn[..., None].float()
    lean = lean_decoder(model)
    assert lean is not None

    def check():
        expected = reference_completion_logits(model, ids, attn, 4) * weights
        torch.testing.assert_close(lean.completion_logits(ids, attn, 5) * weights, expected, atol=1e-5, rtol=1e-5)

    check()
    with model.disable_adapter():
        check()


def test_native_generate_draws_the_same_tokens_with_and_without_the_fast_path(monkeypatch):
    model = tiny("qwen2")
    prompts = [[5, 6, 7], [8, 9]]
    sampling = Sampling(max_new_tokens=6, temperature=1.0)
    torch.manual_seed(3)
    fast = native_generate(model, prompts, 4, sampling, [2], 0)
    monkeypatch.setenv("POSTTRAIN_FAST_FORWARD", "0")
    torch.manual_seed(3)
    slow = native_generate(model, prompts, 4, sampling, [2], 0)
    assert torch.equal(fast[0], slow[0])
    torch.testing.assert_close(fast[1], slow[1], atol=1e-5, rtol=1e-5)


# --- stepping aside ---------------------------------------------------------------------------------


def test_steps_aside_when_it_could_differ(monkeypatch):
    from peft import PromptTuningConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    assert lean_decoder(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))) is None
    prompt_tuned = get_peft_model(tiny("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    assert lean_decoder(prompt_tuned) is None
    hooked = tiny("llama")
    handle = hooked.model.layers[0].register_forward_hook(lambda *args: None)
    assert lean_decoder(hooked) is None
    handle.remove()
    assert lean_decoder(hooked) is not None
    # transformers 5.x renamed gradient_checkpointing_enable (the old name goes in v6)
    (getattr(hooked, "activation_checkpointing_enable", None) or hooked.gradient_checkpointing_enable)()
    assert lean_decoder(hooked) is None
    monkeypatch.setenv("POSTTRAIN_FAST_FORWARD", "0")
    assert lean_decoder(tiny("llama")) is None


# --- the architecture matrix's families (tools/architecture_matrix.py) -------------------------------

FAST_FAMILIES = {"llama", "qwen2", "qwen3", "mistral"}  # where lean_decoder claims support


def matrix_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "architecture_matrix.py"
    spec = importlib.util.spec_from_file_location("architecture_matrix", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral", "gemma3", "phi3", "gpt2", "olmo2"])
def test_each_family_gets_an_equal_fast_path_or_none(family):
    """Qwen3 (per-head q/k RMSNorm) and Mistral (no sliding window) take the lean path and must equal
    the model's forward; Gemma 3, Phi-3, GPT-2 and OLMo-2 differ in ways it does not model: None."""
    model, _ = matrix_tool().tiny_model(family)
    lean = lean_decoder(model)
    if family not in FAST_FAMILIES:
        assert lean is None
        return
    assert lean is not None
    check_completion_logits_and_gradients(model.train())
    check_prefill_and_decode(model.eval())


def test_steps_aside_for_sliding_window_layers():
    from transformers import MistralConfig, MistralForCausalLM, Qwen3Config, Qwen3ForCausalLM

    shape = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    assert lean_decoder(MistralForCausalLM(MistralConfig(sliding_window=4096, **shape))) is None
    assert lean_decoder(MistralForCausalLM(MistralConfig(sliding_window=None, **shape))) is not None
    windowed = Qwen3Config(use_sliding_window=True, sliding_window=8, max_window_layers=1, head_dim=8, **shape)
    assert lean_decoder(Qwen3ForCausalLM(windowed)) is None
