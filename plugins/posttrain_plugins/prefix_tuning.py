"""Prefix tuning: trained key/value prefixes at every attention layer, through a reparameterising MLP.

Paper: Li, Liang, 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation",
arXiv:2101.00190 (ACL 2021). Catalog entry: catalog/methods/prefix-tuning.yaml.

    catalog run prefix-tuning
    catalog run prefix-tuning --model gpt2 --dataset sft.jsonl --set num_virtual_tokens=10

A prefix of p positions is prepended to the keys and values of every layer; the frozen model
attends to it as if earlier tokens had produced it. Optimising the prefix directly is unstable
(paper §4.3), so it is reparameterised: P = MLP(P'), with a small matrix P' and a two-layer MLP
(tanh) that are trained and then thrown away; only P is needed at inference. This is peft's
``PrefixTuningConfig(prefix_projection=True)``; loss and loop are the SFT recipe's. The saved
adapter holds the prefix encoder; ``peft.AutoPeftModelForCausalLM.from_pretrained`` loads it.

Note on the numbers: a fresh prefix changes what every layer attends to, so the held-out score
with the initial prefix (``initial`` in the summary) is far below the bare base model's, which is
``before``. Held-out scores are greedy decodes without KV cache
(``posttrain.generation.decode.greedy_full_forward``; peft's cached ``generate`` does not reproduce the
training-time forward for prefix models). Embedded, defaults (reports/runs/prefix-tuning.json):
bare base 0.778, initial prefix 0.088, after 0.806.

How it differs from ``p-tuning-v2``: both put trained vectors in every layer; prefix tuning trains
them through the MLP reparameterisation (for generation tasks), P-Tuning v2 trains them directly.

Deviations from the paper:
1. Prefix length 10 and MLP hidden size 256 (paper: 10 for table-to-text, hidden 512 for
   GPT-2); learning rate 1e-2 (paper: 5e-5 to 8e-5 with GPT-2 Medium), for the embedded model.
2. Step budget instead of epochs (paper: 5-10 epochs).
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.peft_methods import peft_policy, unused_lora_options
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    num_virtual_tokens: int = Field(10, ge=1, description="Prefix length p (paper §5: 10 for table-to-text).")
    encoder_hidden_size: int = Field(
        256, ge=1, description="Hidden size of the reparameterising MLP P = MLP(P') (paper: 512 for GPT-2)."
    )
    max_steps: int = Field(200, ge=1, description="Optimizer steps (a short budget for the embedded model).")
    learning_rate: float = Field(1e-2, gt=0, description="Peak learning rate (paper: 5e-5 to 8e-5 on GPT-2).")


def prefix_tuning_config(cfg: Config):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=cfg.num_virtual_tokens,
        prefix_projection=True,
        encoder_hidden_size=cfg.encoder_hidden_size,
    )


def run(cfg: Config, ctx: RunContext) -> RunResult:
    unused_lora_options(cfg, "prefix-tuning")
    model, tokenizer = peft_policy(ctx, lambda model, tok: prefix_tuning_config(cfg), "prefix-tuning")
    return train_sft(cfg, ctx, model, tokenizer, bare_base=True)


plugin = Plugin(
    id="prefix-tuning",
    config=Config,
    run=run,
    summary="Prefix tuning: key/value prefixes in every layer, via an MLP, trained with the SFT loss.",
    smoke=SMOKE,
)
