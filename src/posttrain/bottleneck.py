"""Bottleneck adapters (Houlsby et al. 2019) for any transformers causal LM: peft has none for
decoder models, so this small module inserts them, freezes the base, and saves / reloads them.

An adapter is h -> h + W_up f(W_down h) with a bottleneck m << d and a near-identity start. It is
attached to the output projection of the attention block and of the MLP (``o_proj``/``down_proj``
in Llama-style models), i.e. after the projection back to d and before the residual add, the
paper's placement. The adapter is a child module of that linear layer, run by a forward hook, so
the base model's parameter names and forward code stay untouched.

Saved folder: ``bottleneck_adapter_config.json`` (base model, sizes, targets) and
``bottleneck_adapters.safetensors`` (the adapters and the trained layer norms), plus the tokenizer.
``BottleneckAdapterModel.from_pretrained(folder)`` loads the base with transformers and adds them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from posttrain.errors import UserError

CONFIG_FILE = "bottleneck_adapter_config.json"
WEIGHTS_FILE = "bottleneck_adapters.safetensors"
ADAPTER_NAME = "bottleneck_adapter"


@dataclass
class AdapterSettings:
    bottleneck_size: int = 16
    target_modules: list[str] = field(default_factory=lambda: ["o_proj", "down_proj"])
    train_layer_norms: bool = True  # the paper trains the layer-norm parameters too
    init_std: float = 1e-2  # paper §2.1: near-identity initialisation
    base_model_name_or_path: str | None = None


class BottleneckAdapter(nn.Module):
    """h + W_up gelu(W_down h); with small weights it starts near the identity."""

    def __init__(self, hidden_size: int, bottleneck_size: int, init_std: float = 1e-2) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.up = nn.Linear(bottleneck_size, hidden_size)
        for layer in (self.down, self.up):
            nn.init.trunc_normal_(layer.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(nn.functional.gelu(self.down(hidden)))


def _run_adapter(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return getattr(module, ADAPTER_NAME)(output)


def insert_adapters(model: nn.Module, settings: AdapterSettings) -> int:
    """Freeze ``model`` and attach an adapter to every linear layer named like a target; returns how many."""
    model.requires_grad_(False)
    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.split(".")[-1] in settings.target_modules:
            adapter = BottleneckAdapter(module.out_features, settings.bottleneck_size, settings.init_std)
            module.add_module(ADAPTER_NAME, adapter.to(module.weight.device, module.weight.dtype))
            module.register_forward_hook(_run_adapter)
            count += 1
    if count == 0:
        raise UserError(f"adapters: no linear layer named {settings.target_modules} in this model (set target_modules)")
    if settings.train_layer_norms:
        for name, param in model.named_parameters():
            if "norm" in name.split(".")[-2]:
                param.requires_grad_(True)
    return count


class BottleneckAdapterModel(nn.Module):
    """A frozen causal LM with bottleneck adapters; trains, generates and saves like a peft model."""

    def __init__(self, base: nn.Module, settings: AdapterSettings) -> None:
        super().__init__()
        settings.base_model_name_or_path = settings.base_model_name_or_path or base.config.name_or_path
        self.settings = settings
        self.model = base
        self.adapter_count = insert_adapters(base, settings)

    @property
    def config(self):
        return self.model.config

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.model.generate(*args, **kwargs)

    def trained_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}

    def save_pretrained(self, path: Path | str) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_FILE).write_text(json.dumps(asdict(self.settings), indent=2) + "\n")
        save_file(self.trained_state(), str(path / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, path: Path | str, base_model: str | None = None, **load_kwargs) -> BottleneckAdapterModel:
        """Load the base (``base_model`` or the one recorded at save time) with transformers, add the adapters."""
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise UserError(f"{path}: no {CONFIG_FILE} (not a bottleneck-adapter folder)")
        settings = AdapterSettings(**json.loads((path / CONFIG_FILE).read_text()))
        base = AutoModelForCausalLM.from_pretrained(base_model or settings.base_model_name_or_path, **load_kwargs)
        model = cls(base, settings)
        state = load_file(str(path / WEIGHTS_FILE))
        missing = set(state) - {n for n, _ in base.named_parameters()}
        if missing:
            raise UserError(f"{path}: adapter weights do not fit the base model (e.g. {sorted(missing)[0]})")
        base.load_state_dict(state, strict=False)
        return model.eval()
