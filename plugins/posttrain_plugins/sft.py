"""Supervised fine-tuning (SFT): maximum likelihood on demonstrations, loss on the response only.

Papers: Ouyang et al. 2022, "Training language models to follow instructions with human
feedback" (InstructGPT), arXiv:2203.02155, the SFT stage; Wei et al. 2021 (FLAN), arXiv:2109.01652.
Catalog entry: catalog/methods/sft.yaml.

    catalog run sft                                   # embedded tiny model + addition task
    catalog run sft --model Qwen/Qwen2.5-0.5B --dataset data.jsonl --set lora=true
    catalog run sft --model Qwen/Qwen2.5-0.5B --set packing=true --logit-chunk-size 1024   # less memory

Data: ``messages`` (loss on assistant turns), ``prompt`` + ``completion`` (loss on the
completion), or ``text`` (loss on every token).

Memory: ``packing=true`` puts each micro-batch's examples in one padding-free row
(posttrain.training.packing); ``--logit-chunk-size N`` computes the loss with the LM head applied N tokens at
a time, never the full logits (posttrain.logit_chunks). Both give the same loss as the default.

The loss, batches, evaluation and loop are the SFT recipe's (``posttrain.training.sft.train_sft``),
shared by the whole SFT family.

Deviations from the paper:
1. Training length is counted in optimizer steps, not epochs (InstructGPT: 16 epochs), and the
   default learning rate and step count are sized for the embedded tiny model; set them for yours.
2. No residual dropout (InstructGPT: 0.2); the tiny model underfits rather than overfits.
3. InstructGPT selects the SFT checkpoint by reward-model score; we keep the last one and report
   held-out exact match and loss before and after.
"""

from __future__ import annotations

from posttrain import Plugin, RunContext, RunResult
from posttrain.hf import load_policy, lora_settings
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    """The recipe's settings unchanged (InstructGPT's SFT stage)."""


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = load_policy(ctx, lora_settings(cfg))
    return train_sft(cfg, ctx, model, tokenizer)


plugin = Plugin(id="sft", config=Config, run=run, summary="Supervised fine-tuning on demonstrations.", smoke=SMOKE)
