"""Confidence-based sampling: decode once, and spend more samples only where the model is unsure.

Papers: the survey's "confidence-based sampling" (§5.3); the rule follows adaptive-consistency
(Aggarwal et al. 2023, "Let's Sample Step by Step: Adaptive-Consistency for Efficient Reasoning",
arXiv:2305.11860: stop sampling once the answer is settled) and DeepConf (Fu et al. 2025, "Deep
Think with Confidence", arXiv:2508.15260: weight or filter traces by the model's token
confidence). Catalog entry: catalog/methods/confidence-sampling.yaml.

    catalog run confidence-sampling                            # embedded reasoning model and task
    catalog run confidence-sampling --set threshold=0.5,0.8,0.95,0.99   # sweep: compute vs accuracy
    catalog run confidence-sampling --set selection=most_confident      # select instead of vote

Per problem: one greedy decode and its confidence c = min_t p(y_t | y_<t, x) (the least sure
token). If c >= ``threshold`` the greedy answer is kept (no more compute); otherwise the method
expands: it draws ``n`` samples (one batched generate over all unsure problems) and answers with
a vote over the samples and the greedy answer: by default each trace's vote weighted by a process
reward model's score (``selection=prm``), with ``selection=weighted_vote`` by the trace's own
confidence (``confidence_weighted_vote``, DeepConf's weighting), or with
``selection=most_confident`` the single most confident trace (``most_confident``).

Deviations:
1. DeepConf scores a trace by the mean of its lowest-confidence window of top-k log-probs; we
   use the lowest token probability of the trace (answers here are a few tokens).
2. The default threshold 0.9 and n = 16 are ours, chosen for the embedded task; sweep them.
3. By default the expanded problems are answered by a vote weighted with the embedded process
   reward model (``posttrain.embedded.prm``, trained on training-split traces with exact step
   labels; a trace's score is its last step's probability), not by the model's confidence: the
   model's own confidence is well calibrated for deciding WHERE to spend (the threshold sweep
   below) but cannot pick the right trace among the samples, because the tiny model's mistakes are systematic (its most confident
   sample is usually its greedy answer). ``selection=weighted_vote`` is DeepConf's rule.

Measured on the embedded reasoning model (1000 held-out problems, greedy 58.1%,
reports/runs/confidence-sampling.json): 68.1% with selection=prm, 69.8% of the problems
expanded (160 generated tokens per problem).
The threshold sweep (reports/tts/confidence-sampling.json) shows what the gating buys: tau = 0.5
65.6% (47% expanded, 114 tokens per problem), 0.7 67.6% (57%, 135), 0.9 68.1% (70%, 160), 1.0
(expand every problem) 67.7% (100%, 221): the confident 30% need no samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.answers import answer_of
from posttrain.generation.decode import sample
from posttrain.inference.recipe import SWEEP, InferenceConfig, PerProblem, evaluator_scorer, finish, new_tokens, setup


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
    n: int = Field(16, ge=1, description="Samples drawn for an unsure problem.", json_schema_extra=SWEEP)
    threshold: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Confidence tau: keep the greedy answer when min_t p(y_t) >= tau.",
        json_schema_extra=SWEEP,
    )
    selection: str = Field(
        "prm",
        pattern="^(weighted_vote|most_confident|prm)$",
        description="How an expanded problem is answered: confidence-weighted vote, the most confident trace, or prm (the vote weighted by a process reward model's scores).",
    )
    prm: str | None = Field(
        None, description="selection=prm: a process reward model folder (default: the embedded PRM)."
    )


# --- confidence rules ----------------------------------------------------------------------------------


def trace_confidence(token_logprobs: Sequence[float]) -> float:
    """min_t p(y_t): the probability of the trace's least likely token (1.0 for an empty trace).

    log-probs [log 0.9, log 0.5, log 0.99] -> 0.5.
    """
    return math.exp(min(token_logprobs)) if token_logprobs else 1.0


def needs_expansion(confidence: float, threshold: float) -> bool:
    """Expand (sample more) when the greedy trace is less confident than the threshold.

    threshold 0 never expands; threshold 1 expands unless every token had probability 1.
    """
    return confidence < threshold


def confidence_weighted_vote(answers: Sequence[str], confidences: Sequence[float]) -> str:
    """The answer with the largest summed confidence; the earliest wins a tie.

    ["3", "5", "5"] with [0.9, 0.3, 0.4] -> "3".
    """
    totals: dict[str, float] = {}
    for a, c in zip(answers, confidences, strict=True):
        totals[a] = totals.get(a, 0.0) + c
    best = max(totals.values())
    return next(a for a in answers if totals[a] == best)


def most_confident(confidences: Sequence[float]) -> int:
    """Index of the most confident trace; the earliest wins a tie."""
    best = max(confidences)
    return next(i for i, c in enumerate(confidences) if c == best)


# --- run -------------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    prompts = [r["prompt"] for r in problems.records]
    tokens = new_tokens(cfg, problems)
    first = sample(model, tokenizer, prompts, 1, tokens, meter, greedy=True, batch_size=cfg.batch_size)
    per_problem = PerProblem.of(len(prompts))
    per_problem.add_tokens(range(len(prompts)), [row[0] for row in first.lengths()])
    predictions = [row[0] for row in first.texts]
    greedy_conf = [trace_confidence(row[0]) for row in first.token_logprobs]
    unsure = [i for i, c in enumerate(greedy_conf) if needs_expansion(c, cfg.threshold)]
    if unsure:
        more = sample(
            model,
            tokenizer,
            [prompts[i] for i in unsure],
            cfg.n,
            tokens,
            meter,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.batch_size,
        )
        per_problem.add_tokens(unsure, [sum(row) for row in more.lengths()])
        prm_scores = None
        if cfg.selection == "prm":
            score, _ = evaluator_scorer("prm", cfg.prm, ctx, model, tokenizer, meter)
            flat = score(
                [prompts[i] for i in unsure for _ in range(cfg.n + 1)],
                [t for i, texts in zip(unsure, more.texts, strict=True) for t in [predictions[i], *texts]],
            )
            prm_scores = [flat[k * (cfg.n + 1) : (k + 1) * (cfg.n + 1)] for k in range(len(unsure))]
        for k, (i, texts, logps) in enumerate(zip(unsure, more.texts, more.token_logprobs, strict=True)):
            traces = [predictions[i], *texts]
            confs = [greedy_conf[i], *(trace_confidence(lp) for lp in logps)]
            if prm_scores is not None:
                answers = [answer_of(t) for t in traces]
                winner = confidence_weighted_vote(answers, prm_scores[k])
                predictions[i] = next(t for t, a in zip(traces, answers, strict=True) if a == winner)
            elif cfg.selection == "most_confident":
                predictions[i] = traces[most_confident(confs)]
            else:
                answers = [answer_of(t) for t in traces]
                winner = confidence_weighted_vote(answers, confs)
                predictions[i] = next(t for t, a in zip(traces, answers, strict=True) if a == winner)
    result = finish(
        ctx,
        problems,
        predictions,
        meter,
        before,
        per_problem.rows,
        n=cfg.n,
        threshold=cfg.threshold,
        selection=cfg.selection,
    )
    result.metrics["after"]["expanded_share"] = len(unsure) / max(len(prompts), 1)
    return result


plugin = Plugin(
    id="confidence-sampling",
    config=Config,
    run=run,
    summary="Decode greedily; sample and vote only on the problems where the model's confidence is low.",
    smoke={"n": 4, "eval_examples": 8},
    kind="inference",
)
