"""The plugin contract: a few types and no behaviour.

A plugin is a module-level ``plugin = Plugin(...)`` object, found through the entry-point group
``posttrain.plugins``. Nothing here imports torch, so listing and showing plugins stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

C = TypeVar("C", bound=BaseModel)


class MetricsSink(Protocol):
    def log(self, step: int, metrics: Mapping[str, float]) -> None: ...


class Progress(Protocol):
    def __call__(self, iterable: Iterable[Any], total: int | None = None, description: str = "") -> Iterator[Any]: ...


@dataclass
class RunContext:
    """Everything a plugin's ``run`` needs that is not the method's own configuration."""

    output_dir: Path
    device: str = "cpu"  # "cpu" or "cuda" (resolved from "auto" by the caller)
    seed: int = 0
    model: str | None = None  # HF hub id or local folder; None means the embedded tiny model
    dataset: str | None = None  # local JSONL, hub id, or None for the embedded task
    resume: bool = False
    smoke: bool = False
    metrics: MetricsSink | None = None
    progress: Progress | None = None
    trust_remote_code: bool = False
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32: the weights' dtype
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory)
    logit_chunk_size: int = 0  # apply the LM head N tokens at a time for token log-probs; 0: full logits

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.metrics is not None:
            self.metrics.log(step, metrics)


@dataclass
class RunResult:
    """What a run leaves behind: final metrics (also written to summary.json) and artifact paths."""

    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plugin(Generic[C]):
    """One runnable method.

    id:     equals the entry-point name and the catalog entry's ``plugin`` field.
    config: pydantic model whose defaults are the paper's values.
    run:    the whole method, ``run(config, context) -> RunResult``.
    smoke:  config overrides that make a 2-step run (used by ``catalog smoke`` and the tests).
    kind:   "trainer" (updates weights through ``train.train_loop``), "inference" (test-time
            method: generates and scores, trains nothing) or "pipeline" (chains other plugins).
    requires_gpu: the method cannot run on a CPU (e.g. 4-bit bitsandbytes kernels); there it must
            stop with a UserError naming the need, which the smoke tests accept.
    """

    id: str
    config: type[C]
    run: Callable[[C, RunContext], RunResult]
    smoke: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    kind: str = "trainer"
    requires_gpu: bool = False
