"""The embedded default: a tiny model, tokenizer and arithmetic task built in code, offline.

`catalog run <id>` with no --model/--dataset uses these, so every method runs on a fresh machine
with no downloads. ``register`` (the ``posttrain.sources`` entry point ``embedded`` in
pyproject.toml) adds them to ``posttrain.sources``, where the low layers look them up without
importing this package; the builders import their modules only when called, so registering stays
cheap and torch-free.
"""

from __future__ import annotations

import importlib

from posttrain.sources import DEFAULT_MODEL, register_default_task, register_default_teacher, register_model_source

# --model names of the embedded models (shipped in the package: posttrain.embedded.frozen)
EMBEDDED_MODELS = {
    DEFAULT_MODEL: "posttrain.embedded.model.base_model_dir",  # the base, used when --model is not given
    "embedded:reasoning": "posttrain.embedded.model.reasoning_model_dir",  # scratchpad reasoning, reasoning.py
    "embedded:reasoning-fewshot": "posttrain.embedded.fewshot.fewshot_model_dir",  # trained on few-shot pages
    "embedded:reasoning-diverse": "posttrain.embedded.diverse.diverse_model_dir",  # solves by several paths
    "embedded:reasoning-s1": "posttrain.embedded.s1.s1_model_dir",  # fine-tuned on self-re-checking traces
}


def _builder(target: str):
    """Calls ``module.function`` looked up at call time (so a test's monkeypatch of it applies)."""
    module, function = target.rsplit(".", 1)

    def build(seed: int = 0, console=None):
        return getattr(importlib.import_module(module), function)(seed=seed, console=console)

    return build


def _default_task():
    from posttrain.embedded.task import DEFAULT_TASK

    return DEFAULT_TASK


def register() -> None:
    """The embedded models (the base is the default --model), the default task and the base's teacher."""
    for name, target in EMBEDDED_MODELS.items():
        register_model_source(name, _builder(target))
    register_default_task(_default_task)
    register_default_teacher(_builder("posttrain.embedded.teacher.teacher_model_dir"))
    register_model_source("prm:embedded", _builder("posttrain.embedded.prm.prm_model_dir"))  # --set prm=embedded
