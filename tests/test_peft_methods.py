"""PEFT plumbing: AdaLoRA's regulariser, bottleneck adapters, and every PEFT plugin's saved artifact
reloading with transformers/peft (or posttrain_plugins.adapters) and giving the same logits."""

import pytest
import torch

from posttrain.errors import UserError
from posttrain.runs.runner import execute, prepare
from posttrain_plugins.adalora import orthogonal_penalty
from posttrain_plugins.adapters import AdapterSettings, BottleneckAdapter, BottleneckAdapterModel

PROBE = "12+30="


def test_orthogonal_penalty_hand_worked():
    assert orthogonal_penalty(torch.eye(3, 2), torch.eye(2, 4)).item() == pytest.approx(0.0)
    assert orthogonal_penalty(torch.zeros(5, 2), torch.zeros(2, 3)).item() == pytest.approx(4.0)  # 2r
    p = torch.tensor([[2.0], [0.0]])  # PᵀP = 4: (4 − 1)² = 9
    q = torch.tensor([[0.0, 0.5]])  # QQᵀ = 0.25: (0.25 − 1)² = 0.5625
    assert orthogonal_penalty(p, q).item() == pytest.approx(9.5625)


def test_bottleneck_adapter_starts_near_identity_and_is_residual():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(8, 2)
    h = torch.randn(3, 8)
    assert torch.allclose(adapter(h), h, atol=1e-2)
    torch.nn.init.zeros_(adapter.up.weight)
    assert torch.equal(adapter(h), h)  # up = 0: exactly the identity (the residual path)


def _tiny_base():
    from posttrain.embedded.model import build_model
    from posttrain.embedded.tokenizer import build_tokenizer

    tok = build_tokenizer()
    return build_model(tok), tok


def test_bottleneck_insertion_freezes_base_and_rejects_unknown_targets():
    base, _ = _tiny_base()
    model = BottleneckAdapterModel(base, AdapterSettings(bottleneck_size=4, base_model_name_or_path="x"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert model.adapter_count == 4  # 2 layers x (attention output, MLP output)
    assert trainable and all("bottleneck_adapter" in n or "norm" in n for n in trainable)
    assert not any("q_proj" in n or "embed" in n for n in trainable)
    with pytest.raises(UserError, match="no linear layer"):
        BottleneckAdapterModel(_tiny_base()[0], AdapterSettings(target_modules=["nope"], base_model_name_or_path="x"))


PEFT_PLUGINS = ["dora", "ia3", "adalora", "prompt-tuning", "prefix-tuning", "p-tuning-v2", "adapters"]


@pytest.mark.parametrize("name", PEFT_PLUGINS)
def test_trained_artifact_reloads_with_the_same_outputs(name, tmp_path, monkeypatch):
    import posttrain.training.sft as sft_module

    captured = {}
    original = sft_module.finish

    def spy(ctx, model, tokenizer, *args, **kwargs):
        captured["logits"] = _probe_logits(model, tokenizer)
        return original(ctx, model, tokenizer, *args, **kwargs)

    monkeypatch.setattr(sft_module, "finish", spy)
    prepared = prepare(name, output_dir=tmp_path, smoke=True, device="cpu")
    result = execute(prepared, progress=False)
    assert result.metrics["trainable_parameters"] > 0 and 0 < result.metrics["trainable_share"] < 1
    folder = tmp_path / "model"
    if name == "adapters":
        reloaded = BottleneckAdapterModel.from_pretrained(folder)
    else:
        from peft import AutoPeftModelForCausalLM

        reloaded = AutoPeftModelForCausalLM.from_pretrained(folder)
    from transformers import AutoTokenizer

    assert torch.allclose(_probe_logits(reloaded, AutoTokenizer.from_pretrained(folder)), captured["logits"], atol=1e-5)


def _probe_logits(model, tokenizer) -> torch.Tensor:
    model.eval()
    ids = torch.tensor([tokenizer(PROBE)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -ids.shape[1] :].float()


def test_lora_flag_is_rejected_by_non_lora_methods(tmp_path):
    with pytest.raises(UserError, match="lora"):
        execute(prepare("ia3", output_dir=tmp_path, smoke=True, device="cpu", sets=["lora=true"]), progress=False)


def test_qlora_on_cpu_says_it_needs_a_gpu(tmp_path):
    with pytest.raises(UserError, match="CUDA GPU and bitsandbytes"):
        execute(prepare("qlora", output_dir=tmp_path, smoke=True, device="cpu"), progress=False)
