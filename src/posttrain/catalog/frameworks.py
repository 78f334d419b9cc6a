"""How a framework takes a flag (catalog/frameworks/<id>.yaml's ``flag_style``): shared by the site's
"Run it elsewhere" tables and ``catalog show``. Torch-free."""

from __future__ import annotations

import json
from typing import Any


def python_flag(name: str, value: Any) -> str:
    """A keyword argument of a config class: loss_type="grpo", use_peft=True."""
    return f"{name}={value!r}" if not isinstance(value, str) else f"{name}={json.dumps(value)}"


def cli_flag(name: str, value: Any) -> str:
    """A command-line option: --eps_clip 0.2, --use_kl_loss for a switch, --eps_clip_low_high 0.2 0.28 for a list."""
    if value is True:
        return f"--{name}"
    values = value if isinstance(value, list) else [value]
    return f"--{name} " + " ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)


def hydra_flag(name: str, value: Any) -> str:
    """A Hydra override: algorithm.adv_estimator=grpo, actor_rollout_ref.actor.use_kl_loss=true."""
    return f"{name}={json.dumps(value) if isinstance(value, list | bool) else value}"


def yaml_flag(name: str, value: Any) -> str:
    """A key of a YAML config file: pref_loss: sigmoid, use_dora: true."""
    return f"{name}: {json.dumps(value) if isinstance(value, list | bool) else value}"


FLAG_WRITERS = {"python": python_flag, "cli": cli_flag, "hydra": hydra_flag, "yaml": yaml_flag}


def written_flags(framework: Any, recipe: Any) -> list[str]:
    """A recipe's flags as ``framework`` takes them, in file order."""
    write = FLAG_WRITERS[framework.flag_style.value]
    return [write(name, value) for name, value in recipe.flags.items()]
