"""Any peft method on the policy: the shared plumbing of the PEFT plugins (dora, adalora, ia3,
prefix-tuning, p-tuning-v2, prompt-tuning, qlora). Each plugin builds its own ``peft`` config; this
module only loads the model, wraps it, and turns peft's errors into one-line UserErrors.

``hf.load_policy(ctx, lora_settings(cfg))`` stays the door for plain LoRA; this is the general one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from posttrain.errors import UserError
from posttrain.interface import RunContext


def apply_peft(model, config, method: str):
    """``peft.get_peft_model(model, config)``; a config that does not fit the model is a UserError."""
    from peft import get_peft_model

    from posttrain.hf import architecture_targets

    for field in ("target_modules", "feedforward_modules"):  # Llama-style names -> this architecture's
        names = getattr(config, field, None)
        if isinstance(names, (list, set)):
            setattr(config, field, set(architecture_targets(model, sorted(names))))
    try:
        return get_peft_model(model, config)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{method}: {str(exc).splitlines()[0]} (check the target modules for this model)") from None


def peft_policy(ctx: RunContext, make_config: Callable[[Any, Any], Any], method: str, console=None):
    """(peft model, tokenizer): load the policy (embedded base when ctx.model is None) and wrap it in
    the peft config ``make_config(model, tokenizer)`` returns."""
    from posttrain.hf import load_policy

    model, tokenizer = load_policy(ctx, None, console)
    return apply_peft(model, make_config(model, tokenizer), method), tokenizer


def require_cuda_and_bitsandbytes(ctx: RunContext, method: str) -> None:
    """4-bit training needs a CUDA GPU and bitsandbytes; say so in one line otherwise."""
    if not ctx.device.startswith("cuda"):
        raise UserError(
            f"{method}: needs a CUDA GPU and bitsandbytes for the 4-bit NF4 base (device is {ctx.device}); "
            "on CPU use `catalog run lora`"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(f"{method}: needs bitsandbytes: pip install 'posttrain-catalog[quant]'") from None


def quantized_policy(ctx: RunContext, quantization_config, make_config, method: str, console=None):
    """(peft model, tokenizer) on a base loaded with ``quantization_config`` (bitsandbytes) and
    prepared for k-bit training (frozen base, float32 norms, input grads for checkpointing)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from posttrain.hf import load_tokenizer, model_source, quiet_transformers

    require_cuda_and_bitsandbytes(ctx, method)
    quiet_transformers()
    source = model_source(ctx, console)
    tokenizer = load_tokenizer(source, ctx.trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source,
            quantization_config=quantization_config,
            dtype=torch.bfloat16,
            device_map={"": ctx.device if ":" in ctx.device else 0},
            trust_remote_code=ctx.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {source}: could not load the model in 4 bits: {str(exc).splitlines()[0]}") from None
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return apply_peft(model, make_config(model, tokenizer), method), tokenizer


def unused_lora_options(cfg, method: str) -> None:
    """Methods that are not LoRA reject ``--set lora=true`` instead of silently ignoring it."""
    if getattr(cfg, "lora", False):
        raise UserError(f"--set lora: {method} trains its own parameters, not LoRA adapters (leave lora off)")
