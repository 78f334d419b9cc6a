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

Measured on the embedded task (reports/runs/rlhf.json, defaults, seed 0, embedded base rebuilt on
2026-12-02): held-out exact match 0.778 (base) -> 0.896 (SFT) -> 0.864 (PPO); the reward model
reaches 0.834 held-out pairwise accuracy (from 0.476); the PPO stage moves exact match 0.886 -> 0.864
and the held-out reward-model score 3.201 -> 3.202 (PPO's "before" is greedy exact match on its own
held-out prompts, hence not SFT's number; the score is the reward model's on one sampled answer per
prompt): PPO does not improve on SFT here, and loses a little. The gain of the pipeline is SFT's.
The reward model, 0.834 accurate on held-out pairs, is a weaker judge than the SFT policy already
is, so optimising against it cannot be expected to help here.

Attempts to make the PPO stage beat SFT (exploratory runs, not recorded as reports): initialising
the critic from the policy instead of the reward model, or large low-noise rollouts (512 prompts per
rollout, lr 1e-4, 60 steps, β = 0.5; rlaif's defaults), raised the held-out reward-model score but
lowered exact match, so the defaults stay as they were. The reward model is not the only limit:
with the task checker itself as PPO's reward (the ppo plugin on this SFT model, not used here), or
with GRPO, greedy exact match does not rise beyond noise either; sampled accuracy rises while greedy
answers of held-out problems flip both ways.

Default budgets, and why (RLHF practice for a learned reward that is far from perfect):
- the reward model trains 1500 steps (the reward-model plugin's 1200 reach 0.770 held-out pairwise
  accuracy, reports/runs/reward-model.json; with 150 it stayed at chance, and PPO then exploited it
  and exact match collapsed);
- PPO is kept close to the SFT model: β = 0.5 (TRL: 0.05), learning rate 3e-5 (ppo plugin: 7.5e-5) and
  80 optimizer steps (ppo plugin: 240). Larger moves against the same reward model cost exact match
  while the sampled training reward rose and the held-out reward stayed flat: the reward model's
  errors are exploitable (over-optimisation, Gao et al. 2022, arXiv:2210.10760), and the critic
  initialised from the reward model starts with a large value loss, so early advantages are noisy
  (OpenRLHF's critic warm-up, ``freezing_actor_steps``, is not implemented).
- PPO scores completions with the reward model tokenized as in its training (prompt + completion +
  EOS; ``posttrain.scoring.rewards`` fixed here, it used to read the head before EOS, a position the reward
  model never saw, which made its scores noise for PPO).

Deviations from the paper:
1. Stage budgets are sized for the embedded tiny model (SFT 150 steps, reward model 1500 steps, PPO
   80 steps at β = 0.5 and lr 3e-5); set ``sft``, ``reward_model`` and ``ppo`` (dicts of config
   overrides) for yours. InstructGPT's PPO used β = 0.02 on 1.3B-175B models.
2. The reward model sees pairs, not InstructGPT's K = 4-9 ranked responses per prompt; PPO-ptx
   (pretraining-gradient mix) is not used; see the ppo plugin's docstring for its own deviations.
3. The "human" pairs are the task's fixed pairs (correct sum over a plausible mistake), not
   comparisons of the SFT model's own samples as InstructGPT collects.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.runs.pipeline import Pipeline, check_no_dataset


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sft_dataset: str | None = Field(None, description="Demonstrations for stage 1 (JSONL / hub id; default: embedded).")
    preference_dataset: str | None = Field(
        None, description="Human preference pairs (prompt/chosen/rejected) for stage 2 (default: embedded pairs)."
    )
    prompt_dataset: str | None = Field(None, description="Prompts for PPO in stage 3 (default: embedded prompts).")
    sft: dict[str, Any] = Field({"max_steps": 150}, description="Config overrides of stage 1 (sft).")
    reward_model: dict[str, Any] = Field({"max_steps": 1500}, description="Config overrides of stage 2 (reward-model).")
    ppo: dict[str, Any] = Field(
        {"kl_coef": 0.5, "learning_rate": 3e-5, "max_steps": 80}, description="Config overrides of stage 3 (ppo)."
    )
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
