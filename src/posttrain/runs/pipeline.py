"""Plumbing of pipeline plugins (kind "pipeline"): run other plugins as stages in sub-folders.

A stage is a normal run (``posttrain.runs.runner.prepare`` + ``execute``) written to
``<run>/<n>-<method>/`` with its own config.yaml, metrics.jsonl, summary.json and model. The
pipeline logs each stage's held-out metrics to its own metrics.jsonl (step = stage number) as
``<method>/<metric>`` and returns, as "before" and "after", the starting and the final model's greedy exact match on
the last stage's held-out problems (each stage's own numbers are under "stages").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.interface import RunContext, RunResult


@dataclass
class Stage:
    number: int
    method: str
    output_dir: Path
    metrics: dict[str, Any]
    artifacts: dict[str, str]
    dataset: str | None = None

    @property
    def model(self) -> str:
        return self.artifacts["model"]


@dataclass
class Pipeline:
    ctx: RunContext
    name: str
    stages: list[Stage] = field(default_factory=list)

    def run(self, method: str, *, model: str | None, dataset: str | None = None, **overrides: Any) -> Stage:
        """Run ``method`` on ``model`` (None: the embedded base) with config ``overrides``."""
        from posttrain.runs.runner import execute, prepare, resolve_plugin

        if self.ctx.smoke:  # the stage's own smoke budget wins over the pipeline's default budgets
            smoke_keys = set(resolve_plugin(method)[1].smoke)
            overrides = {k: v for k, v in overrides.items() if k not in smoke_keys}
        number = len(self.stages) + 1
        out = self.ctx.output_dir / f"{number}-{method}"
        print(f"{self.name}: stage {number}: {method} -> {out}")
        try:
            prepared = prepare(
                method, model=model, dataset=dataset, output_dir=out, device=self.ctx.device, seed=self.ctx.seed,
                trust_remote_code=self.ctx.trust_remote_code, smoke=self.ctx.smoke, extra=overrides,
                overwrite=True,  # the pipeline owns its stage folders: a rerun (--resume) redoes a stage
            )  # fmt: skip
        except UserError as exc:
            raise UserError(f"{self.name} stage {number} ({method}): {exc}") from None
        result = execute(prepared, console=None, progress=self.ctx.progress is not None)
        stage = Stage(number, method, out, result.metrics, result.artifacts, dataset)
        self.stages.append(stage)
        self.ctx.log(number, stage_metrics(method, result.metrics))
        return stage

    def add(self, method: str, metrics: dict[str, Any], artifacts: dict[str, str]) -> Stage:
        """Record a step the pipeline did itself (not a plugin run) as the next stage; logs ``metrics``."""
        number = len(self.stages) + 1
        out = self.ctx.output_dir / f"{number}-{method}"
        stage = Stage(number, method, out, {"after": metrics}, artifacts)
        self.stages.append(stage)
        self.ctx.log(number, {f"{method}/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)})
        return stage

    def next_dir(self, method: str) -> Path:
        """The folder the next stage writes to."""
        return self.ctx.output_dir / f"{len(self.stages) + 1}-{method}"

    def end_to_end(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Greedy exact match of the pipeline's starting model and of its final model on one held-out
        set (the last stage's data, as prompts), so before and after compare the same problems and
        the run's paired test applies: the stages' own sets differ (an SFT set, an RL prompt set)."""
        from dataclasses import replace

        from posttrain.console import announce
        from posttrain.data import task_records
        from posttrain.evaluation import exact_match
        from posttrain.hf import load_policy

        last = self.stages[-1]
        data_ctx = replace(self.ctx, dataset=last.dataset)
        records = task_records(data_ctx, "prompt", 1, 16 if self.ctx.smoke else 500)[1]
        tokens = 8 if last.dataset is None else 128
        scores = []
        for label, model in (("starting", self.ctx.model), ("final", last.model)):
            announce(f"{self.name}: {label} model on the last stage's held-out problems")
            policy, tokenizer = load_policy(replace(self.ctx, model=model))
            scores.append(
                {"exact_match": exact_match(policy, tokenizer, records, max_new_tokens=tokens)["exact_match"]}
            )
        return scores[0], scores[1]

    def result(self, **extra: Any) -> RunResult:
        last = self.stages[-1]
        before, after = self.end_to_end()
        metrics = {
            "before": before,
            "after": after,
            "stages": {f"{s.number}-{s.method}": summary_of(s) for s in self.stages},
            **extra,
        }
        artifacts = {"model": last.model, **{f"{s.number}-{s.method}": str(s.output_dir) for s in self.stages}}
        return RunResult(metrics=metrics, artifacts=artifacts)


def stage_metrics(method: str, metrics: dict[str, Any]) -> dict[str, float]:
    """A stage's held-out numbers as flat ``<method>/<name>`` (after) and ``<method>/before_<name>``."""
    out: dict[str, float] = {}
    for key, value in metrics.get("after", {}).items():
        if isinstance(value, int | float):
            out[f"{method}/{key}"] = float(value)
    for key, value in metrics.get("before", {}).items():
        if isinstance(value, int | float):
            out[f"{method}/before_{key}"] = float(value)
    return out


def summary_of(stage: Stage) -> dict[str, Any]:
    keep = ("before", "after", "train_seconds", "steps")
    return {k: stage.metrics[k] for k in keep if k in stage.metrics}


def check_no_dataset(ctx: RunContext, name: str, fields: str) -> None:
    """Pipelines read one dataset per stage from their config, not --dataset."""
    if ctx.dataset is not None:
        raise UserError(f"--dataset: {name} runs several stages with different data; set {fields} instead")
