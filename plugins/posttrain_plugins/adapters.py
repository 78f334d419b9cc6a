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
adapter for decoder models, so ``posttrain.bottleneck`` inserts them (forward hooks; base
parameter names unchanged). The loss and loop are the ``sft`` plugin's. The saved model holds the
adapters and layer norms; ``posttrain.bottleneck.BottleneckAdapterModel.from_pretrained(folder)``
loads the base with transformers and adds them back.

Deviations from the paper:
1. GELU as the nonlinearity (the paper does not fix one; BERT's is GELU).
2. Bottleneck 16 and learning rate 3e-3, for the embedded model (paper: m in {8, 64, 256},
   learning rates 3e-5 to 3e-3, 3 to 20 epochs on GLUE with BERT).
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.hf import load_policy
from posttrain.peft_methods import unused_lora_options
from posttrain.train import train_loop
from posttrain_plugins import sft


class Config(sft.Config):
    bottleneck_size: int = Field(16, ge=1, description="Bottleneck width m (paper: 8, 64 or 256).")
    target_modules: list[str] = Field(
        ["o_proj", "down_proj"], description="Linear layers followed by an adapter (attention and MLP outputs)."
    )
    train_layer_norms: bool = Field(True, description="Also train the layer norms (paper §2.1).")
    max_steps: int = Field(200, ge=1, description="Optimizer steps (a short budget for the embedded model).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (paper: 3e-5 to 3e-3).")


def run(cfg: Config, ctx: RunContext) -> RunResult:
    from posttrain.bottleneck import AdapterSettings, BottleneckAdapterModel

    unused_lora_options(cfg, "adapters")
    base, tokenizer = load_policy(ctx)
    settings = AdapterSettings(
        bottleneck_size=cfg.bottleneck_size, target_modules=cfg.target_modules, train_layer_norms=cfg.train_layer_norms
    )
    model = BottleneckAdapterModel(base, settings)
    return sft.train_sft(cfg, ctx, model, tokenizer, loop_fn=train_loop)


plugin = Plugin(
    id="adapters",
    config=Config,
    run=run,
    summary="Houlsby bottleneck adapters after attention and MLP, trained with the SFT loss.",
    smoke=sft.plugin.smoke,
)
