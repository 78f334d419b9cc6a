"""P-Tuning v2: deep prompt tuning, trained continuous prompts in every layer, no reparameterisation.

Paper: Liu, Ji, Fu, Tam, Du, Yang, Tang, 2021, "P-Tuning v2: Prompt Tuning Can Be Comparable to
Fine-tuning Universally Across Scales and Tasks", arXiv:2110.07602 (ACL 2022).
Catalog entry: catalog/methods/p-tuning-v2.yaml.

    catalog run p-tuning-v2
    catalog run p-tuning-v2 --model Qwen/Qwen2.5-0.5B --dataset sft.jsonl --set num_virtual_tokens=64

Like prompt tuning, but the trained vectors enter every layer (as key/value prefixes), not only
the input, which gives more tunable capacity (0.1-3% of parameters) and a direct effect on deep
representations. The paper's design choices that separate it from prefix tuning (which already
had deep prompts for generation): no reparameterisation encoder (the prefix is trained
directly; the paper finds the MLP helps on some tasks and hurts on others), prompt lengths tuned
per task (20 for simple classification, up to 100 for hard sequence labelling), and a linear
classification head instead of a verbalizer for NLU. This is peft's
``PrefixTuningConfig(prefix_projection=False)``; loss and loop are the SFT recipe's. The saved
adapter is loaded by ``peft.AutoPeftModelForCausalLM.from_pretrained``.

Note on the numbers: the prompts start random (peft's embedding init), so the model with the
untrained prompts (``initial`` in the summary) scores below the bare base model; ``before`` is the
bare base (the model you have without the method). Held-out scores are greedy decodes without KV
cache (``posttrain.generation.decode.greedy_full_forward``): peft's cached ``generate`` does not reproduce
the training-time forward for prefix models. Embedded, 3,000 steps at 1e-1
(reports/runs/p-tuning-v2.json): bare base 0.778, initial prompts 0.05, after 0.852.

Deviations from the paper:
1. The LM head stays (generation on the embedded task); the paper's [CLS]-style linear head is for
   classification and sequence labelling with encoders.
2. No multi-task pre-training of the prompts (the paper's optional step).
3. AdamW with learning rate 1e-1 and 3,000 steps (paper: 5e-3 to 1e-2 and 100 epochs on
   SuperGLUE): at 1e-1 and 3,000 steps the held-out loss falls from the bare base's 0.214 to 0.172
   (reports/runs/p-tuning-v2.json); 3e-2 and 1,500 steps did not get below the bare base.
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.peft_methods import peft_policy, unused_lora_options
from posttrain.training.sft import SMOKE, SFTConfig, train_sft


class Config(SFTConfig):
    num_virtual_tokens: int = Field(20, ge=1, description="Prompt length per layer (paper §4.2: 20 for simple tasks).")
    max_steps: int = Field(3000, ge=1, description="Optimizer steps (sized for the embedded model).")
    learning_rate: float = Field(1e-1, gt=0, description="Peak learning rate (paper: 5e-3 to 1e-2).")


def p_tuning_v2_config(cfg: Config):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens, prefix_projection=False)


def run(cfg: Config, ctx: RunContext) -> RunResult:
    unused_lora_options(cfg, "p-tuning-v2")
    model, tokenizer = peft_policy(ctx, lambda model, tok: p_tuning_v2_config(cfg), "p-tuning-v2")
    return train_sft(cfg, ctx, model, tokenizer, bare_base=True)


plugin = Plugin(
    id="p-tuning-v2",
    config=Config,
    run=run,
    summary="P-Tuning v2: deep prompts in every layer, trained directly with the SFT loss.",
    smoke=SMOKE,
)
