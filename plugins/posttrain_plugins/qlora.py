"""QLoRA: LoRA on a frozen base model quantised to 4-bit NormalFloat (needs a CUDA GPU).

Paper: Dettmers, Pagnoni, Holtzman, Zettlemoyer, 2023, "QLoRA: Efficient Finetuning of Quantized
LLMs", arXiv:2305.14314 (NeurIPS 2023). Catalog entry: catalog/methods/qlora.yaml.

    catalog run qlora --device cuda
    catalog run qlora --model Qwen/Qwen2.5-0.5B --dataset sft.jsonl --device cuda

The base weights are stored in 4-bit NF4 (quantiles of a normal distribution, blocks of 64),
with double quantisation of the block constants; they are dequantised to bf16 on the fly, and
gradients flow through them into LoRA adapters on every linear layer, kept in 16/32 bit. This is
transformers' ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=bfloat16)``, peft's
``prepare_model_for_kbit_training`` and ``LoraConfig``; the loss and loop are the SFT recipe's.
bitsandbytes 4-bit kernels need CUDA: on a CPU the plugin stops with a one-line error (use
``lora`` there). The saved model is the adapter, which
``peft.AutoPeftModelForCausalLM.from_pretrained`` loads onto a base in any precision.

Deviations from the paper:
1. Plain AdamW from the shared loop, not paged AdamW (paging only matters for memory spikes of
   long sequences on large models).
2. Rank 8 / α 16 and learning rate 3e-3 for the embedded model (paper: r = 64, α = 16, dropout
   0.1, 2e-4 for 7B-13B models); LoRA on all linear layers as in the paper.
3. No gradient checkpointing by default (the paper uses it; the embedded model is tiny).
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.peft_methods import quantized_policy, require_cuda_and_bitsandbytes
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    lora: bool = Field(True, description="QLoRA trains LoRA adapters (always on for this plugin).")
    lora_r: int = Field(8, ge=1, description="LoRA rank r (paper: 64).")
    lora_alpha: int = Field(16, ge=1, description="α, the update is scaled by α / r (paper: 16).")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="LoRA dropout (paper: 0.1 up to 13B, 0.05 above).")
    lora_target_modules: list[str] | None = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Adapted layers (paper §4: all linear layers, needed to match 16-bit fine-tuning).",
    )
    double_quant: bool = Field(True, description="Quantise the quantisation constants too (paper §3).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (paper: 2e-4 for 7B/13B).")


def nf4_quantization(cfg: Config):
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def lora_config(cfg: Config):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def run(cfg: Config, ctx: RunContext) -> RunResult:
    require_cuda_and_bitsandbytes(ctx, "qlora")
    model, tokenizer = quantized_policy(ctx, nf4_quantization(cfg), lambda model, tok: lora_config(cfg), "qlora")
    return train_sft(cfg, ctx, model, tokenizer)


plugin = Plugin(
    id="qlora",
    config=Config,
    run=run,
    summary="QLoRA: LoRA adapters on a 4-bit NF4 base (CUDA + bitsandbytes).",
    smoke=SMOKE,
    requires_gpu=True,
)
