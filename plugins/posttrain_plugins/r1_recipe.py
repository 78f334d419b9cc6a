"""The DeepSeek-R1 training recipe: cold-start SFT -> GRPO with rule rewards -> rejection-sampling SFT.

Paper: DeepSeek-AI (Guo et al.), 2025, "DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via
Reinforcement Learning", arXiv:2501.12948, §2.3 (2.3.1 cold start, 2.3.2 reasoning-oriented RL,
2.3.3 rejection sampling and supervised fine-tuning). Catalog entry: catalog/methods/r1-recipe.yaml.

    catalog run r1-recipe                              # embedded tiny model + addition task
    catalog run r1-recipe --model Qwen/Qwen2.5-0.5B --set cold_start_dataset=cot.jsonl \\
        --set prompt_dataset=math_prompts.jsonl --set 'grpo={rewards: [exact-match, format], lora: true}'

Stages, each a complete run of a catalog plugin in a sub-folder of this run:

1. ``1-sft/``: cold start: ``sft`` on a small curated set (``cold_start_dataset``; on the embedded
   task 256 demonstrations, R1: a few thousand long-CoT examples);
2. ``2-grpo/``: reasoning-oriented RL: ``grpo`` from the cold-start model with rule rewards only:
   accuracy (``exact-match``, the task checker) plus a format reward (R1: the <think>/<answer>
   template; on the embedded task: "the completion is a bare integer", ``format_pattern``);
3. ``3-rejection-sampling-ft/``: ``rejection-sampling-ft`` from the RL checkpoint: sample several
   completions per prompt, keep the ones the checker accepts, and fine-tune on them.

Held-out metrics are logged after each stage (``<stage>/<metric>``, step = stage number).

Defaults, and why: the cold start runs at learning rate 1e-4, not sft's 1e-3, since 60 steps over
256 examples at 1e-3 overfit and lowered exact match on the embedded task; GRPO runs at the grpo
plugin's own default rate (5e-5; the former override was 2e-4). With these defaults every stage
improves (embedded base rebuilt 2026-12-02, reports/runs/r1-recipe.json): held-out exact match
0.778 -> sft 0.782 -> grpo 0.798 (from 0.774 on its own held-out prompts) -> rejection-sampling-ft
0.826.

Deviations from the paper:
1. Stage 3 fine-tunes the RL checkpoint on its own accepted samples (``rounds=1``); R1 fine-tunes
   the base model (DeepSeek-V3-Base) on ~600K reasoning + ~200K general samples collected from the
   RL checkpoint, then runs a second, all-scenario RL stage (§2.3.4) and distils into smaller
   models (§2.4): neither is part of this pipeline (see the catalog's r1-alignment-rl, r1-distill).
2. No language-consistency reward (the embedded task has one language); budgets are sized for the
   embedded tiny model (set ``sft``, ``grpo``, ``rejection_sampling`` overrides for yours).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.runs.pipeline import Pipeline, check_no_dataset

EMBEDDED_FORMAT = r"^\s*-?\d+\s*$"  # the embedded task's answer format: a bare integer


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cold_start_dataset: str | None = Field(None, description="Curated demonstrations of stage 1 (default: embedded).")
    prompt_dataset: str | None = Field(
        None, description="Prompts with answers for GRPO and rejection sampling (default: embedded prompts)."
    )
    sft: dict[str, Any] = Field(
        {"train_examples": 256, "max_steps": 60, "learning_rate": 1e-4},
        description="Overrides of stage 1 (sft): a small cold-start set, at a learning rate a small set does not overfit.",
    )
    grpo: dict[str, Any] = Field(
        {"rewards": ["exact-match", "format"], "max_steps": 150},
        description="Overrides of stage 2 (grpo, at its own default learning rate); rule rewards only.",
    )
    rejection_sampling: dict[str, Any] = Field(
        {"rounds": 1}, description="Overrides of stage 3 (rejection-sampling-ft)."
    )


def run(cfg: Config, ctx: RunContext) -> RunResult:
    check_no_dataset(ctx, "r1-recipe", "cold_start_dataset and prompt_dataset")
    pipe = Pipeline(ctx, "r1-recipe")
    cold = pipe.run("sft", model=ctx.model, dataset=cfg.cold_start_dataset, **cfg.sft)
    grpo = dict(cfg.grpo)
    if cfg.prompt_dataset is None and "format" in grpo.get("rewards", []):
        grpo.setdefault("format_pattern", EMBEDDED_FORMAT)
    rl = pipe.run("grpo", model=cold.model, dataset=cfg.prompt_dataset, **grpo)
    pipe.run("rejection-sampling-ft", model=rl.model, dataset=cfg.prompt_dataset, **cfg.rejection_sampling)
    return pipe.result()


plugin = Plugin(
    id="r1-recipe",
    config=Config,
    run=run,
    kind="pipeline",
    summary="DeepSeek-R1's recipe: cold-start SFT, GRPO with rule rewards, rejection-sampling SFT.",
    smoke={},
)
