"""Speculative rejection: best-of-N that stops generating the responses a reward model already
ranks low, so a large N costs far fewer tokens.

Paper: Sun, Haider, Zhang, Kim, Ramchandran, Bartlett, Zanette 2024, "Fast Best-of-N Decoding
via Speculative Rejection", arXiv:2410.20290. Catalog entry: catalog/methods/speculative-rejection.yaml.

    catalog run speculative-rejection                          # embedded reasoning model
    catalog run speculative-rejection --set n=4,8,16,32        # budget sweep
    catalog run speculative-rejection --set rejection_rate=0.5 --set reward_model=path/to/rm

Algorithm (Sun 2024, Alg. 1): start N responses per prompt; generate ``decision_tokens`` more
tokens for every unfinished response (one batched generate); score each partial response with
the reward model; reject the lowest-scoring ``rejection_rate`` share of the unfinished ones; repeat
until every survivor is finished; return the finished response with the highest score. Partial
rewards correlate with final rewards, so early rejection rarely drops the eventual winner.

Deviations: decision points are fixed token chunks (the paper decides when GPU memory fills);
on the embedded reasoning task the score of a partial or finished response is the embedded PRM (``posttrain.embedded.prm``: a separate token-classification model trained once on training-split scratchpads with exact step labels; an attempt's score is its last step's probability, Snell 2024 §5 / App.; ``prm.json`` in its cache folder has its held-out step accuracy)
(the paper uses an outcome reward model on partial responses; a PRM is made for prefixes); with
your own ``--model``/``--dataset`` and no ``prm``/``reward_model`` it is the policy's mean
log-likelihood (``scorer=verifier``: the reasoning model's ``V:`` sub-skill); alpha = 0.5 as a default (the paper sweeps 0.5-0.9); N = 16 (the paper uses 120-3840 on
8B models, out of reach here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.decode import sample
from posttrain.inference.recipe import (
    SWEEP,
    PerProblem,
    StepSearchConfig,
    attempt_scorer,
    finish,
    new_tokens,
    setup,
    text_prompt,
)


class Config(StepSearchConfig):
    n: int = Field(16, ge=1, description="Responses started per prompt, N.", json_schema_extra=SWEEP)
    rejection_rate: float = Field(
        0.5, ge=0, lt=1, description="alpha: share of unfinished responses rejected per decision."
    )
    decision_tokens: int = Field(4, ge=1, description="Tokens generated between two decisions.")


# --- the rejection rule ----------------------------------------------------------------------------------


def survivors(scores: Sequence[float], rejection_rate: float) -> list[int]:
    """Indices kept after rejecting the lowest ``rejection_rate`` share (at least one survives);
    kept in their original order. [0.1, 0.9, 0.5, 0.7] at 0.5 -> [1, 3]; rate 0 keeps all."""
    keep = max(1, math.ceil(len(scores) * (1 - rejection_rate)))
    best = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:keep]
    return sorted(best)


# --- run --------------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    score, scorer = attempt_scorer(cfg, ctx, model, tokenizer, meter)
    prompts = [text_prompt(tokenizer, r["prompt"]) for r in problems.records]
    per_problem = PerProblem.of(len(prompts))
    budget = new_tokens(cfg, problems)
    # responses[i] = list of [text, score, done]
    responses = [[["", 0.0, False] for _ in range(cfg.n)] for _ in prompts]
    rejected = 0
    for _ in range(math.ceil(budget / cfg.decision_tokens)):
        live = [(i, r) for i, rs in enumerate(responses) for r in rs if not r[2]]
        if not live:
            break
        out = sample(
            model,
            tokenizer,
            [prompts[i] + r[0] for i, r in live],
            1,
            cfg.decision_tokens,
            meter,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.batch_size,
        )
        per_problem.add_tokens([i for i, _ in live], [row[0] for row in out.lengths()])
        for (_, r), text, ended in zip(live, out.texts, out.ended, strict=True):
            r[0] += text[0]
            r[2] = ended[0] or not text[0]
        scores = score([prompts[i] for i, _ in live], [r[0] for _, r in live])
        for (_, r), s in zip(live, scores, strict=True):
            r[1] = s
        for i, rs in enumerate(responses):
            unfinished = [r for r in rs if not r[2]]
            if len(unfinished) > 1:
                keep = {id(unfinished[k]) for k in survivors([r[1] for r in unfinished], cfg.rejection_rate)}
                rejected += len(unfinished) - len(keep)
                responses[i] = [r for r in rs if r[2] or id(r) in keep]
    predictions = [max(rs, key=lambda r: r[1])[0] for rs in responses]
    result = finish(ctx, problems, predictions, meter, before, per_problem.rows, scorer=scorer, n=cfg.n)
    result.metrics["after"]["rejected_share"] = rejected / max(cfg.n * len(prompts), 1)
    return result


plugin = Plugin(
    id="speculative-rejection",
    config=Config,
    run=run,
    summary="Best-of-N that rejects the responses a reward model ranks low part-way through generation.",
    smoke={"n": 4, "eval_examples": 4},
    kind="inference",
)
