"""LoRA: supervised fine-tuning of low-rank adapters on a frozen model.

Paper: Hu, Shen, Wallis, Allen-Zhu, Li, Wang, Wang, Chen, 2021, "LoRA: Low-Rank Adaptation of
Large Language Models", arXiv:2106.09685. Catalog entry: catalog/methods/lora.yaml.

    catalog run lora
    catalog run lora --model ./my-model --dataset sft.jsonl --set lora_r=16

The method here is the adapter, not the loss: this plugin is the SFT recipe with peft's
LoraConfig switched on and the paper's choices as defaults (rank 8 on W_q and W_v, B = 0 at
start). It reports the trainable-parameter count and share. The saved model is the adapter alone
(``adapter_config.json``), which ``peft.AutoPeftModelForCausalLM.from_pretrained`` loads.

Deviations from the paper:
1. The learning rate (3e-3) is sized for the embedded tiny model; the paper tunes it per task
   (e.g. 2e-4 for GPT-2 on E2E).
2. Dropout 0.05 on the LoRA input, as peft and most recipes use; the paper's GPT-3 runs use none.
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.hf import load_policy, lora_settings
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    lora: bool = Field(True, description="Train LoRA adapters (always on for this plugin).")
    lora_r: int = Field(8, ge=1, description="Rank r of the update BA (paper §7.2: r = 8 suffices).")
    lora_alpha: int = Field(16, ge=1, description="α; the update is scaled by α / r (paper §4.1).")
    lora_target_modules: list[str] | None = Field(
        ["q_proj", "v_proj"], description="Adapted matrices (paper §7.1: W_q, W_v)."
    )
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (paper: tuned per task).")


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = load_policy(ctx, lora_settings(cfg))  # peft's LoraConfig from the lora_* fields
    return train_sft(cfg, ctx, model, tokenizer)


plugin = Plugin(id="lora", config=Config, run=run, summary="LoRA adapters trained with the SFT loss.", smoke=SMOKE)
