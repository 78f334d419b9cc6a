"""Particle filtering over reasoning steps: sequential Monte Carlo guided by a process reward model.

Paper: Puri, Sudalairaj, Xu, Xu, Srivastava 2025, "A Probabilistic Inference Approach to
Inference-Time Scaling of LLMs using Particle-Based Monte Carlo Methods", arXiv:2502.01618.
Catalog entry: catalog/methods/particle-filtering.yaml.

    catalog run particle-filtering                          # embedded reasoning model
    catalog run particle-filtering --set n=4,8,16,32        # budget sweep (particles)

Algorithm (Puri 2025, Alg. 1): N particles per problem start empty; at every step each live
particle is extended by one sampled step (one batched generate for all particles of all
problems), the PRM scores each partial solution, the weights are w_i = softmax(r_i / tau) over
the problem's particles, and N particles are resampled from them (multinomial), so promising
partial solutions are duplicated and poor ones dropped while sampling keeps diversity (unlike a
beam's hard top-k). Finished particles stay in the population with their final score. The answer
is the particle with the highest final score.

Deviations: on the embedded reasoning task r is the embedded PRM (``posttrain.embedded.prm``: a separate token-classification model trained once on training-split scratchpads with exact step labels; an attempt's score is its last step's probability, Snell 2024 §5 / App.; ``prm.json`` in its cache folder has its held-out step accuracy); Puri's default
aggregates a partial solution's step rewards by their product, not the last step's score; with your own ``--model``/``--dataset`` and no ``prm``/``reward_model`` it is
the policy's mean log-likelihood (``scorer=verifier``: the reasoning model's P(y)); tau = 0.1 (the paper softmaxes PRM scores at tau = 1, which span a wider range); the
final pick is the highest-scoring particle (the paper's "best-of" variant; it also reports a
weighted vote). Default N = 16 (the paper sweeps 4..128).
"""

from __future__ import annotations

import math
import random
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
    n: int = Field(16, ge=1, description="Particles per problem, N.", json_schema_extra=SWEEP)
    resample_temperature: float = Field(
        0.1, gt=0, description="tau in w_i = softmax(r_i / tau) (rewards are in [0, 1])."
    )


# --- weights and resampling --------------------------------------------------------------------------


def resampling_weights(rewards: Sequence[float], temperature: float = 1.0) -> list[float]:
    """w_i = exp(r_i / tau) / sum_j exp(r_j / tau).

    rewards [0, ln 3] at tau 1 -> [0.25, 0.75]; equal rewards -> uniform; tau -> 0 -> argmax.
    """
    top = max(rewards)
    exps = [math.exp((r - top) / temperature) for r in rewards]
    total = sum(exps)
    return [e / total for e in exps]


def multinomial_resample(weights: Sequence[float], n: int, rng: random.Random) -> list[int]:
    """n particle indices drawn with replacement, P(i) = w_i."""
    return rng.choices(range(len(weights)), weights=weights, k=n)


def effective_sample_size(weights: Sequence[float]) -> float:
    """1 / sum w_i^2: N for uniform weights, 1 when one particle has all the weight."""
    return 1.0 / sum(w * w for w in weights)


# --- search ---------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    score, scorer = attempt_scorer(cfg, ctx, model, tokenizer, meter)
    prompts = [text_prompt(tokenizer, r["prompt"]) for r in problems.records]
    per_problem = PerProblem.of(len(prompts))
    rng = random.Random(ctx.seed)
    # particles[i] = list of (text, reward, done)
    particles = [[("", 0.0, False)] * cfg.n for _ in prompts]
    ess_log = []
    for _ in range(cfg.max_steps):
        live = [(i, j) for i, ps in enumerate(particles) for j, p in enumerate(ps) if not p[2]]
        if not live:
            break
        out = extend_steps(
            model,
            tokenizer,
            [prompts[i] + particles[i][j][0] for i, j in live],
            1,
            meter,
            cfg,
            cfg.step_delimiter,
            cfg.max_step_tokens,
        )
        per_problem.add_tokens([i for i, _ in live], [r[0] for r in out.lengths()])
        texts = [particles[i][j][0] + row[0] for (i, j), row in zip(live, out.texts, strict=True)]
        rewards = score([prompts[i] for i, _ in live], texts)
        for (i, j), text, r, ended in zip(live, texts, rewards, out.ended, strict=True):
            particles[i][j] = (text, r, ended[0] or text == particles[i][j][0])
        for i, ps in enumerate(particles):
            weights = resampling_weights([p[1] for p in ps], cfg.resample_temperature)
            ess_log.append(effective_sample_size(weights))
            particles[i] = [ps[k] for k in multinomial_resample(weights, cfg.n, rng)]
    predictions = [max(ps, key=lambda p: p[1])[0] for ps in particles]
    result = finish(ctx, problems, predictions, meter, before, per_problem.rows, scorer=scorer, n=cfg.n)
    result.metrics["after"]["effective_sample_size"] = sum(ess_log) / max(len(ess_log), 1)
    return result


plugin = Plugin(
    id="particle-filtering",
    config=Config,
    run=run,
    summary="Sequential Monte Carlo over reasoning steps: extend, weight by a PRM, resample.",
    smoke={"n": 4, "eval_examples": 4},
    kind="inference",
)
