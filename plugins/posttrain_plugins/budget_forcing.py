"""Budget forcing (s1): control how long the model thinks by decoding alone.

Paper: Muennighoff, Yang, Shi, Li, Fei-Fei, Hajishirzi, Zettlemoyer, Liang, Candes, Hashimoto 2025,
"s1: Simple test-time scaling", arXiv:2501.19393, §3.1. Catalog entry: catalog/methods/budget-forcing.yaml.

    catalog run budget-forcing                                      # embedded reasoning model
    catalog run budget-forcing --set max_thinking_tokens=0,4,8,12,24 # the s1 scaling curve (cap)
    catalog run budget-forcing --model embedded:reasoning-s1 \
        --set min_thinking_tokens=12 --set max_thinking_tokens=64   # extend the s1 model: one "Wait"
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

Deviations: on the embedded reasoning model (the default) "Wait" is a string it never saw in
training, so extending is implemented faithfully but cannot help there; the cap is what the
default run sweeps. Measured (200 held-out problems, greedy 58.0%, reports/tts/budget-forcing.json):
thinking capped at 0 or 4 tokens 0.0%, at 8 tokens 55.5%, at 12+ tokens 58.0% (the scratchpad
needs 9 thinking tokens, so the default cap of 24 never binds and the run equals greedy decoding);
extending with ``min_thinking_tokens=12`` appends "Wait" 1.4 times per problem and drops accuracy
to 0.0% (the model continues with garbage such as ``11;12;10;Wait1;#11;12;10``).

s1's recipe, reproduced: ``--model embedded:reasoning-s1`` is the reasoning model fine-tuned
(SFT, like s1's fine-tune on s1K) on training-split traces whose thinking goes on after "Wait"
with an explicit re-check, ``12;13;6;Wait347+285:7+5=12;4+8+1=13;3+2+1=6;#632`` (the problem
rewritten with aligned operands, then each column's digits, carry and sum; the answer is read off
the last pass), mixed with plain scratchpads; see ``posttrain.embedded.s1``. There ``before``
stays greedy decoding of the same (s1) model, so a gain is budget forcing's, not the fine-tune's;
``greedy_reasoning_model`` gives the model before the fine-tune, and ``paired_vs_greedy`` the
mistakes fixed and answers broken. Measured
(``min_thinking_tokens=12``, ``max_thinking_tokens=64``: one "Wait" per problem, 43.4 generated
tokens per problem against greedy's 13.1, 52 forward passes against 16): on the default 200
held-out problems 93.5% -> 94.0% (7 fixed, 6 broken, +0.5 points, paired standard error 1.8),
within noise; on 1000 held-out problems 91.8% -> 94.6% (42 fixed, 14 broken, +2.8 +- 0.7). The
reasoning model before the fine-tune: greedy 58.0% (200) and 58.1% (1000); the fine-tune's plain
traces lift the first pass by ~35 points, which leaves budget forcing few mistakes to fix (most
left are digit-lookup errors on short operands, which the re-check shares). Cap curve of the s1
model (200 problems, min 12): 67.5% at 8 thinking tokens, 0.5-1.0% at 16-32 (the cap cuts the
re-check and the answer read off a partial pass is wrong), 94.0% at 64. Two forced "Wait"s
(min 48, cap 112, 1000 problems) drop it to 71.6%. So the default stays the reasoning model:
budget forcing's gain on the s1 model is real on 1000 problems but not beyond noise on the
default 200. An earlier re-check without the aligned rewrite (``7+5=12;4+8+1=13;...``) gave
93.0% -> 96.5% on the 200 (9 fixed, 2 broken) but 91.9% -> 92.5% on 1000 (28 fixed, 22 broken).
"""

from __future__ import annotations

import math
from dataclasses import replace

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.inference import (
    REASONING_MODEL,
    SWEEP,
    ComputeMeter,
    InferenceConfig,
    PerProblem,
    finish,
    greedy_baseline,
    load_model,
    new_tokens,
    sample,
    setup,
    step_stop,
    text_prompt,
)

S1_MODEL = "embedded:reasoning-s1"  # posttrain.embedded.s1: the reasoning model fine-tuned on re-checking traces


class Config(InferenceConfig):
    task: str = Field(
        "reasoning", pattern="^(addition|reasoning)$", description="Embedded task when no --dataset is given."
    )
    max_thinking_tokens: int = Field(
        24,
        ge=0,
        description="Cap: most thinking tokens before the end-of-thinking delimiter is forced.",
        json_schema_extra=SWEEP,
    )
    min_thinking_tokens: int = Field(
        0,
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


def paired_difference(before: list[bool], after: list[bool]) -> dict:
    """Paired comparison of two runs on the same problems: mistakes fixed, answers broken, the
    accuracy gain and its standard error (of the mean per-problem difference d in {-1, 0, 1}).

    before [T, F, F, T], after [T, T, F, F]: fixed 1, broken 1, gain 0, se sqrt((2/4 - 0) / 4) = 0.354.
    """
    n = len(before)
    fixed = sum(a and not b for b, a in zip(before, after, strict=True))
    broken = sum(b and not a for b, a in zip(before, after, strict=True))
    gain = (fixed - broken) / max(n, 1)
    var = (fixed + broken) / max(n, 1) - gain**2
    return {"fixed": fixed, "broken": broken, "gain": gain, "gain_se": math.sqrt(max(var, 0.0) / max(n, 1))}


# --- run --------------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer, problems, _, meter = setup(cfg.model_copy(update={"baseline": False}), ctx)
    greedy = None  # `before`: greedy decoding of the same model, kept per problem for the paired counts
    if cfg.baseline:
        base_meter = ComputeMeter(model)
        out = sample(
            model,
            tokenizer,
            [r["prompt"] for r in problems.records],
            1,
            new_tokens(cfg, problems),
            base_meter,
            greedy=True,
            batch_size=cfg.batch_size,
        )
        base_meter.close()
        greedy = [bool(problems.check(row[0], r)) for row, r in zip(out.texts, problems.records, strict=True)]
        before = {"accuracy": sum(greedy) / max(len(greedy), 1), **base_meter.snapshot(len(greedy))}
        meter.close()  # the method's meter starts after the baseline, as setup() orders them
        meter = ComputeMeter(model)
    else:
        before = None
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
    if greedy is not None:
        after = [bool(problems.check(p, r)) for p, r in zip(predictions, problems.records, strict=True)]
        result.metrics["paired_vs_greedy"] = paired_difference(greedy, after)
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
