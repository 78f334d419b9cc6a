"""Named model sources and the default task: a registry the package that ships them fills in.

The low layers (``posttrain.hf``, ``posttrain.data``) resolve ``--model`` / ``--dataset`` through
this module and never import the embedded models and task themselves. Providers are found the way
plugins are, through entry points: each callable in the ``posttrain.sources`` group registers its
sources on first lookup (``posttrain.embedded:register`` ships the embedded ones; another package
can add its own models the same way).

    register_model_source("embedded:reasoning", builder)   # builder(seed=0, console=None) -> folder
    model_source_for(None)                                  # the default model's folder
    default_task()                                          # the task used when there is no --dataset
    default_teacher_source()                                # the default model's distillation teacher

No torch import here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from posttrain.errors import UserError

ModelBuilder = Callable[..., "Path | str"]  # (seed=0, console=None) -> a model folder

DEFAULT_MODEL = None  # the registry key of the model used when --model is not given
_MODELS: dict[str | None, ModelBuilder] = {}
_DEFAULT_TASK: list[Callable[[], Any]] = []  # at most one provider of the default task
_DEFAULT_TEACHER: list[ModelBuilder] = []  # at most one builder of the distillation teacher


@functools.cache
def _load_providers() -> None:
    """Call every ``posttrain.sources`` entry point, once (lazily: ``catalog list`` never gets here)."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="posttrain.sources"):
        entry.load()()


def register_model_source(name: str | None, builder: ModelBuilder) -> None:
    """``--model NAME`` (``DEFAULT_MODEL``: no --model) loads the folder ``builder`` returns."""
    _MODELS[name] = builder


def register_default_task(provider: Callable[[], Any]) -> None:
    """``provider()`` returns the task used with no --dataset (sft_examples, preference_pairs, prompts)."""
    _DEFAULT_TASK[:] = [provider]


def register_default_teacher(builder: ModelBuilder) -> None:
    """The distillation teacher of the default model (used with no --model and no ``teacher``)."""
    _DEFAULT_TEACHER[:] = [builder]


def named_models(prefix: str = "") -> list[str]:
    """The registered --model names starting with ``prefix`` (the default model has no name)."""
    _load_providers()
    return [name for name in _MODELS if name and name.startswith(prefix)]


def model_source_for(name: str | None, console=None, seed: int = 0) -> str | None:
    """The folder of a registered model (``None``: the default one), or None for any other name."""
    _load_providers()
    builder = _MODELS.get(name)
    if builder is None:
        if name is None:
            raise UserError("--model: no default model is registered (give --model ID_OR_FOLDER)")
        return None
    return str(builder(seed=seed, console=console))


def default_task():
    """The task used when no --dataset is given."""
    _load_providers()
    if not _DEFAULT_TASK:
        raise UserError("--dataset: no default task is registered (give --dataset FILE_OR_ID)")
    return _DEFAULT_TASK[0]()


def default_teacher_source(console=None, seed: int = 0) -> str:
    """The folder of the default model's distillation teacher."""
    _load_providers()
    if not _DEFAULT_TEACHER:
        raise UserError("--set teacher: no default teacher is registered (give teacher=ID_OR_PATH)")
    return str(_DEFAULT_TEACHER[0](seed=seed, console=console))
