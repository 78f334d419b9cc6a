"""Instruction tuning: SFT on tasks phrased as natural-language instructions (FLAN, Alpaca format).

Papers: Wei, Bosma, Zhao, Guu, Yu, Lester, Du, Dai, Le, 2021, "Finetuned Language Models Are
Zero-Shot Learners" (FLAN), arXiv:2109.01652; Chung et al. 2022, "Scaling Instruction-Finetuned
Language Models", arXiv:2210.11416. Catalog entry: catalog/methods/instruction-tuning.yaml.

    catalog run instruction-tuning
    catalog run instruction-tuning --model Qwen/Qwen2.5-0.5B --dataset alpaca_data.jsonl

A preset of ``sft`` (same loss on the response tokens, same loop) whose data handling is
instruction data: records with ``instruction`` (+ optional ``input``) and ``output`` (the Alpaca /
LLaMA-Factory format) are rendered with the Alpaca template ``### Instruction: ... ### Response:``;
``prompt``/``completion`` and ``messages`` records pass through unchanged. The embedded data is
the addition task phrased with 6 instruction templates around ``a+b`` (the model must find the
sum inside the instruction), by default as the user turn of the chat template (the reply ends at
the end-of-turn token, where evaluation stops); the held-out problems use 2 templates never
trained on, so the held-out exact match measures following unseen phrasings (FLAN's zero-shot
question at toy scale), and ``seen_template_exact_match`` scores the same kind of held-out problems
phrased with the training templates.

Measured on the embedded base (2,000 steps, chat format, reports/runs/instruction-tuning.json):
seen templates 0.0 -> 0.946, unseen 0.002 -> 0.444 (of the two unseen templates, ``Tell me a+b.``
is followed and ``Please evaluate a+b``, with no punctuation after the sum, is not).
``embedded_format=alpaca`` and ``flan`` reached far less in the same budget: the 2-layer model
relearns addition in each new format, and the chat format keeps the sum next to a fixed cue
(``<|end|><|assistant|>``).

Deviations from the papers:
1. One task (addition) under many templates, not 60+ datasets; FLAN's held-out unit is a task
   cluster, ours is an instruction template.
2. Step budget and learning rate for the embedded model (FLAN: 30K steps, Adafactor, 3e-5).
3. The embedded prompts are the chat template's user turn by default (FLAN feeds the template text
   to T5 directly: ``embedded_format=flan``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.data import EVAL_SEED, load_records, split_heldout, task_records
from posttrain.embedded.formats import alpaca_prompt, instruction_examples
from posttrain.errors import UserError
from posttrain.evaluation import exact_match
from posttrain.hf import load_policy, lora_settings
from posttrain.training.sft import SMOKE, SFTConfig, train_sft, turn_end_tokenizer
from posttrain.training.sft import evaluate as sft_evaluate


class Config(SFTConfig):
    embedded_format: Literal["chat", "flan", "alpaca"] = Field(
        "chat",
        description="Embedded prompts: the instruction as the user turn of the chat template, as plain text "
        "(FLAN's templates), or inside the Alpaca template (### Instruction / ### Response).",
    )
    max_steps: int = Field(2000, ge=1, description="Optimizer steps (FLAN: 30K).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (FLAN: 3e-5 with Adafactor).")


def to_prompt_completion(record: dict) -> dict:
    """Alpaca ``instruction``/``input``/``output`` -> ``prompt``/``completion``; other formats unchanged."""
    if "instruction" not in record:
        return record
    if "output" not in record:
        raise UserError(f"dataset line {record.get('_line', '?')}: an 'instruction' record needs an 'output' column")
    prompt = alpaca_prompt(str(record["instruction"]), str(record.get("input") or ""))
    return {"prompt": prompt, "completion": str(record["output"]), "_line": record.get("_line")}


def instruction_data(cfg: Config, ctx: RunContext):
    """(train, held-out, source): embedded instructions, an Alpaca-format file converted, or sft's formats."""
    if ctx.dataset is None:
        train = instruction_examples(cfg.train_examples, ctx.seed, "train", style=cfg.embedded_format)
        heldout = instruction_examples(cfg.eval_examples, EVAL_SEED, "test", style=cfg.embedded_format)
        return train, heldout, f"add2x2-instructions-{cfg.embedded_format}"
    records, source = load_records(ctx.dataset, "train")
    if "instruction" in records[0]:
        train, heldout = split_heldout([to_prompt_completion(r) for r in records], source)
        return train, heldout[: cfg.eval_examples], source
    return task_records(ctx, "sft", cfg.train_examples, cfg.eval_examples)


def evaluate(model, tokenizer, heldout_records, heldout_tokens, cfg: Config, embedded: bool) -> dict:
    """sft's held-out metrics (on the embedded task: unseen templates) and, on the embedded task, the
    exact match on the same kind of held-out problems phrased with the training templates."""
    tokenizer = turn_end_tokenizer(tokenizer)  # chat prompts: a reply ends at the end-of-turn token
    scores = sft_evaluate(model, tokenizer, heldout_records, heldout_tokens, cfg, embedded)
    if embedded:
        seen = instruction_examples(cfg.eval_examples, EVAL_SEED, "test", style=cfg.embedded_format, templates="seen")
        budget = cfg.max_new_tokens or 8
        scores["seen_template_exact_match"] = exact_match(
            model, tokenizer, seen, max_new_tokens=budget, metric="seen_template_exact_match"
        )["exact_match"]
    return scores


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = load_policy(ctx, lora_settings(cfg))
    data = instruction_data(cfg, ctx)
    return train_sft(cfg, ctx, model, tokenizer, data=data, evaluate=evaluate)


plugin = Plugin(
    id="instruction-tuning",
    config=Config,
    run=run,
    summary="Instruction tuning: SFT on instruction-formatted data (Alpaca template), unseen templates held out.",
    smoke=SMOKE,
)
