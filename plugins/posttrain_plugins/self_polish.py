"""Self-Polish: the model rewrites a badly posed problem into a clearer one, then solves that.

Paper: Xi, Jin, Zhou, Zheng, Gao, Zhang, Huang 2023, "Self-Polish: Enhance Reasoning in Large
Language Models via Problem Refinement", arXiv:2305.14497. Catalog entry: catalog/methods/self-polish.yaml.

    catalog run self-polish                            # embedded reasoning model, noisy problems
    catalog run self-polish --set max_rounds=0,1,2     # budget sweep (0 = solve the raw problem)

The embedded problems are written sloppily (spaces, leading zeros: `` 0347 +285 =``). Xi's
progressive refinement: polish the problem with the model's own rewriting skill (the reasoning
model's ``P:`` sub-skill), repeat on the result until it stops changing (a fixed point) or
``max_rounds`` is reached, then solve the final problem; ``before`` solves the raw problem.

Deviations: the rewriting is a learned canonicalisation, not an instructed paraphrase; Xi also
checks answer agreement between rounds to stop early, here the stop rule is the fixed point
(``converged``); greedy decoding throughout. With --dataset the records' prompts are polished
with the same ``P:`` prompt, which only the embedded reasoning model understands.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.errors import UserError
from posttrain.generation.decode import sample
from posttrain.inference.recipe import (
    EMBEDDED_EVAL_SEED,
    SWEEP,
    InferenceConfig,
    PerProblem,
    Problems,
    finish,
    new_tokens,
    setup,
)


class Config(InferenceConfig):
    task: str = Field("reasoning", pattern="^(reasoning)$", description="Embedded task (needs the polish sub-skill).")
    max_rounds: int = Field(
        2, ge=0, description="Most polishing rounds (Xi: progressive refinement).", json_schema_extra=SWEEP
    )
    polish_tokens: int = Field(16, ge=1, description="Most tokens of a rewritten problem.")


# --- rules ---------------------------------------------------------------------------------------------


def converged(history: Sequence[str]) -> bool:
    """The rewriting reached a fixed point: the last two versions are equal (after trimming).

    ["1+2 =", "1+2="] -> False; ["1+2 =", "1+2=", "1+2="] -> True."""
    return len(history) >= 2 and history[-1].strip() == history[-2].strip()


def usable(problem: str) -> bool:
    """A rewritten problem is kept only if it still reads as a problem (ends with '=')."""
    return problem.strip().endswith("=") and len(problem.strip()) > 1


# --- run ------------------------------------------------------------------------------------------------


def noisy_problems(n: int) -> Problems:
    from posttrain.embedded import reasoning

    task = reasoning.DEFAULT_REASONING_TASK
    return Problems(
        task.noisy_prompts(n, EMBEDDED_EVAL_SEED, "test"),
        f"{task.name}-noisy",
        lambda completion, record: reasoning.is_correct(completion, record["answer"]),
        24,
    )


def run(cfg: Config, ctx: RunContext) -> RunResult:
    if ctx.dataset is not None:
        raise UserError("self-polish: --dataset is not supported yet (the P: rewriting prompt is the embedded model's)")
    from posttrain.embedded.reasoning import POLISH

    model, tokenizer, problems, before, meter = setup(cfg, ctx, problems=noisy_problems(cfg.eval_examples))
    per_problem = PerProblem.of(len(problems.records))
    history = [[r["prompt"]] for r in problems.records]
    rounds = 0
    for _ in range(cfg.max_rounds):
        open_ = [i for i, h in enumerate(history) if not converged(h)]
        if not open_:
            break
        rounds += 1
        out = sample(
            model,
            tokenizer,
            [POLISH + history[i][-1] for i in open_],
            1,
            cfg.polish_tokens,
            meter,
            greedy=True,
            batch_size=cfg.batch_size,
        )
        per_problem.add_tokens(open_, [r[0] for r in out.lengths()])
        for i, row in zip(open_, out.texts, strict=True):
            history[i].append(row[0] if usable(row[0]) else history[i][-1])
    polished = [h[-1] for h in history]
    out = sample(
        model, tokenizer, polished, 1, new_tokens(cfg, problems), meter, greedy=True, batch_size=cfg.batch_size
    )
    per_problem.add_tokens(range(len(polished)), [r[0] for r in out.lengths()])
    for row, p in zip(per_problem.rows, polished, strict=True):
        row["polished"] = p
    result = finish(
        ctx, problems, [r[0] for r in out.texts], meter, before, per_problem.rows, max_rounds=cfg.max_rounds
    )
    result.metrics["after"]["polish_rounds"] = rounds
    return result


plugin = Plugin(
    id="self-polish",
    config=Config,
    run=run,
    summary="Rewrite a sloppily posed problem into a clear one with the model itself, then solve it.",
    smoke={"max_rounds": 1, "eval_examples": 4},
    kind="inference",
)
