"""Graph of Thoughts: thoughts as graph vertices, combined by generate, score, aggregate and refine.

Paper: Besta, Blach, Kubicek, Gerstenberger, Podstawski, Gianinazzi, Gajda, Lehmann, Niewiadomski,
Nyczyk, Hoefler 2023, "Graph of Thoughts: Solving Elaborate Problems with Large Language Models",
arXiv:2308.09687. Catalog entry: catalog/methods/graph-of-thoughts.yaml.

    catalog run graph-of-thoughts                          # embedded reasoning model
    catalog run graph-of-thoughts --set generate=2,4,8,16  # budget sweep
    catalog run graph-of-thoughts --set scorer=verifier    # the model's own scoring

The graph of operations (Besta's GoO), per problem, all problems batched:
1. Generate: ``generate`` complete solutions (thoughts) by sampling;
2. Score: rate each thought (the embedded process reward model by default; ``scorer=verifier``:
   the model's own evaluation, the reasoning model's ``V:`` sub-skill);
3. Aggregate: merge the ``aggregate`` best thoughts into a new one, step by step
   (``aggregate_steps``: at each step position the most frequent step among the merged thoughts;
   the answer step is re-derived from the merged column sums by the model, which continues the
   merged prefix); Besta's aggregation merges partial results (e.g. sorted sublists) the same way;
4. Refine: rewrite the best-scored thought with the model's refine sub-skill (``R:``);
5. Score the new thoughts and KeepBest(1).

Deviations:
1. One fixed GoO for the scratchpad task (Besta builds one per task); aggregation is by per-step vote.
2. Scores are P(correct) from the embedded process reward model (``posttrain.embedded.prm``,
   trained on training-split traces with exact step labels; a thought's score is its last step's
   probability), not a task-specific scoring function or the model's own judgement: the tiny
   model's ``V:`` verdicts are 53.5% accurate (chance; src/posttrain/embedded/models/reasoning/build.json).
   ``scorer=verifier`` scores with them.
   The Generate, Aggregate and Refine operations stay the model's own.

Measured on the embedded reasoning model (200 held-out problems, greedy 58.0%,
reports/tts/graph-of-thoughts.json): with the PRM scores 62.5% at generate=2, 68.0% at 4,
71.5% at 8 (the default), 73.0% at 16.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.errors import UserError
from posttrain.generation.decode import sample
from posttrain.inference.recipe import SWEEP, PerProblem, StepSearchConfig, attempt_scorer, finish, new_tokens, setup


class Config(StepSearchConfig):
    task: str = Field("reasoning", pattern="^(reasoning)$", description="Embedded task (needs verify and refine).")
    generate: int = Field(8, ge=1, description="Thoughts made by the Generate operation.", json_schema_extra=SWEEP)
    aggregate: int = Field(4, ge=1, description="Best thoughts merged by the Aggregate operation.")
    scorer: str = Field(
        "auto",
        pattern="^(auto|prm|verifier|likelihood)$",
        description="Score operation: auto = prm (the embedded PRM), verifier (the model's own V: verdict) or likelihood.",
    )


# --- graph operations (pure) ----------------------------------------------------------------------------


def keep_best(scores: Sequence[float], k: int) -> list[int]:
    """KeepBest(k): indices of the k highest scores, best first (ties keep the earlier)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def aggregate_steps(thoughts: Sequence[Sequence[str]]) -> list[str]:
    """Merge thoughts (lists of steps) step by step: at each position the most frequent step among
    the thoughts that reach it (the earliest on ties).

    [["1;", "5;", "#51"], ["1;", "6;", "#61"], ["2;", "5;", "#52"]] -> ["1;", "5;", "#51"].
    """
    merged = []
    for pos in range(max((len(t) for t in thoughts), default=0)):
        column = [t[pos] for t in thoughts if pos < len(t)]
        counts = Counter(column)
        top = max(counts.values())
        merged.append(next(s for s in column if counts[s] == top))
    return merged


# --- run ------------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    if ctx.dataset is not None:
        raise UserError(
            "graph-of-thoughts: --dataset is not supported yet (its operations use the embedded model's skills)"
        )
    from posttrain.embedded.reasoning import ANSWER_MARK, refine_prompt, split_steps

    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    score, scorer = attempt_scorer(cfg, ctx, model, tokenizer)
    prompts = [r["prompt"] for r in problems.records]
    tokens = new_tokens(cfg, problems)
    per_problem = PerProblem.of(len(prompts))
    n = len(prompts)
    # 1-2. Generate and Score
    gen = sample(
        model,
        tokenizer,
        prompts,
        cfg.generate,
        tokens,
        meter,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.batch_size,
    )
    per_problem.add_tokens(range(n), [sum(r) for r in gen.lengths()])
    flat = score([p for p in prompts for _ in range(cfg.generate)], [t for row in gen.texts for t in row])
    scores = [flat[i * cfg.generate : (i + 1) * cfg.generate] for i in range(n)]
    # 3. Aggregate: merge the best thoughts' reasoning steps, let the model write the answer step
    merged_prefix = []
    for texts, s in zip(gen.texts, scores, strict=True):
        best = [split_steps(texts[k]) for k in keep_best(s, cfg.aggregate)]
        steps = [st for st in aggregate_steps(best) if not st.startswith(ANSWER_MARK)]
        merged_prefix.append("".join(steps))
    agg = sample(
        model,
        tokenizer,
        [p + m for p, m in zip(prompts, merged_prefix, strict=True)],
        1,
        tokens,
        meter,
        greedy=True,
        batch_size=cfg.batch_size,
    )
    per_problem.add_tokens(range(n), [r[0] for r in agg.lengths()])
    aggregated = [m + row[0] for m, row in zip(merged_prefix, agg.texts, strict=True)]
    # 4. Refine the best generated thought
    best_gen = [texts[keep_best(s, 1)[0]] for texts, s in zip(gen.texts, scores, strict=True)]
    ref = sample(
        model,
        tokenizer,
        [refine_prompt(p, t) for p, t in zip(prompts, best_gen, strict=True)],
        1,
        tokens,
        meter,
        greedy=True,
        batch_size=cfg.batch_size,
    )
    per_problem.add_tokens(range(n), [r[0] for r in ref.lengths()])
    refined = [row[0] for row in ref.texts]
    # 5. Score the new thoughts, KeepBest(1) over all
    new_scores = score(prompts * 2, aggregated + refined)
    predictions = []
    for i in range(n):
        pool = [*gen.texts[i], aggregated[i], refined[i]]
        pool_scores = [*scores[i], new_scores[i], new_scores[n + i]]
        predictions.append(pool[keep_best(pool_scores, 1)[0]])
    return finish(ctx, problems, predictions, meter, before, per_problem.rows, generate=cfg.generate, scorer=scorer)


plugin = Plugin(
    id="graph-of-thoughts",
    config=Config,
    run=run,
    summary="Thoughts combined by generate, score, aggregate (merge) and refine operations over a graph.",
    smoke={"generate": 2, "aggregate": 2, "eval_examples": 4},
    kind="inference",
)
