"""Dialogue (multi-turn) fine-tuning: SFT on whole conversations, loss on the assistant turns only.

Papers: Thoppilan et al. 2022, "LaMDA: Language Models for Dialog Applications",
arXiv:2201.08239; the assistant-only loss of Vicuna / FastChat and TRL's ``assistant_only_loss``.
Catalog entry: catalog/methods/dialogue-tuning.yaml.

    catalog run dialogue-tuning
    catalog run dialogue-tuning --model Qwen/Qwen2.5-0.5B-Instruct --dataset chats.jsonl

A preset of ``sft``: each record is a conversation (``messages`` with role/content, or ShareGPT
``conversations`` with from/value, converted), rendered with the tokenizer's chat template; the
loss mask covers every assistant turn and nothing else (user and system turns are context), which
``posttrain.data.tokenize_messages`` builds turn by turn. The embedded data is a running sum over
two turns (``47+29=`` / ``76`` / ``plus 3`` / ``79`` / ...), so later answers need the earlier turns.
Held-out score: exact match of the last assistant turn given the conversation before it,
generated until the template's end-of-turn token.

Measured on the embedded base (2,500 steps, lr 3e-3, the defaults; reports/runs/dialogue-tuning.json):
last-turn exact match 0.002 -> 0.656; shorter runs and lower rates reached less. The base answers
``a+b=`` at 0.778 in its own format (reports/runs/sft.json) but ~0 inside the chat template: the
2-layer model relearns addition at the new positions.

Deviations from the papers:
1. LaMDA also fine-tunes on quality and safety ratings (a classifier head); only the generative
   dialogue fine-tuning is here.
2. Step budget and learning rate for the embedded model.
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.data import EVAL_SEED, load_records, split_heldout
from posttrain.embedded.formats import conversations, last_turn_prompts
from posttrain.errors import UserError
from posttrain.evaluation import exact_match, mean_nll
from posttrain.hf import load_policy, lora_settings
from posttrain.training.sft import SMOKE, SFTConfig, train_sft, turn_end_tokenizer

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class Config(SFTConfig):
    turns: int = Field(2, ge=1, description="Assistant turns per embedded conversation.")
    max_steps: int = Field(2500, ge=1, description="Optimizer steps.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (sized for the embedded model).")


def to_messages(record: dict) -> dict:
    """``messages`` records unchanged; ShareGPT ``conversations`` ([{from, value}]) converted."""
    if "messages" in record:
        return record
    if "conversations" not in record:
        raise UserError(
            f"dataset line {record.get('_line', '?')}: expected 'messages' or 'conversations' (a list of turns)"
        )
    turns = []
    for turn in record["conversations"]:
        role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise UserError(f"dataset line {record.get('_line', '?')}: unknown speaker {turn.get('from')!r}")
        turns.append({"role": role, "content": turn.get("value", "")})
    return {"messages": turns, "_line": record.get("_line")}


def dialogue_data(cfg: Config, ctx: RunContext):
    if ctx.dataset is None:
        train = conversations(cfg.train_examples, ctx.seed, "train", cfg.turns)
        return train, conversations(cfg.eval_examples, EVAL_SEED, "test", cfg.turns), "add2x2-dialogues"
    records, source = load_records(ctx.dataset, "train")
    train, heldout = split_heldout([to_messages(r) for r in records], source)
    return train, heldout[: cfg.eval_examples], source


def evaluate(model, tokenizer, heldout_records, heldout_tokens, cfg: Config, embedded: bool) -> dict:
    """Exact match of the last assistant turn given the earlier ones, and loss on all assistant turns."""
    prompts = [r for r in last_turn_prompts(heldout_records) if r["prompt"]]
    budget = cfg.max_new_tokens or (8 if embedded else 128)
    scores = exact_match(model, turn_end_tokenizer(tokenizer), prompts, max_new_tokens=budget)
    return {"exact_match": scores["exact_match"], "loss": mean_nll(model, heldout_tokens, tokenizer.pad_token_id)}


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = load_policy(ctx, lora_settings(cfg))
    data = dialogue_data(cfg, ctx)
    return train_sft(cfg, ctx, model, tokenizer, data=data, evaluate=evaluate)


plugin = Plugin(
    id="dialogue-tuning",
    config=Config,
    run=run,
    summary="Multi-turn SFT with the loss on assistant turns only.",
    smoke=SMOKE,
)
