"""Diverse verifier tree search (DVTS): N/M independent subtrees, each searched greedily by a PRM.

Paper: Beeching, Tunstall, Rush 2024, "Scaling test-time compute with open models" (HuggingFace
blog and the search-and-learn repository); it extends beam search (Snell et al. 2024,
arXiv:2408.03314). Catalog entry: catalog/methods/dvts.yaml.

    catalog run dvts                                # embedded reasoning model (scratchpad task)
    catalog run dvts --set n=4,8,16,32              # budget sweep

Algorithm: sample N first steps and split them into N/M subtrees of M; in every subtree keep the
single step the PRM scores best and expand it with M sampled next steps; repeat until each
subtree's path is complete; return the complete path the PRM scores highest. Keeping one path
per subtree (instead of the global top N/M of beam search) stops one strong prefix from taking
over every beam, which is where DVTS beats beam search at large N.

Deviations: on the embedded reasoning task the PRM is the embedded PRM (``posttrain.embedded.prm``: a separate token-classification model trained once on training-split scratchpads with exact step labels; an attempt's score is its last step's probability, Snell 2024 §5 / App.; ``prm.json`` in its cache folder has its held-out step accuracy) (search-and-learn uses a
trained PRM too, with Monte-Carlo labels); with your own ``--model``/``--dataset`` and no
``prm``/``reward_model`` it is the policy's mean log-likelihood (``scorer=verifier``: the
reasoning model's ``V:`` sub-skill); final selection is by the PRM's
last score (search-and-learn also offers weighted voting). Default N = 16, M = 4.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.inference.recipe import (
    SWEEP,
    PerProblem,
    StepSearchConfig,
    attempt_scorer,
    extend_steps,
    finish,
    setup,
    text_prompt,
)


class Config(StepSearchConfig):
    n: int = Field(16, ge=1, description="Total candidates per step, N (N/M subtrees).", json_schema_extra=SWEEP)
    beam_width: int = Field(4, ge=1, description="Children per subtree per step, M.")


# --- the selection rule ---------------------------------------------------------------------------------


def best_per_subtree(scores: Sequence[float], width: int) -> list[int]:
    """Index of the best score in each consecutive group of ``width`` (one subtree each); ties keep
    the earlier one. [0.1, 0.8, 0.5, 0.5, 0.9, 0.2], width 2 -> [1, 2, 4]."""
    picks = []
    for start in range(0, len(scores), width):
        group = scores[start : start + width]
        best = max(group)
        picks.append(start + group.index(best))
    return picks


def subtrees(n: int, width: int) -> int:
    """N/M subtrees (at least one): n=16, M=4 -> 4."""
    return max(1, n // width)


# --- search ---------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    score, scorer = attempt_scorer(cfg, ctx, model, tokenizer, meter)
    prompts = [text_prompt(tokenizer, r["prompt"]) for r in problems.records]
    per_problem = PerProblem.of(len(prompts))
    trees = subtrees(cfg.n, cfg.beam_width)
    # one path per (problem, subtree): [owner, text, score, done]
    paths = [[i, "", 0.0, False] for i in range(len(prompts)) for _ in range(trees)]
    for _ in range(cfg.max_steps):
        live = [p for p in paths if not p[3]]
        if not live:
            break
        out = extend_steps(
            model,
            tokenizer,
            [prompts[p[0]] + p[1] for p in live],
            cfg.beam_width,
            meter,
            cfg,
            cfg.step_delimiter,
            cfg.max_step_tokens,
        )
        texts = [p[1] + t for p, row in zip(live, out.texts, strict=True) for t in row]
        owners = [p[0] for p in live for _ in range(cfg.beam_width)]
        per_problem.add_tokens([p[0] for p in live], [sum(r) for r in out.lengths()])
        scores = score([prompts[o] for o in owners], texts)
        done = [
            e or not t
            for row_e, row_t in zip(out.ended, out.texts, strict=True)
            for e, t in zip(row_e, row_t, strict=True)
        ]
        for p, pick in zip(live, best_per_subtree(scores, cfg.beam_width), strict=True):
            p[1], p[2], p[3] = texts[pick], scores[pick], done[pick]
    best: dict[int, list] = {}
    for p in paths:
        if p[0] not in best or p[2] > best[p[0]][2]:
            best[p[0]] = p
    predictions = [best[i][1] for i in range(len(prompts))]
    return finish(ctx, problems, predictions, meter, before, per_problem.rows, scorer=scorer, n=cfg.n, subtrees=trees)


plugin = Plugin(
    id="dvts",
    config=Config,
    run=run,
    summary="Diverse verifier tree search: N/M independent subtrees, each expanded greedily by a PRM.",
    smoke={"n": 4, "beam_width": 2, "eval_examples": 4},
    kind="inference",
)
