"""DoRA: LoRA on the direction of each weight, with its magnitude trained separately.

Paper: Liu, Wang, Yin, Molchanov, Wang, Cheng, Chen, 2024, "DoRA: Weight-Decomposed Low-Rank
Adaptation", arXiv:2402.09353 (ICML 2024). Catalog entry: catalog/methods/dora.yaml.

    catalog run dora
    catalog run dora --model Qwen/Qwen2.5-0.5B --dataset sft.jsonl --set lora_r=32 --set lora_alpha=64

Each adapted weight is rewritten W' = m (W0 + BA) / ||W0 + BA||_c: the magnitude vector m (one
entry per output row, initialised to ||W0||_c) is trained directly and LoRA (B = 0 at start)
updates the direction. As in the paper (§4.3), the column norm is treated as a constant in the
backward pass. This is peft's ``LoraConfig(use_dora=True)``; the training loop and loss are the
SFT recipe's. The saved model is the adapter (``adapter_config.json`` with ``use_dora``), which
``peft.AutoPeftModelForCausalLM.from_pretrained`` loads.

Deviations from the paper:
1. Rank 8 / α 16 (paper: r = 32, α = 64 for LLaMA-7B) and learning rate 3e-3 (paper: 1e-4 to
   2e-4), sized for the 150K-parameter embedded model.
2. Training length in optimizer steps (paper: 3 epochs on commonsense reasoning data).
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.peft_methods import peft_policy
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    lora: bool = Field(True, description="DoRA is LoRA on the direction (always on for this plugin).")
    lora_r: int = Field(8, ge=1, description="Rank r of the directional update BA (paper: 32 on LLaMA-7B).")
    lora_alpha: int = Field(16, ge=1, description="α; the LoRA update is scaled by α / r (paper: α = 2r).")
    lora_target_modules: list[str] | None = Field(
        ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
        description="Decomposed matrices (paper Table 1: Q, K, V, Up, Down).",
    )
    max_steps: int = Field(200, ge=1, description="Optimizer steps (a short budget for the embedded model).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (paper: 1e-4 to 2e-4 on LLaMA).")


def dora_config(cfg: Config):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        use_dora=True,
        task_type="CAUSAL_LM",
    )


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = peft_policy(ctx, lambda model, tok: dora_config(cfg), "dora")
    return train_sft(cfg, ctx, model, tokenizer)


plugin = Plugin(
    id="dora",
    config=Config,
    run=run,
    summary="DoRA: magnitude vector + LoRA on the direction, trained with the SFT loss.",
    smoke=SMOKE,
)
