"""Bottleneck adapters: small residual MLPs inserted in every block of a frozen model.

Paper: Houlsby, Giurgiu, Jastrzebski, Morrone, de Laroussilhe, Gesmundo, Attariyan, Gelly, 2019,
"Parameter-Efficient Transfer Learning for NLP", arXiv:1902.00751 (ICML 2019).
Catalog entry: catalog/methods/adapters.yaml.

    catalog run adapters
    catalog run adapters --model Qwen/Qwen2.5-0.5B --dataset sft.jsonl --set bottleneck_size=64

Two adapters per block, one after the attention output projection and one after the
feed-forward output, each h -> h + W_up f(W_down h) with bottleneck m << d, before the block's
residual add (paper Figure 2). Weights start near zero so each adapter starts near the identity;
the base is frozen and, as in the paper, the layer norms are trained too. peft has no bottleneck
adapter for decoder models, so this module inserts them (``BottleneckAdapterModel``, below). The
loss and loop are the SFT recipe's (``posttrain.training.sft``).

Any transformers causal LM: an adapter is a child module of each target linear layer
(``o_proj``/``down_proj`` in Llama-style models), run by a forward hook, so the base model's
parameter names and forward code stay untouched. Saved folder: ``bottleneck_adapter_config.json``
(base model, sizes, targets) and ``bottleneck_adapters.safetensors`` (the adapters and the trained
layer norms), plus the tokenizer; ``posttrain_plugins.adapters.BottleneckAdapterModel.from_pretrained(folder)``
loads the base with transformers and adds them back.

Deviations from the paper:
1. GELU as the nonlinearity (the paper does not fix one; BERT's is GELU).
2. Bottleneck 16 and learning rate 3e-3, for the embedded model (paper: m in {8, 64, 256},
   learning rates 3e-5 to 3e-3, 3 to 20 epochs on GLUE with BERT).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from posttrain import Plugin, RunContext, RunResult
from posttrain.errors import UserError
from posttrain.hf import load_policy
from posttrain.training.peft_methods import unused_lora_options
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    bottleneck_size: int = Field(16, ge=1, description="Bottleneck width m (paper: 8, 64 or 256).")
    target_modules: list[str] = Field(
        ["o_proj", "down_proj"], description="Linear layers followed by an adapter (attention and MLP outputs)."
    )
    train_layer_norms: bool = Field(True, description="Also train the layer norms (paper §2.1).")
    max_steps: int = Field(200, ge=1, description="Optimizer steps (a short budget for the embedded model).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (paper: 3e-5 to 3e-3).")


# --- the bottleneck adapters (peft has none for decoder models) ---------------------------------

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


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    unused_lora_options(cfg, "adapters")
    base, tokenizer = load_policy(ctx)
    settings = AdapterSettings(
        bottleneck_size=cfg.bottleneck_size, target_modules=cfg.target_modules, train_layer_norms=cfg.train_layer_norms
    )
    model = BottleneckAdapterModel(base, settings)
    return train_sft(cfg, ctx, model, tokenizer)


plugin = Plugin(
    id="adapters",
    config=Config,
    run=run,
    summary="Houlsby bottleneck adapters after attention and MLP, trained with the SFT loss.",
    smoke=SMOKE,
)
