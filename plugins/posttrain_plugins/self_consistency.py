"""Self-consistency: sample N solutions and return the most frequent final answer.

Paper: Wang, Wei, Schuurmans, Le, Chi, Narang, Chowdhery, Zhou 2022, "Self-Consistency Improves
Chain of Thought Reasoning in Language Models", arXiv:2203.11171. Catalog entry:
catalog/methods/self-consistency.yaml.

    catalog run self-consistency                          # embedded diverse-paths model and task
    catalog run self-consistency --set n=1,4,16,64        # budget sweep: sweep.json + sweep.png
    catalog run self-consistency --set vote=weighted      # weighted majority vote (sum of p(y|x))
    catalog run self-consistency --model Qwen/Qwen2.5-0.5B-Instruct --dataset gsm8k.jsonl

All N samples of all prompts come from batched ``generate`` calls (the prompt's KV cache is
computed once and shared by its N samples); the final answer of each sample is parsed with
``posttrain.answers.answer_of`` (the last integer, or the whole trimmed text when there is none), and the vote is
``majority_vote`` (Wang 2022, the unweighted sum) or ``weighted_majority_vote`` (Wang 2022 Table 1,
"weighted sum" of the normalised sequence probabilities).

Sampling follows the paper (§3.1): T = 0.7 with top-k 40, N = 40.

Deviations from the paper:
1. Ties are broken by the answer that appeared first among the samples (the paper does not say).
2. On the embedded task the default is 1000 held-out problems (not 200), so that differences to
   greedy decoding of a few points can be resolved.
3. The embedded diverse-paths model. On the embedded reasoning task (no --model, ``task=reasoning``)
   the model is ``embedded:reasoning-diverse`` (``posttrain.embedded.diverse``): the reasoning
   model fine-tuned (1500 SFT steps, cached) to solve each training-split
   problem by one of three checkable paths drawn at random, chosen by the first token: ``c``
   column sums (``c12;13;6;#632``), ``x`` digits and carry written out
   (``x7+5=12;4+8+1=13;3+2+1=6;#632``), ``s`` the same with the operands swapped
   (``s5+7=12;8+4+1=13;2+3+1=6;#632``). Wang et al.'s premise is that a problem admits several
   ways of thinking whose errors differ; the reasoning model has one way of thinking, and on it
   self-consistency only reached greedy decoding in exploratory runs (the greedy answer was
   usually the plurality of the samples; other temperatures, top-p and the weighted vote did no
   better).
   ``before`` is greedy decoding of the same diverse-paths model, so a gain is the vote's, not the
   fine-tune's; ``reasoning_model_greedy`` reports the original reasoning model's greedy decoding
   on the same problems, for context. Answers are read the same way; ``max_new_tokens`` defaults
   to 40 (the longest path is 31 tokens). Pass ``--model embedded:reasoning`` for the old setting.

Measured (1000 held-out problems, reports/tts/self-consistency.json, reports/runs/self-consistency.json):
greedy decoding of the diverse-paths model 47.3% (24 generated tokens per problem; the original
reasoning model 58.1%); self-consistency 33.1% at n=1, 39.1% at 4, 56.3% at 16, 61.7% at the
default n=40 and 63.1% at 64 (binomial standard error 1.5-1.6 points each). At n=40 the vote fixes 219
greedy mistakes and breaks 75: +14.4 points, paired standard error 1.7 (n=64: 222 / 64, +15.8),
at 932 generated tokens per problem (63 s wall on 1 CPU thread, shared). The paths' errors are nearly
independent (checked when the model is built), so wrong answers scatter while right ones agree. A
single sample (33.1%) is worse than greedy; the vote needs about 16 samples to pass it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.answers import answer_of
from posttrain.embedded.diverse import DIVERSE_MODEL, MAX_NEW_TOKENS
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
)


class Config(InferenceConfig):
    eval_examples: int = Field(
        1000,
        ge=1,
        description="Problems to solve: 1000 embedded held-out prompts (gains of 1-2 points are noise on 200), or the first N records of --dataset.",
    )
    task: str = Field(
        "reasoning", pattern="^(addition|reasoning)$", description="Embedded task when no --dataset is given."
    )
    temperature: float = Field(
        0.7, gt=0, description="Sampling temperature T (0.7 gives the tiny model diverse answers)."
    )
    top_k: int = Field(
        40, ge=0, description="Top-k truncation of the sampling distribution (Wang 2022 §3.1: k = 40; 0 = none)."
    )
    n: int = Field(
        40, ge=1, description="Sampled solutions per problem, N (Wang 2022 §3.1: 40).", json_schema_extra=SWEEP
    )
    vote: str = Field(
        "majority",
        pattern="^(majority|weighted)$",
        description="majority: count answers; weighted: sum the length-normalised probabilities exp(mean log p).",
    )


# --- voting rules ------------------------------------------------------------------------------------


def majority_vote(answers: Sequence[str]) -> str:
    """The most frequent answer; a tie goes to the answer seen first.

    ["3", "5", "5", "3"] -> "3" (2 votes each, "3" came first); ["7"] -> "7".
    """
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


def weighted_majority_vote(answers: Sequence[str], weights: Sequence[float]) -> str:
    """The answer with the largest summed weight; a tie goes to the answer seen first.

    answers ["3", "5", "5"], weights [0.9, 0.3, 0.4] -> "3" (0.9 > 0.7). Equal weights reduce it
    to ``majority_vote``.
    """
    totals: dict[str, float] = {}
    for a, w in zip(answers, weights, strict=True):
        totals[a] = totals.get(a, 0.0) + w
    best = max(totals.values())
    return next(a for a in answers if math.isclose(totals[a], best, rel_tol=1e-12, abs_tol=1e-12))


def vote_share(answers: Sequence[str], winner: str) -> float:
    """Share of samples that agree with the winner (the paper's consistency, a confidence proxy)."""
    return sum(a == winner for a in answers) / max(len(answers), 1)


# --- run ----------------------------------------------------------------------------------------------


def embedded_model(cfg: Config, ctx: RunContext) -> tuple[Config, RunContext]:
    """On the embedded reasoning task the default model is the diverse-paths model (the reasoning
    model fine-tuned to solve each problem by one of several paths, posttrain.embedded.diverse),
    with room for its longest path."""
    if ctx.model is None and ctx.dataset is None and cfg.task == "reasoning":
        ctx = replace(ctx, model=DIVERSE_MODEL)
    if ctx.model == DIVERSE_MODEL and cfg.max_new_tokens is None:
        cfg = cfg.model_copy(update={"max_new_tokens": MAX_NEW_TOKENS})
    return cfg, ctx


def run(cfg: Config, ctx: RunContext) -> RunResult:
    cfg, ctx = embedded_model(cfg, ctx)
    baseline = cfg.baseline
    model, tokenizer, problems, _, meter = setup(cfg.model_copy(update={"baseline": False}), ctx)
    _, before = (
        greedy_decoding(model, tokenizer, problems, new_tokens(cfg, problems), cfg.batch_size)
        if baseline
        else (None, None)
    )
    meter.reset()  # the greedy baseline's compute is not the method's
    prompts = [r["prompt"] for r in problems.records]
    samples = sample(
        model,
        tokenizer,
        prompts,
        cfg.n,
        new_tokens(cfg, problems),
        meter,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.batch_size,
        extra_generate={"top_k": cfg.top_k},
    )
    per_problem = PerProblem.of(len(prompts))
    per_problem.add_tokens(range(len(prompts)), [sum(row) for row in samples.lengths()])
    predictions, agreement = [], []
    for texts, mean_lps in zip(samples.texts, samples.mean_logprob(), strict=True):
        answers = [answer_of(t) for t in texts]
        if cfg.vote == "weighted":
            winner = weighted_majority_vote(answers, [math.exp(lp) for lp in mean_lps])
        else:
            winner = majority_vote(answers)
        predictions.append(next(t for t, a in zip(texts, answers, strict=True) if a == winner))
        agreement.append(vote_share(answers, winner))
    result = finish(ctx, problems, predictions, meter, before, per_problem.rows, n=cfg.n, vote=cfg.vote)
    result.metrics["after"]["vote_share"] = sum(agreement) / len(agreement)
    if baseline and ctx.model == DIVERSE_MODEL:  # for context: greedy decoding of the model it was tuned from
        original, tok = load_model(replace(ctx, model=REASONING_MODEL))
        result.metrics["reasoning_model_greedy"] = greedy_baseline(
            original, tok, problems, problems.default_new_tokens, cfg.batch_size
        )
    return result


plugin = Plugin(
    id="self-consistency",
    config=Config,
    run=run,
    summary="Sample N solutions and return the most frequent final answer.",
    smoke={"n": 4, "eval_examples": 8},
    kind="inference",
)
