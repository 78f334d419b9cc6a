"""Completion-only loss: SFT that predicts the response tokens and never the prompt tokens.

Papers: Ouyang et al. 2022 (InstructGPT), arXiv:2203.02155, whose SFT stage trains on the
labeler demonstrations given the prompt; Shi, Yang, Wu, Aitchison, Yilmaz, Lipani, 2024,
"Instruction Tuning With Loss Over Instructions", arXiv:2405.14394, which measures the
alternative (loss on the prompt too). Catalog entry: catalog/methods/completion-only-loss.yaml.

    catalog run completion-only-loss
    catalog run completion-only-loss --set completion_only_loss=false   # loss on prompt + completion
    catalog run completion-only-loss --model Qwen/Qwen2.5-0.5B --dataset data.jsonl

A preset of ``sft`` that makes the masking choice explicit (TRL's ``completion_only_loss``): with
``prompt``/``completion`` records the loss mask is 1 on the completion tokens only, so gradients
never push the model to reproduce prompts; with ``completion_only_loss=false`` every token after
the first is predicted (plain language modelling on the concatenation, as in Shi et al.). The run
logs ``loss_token_share``, the share of tokens the loss sees. ``messages`` records keep the
assistant-turn mask (``dialogue-tuning``); ``text`` records have no prompt to mask.
The held-out loss is always on completion tokens, so the two settings compare.

Deviations from the papers: step budget and learning rate for the embedded model; the embedded
prompts are short (``a+b=``), so the two settings differ less than on long instructions.
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.data import task_records, tokenize_sft
from posttrain.hf import load_policy, lora_settings
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    completion_only_loss: bool = Field(
        True, description="Loss on completion tokens only (InstructGPT SFT); false: on prompt and completion."
    )
    max_steps: int = Field(200, ge=1, description="Optimizer steps.")


def full_sequence_mask(completion_mask: list[int]) -> list[int]:
    """The loss mask of plain LM training: every token but the first (it has no context to predict it from)."""
    return [0] + [1] * (len(completion_mask) - 1)


def loss_token_share(examples: list[dict]) -> float:
    """Share of the tokens that are prediction targets (mask 1) across tokenized examples."""
    total = sum(len(e["completion_mask"]) for e in examples)
    return sum(sum(e["completion_mask"]) for e in examples) / max(total, 1)


def tokenizer_for(cfg: Config):
    if cfg.completion_only_loss:
        return tokenize_sft

    def tokenize_whole(record: dict, tokenizer, max_length: int | None = None) -> dict:
        out = tokenize_sft(record, tokenizer, max_length)
        return {**out, "completion_mask": full_sequence_mask(out["completion_mask"])}

    return tokenize_whole


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = load_policy(ctx, lora_settings(cfg))
    data = task_records(ctx, "sft", cfg.train_examples, cfg.eval_examples)
    tokenize = tokenizer_for(cfg)
    share = loss_token_share([tokenize(r, tokenizer, cfg.max_length) for r in data[0][:1000]])
    ctx.log(0, {"loss_token_share": share})
    result = train_sft(cfg, ctx, model, tokenizer, data=data, tokenize_train=tokenize)
    result.metrics["loss_token_share"] = round(share, 4)
    return result


plugin = Plugin(
    id="completion-only-loss",
    config=Config,
    run=run,
    summary="SFT with the loss on completion tokens only (or, switched off, on the whole sequence).",
    smoke=SMOKE,
)
