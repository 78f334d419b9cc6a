"""Self-Refine: the model answers, critiques its own answer, and rewrites it, until it is satisfied.

Paper: Madaan, Tandon, Gupta, Hallinan, Gao, Wiegreffe, Alon, Dziri, Prabhumoye, Yang, Gupta,
Majumder, Hermann, Welleck, Yazdanbakhsh, Clark 2023, "Self-Refine: Iterative Refinement with
Self-Feedback", arXiv:2303.17651. Catalog entry: catalog/methods/self-refine.yaml.

    catalog run self-refine                             # embedded reasoning model
    catalog run self-refine --set iterations=0,1,2,4    # budget sweep (0 = the first answer)
    catalog run self-refine --set evaluator=self        # the model's own V: verdicts as the feedback

Loop (Madaan Alg. 1), all problems batched: y0 = generate(x); then for t = 0..iterations-1:
FEEDBACK: a judge rates y_t with P(correct) (``evaluator``: the embedded process reward model by
default, or the same model's ``V:`` sub-skill, Madaan's self-feedback);
stop when P(correct) >= ``stop_threshold`` (Madaan's stop indicator); REFINE: y_{t+1} =
generate(``R:`` x y_t |), the model's refine sub-skill, which rewrites a wrong attempt.
Returns the last refinement (Madaan), or with ``keep=best`` the attempt the feedback rated highest.

Deviations:
1. The feedback is a yes/no verdict, not free-text critique (the tiny model has no language).
2. By default the verdict comes from the embedded process reward model
   (``posttrain.embedded.prm``: trained on training-split traces with exact step labels; the
   attempt's score is its last step's probability), not from the model itself: the tiny model's
   own ``V:`` verdicts are 53.5% accurate (chance), so self-feedback cannot tell which attempts
   to rewrite. The rewrite is still the model's own (its ``R:`` sub-skill). ``evaluator=self``
   is Madaan's self-feedback.
3. Decoding is greedy as in Madaan; at most 2 refinements by default (Madaan: up to 4).

Measured on the embedded reasoning model (200 held-out problems, greedy 58.0%,
reports/runs/self-refine.json): 58.0% with the PRM feedback (0.77 rewrites per problem), 58.5%
with keep=best, 60.0% with 4 rounds of sampled rewrites (``refine_temperature=0.7``, keep=best):
the feedback finds the wrong answers, but the model's own rewrite repeats its carry mistakes, so
self-refine does not beat greedy decoding on this model.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.errors import UserError
from posttrain.inference import (
    SWEEP,
    InferenceConfig,
    PerProblem,
    evaluator_scorer,
    finish,
    new_tokens,
    sample,
    setup,
)


class Config(InferenceConfig):
    task: str = Field("reasoning", pattern="^(reasoning)$", description="Embedded task (needs the refine sub-skill).")
    iterations: int = Field(2, ge=0, description="Most feedback-refine rounds.", json_schema_extra=SWEEP)
    stop_threshold: float = Field(
        0.5, ge=0, le=1, description="Stop refining once the feedback's P(correct) reaches this."
    )
    evaluator: str = Field(
        "prm",
        pattern="^(prm|self)$",
        description="Feedback judge: prm (the embedded PRM, or --set prm=FOLDER) or self (the model's V: sub-skill, Madaan).",
    )
    prm: str | None = Field(None, description="A process reward model folder (default: the embedded PRM).")
    refine_temperature: float = Field(
        0.0, ge=0, description="Temperature of the rewrites: 0 = greedy (Madaan); above 0 samples each rewrite."
    )
    keep: str = Field(
        "last", pattern="^(last|best)$", description="Return the last refinement (Madaan) or the best-rated."
    )


# --- rules ---------------------------------------------------------------------------------------------


def should_stop(p_correct: float, threshold: float) -> bool:
    """Madaan's stop indicator: the feedback says the answer is good enough.

    threshold 0 stops at once (no refinement); threshold above 1 never stops early."""
    return p_correct >= threshold


def pick_attempt(ratings: Sequence[float], keep: str) -> int:
    """The attempt returned: the last one, or the best-rated (the earliest on ties)."""
    if keep == "last":
        return len(ratings) - 1
    best = max(ratings)
    return ratings.index(best)


# --- run ------------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    if ctx.dataset is not None:
        raise UserError(
            "self-refine: --dataset is not supported yet (the feedback and refine prompts are the embedded reasoning model's)"
        )
    from posttrain.embedded.reasoning import refine_prompt

    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    judge, evaluator = evaluator_scorer(cfg.evaluator, cfg.prm, ctx, model, tokenizer, meter)
    prompts = [r["prompt"] for r in problems.records]
    tokens = new_tokens(cfg, problems)
    per_problem = PerProblem.of(len(prompts))
    first = sample(model, tokenizer, prompts, 1, tokens, meter, greedy=True, batch_size=cfg.batch_size)
    per_problem.add_tokens(range(len(prompts)), [r[0] for r in first.lengths()])
    history = [[row[0]] for row in first.texts]
    ratings: list[list[float]] = [[] for _ in prompts]
    open_ = list(range(len(prompts)))
    refined = 0
    for _ in range(cfg.iterations):
        if not open_:
            break
        verdicts = judge([prompts[i] for i in open_], [history[i][-1] for i in open_])
        for i, v in zip(open_, verdicts, strict=True):
            ratings[i].append(v)
        open_ = [i for i, v in zip(open_, verdicts, strict=True) if not should_stop(v, cfg.stop_threshold)]
        if not open_:
            break
        out = sample(
            model,
            tokenizer,
            [refine_prompt(prompts[i], history[i][-1]) for i in open_],
            1,
            tokens,
            meter,
            greedy=cfg.refine_temperature == 0,
            temperature=cfg.refine_temperature or 1.0,
            batch_size=cfg.batch_size,
        )
        per_problem.add_tokens(open_, [r[0] for r in out.lengths()])
        refined += len(open_)
        for i, row in zip(open_, out.texts, strict=True):
            history[i].append(row[0])
    if cfg.keep == "best":  # rate the last refinements too
        unrated = [i for i in range(len(prompts)) if len(ratings[i]) < len(history[i])]
        if unrated:
            verdicts = judge([prompts[i] for i in unrated], [history[i][-1] for i in unrated])
            for i, v in zip(unrated, verdicts, strict=True):
                ratings[i].append(v)
    predictions = [
        h[pick_attempt(r + [0.0] * (len(h) - len(r)), cfg.keep)] for h, r in zip(history, ratings, strict=True)
    ]
    result = finish(
        ctx, problems, predictions, meter, before, per_problem.rows, iterations=cfg.iterations, evaluator=evaluator
    )
    result.metrics["after"]["refinements_per_problem"] = refined / max(len(prompts), 1)
    return result


plugin = Plugin(
    id="self-refine",
    config=Config,
    run=run,
    summary="Answer, judge the answer with the same model, rewrite it, repeat until the judge is satisfied.",
    smoke={"iterations": 1, "eval_examples": 4},
    kind="inference",
)
