"""(IA)³: learned vectors that rescale keys, values and the feed-forward activations.

Paper: Liu, Tam, Muqeeth, Mohta, Huang, Bansal, Raffel, 2022, "Few-Shot Parameter-Efficient
Fine-Tuning is Better and Cheaper than In-Context Learning", arXiv:2205.05638 (NeurIPS 2022).
Catalog entry: catalog/methods/ia3.yaml.

    catalog run ia3
    catalog run ia3 --model Qwen/Qwen2.5-0.5B --dataset sft.jsonl

"Infused Adapter by Inhibiting and Amplifying Inner Activations": in every block the keys, the
values and the feed-forward hidden activation are multiplied elementwise by trained vectors
l_k, l_v, l_ff initialised to ones, so training starts at the base model and adds about 0.01%
parameters on the paper's T0-3B (here: 768 of 149K, reports/runs/ia3.json). This is peft's ``IA3Config`` on k_proj, v_proj and the input of
down_proj; the loss and loop are the SFT recipe's. The saved model is the adapter, loaded by
``peft.AutoPeftModelForCausalLM.from_pretrained``.

Deviations from the paper:
1. The loss is the SFT loss only: the paper's T-Few recipe adds an unlikelihood loss and a
   length-normalised loss for multiple-choice tasks, which do not apply to generation.
2. No pre-training of the vectors on the multitask mixture (T-Few's step before few-shot tuning).
3. Learning rate 3e-2 (paper: 3e-3 with Adafactor, 1000 steps): the embedded model's vectors are
   short and the budget is a few hundred steps.
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.peft_methods import peft_policy, unused_lora_options
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    target_modules: list[str] = Field(
        ["k_proj", "v_proj", "down_proj"], description="Modules rescaled: l_k, l_v and (input of) l_ff (paper §3.3)."
    )
    feedforward_modules: list[str] = Field(
        ["down_proj"], description="Of those, the ones whose input (the FFN activation) is rescaled by l_ff."
    )
    max_steps: int = Field(200, ge=1, description="Optimizer steps (a short budget for the embedded model).")
    learning_rate: float = Field(3e-2, gt=0, description="Peak learning rate (paper: 3e-3 with Adafactor).")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps (paper: 6% of training).")


def ia3_config(cfg: Config):
    from peft import IA3Config

    return IA3Config(
        target_modules=cfg.target_modules, feedforward_modules=cfg.feedforward_modules, task_type="CAUSAL_LM"
    )


def run(cfg: Config, ctx: RunContext) -> RunResult:
    unused_lora_options(cfg, "ia3")
    model, tokenizer = peft_policy(ctx, lambda model, tok: ia3_config(cfg), "ia3")
    return train_sft(cfg, ctx, model, tokenizer)


plugin = Plugin(
    id="ia3",
    config=Config,
    run=run,
    summary="(IA)³ rescaling vectors trained with the SFT loss.",
    smoke=SMOKE,
)
