"""Reinforcement learning from human feedback (RLHF): SFT -> reward model -> PPO, as one pipeline.

Papers: Ouyang et al., 2022, "Training language models to follow instructions with human feedback"
(InstructGPT), arXiv:2203.02155, §3.5 and Figure 2; Christiano et al., 2017, arXiv:1706.03741;
Stiennon et al., 2020, arXiv:2009.01325. Catalog entry: catalog/methods/rlhf.yaml.

    catalog run rlhf                                   # embedded tiny model, every stage on the addition task
    catalog run rlhf --model Qwen/Qwen2.5-0.5B --set sft_dataset=demos.jsonl \\
        --set preference_dataset=prefs.jsonl --set prompt_dataset=prompts.jsonl --set 'ppo={lora: true}'

The pipeline chains three catalog plugins, each a complete run in a sub-folder of this run:

1. ``1-sft/``: ``sft`` on demonstrations (``sft_dataset``) from ``--model`` (or the embedded base);
2. ``2-reward-model/``: ``reward-model`` (Bradley-Terry) on human preference pairs
   (``preference_dataset``), initialised from the SFT model, as InstructGPT does;
3. ``3-ppo/``: ``ppo`` from the SFT model (also the KL reference) with the reward model as the only
   reward (``rewards=[reward-model:<2-reward-model/model>]``) and the critic initialised from the
   reward model (InstructGPT §3.5; OpenRLHF's default).

After each stage its held-out metrics are logged as ``<stage>/<metric>`` (step = stage number);
the summary's "before" is the starting model (stage 1's before), "after" the PPO policy.

On the embedded task the "human" preference pairs are the task's pairs: the correct sum is
preferred over a plausible mistake (a dropped carry, a digit off by one). They stand in for human
labels; they are noiseless, which real human labels are not.

Measured on the embedded task (reports/runs/rlhf.json): with these budgets the reward model stays
close to chance on held-out pairs (the reward-model plugin needs about 1200 steps to reach ~0.78
pairwise accuracy, see its report), so the PPO stage optimises a weak learned reward and most of
the pipeline's gain comes from SFT; compare ``ppo/before_*`` with ``ppo/*`` for the PPO stage's own
effect, and pass ``--set 'reward_model={max_steps: 1200}'`` for a useful reward model.

Deviations from the paper:
1. Stage budgets are sized for the embedded tiny model (SFT 150 steps, reward model 150 steps, PPO
   its own defaults); set ``sft``, ``reward_model`` and ``ppo`` (dicts of config overrides) for yours.
2. The reward model sees pairs, not InstructGPT's K = 4-9 ranked responses per prompt; PPO-ptx
   (pretraining-gradient mix) is not used; see the ppo plugin's docstring for its own deviations.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.pipeline import Pipeline, check_no_dataset


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sft_dataset: str | None = Field(None, description="Demonstrations for stage 1 (JSONL / hub id; default: embedded).")
    preference_dataset: str | None = Field(
        None, description="Human preference pairs (prompt/chosen/rejected) for stage 2 (default: embedded pairs)."
    )
    prompt_dataset: str | None = Field(None, description="Prompts for PPO in stage 3 (default: embedded prompts).")
    sft: dict[str, Any] = Field({"max_steps": 150}, description="Config overrides of stage 1 (sft).")
    reward_model: dict[str, Any] = Field({"max_steps": 150}, description="Config overrides of stage 2 (reward-model).")
    ppo: dict[str, Any] = Field({}, description="Config overrides of stage 3 (ppo).")
    critic_from_reward_model: bool = Field(
        True, description="Initialise PPO's critic from the reward model (InstructGPT §3.5) instead of the policy."
    )


def run(cfg: Config, ctx: RunContext) -> RunResult:
    check_no_dataset(ctx, "rlhf", "sft_dataset, preference_dataset and prompt_dataset")
    pipe = Pipeline(ctx, "rlhf")
    sft = pipe.run("sft", model=ctx.model, dataset=cfg.sft_dataset, **cfg.sft)
    rm = pipe.run("reward-model", model=sft.model, dataset=cfg.preference_dataset, **cfg.reward_model)
    ppo_overrides = {"rewards": [f"reward-model:{rm.model}"], **cfg.ppo}
    if cfg.critic_from_reward_model:
        ppo_overrides.setdefault("critic_model", rm.model)
    pipe.run("ppo", model=sft.model, dataset=cfg.prompt_dataset, **ppo_overrides)
    return pipe.result()


plugin = Plugin(
    id="rlhf",
    config=Config,
    run=run,
    kind="pipeline",
    summary="The InstructGPT pipeline: SFT, a reward model on human preference pairs, then PPO against it.",
    smoke={},
)
