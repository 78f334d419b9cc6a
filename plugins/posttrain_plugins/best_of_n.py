"""Best-of-N sampling: draw N complete responses and return the one a scorer ranks highest.

Papers: Stiennon et al. 2020, "Learning to summarize from human feedback", arXiv:2009.01325
(best-of-N against a reward model); Nakano et al. 2021, "WebGPT", arXiv:2112.09332; the KL bound
log N - (N-1)/N is from Beirami et al. 2024, arXiv:2401.01879. Catalog entry:
catalog/methods/best-of-n.yaml.

    catalog run best-of-n                                   # embedded reasoning model and task
    catalog run best-of-n --set n=1,4,16,64                 # budget sweep: sweep.json + sweep.png
    catalog run best-of-n --set reward_model=runs/reward-model/.../model   # an outcome reward model
    catalog run best-of-n --model Qwen/Qwen2.5-0.5B-Instruct --dataset prompts.jsonl \\
        --set reward_model=OpenAssistant/reward-model-deberta-v3-large-v2

The N samples of every prompt come from batched ``generate`` calls with the prompt's KV cache
shared by its N samples. The scorer R(x, y) is, in order of preference:
- ``prm``: a process reward model (a ``prm``-plugin folder, or ``embedded``); R(x, y) is its
  probability at y's last step (Snell 2024 compare last-step, min and product aggregation of PRM
  scores for best-of-N and use the last step; ``posttrain.scoring.scorers.aggregate_steps``);
- ``reward_model``: an outcome reward model (a transformers sequence classifier, or the project's
  ``posttrain.scoring.scorers`` loader), scoring prompt + response;
- on the embedded reasoning task (no ``--model``/``--dataset``): the embedded PRM
  (``posttrain.embedded.prm``, trained once on training-split scratchpads with exact step labels),
  as above;
- otherwise the policy's length-normalised log-likelihood (mean log p per token);
- ``scorer=verifier``: the embedded reasoning model's verify sub-skill, P(y) for
  ``V:<problem><solution>`` (a verifier as in Cobbe et al. 2021). It is near chance on this
  model (53.5%, ``verify_accuracy`` in src/posttrain/embedded/models/reasoning/build.json),
  and best-of-N against it falls as N grows: over-optimising a bad verifier.
The task's checker is never used to choose; it only measures accuracy.

Deviations from the papers:
1. The embedded default verifier is a PRM read at the last step (an outcome score of a process
   model, as in Lightman 2023 / Snell 2024), not an outcome reward model trained on final
   answers; with your own ``--model``/``--dataset`` and no ``prm``/``reward_model`` the scorer
   is the policy itself (mean log-likelihood), not a separate reward model.
2. Default N = 16 (Stiennon 2020 reports N up to 64; WebGPT 4-64): sweep ``n`` for the curve.
3. Ties go to the earliest sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.decode import sample
from posttrain.inference.recipe import SWEEP, InferenceConfig, PerProblem, attempt_scorer, finish, new_tokens, setup


class Config(InferenceConfig):
    task: str = Field(
        "reasoning", pattern="^(addition|reasoning)$", description="Embedded task when no --dataset is given."
    )
    temperature: float = Field(
        0.7, gt=0, description="Sampling temperature T (0.7 gives the tiny model diverse answers)."
    )
    n: int = Field(16, ge=1, description="Samples per prompt, N.", json_schema_extra=SWEEP)
    scorer: str = Field(
        "auto",
        pattern="^(auto|prm|verifier|likelihood)$",
        description="R(x, y) when neither prm nor reward_model is given: auto = the embedded PRM's last-step score on the embedded reasoning task (the mean log-likelihood with your own --model/--dataset), prm, likelihood, or verifier (the reasoning model's V: sub-skill P(y)).",
    )
    reward_model: str | None = Field(None, description="Outcome reward model R(x, y): HF id or local folder.")
    prm: str | None = Field(
        None,
        description="Process reward model: R(x, y) = its score of y's last step (Snell 2024); a prm-plugin folder or 'embedded'.",
    )
    step_delimiter: str = Field(
        ";", description="Text that ends a reasoning step, for the PRM (';' on the scratchpad)."
    )


# --- selection rule -----------------------------------------------------------------------------------


def best_of_n(scores: Sequence[float]) -> int:
    """Index of the highest score, y* = argmax_i R(x, y_i); the earliest wins a tie.

    [0.1, 0.7, 0.7, 0.2] -> 1. With N = 1 it is 0: best-of-1 is plain sampling.
    """
    best = max(scores)
    return next(i for i, s in enumerate(scores) if s == best)


def kl_bound(n: int) -> float:
    """Upper bound on KL(pi_BoN || pi) = log N - (N-1)/N (0 for N = 1; about 1.84 nats for N = 16)."""
    return math.log(n) - (n - 1) / n


# --- run ------------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer, problems, before, meter = setup(cfg, ctx)
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
    )
    reward, scorer = attempt_scorer(cfg, ctx, model, tokenizer, meter)
    flat = reward([p for p in prompts for _ in range(cfg.n)], [t for row in samples.texts for t in row])
    scores = [flat[i * cfg.n : (i + 1) * cfg.n] for i in range(len(prompts))]
    per_problem = PerProblem.of(len(prompts))
    per_problem.add_tokens(range(len(prompts)), [sum(row) for row in samples.lengths()])
    predictions = [texts[best_of_n(s)] for texts, s in zip(samples.texts, scores, strict=True)]
    result = finish(ctx, problems, predictions, meter, before, per_problem.rows, n=cfg.n, scorer=scorer)
    result.metrics["after"]["kl_bound"] = kl_bound(cfg.n)
    return result


plugin = Plugin(
    id="best-of-n",
    config=Config,
    run=run,
    summary="Sample N responses, return the one the reward model (or the policy's likelihood) ranks highest.",
    smoke={"n": 4, "eval_examples": 8},
    kind="inference",
)
