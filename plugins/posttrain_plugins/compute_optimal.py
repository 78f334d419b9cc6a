"""Compute-optimal test-time scaling: estimate each problem's difficulty, then spend its budget on
the strategy that suits that difficulty.

Paper: Snell, Lee, Xu, Kumar 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective
than Scaling Model Parameters", arXiv:2408.03314, §3-§6. Catalog entry: catalog/methods/compute-optimal.yaml.

    catalog run compute-optimal                          # embedded reasoning model, embedded PRM verifier
    catalog run compute-optimal --set budget=4,8,16,32   # budget sweep (generations per problem)
    catalog run compute-optimal --set evaluator=self     # the model's own V: verdicts as the verifier
    catalog run compute-optimal --set strategy=trend     # fixed schedule instead of the validated one

Per problem, with a budget of N generations:
1. Difficulty (Snell §3.2, "model-predicted difficulty", no ground truth): draw ``pilot``
   samples, score them with the verifier, and take d = 1 - mean score; problems fall into
   ``bins`` difficulty bins whose edges are the quantiles of d on the validation problems.
2. Strategy (Snell §5-§6): a strategy is the share s of the remaining budget spent on sequential
   revisions (a chain of rewrites of the best pilot sample with the refine sub-skill ``R:``), the
   rest on parallel samples; s is drawn from ``SHARES`` (0 = pure best-of-N, 1 = pure revisions).
   Snell picks each bin's best strategy on held-out validation questions with their answers; so
   does ``strategy=validated`` (the default): ``validation_examples`` TRAINING-split problems are
   solved with every share at the same budget, and each bin keeps the share with the best
   validation accuracy (``choose_shares``). ``strategy=trend`` instead follows the paper's
   reported trend as a fixed schedule (easiest bin all sequential, hardest all parallel).
3. Selection (Snell §5: "best-of-N weighted"): the final answer whose candidates' verifier
   scores sum highest (``weighted_best``).
The task's checker is used only on the validation (training-split) problems to choose each bin's
share, as Snell uses ground truth on validation questions; at test time it only measures accuracy.

Deviations:
1. The verifier is the embedded process reward model (``posttrain.embedded.prm``, trained on
   training-split traces with exact step labels; an attempt's score is its last step's
   probability, Snell's choice) and the reviser is the policy's own ``R:`` sub-skill, not a
   separately fine-tuned revision model. ``evaluator=self`` uses the model's own ``V:`` verdicts
   (53.5% accurate on the embedded model, near chance;
   src/posttrain/embedded/models/reasoning/build.json) instead.
2. The strategy pool is revisions vs. parallel samples only (Snell also compares PRM beam search);
   a revision conditions on the previous attempt only, not on the whole chain.
3. The validation set is ``validation_examples`` (200) training-split problems, one fold (Snell:
   two-fold cross-validation on MATH's test set); its compute is reported apart (``validation``).

Measured on the embedded reasoning model (200 held-out problems, greedy 58.0%,
reports/tts/compute-optimal.json): 65.5% at budget 4, 68.0% at 8 (the default), 71.5% at 16;
validation chose shares [0, 0, 0.25, 0.5, 0.25] for the five bins (reports/runs/compute-optimal.json;
mostly parallel: the model's R: rewrites rarely fix its own mistakes).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.answers import answer_of
from posttrain.errors import UserError
from posttrain.generation.decode import sample
from posttrain.inference.recipe import SWEEP, InferenceConfig, PerProblem, evaluator_scorer, finish, new_tokens, setup

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # sequential shares of the post-pilot budget (the strategy pool)
VALIDATION_SEED = 4321  # the training-split problems each bin's strategy is chosen on


class Config(InferenceConfig):
    task: str = Field("reasoning", pattern="^(reasoning)$", description="Embedded task (needs verify and refine).")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature T of the parallel samples.")
    budget: int = Field(8, ge=2, description="Generations per problem, N (pilot included).", json_schema_extra=SWEEP)
    pilot: int = Field(2, ge=1, description="Samples drawn first to estimate difficulty.")
    bins: int = Field(5, ge=1, description="Difficulty bins (Snell: 5 quantile bins).")
    evaluator: str = Field(
        "prm",
        pattern="^(prm|self)$",
        description="Verifier of difficulty and selection: prm (the embedded PRM, or --set prm=FOLDER) or self (the model's V: sub-skill).",
    )
    prm: str | None = Field(None, description="A process reward model folder (default: the embedded PRM).")
    strategy: str = Field(
        "validated",
        pattern="^(validated|trend)$",
        description="Each bin's sequential share: chosen on validation problems (Snell) or the paper's fixed trend.",
    )
    validation_examples: int = Field(
        200, ge=1, description="Training-split problems each bin's strategy is chosen on (strategy=validated)."
    )


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


def bin_edges(values: Sequence[float], bins: int) -> list[float]:
    """The bins-1 upper edges of the quantile bins of ``values``: the largest value of each bin but the last.

    [0.1, 0.9, 0.5, 0.3] into 2 bins -> [0.3] (bins {0.1, 0.3} and {0.5, 0.9})."""
    index = quantile_bins(values, bins)
    return [max((v for v, b in zip(values, index, strict=True) if b <= k), default=0.0) for k in range(bins - 1)]


def assign_bin(value: float, edges: Sequence[float]) -> int:
    """Bin of a new value: how many edges it lies above. edges [0.3, 0.6]: 0.2 -> 0, 0.3 -> 0, 0.5 -> 1, 0.9 -> 2."""
    return sum(value > e for e in edges)


def sequential_share(bin_index: int, bins: int) -> float:
    """Snell's trend: the easiest bin is all sequential (1.0), the hardest all parallel (0.0)."""
    return 1.0 if bins == 1 else 1.0 - bin_index / (bins - 1)


def allocate(remaining: int, share: float) -> tuple[int, int]:
    """(revisions, parallel samples) of the remaining budget for a sequential share. 6 left, 0.5 -> (3, 3)."""
    revisions = round(remaining * share)
    return revisions, remaining - revisions


def choose_shares(accuracy: Sequence[Sequence[float]], shares: Sequence[float]) -> list[float]:
    """Per bin, the share with the best validation accuracy (accuracy[bin][share]); a tie goes to
    the earlier share (SHARES lists the cheapest to run, parallel, first).

    [[0.5, 0.7, 0.7], [0.4, 0.2, 0.1]] with shares [0, 0.5, 1] -> [0.5, 0.0]."""
    return [shares[max(range(len(row)), key=lambda j: (row[j], -j))] for row in accuracy]


def weighted_best(answers: Sequence[str], scores: Sequence[float]) -> int:
    """Snell's best-of-N weighted: the index of the best-scored candidate of the answer whose
    candidates' scores sum highest (ties: the earlier answer, then the earlier candidate).

    answers ["3", "5", "5"], scores [0.9, 0.5, 0.6] -> 2 ("5": 1.1 > 0.9; its best is 0.6)."""
    totals: dict[str, float] = {}
    for a, s in zip(answers, scores, strict=True):
        totals[a] = totals.get(a, 0.0) + s
    top = max(totals.values())
    winner = next(a for a in answers if totals[a] == top)
    mine = [i for i, a in enumerate(answers) if a == winner]
    return max(mine, key=lambda i: (scores[i], -i))


# --- run ------------------------------------------------------------------------------------------------


Candidates = list[list[tuple[float, str]]]  # per problem: (verifier score, text)


def _scored(score, prompts: Sequence[str], who: Sequence[int], texts: Sequence[Sequence[str]]) -> Candidates:
    flat = score(
        [prompts[i] for i, row in zip(who, texts, strict=True) for _ in row], [t for row in texts for t in row]
    )
    out, k = [], 0
    for row in texts:
        out.append(list(zip(flat[k : k + len(row)], row, strict=True)))
        k += len(row)
    return out


def draw_pilot(cfg: Config, model, tokenizer, prompts, tokens, score, meter, per_problem) -> Candidates:
    out = sample(
        model, tokenizer, prompts, min(cfg.pilot, cfg.budget), tokens, meter,
        temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size,
    )  # fmt: skip
    per_problem.add_tokens(range(len(prompts)), [sum(r) for r in out.lengths()])
    return _scored(score, prompts, range(len(prompts)), out.texts)


def expand(cfg: Config, model, tokenizer, prompts, tokens, score, meter, per_problem, pilot: Candidates, plans):
    """(parallel, revisions) candidates per problem for plans[i] = (revisions, parallel samples):
    parallel samples in one batched generate per distinct count; a revision chain of the best
    pilot sample (greedy first rewrite, then sampled), each revision rewriting the previous one."""
    from posttrain.embedded.reasoning import refine_prompt

    n = len(prompts)
    parallel: Candidates = [[] for _ in range(n)]
    for count in sorted({p for _, p in plans if p}):
        who = [i for i in range(n) if plans[i][1] == count]
        more = sample(
            model, tokenizer, [prompts[i] for i in who], count, tokens, meter,
            temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size,
        )  # fmt: skip
        per_problem.add_tokens(who, [sum(r) for r in more.lengths()])
        for i, row in zip(who, _scored(score, prompts, who, more.texts), strict=True):
            parallel[i] = row
    revisions: Candidates = [[] for _ in range(n)]
    current = {i: max(pilot[i])[1] for i in range(n) if plans[i][0]}
    for step in range(max((r for r, _ in plans), default=0)):
        who = [i for i in current if plans[i][0] > step]
        out = sample(
            model, tokenizer, [refine_prompt(prompts[i], current[i]) for i in who], 1, tokens, meter,
            greedy=step == 0, temperature=cfg.temperature, batch_size=cfg.batch_size,
        )  # fmt: skip
        per_problem.add_tokens(who, [r[0] for r in out.lengths()])
        for i, row in zip(who, _scored(score, prompts, who, out.texts), strict=True):
            revisions[i] += row
            current[i] = row[0][1]
    return parallel, revisions


def pick(candidates: Sequence[tuple[float, str]]) -> str:
    return candidates[weighted_best([answer_of(t) for _, t in candidates], [s for s, _ in candidates])][1]


def validate(cfg: Config, model, tokenizer, tokens, score, meter) -> tuple[list[float], list[float], dict]:
    """(bin edges, sequential share per bin, report): every share of SHARES run at the same budget
    on training-split problems; each bin keeps the share with the best accuracy there."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK, is_correct

    records = DEFAULT_REASONING_TASK.prompts(cfg.validation_examples, VALIDATION_SEED, "train")
    prompts = [r["prompt"] for r in records]
    meter.reset()  # the validation's compute is reported apart, not as the test problems'
    scratch = PerProblem.of(len(prompts))
    remaining = cfg.budget - min(cfg.pilot, cfg.budget)
    pilot = draw_pilot(cfg, model, tokenizer, prompts, tokens, score, meter, scratch)
    plans = [(remaining, remaining)] * len(prompts)  # the longest chain and the most samples any share uses
    parallel, revisions = expand(cfg, model, tokenizer, prompts, tokens, score, meter, scratch, pilot, plans)
    hardness = [difficulty([s for s, _ in c]) for c in pilot]
    edges = bin_edges(hardness, cfg.bins)
    bins = [assign_bin(d, edges) for d in hardness]
    table = []
    for b in range(cfg.bins):
        mine = [i for i in range(len(prompts)) if bins[i] == b]
        row = []
        for share in SHARES:
            r, p = allocate(remaining, share)
            hits = [is_correct(pick(pilot[i] + parallel[i][:p] + revisions[i][:r]), records[i]["answer"]) for i in mine]
            row.append(sum(hits) / len(hits) if hits else 0.0)
        table.append(row)
    shares = choose_shares(table, SHARES)
    report = {
        "problems": len(prompts),
        "split": "train",
        "shares": list(SHARES),
        "accuracy_by_bin": [[round(a, 4) for a in row] for row in table],
        "chosen_share_by_bin": shares,
        "bin_edges": [round(e, 4) for e in edges],
        **meter.snapshot(len(prompts)),
    }
    return edges, shares, report


def run(cfg: Config, ctx: RunContext) -> RunResult:
    if ctx.dataset is not None:
        raise UserError(
            "compute-optimal: --dataset is not supported yet (it uses the embedded model's refine skill and the embedded PRM)"
        )
    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    score, evaluator = evaluator_scorer(cfg.evaluator, cfg.prm, ctx, model, tokenizer, meter)
    prompts = [r["prompt"] for r in problems.records]
    n, tokens = len(prompts), new_tokens(cfg, problems)
    validation = None
    if cfg.strategy == "validated":
        edges, shares, validation = validate(cfg, model, tokenizer, tokens, score, meter)
        meter.reset()
    per_problem = PerProblem.of(n)
    remaining = cfg.budget - min(cfg.pilot, cfg.budget)
    pilot = draw_pilot(cfg, model, tokenizer, prompts, tokens, score, meter, per_problem)
    hardness = [difficulty([s for s, _ in c]) for c in pilot]
    if cfg.strategy == "validated":
        bins = [assign_bin(d, edges) for d in hardness]
        plans = [allocate(remaining, shares[b]) for b in bins]
    else:
        bins = quantile_bins(hardness, cfg.bins)
        plans = [allocate(remaining, sequential_share(b, cfg.bins)) for b in bins]
    parallel, revisions = expand(cfg, model, tokenizer, prompts, tokens, score, meter, per_problem, pilot, plans)
    for i, row in enumerate(per_problem.rows):
        row.update(difficulty_bin=bins[i], revisions=plans[i][0], parallel=plans[i][1] + len(pilot[i]))
    predictions = [pick(pilot[i] + parallel[i] + revisions[i]) for i in range(n)]
    extra = {"validation": validation} if validation else {}
    result = finish(
        ctx, problems, predictions, meter, before, per_problem.rows,
        budget=cfg.budget, evaluator=evaluator, strategy=cfg.strategy, **extra,
    )  # fmt: skip
    result.metrics["after"]["revision_share"] = sum(r for r, _ in plans) / max(sum(r + p for r, p in plans), 1)
    return result


plugin = Plugin(
    id="compute-optimal",
    config=Config,
    run=run,
    summary="Estimate each problem's difficulty, then split its budget between revisions and parallel samples as validated per difficulty bin.",
    smoke={"budget": 3, "pilot": 1, "bins": 2, "eval_examples": 4, "validation_examples": 4},
    kind="inference",
)
