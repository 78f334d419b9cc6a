"""Beam search over reasoning steps, scored by a process reward model (PRM).

Paper: Snell, Lee, Xu, Kumar 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective
than Scaling Model Parameters", arXiv:2408.03314, §5.2 (beam search against a PRM); the
implementation follows HuggingFace's search-and-learn. Catalog entry: catalog/methods/beam-search.yaml.

    catalog run beam-search                               # embedded reasoning model (scratchpad task)
    catalog run beam-search --set n=4,8,16,32             # budget sweep
    catalog run beam-search --model Qwen/Qwen2.5-Math-1.5B-Instruct --dataset math.jsonl \\
        --set step_delimiter='\n\n' --set reward_model=path/to/orm --set max_new_tokens=512

Algorithm (Snell 2024 §5.2): sample N first steps; score each partial solution with the PRM;
keep the best N/M; expand each kept beam with M sampled next steps (N candidates again); repeat
until the beams are complete or ``max_steps``; return the complete solution the PRM scores highest.
Each expansion is one batched generate over all problems' beams, each beam's prefix prefilled
once and its KV cache shared by its M children.

Deviations from the paper:
1. On the embedded reasoning task the PRM is the embedded PRM (``posttrain.embedded.prm``: a separate token-classification model trained once on training-split scratchpads with exact step labels; an attempt's score is its last step's probability, Snell 2024 §5 / App.; ``prm.json`` in its cache folder has its held-out step accuracy), as in the paper a separately
   trained PRM, but trained with exact (PRM800K-style) step labels rather than Snell's
   Monte-Carlo ones. With your own ``--model``/``--dataset`` and no ``prm``/``reward_model`` the
   score is the policy's mean log-likelihood (``scorer=likelihood``; ``scorer=verifier``: the
   reasoning model's ``V:`` sub-skill, near chance). The task's checker is never used to score.
2. The final answer is the highest-scoring complete beam. Snell §5.2 ends with best-of-N weighted
   selection over the final beams (answers' PRM scores summed); that vote is not implemented here.
3. Default N = 16, M = 4 (Snell sweeps N in 4..256 with M = 4); sweep ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    n: int = Field(16, ge=1, description="Beams kept x width, N: candidates scored per step.", json_schema_extra=SWEEP)
    beam_width: int = Field(4, ge=1, description="Children per kept beam, M (N/M beams are kept).")


# --- the pruning rule -------------------------------------------------------------------------------


def prune(scores: Sequence[float], keep: int) -> list[int]:
    """Indices of the ``keep`` highest scores, best first; ties keep the earlier candidate.

    prune([0.2, 0.9, 0.5, 0.9], 2) -> [1, 3]; keep >= len keeps everything.
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order[: max(0, keep)]


def beams_kept(n: int, width: int) -> int:
    """N/M beams survive each step (at least one): n=16, M=4 -> 4."""
    return max(1, n // width)


# --- search -------------------------------------------------------------------------------------------


@dataclass
class Beam:
    owner: int  # problem index
    text: str  # steps so far
    score: float = 0.0
    done: bool = False


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    score, scorer = attempt_scorer(cfg, ctx, model, tokenizer, meter)
    prompts = [text_prompt(tokenizer, r["prompt"]) for r in problems.records]
    per_problem = PerProblem.of(len(prompts))
    keep = beams_kept(cfg.n, cfg.beam_width)
    active = [Beam(i, "") for i in range(len(prompts))]
    finished: list[Beam] = []
    for depth in range(cfg.max_steps):
        if not active:
            break
        k = cfg.n if depth == 0 else cfg.beam_width
        out = extend_steps(
            model,
            tokenizer,
            [prompts[b.owner] + b.text for b in active],
            k,
            meter,
            cfg,
            cfg.step_delimiter,
            cfg.max_step_tokens,
        )
        children = []
        for beam, texts, ended, lengths in zip(active, out.texts, out.ended, out.lengths(), strict=True):
            per_problem.add_tokens([beam.owner], [sum(lengths)])
            children += [Beam(beam.owner, beam.text + t, done=e or not t) for t, e in zip(texts, ended, strict=True)]
        scores = score([prompts[c.owner] for c in children], [c.text for c in children])
        by_problem: dict[int, list[Beam]] = {}
        for child, s in zip(children, scores, strict=True):
            child.score = s
            by_problem.setdefault(child.owner, []).append(child)
        active = []
        for group in by_problem.values():
            for i in prune([c.score for c in group], keep):
                (finished if group[i].done or depth == cfg.max_steps - 1 else active).append(group[i])
    best: dict[int, Beam] = {}
    for b in finished:
        if b.owner not in best or b.score > best[b.owner].score:
            best[b.owner] = b
    predictions = [best[i].text if i in best else "" for i in range(len(prompts))]
    return finish(
        ctx, problems, predictions, meter, before, per_problem.rows, scorer=scorer, n=cfg.n, beam_width=cfg.beam_width
    )


plugin = Plugin(
    id="beam-search",
    config=Config,
    run=run,
    summary="Beam search over reasoning steps: keep the N/M partial solutions a PRM scores best, expand each M ways.",
    smoke={"n": 4, "beam_width": 2, "eval_examples": 4},
    kind="inference",
)
