"""Compute-optimal test-time scaling: estimate each problem's difficulty, then spend its budget on
the strategy that suits that difficulty.

Paper: Snell, Lee, Xu, Kumar 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective
than Scaling Model Parameters", arXiv:2408.03314, §3-§6. Catalog entry: catalog/methods/compute-optimal.yaml.

    catalog run compute-optimal                          # embedded reasoning model
    catalog run compute-optimal --set budget=4,8,16,32   # budget sweep (generations per problem)

Per problem, with a budget of N generations:
1. Difficulty (Snell §3.2, "model-predicted difficulty", no ground truth): draw ``pilot``
   samples, score them with the verifier (the reasoning model's ``V:`` sub-skill), and take
   d = 1 - mean score; problems are binned into ``bins`` quantiles of d (Snell: 5 bins).
2. Strategy (Snell §6, Fig. 4: easy problems gain most from sequential revisions, hard ones from
   parallel sampling): bin b gets sequential share s_b = 1 - b/(bins-1) of the remaining budget
   (``allocate``): that many revisions of the best pilot sample with the refine sub-skill
   (``R:``), the rest as more parallel samples.
3. Selection: the candidate (pilot, parallel or revision) the verifier scores highest.

Deviations: Snell chooses each bin's sequential/parallel ratio on a validation set; here the
ratio follows the paper's reported trend as a fixed linear schedule (``sequential_share``); the
verifier and the reviser are the same small model's sub-skills, not separately fine-tuned models.
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
    finish,
    new_tokens,
    sample,
    setup,
    verify_scores,
)


class Config(InferenceConfig):
    task: str = Field("reasoning", pattern="^(reasoning)$", description="Embedded task (needs verify and refine).")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature T of the parallel samples.")
    budget: int = Field(8, ge=2, description="Generations per problem, N (pilot included).", json_schema_extra=SWEEP)
    pilot: int = Field(2, ge=1, description="Samples drawn first to estimate difficulty.")
    bins: int = Field(5, ge=1, description="Difficulty bins (Snell: 5 quantile bins).")


# --- difficulty and allocation (pure) --------------------------------------------------------------------


def difficulty(verifier_scores: Sequence[float]) -> float:
    """d = 1 - mean verifier score of the pilot samples (0 easy, 1 hard). [0.9, 0.7] -> 0.2."""
    return 1.0 - sum(verifier_scores) / len(verifier_scores)


def quantile_bins(values: Sequence[float], bins: int) -> list[int]:
    """Bin index (0 = easiest) of each value by rank quantiles; ties share the lower rank.

    [0.1, 0.9, 0.5, 0.3] into 2 bins -> [0, 1, 1, 0]."""
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    out = [0] * len(values)
    for rank, i in enumerate(order):
        out[i] = min(bins - 1, rank * bins // max(len(values), 1))
    return out


def sequential_share(bin_index: int, bins: int) -> float:
    """Snell's trend: the easiest bin is all sequential (1.0), the hardest all parallel (0.0)."""
    return 1.0 if bins == 1 else 1.0 - bin_index / (bins - 1)


def allocate(remaining: int, bin_index: int, bins: int) -> tuple[int, int]:
    """(revisions, parallel samples) for the remaining budget. 6 left, bin 1 of 3 -> (3, 3)."""
    revisions = round(remaining * sequential_share(bin_index, bins))
    return revisions, remaining - revisions


# --- run ------------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    if ctx.dataset is not None:
        raise UserError(
            "compute-optimal: --dataset is not supported yet (it uses the embedded model's verify and refine skills)"
        )
    from posttrain.embedded.reasoning import refine_prompt

    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    prompts = [r["prompt"] for r in problems.records]
    n, tokens = len(prompts), new_tokens(cfg, problems)
    per_problem = PerProblem.of(n)
    pilot_n = min(cfg.pilot, cfg.budget)
    pilot = sample(
        model,
        tokenizer,
        prompts,
        pilot_n,
        tokens,
        meter,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.batch_size,
    )
    per_problem.add_tokens(range(n), [sum(r) for r in pilot.lengths()])
    flat = verify_scores(
        model, tokenizer, [p for p in prompts for _ in range(pilot_n)], [t for row in pilot.texts for t in row]
    )
    cands = [[(flat[i * pilot_n + j], pilot.texts[i][j]) for j in range(pilot_n)] for i in range(n)]
    bins = quantile_bins([difficulty([s for s, _ in c]) for c in cands], cfg.bins)
    plan = [allocate(cfg.budget - pilot_n, b, cfg.bins) for b in bins]
    # parallel: one batched generate per distinct sample count
    for count in sorted({p for _, p in plan if p}):
        who = [i for i in range(n) if plan[i][1] == count]
        more = sample(
            model,
            tokenizer,
            [prompts[i] for i in who],
            count,
            tokens,
            meter,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.batch_size,
        )
        per_problem.add_tokens(who, [sum(r) for r in more.lengths()])
        scores = verify_scores(
            model, tokenizer, [prompts[i] for i in who for _ in range(count)], [t for row in more.texts for t in row]
        )
        for k, (i, row) in enumerate(zip(who, more.texts, strict=True)):
            cands[i] += list(zip(scores[k * count : (k + 1) * count], row, strict=True))
    # sequential: a chain of revisions from the best candidate so far
    current = {i: max(cands[i])[1] for i in range(n) if plan[i][0]}
    for step in range(max((r for r, _ in plan), default=0)):
        who = [i for i in current if plan[i][0] > step]
        out = sample(
            model,
            tokenizer,
            [refine_prompt(prompts[i], current[i]) for i in who],
            1,
            tokens,
            meter,
            greedy=step == 0,
            temperature=cfg.temperature,
            batch_size=cfg.batch_size,
        )
        per_problem.add_tokens(who, [r[0] for r in out.lengths()])
        scores = verify_scores(model, tokenizer, [prompts[i] for i in who], [row[0] for row in out.texts])
        for i, s, row in zip(who, scores, out.texts, strict=True):
            cands[i].append((s, row[0]))
            current[i] = row[0]
    for i, row in enumerate(per_problem.rows):
        row.update(difficulty_bin=bins[i], revisions=plan[i][0], parallel=plan[i][1] + pilot_n)
    predictions = [max(c, key=lambda sc: sc[0])[1] for c in cands]
    result = finish(ctx, problems, predictions, meter, before, per_problem.rows, budget=cfg.budget)
    result.metrics["after"]["revision_share"] = sum(r for r, _ in plan) / max(sum(r + p for r, p in plan), 1)
    return result


plugin = Plugin(
    id="compute-optimal",
    config=Config,
    run=run,
    summary="Estimate each problem's difficulty, then split its budget between revisions and parallel samples.",
    smoke={"budget": 3, "pilot": 1, "bins": 2, "eval_examples": 4},
    kind="inference",
)
