"""Budget forcing (s1): control how long the model thinks by decoding alone.

Paper: Muennighoff, Yang, Shi, Li, Fei-Fei, Hajishirzi, Zettlemoyer, Liang, Candes, Hashimoto 2025,
"s1: Simple test-time scaling", arXiv:2501.19393, §3.1. Catalog entry: catalog/methods/budget-forcing.yaml.

    catalog run budget-forcing                                      # embedded s1 model, one forced "Wait"
    catalog run budget-forcing --set min_thinking_tokens=0,12       # without / with the forced "Wait"
    catalog run budget-forcing --model embedded:reasoning --set max_thinking_tokens=0,4,8,12,24
    catalog run budget-forcing --model simplescaling/s1.1-1.5B --dataset aime.jsonl \
        --set end_of_thinking='<|im_start|>answer' --set continuation=Wait --set max_thinking_tokens=4000

Thinking is everything before the end-of-thinking delimiter (``#``, the answer mark, on the
scratchpad task; ``<|im_start|>answer`` for s1 models). Batched over problems, s1's two rules:
- cap: once the thinking reaches ``max_thinking_tokens``, the delimiter is appended and the model
  must answer;
- extend: when the model tries to end its thinking before ``min_thinking_tokens``, the delimiter
  is suppressed, ``continuation`` ("Wait") is appended, and decoding continues (at most
  ``max_waits`` times).
Then the answer is decoded greedily after the delimiter.

Both rules are s1's (§3.1): the delimiter is never emitted below the minimum (decoding stops at
it, it is dropped and the continuation appended), and at the cap the delimiter is appended so the
model must answer.

Deviations:
1. The embedded s1 model. s1 applies budget forcing to a model fine-tuned on reasoning traces
   that re-check themselves (s1K). On the embedded reasoning task (no --model, ``task=reasoning``)
   the model is ``embedded:reasoning-s1`` (``posttrain.embedded.s1``): the reasoning model
   fine-tuned on training-split traces whose thinking goes on after "Wait" with an explicit
   re-check, ``12;13;6;Wait347+285:7+5=12;4+8+1=13;3+2+1=6;#632`` (the problem rewritten with
   aligned operands, then each column's digits, carry and sum; the answer is read off the last
   pass), mixed with plain scratchpads. The first attempt and "Wait" are prompt, not loss, so the
   model never says "Wait" on its own: the extension comes from the forcing. ``before`` is
   greedy decoding of the same s1 model, so a gain is budget forcing's, not the fine-tune's;
   ``greedy_reasoning_model`` reports the model before the fine-tune, and the summary's
   ``paired`` block the mistakes fixed and answers broken.
2. Budgets are sized for the embedded task: ``min_thinking_tokens`` 12 (the first pass takes 8-9
   thinking tokens, so it gets exactly one "Wait") and ``max_thinking_tokens`` 64 (room for the
   re-check); 1000 held-out problems, since the gain is ~3 points. Set them for your model.

Measured (1000 held-out problems, reports/runs/budget-forcing.json): greedy decoding of the s1
model 91.8% (13.0 generated tokens per problem, 32 forward passes) -> budget forcing 94.6% (43.4
tokens, 104 forward passes): 42 mistakes fixed, 14 answers broken, +2.8 points, paired standard
error 0.7. The reasoning model before the fine-tune: greedy 58.1%; the fine-tune's plain traces
lift the first pass by ~34 points, which leaves budget forcing few mistakes to fix (most left are
digit-lookup errors on short operands, which the re-check shares). On the default 200 problems of
the other TTS methods a gain this size is within noise, hence 1000. A cap below the re-check's
length cuts the re-check, and the answer read off a partial pass is wrong. On the reasoning model
(``--model embedded:reasoning``), never trained to re-check, a forced "Wait" makes the model
continue with garbage such as ``11;12;10;Wait1;#11;12;10``.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.decode import sample
from posttrain.inference.recipe import (
    REASONING_MODEL,
    SWEEP,
    InferenceConfig,
    PerProblem,
    finish,
    greedy_baseline,
    greedy_decoding,
    load_model,
    new_tokens,
    setup,
    step_stop,
    text_prompt,
)

S1_MODEL = "embedded:reasoning-s1"  # posttrain.embedded.s1: the reasoning model fine-tuned on re-checking traces


class Config(InferenceConfig):
    eval_examples: int = Field(
        1000,
        ge=1,
        description="Problems to solve: 1000 embedded held-out prompts (the s1 model's gain, ~3 points, is noise on 200), or the first N records of --dataset.",
    )
    task: str = Field(
        "reasoning", pattern="^(addition|reasoning)$", description="Embedded task when no --dataset is given."
    )
    max_thinking_tokens: int = Field(
        64,
        ge=0,
        description="Cap: most thinking tokens before the end-of-thinking delimiter is forced.",
        json_schema_extra=SWEEP,
    )
    min_thinking_tokens: int = Field(
        12,
        ge=0,
        description="Extend: fewer thinking tokens than this get the continuation (0: never extend).",
        json_schema_extra=SWEEP,
    )
    end_of_thinking: str = Field("#", description="The end-of-thinking delimiter ('#' on the scratchpad task).")
    continuation: str = Field("Wait", description="Appended when the end of thinking is suppressed (s1: 'Wait').")
    max_waits: int = Field(2, ge=0, description="Most continuations appended per problem.")
    answer_tokens: int = Field(8, ge=1, description="Tokens decoded for the answer after the delimiter.")


# --- the forcing rule -------------------------------------------------------------------------------------


def forcing_action(thinking_tokens: int, wants_to_end: bool, waits: int, cfg: Config) -> str:
    """What budget forcing does after a thinking segment: "answer" (append the delimiter and let
    the model answer), "wait" (suppress the end, append the continuation) or "think" (go on).

    Over the cap -> answer; ending early (below min, waits left) -> wait; ending otherwise -> answer.
    """
    if thinking_tokens >= cfg.max_thinking_tokens:
        return "answer"
    if wants_to_end:
        return "wait" if thinking_tokens < cfg.min_thinking_tokens and waits < cfg.max_waits else "answer"
    return "think"


# --- run --------------------------------------------------------------------------------------------------


def embedded_model(cfg: Config, ctx: RunContext) -> RunContext:
    """On the embedded reasoning task the default model is the s1 model (the reasoning model
    fine-tuned on traces that re-check themselves after "Wait", posttrain.embedded.s1), as s1
    applies budget forcing to its fine-tuned model."""
    if ctx.model is None and ctx.dataset is None and cfg.task == "reasoning":
        return replace(ctx, model=S1_MODEL)
    return ctx


def run(cfg: Config, ctx: RunContext) -> RunResult:
    ctx = embedded_model(cfg, ctx)
    model, tokenizer, problems, _, meter = setup(cfg.model_copy(update={"baseline": False}), ctx)
    # `before`: greedy decoding of the same model, kept per problem for the paired counts
    _, before = (
        greedy_decoding(model, tokenizer, problems, new_tokens(cfg, problems), cfg.batch_size)
        if cfg.baseline
        else (None, None)
    )
    meter.reset()  # the greedy baseline's compute is not the method's
    prompts = [text_prompt(tokenizer, r["prompt"]) for r in problems.records]
    per_problem = PerProblem.of(len(prompts))
    thinking = [""] * len(prompts)
    used = [0] * len(prompts)
    waits = [0] * len(prompts)
    open_ = [i for i in range(len(prompts)) if cfg.max_thinking_tokens > 0]
    stop = step_stop(tokenizer, cfg.end_of_thinking)
    while open_:
        budget = max(cfg.max_thinking_tokens - min(used[i] for i in open_), 1)
        out = sample(
            model,
            tokenizer,
            [prompts[i] + thinking[i] for i in open_],
            1,
            budget,
            meter,
            greedy=True,
            batch_size=cfg.batch_size,
            extra_generate=stop,
        )
        still = []
        for i, row, lengths, ended in zip(open_, out.texts, out.lengths(), out.ended, strict=True):
            text = row[0]
            wants_to_end = text.endswith(cfg.end_of_thinking) or ended[0]
            segment = text[: -len(cfg.end_of_thinking)] if text.endswith(cfg.end_of_thinking) else text
            per_problem.add_tokens([i], [lengths[0]])
            room = cfg.max_thinking_tokens - used[i]
            if lengths[0] > room:  # the batch budget overshot this row's own cap: cut at the cap
                segment = tokenizer.decode(tokenizer(segment, add_special_tokens=False)["input_ids"][:room])
                wants_to_end = False
            thinking[i] += segment
            used[i] += min(lengths[0], room)
            action = forcing_action(used[i], wants_to_end, waits[i], cfg)
            if action == "wait":
                thinking[i] += cfg.continuation
                waits[i] += 1
            if action in ("wait", "think"):
                still.append(i)
        open_ = still
    answers = sample(
        model,
        tokenizer,
        [p + t + cfg.end_of_thinking for p, t in zip(prompts, thinking, strict=True)],
        1,
        cfg.answer_tokens,
        meter,
        greedy=True,
        batch_size=cfg.batch_size,
    )
    per_problem.add_tokens(range(len(prompts)), [r[0] for r in answers.lengths()])
    predictions = [t + cfg.end_of_thinking + row[0] for t, row in zip(thinking, answers.texts, strict=True)]
    result = finish(
        ctx, problems, predictions, meter, before, per_problem.rows, max_thinking_tokens=cfg.max_thinking_tokens
    )
    result.metrics["after"]["thinking_tokens_per_problem"] = sum(used) / max(len(used), 1)
    result.metrics["after"]["waits_per_problem"] = sum(waits) / max(len(waits), 1)
    if ctx.model == S1_MODEL and cfg.baseline:  # context: greedy decoding of the model before the s1 fine-tune
        base, base_tok = load_model(replace(ctx, model=REASONING_MODEL))
        result.metrics["greedy_reasoning_model"] = greedy_baseline(
            base, base_tok, problems, new_tokens(cfg, problems), cfg.batch_size
        )
    return result


plugin = Plugin(
    id="budget-forcing",
    config=Config,
    run=run,
    summary="Cap or extend the model's thinking by decoding: force the end-of-thinking delimiter, or suppress it and append 'Wait'.",
    smoke={"max_thinking_tokens": 6, "eval_examples": 4},
    kind="inference",
)
