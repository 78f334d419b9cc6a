"""Model and tokenizer loading (HF hub id or local folder), device and dtype, LoRA through peft,
the reference model, and saving in a form transformers/peft load directly.
"""

from __future__ import annotations

import copy
import os
import re
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain import sources
from posttrain.errors import UserError
from posttrain.interface import RunContext
from posttrain.logit_chunks import set_logit_chunk_size


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UserError(f"--device {device}: expected auto, cpu or cuda")
    return device


def default_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def quiet_transformers() -> None:
    import warnings

    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def model_source(ctx: RunContext, console=None) -> str:
    """The model folder or hub id to load: the user's, or a registered named model (``posttrain.sources``:
    the embedded ones; the embedded base when --model is not given)."""
    registered = sources.model_source_for(ctx.model, console)
    if registered is not None:
        return registered
    if ctx.model.startswith("embedded:"):
        names = ", ".join(sources.named_models("embedded:"))
        raise UserError(f"--model {ctx.model}: no such embedded model (expected one of {names})")
    return checked_model_path(ctx.model, "--model", adapters=True)


# A hub model id: ``name`` or ``owner/name`` (what huggingface_hub accepts as a repo id).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def checked_model_path(value: str, what: str, adapters: bool = False) -> str:
    """A local model folder (with config.json, or adapter_config.json when ``adapters``) or a hub id;
    a path that exists nowhere is a one-line error saying so, never the hub client's repo-id message."""
    path = Path(value).expanduser()
    if path.exists():
        has_config = (path / "config.json").is_file() or (adapters and (path / "adapter_config.json").is_file())
        if path.is_dir() and not has_config:
            raise UserError(f"{what} {value}: folder has no config.json (not a transformers model folder)")
        return str(path)
    if value.startswith((".", "/", "~")):
        raise UserError(f"{what} {value}: folder does not exist")
    if not HUB_ID.match(value):
        raise UserError(f"{what} {value}: no such folder, and not a hub model id (expected name or owner/name)")
    return value


def load_tokenizer(source: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {source}: could not load the tokenizer: {str(exc).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # common for decoder-only hub models
    return tok


def load_model(source: str, device: str, trust_remote_code: bool = False, dtype: torch.dtype | None = None):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype or default_dtype(device), trust_remote_code=trust_remote_code
        )
    except weight_load_errors() as exc:
        raise weights_error(source, exc, "--model") from None
    return model.to(device)


def weight_load_errors() -> tuple[type[BaseException], ...]:
    """What ``from_pretrained`` raises for a missing, damaged or refused model file."""
    import pickle

    from safetensors import SafetensorError

    return (OSError, ValueError, EOFError, RuntimeError, pickle.UnpicklingError, SafetensorError)


def weights_error(source: str, exc: BaseException, what: str) -> UserError:
    """One line for a failed model load, naming the weight file when that is what failed."""
    import pickle

    from safetensors import SafetensorError

    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    files = ", ".join(str(f) for f in weight_files(source)) or source
    if isinstance(exc, pickle.UnpicklingError):
        return UserError(
            f"{what} {source}: {files}: a pickle holding more than tensors, not loaded (loading it could run "
            "code); convert the weights to safetensors"
        )
    if isinstance(exc, SafetensorError):
        return UserError(f"{what} {source}: {files}: not a valid safetensors file, truncated or damaged ({message})")
    return UserError(f"{what} {source}: could not load the model: {message}")


def weight_files(source: str) -> list[Path]:
    folder = Path(source)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))


def head_error(source: str, exc: Exception, head: str, method: str) -> UserError:
    """The one-line error of ``AutoModelFor<head>.from_pretrained(source)``: for an architecture that
    transformers has no such head for, its model type and what needs it; else the first line of ``exc``."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    model_type = _model_type(source) if "Unrecognized configuration class" in message else None
    if model_type:
        return UserError(
            f"--model {source}: {method} needs a {head} head (AutoModelFor{head.title().replace('-', '')}), "
            f"which transformers does not have for {model_type} models"
        )
    return UserError(f"--model {source}: could not load it for {head}: {message}")


def _model_type(source: str) -> str | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source).model_type
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: peft's default for the architecture


# Llama-style projection names -> the modules that hold them in architectures that fuse or rename
# them: Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj; GPT-2 has Conv1D c_attn
# (q, k, v), attn.c_proj, c_fc and mlp.c_proj. peft matches a target by the end of a module's name.
PROJECTION_ALIASES = {
    "q_proj": ("qkv_proj", "c_attn"),
    "k_proj": ("qkv_proj", "c_attn"),
    "v_proj": ("qkv_proj", "c_attn"),
    "o_proj": ("attn.c_proj",),
    "gate_proj": ("gate_up_proj", "c_fc"),
    "up_proj": ("gate_up_proj", "c_fc"),
    "down_proj": ("mlp.c_proj",),
}


def architecture_targets(model, names) -> list[str]:
    """``names`` (adapter target modules) with each Llama-style projection the model lacks replaced
    by the module that holds it (``PROJECTION_ALIASES``); names the model has, or that no alias
    fits, are kept (peft then names the missing one). Adapting a fused matrix adapts all its parts."""
    present = [n for n, _ in model.named_modules()]

    def has(key: str) -> bool:
        return any(n == key or n.endswith("." + key) for n in present)

    out: list[str] = []
    for name in names:
        if not has(name):
            name = next((alias for alias in PROJECTION_ALIASES.get(name, ()) if has(alias)), name)
        if name not in out:
            out.append(name)
    return out


def apply_lora(model, settings: LoraSettings, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig, get_peft_model

    targets = architecture_targets(model, settings.target_modules) if settings.target_modules else None
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        task_type=task_type,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise UserError(f"lora: {str(exc).splitlines()[0]} (set lora_target_modules)") from None


def load_policy(ctx: RunContext, lora: LoraSettings | None = None, console=None):
    """(model, tokenizer) ready to train on ctx.device, with LoRA adapters when asked."""
    from posttrain.console import announce

    quiet_transformers()
    source = model_source(ctx, console)
    announce(f"loading model {ctx.model or 'embedded base'} ({source}) on {ctx.device}")
    tokenizer = load_tokenizer(source, ctx.trust_remote_code)
    model = load_model(source, ctx.device, ctx.trust_remote_code, weights_dtype(ctx.dtype, ctx.device))
    if ctx.gradient_checkpointing:
        enable_checkpointing(model, with_adapters=lora is not None)
    if lora is not None:
        model = apply_lora(model, lora)
    set_logit_chunk_size(model, ctx.logit_chunk_size)
    return model, tokenizer


DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def weights_dtype(name: str, device: str) -> torch.dtype:
    """``--dtype``: auto is bf16 on CUDA and fp32 on CPU; fp16 trains on CUDA only."""
    if name == "auto":
        return default_dtype(device)
    if name not in DTYPES:
        raise UserError(f"--dtype {name}: expected one of auto, {', '.join(DTYPES)}")
    if name == "fp16" and not device.startswith("cuda"):
        raise UserError("--dtype fp16: needs a CUDA device (on CPU use bf16 or fp32)")
    return getattr(torch, DTYPES[name])


def enable_checkpointing(model, with_adapters: bool) -> None:
    """``--gradient-checkpointing``: recompute each layer's activations in the backward pass
    (transformers 5 calls it activation checkpointing; the old name goes in v6)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    model.config.use_cache = False
    if with_adapters:  # frozen embeddings: the checkpointed layers still need an input that wants grad
        model.enable_input_require_grads()


def frozen_reference(policy):
    """The reference model: None when the policy has LoRA (the adapter-disabled base is the
    reference, no second copy in memory), else a frozen deep copy."""
    if is_peft(policy):
        return None
    ref = copy.deepcopy(policy)
    ref.requires_grad_(False)
    ref.eval()
    return ref


def is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextmanager
def reference_mode(policy, reference):
    """Yield the module that computes reference log-probs (no grad)."""
    with torch.no_grad():
        if reference is not None:
            yield reference
        else:
            with policy.disable_adapter() if is_peft(policy) else nullcontext():
                yield policy


def parameter_counts(model) -> dict[str, float]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "total_parameters": total, "trainable_share": trainable / max(total, 1)}


def save_model(model, tokenizer, path: Path) -> Path:
    """save_pretrained into path (the adapter alone for peft models), written via a temp folder."""
    import shutil

    tmp = path.with_name(f".tmp-{path.name}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except OSError as exc:  # disk full, permissions: the checkpoints written so far stay
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(
            f"could not save the model to {path}: {exc.strerror or exc}; the run's checkpoints are intact "
            "(free space, then continue with --resume)"
        ) from None
    return path


def lora_settings(cfg) -> LoraSettings | None:
    """LoRA settings from a TrainingConfig, or None when cfg.lora is off."""
    if not getattr(cfg, "lora", False):
        return None
    targets = tuple(cfg.lora_target_modules) if cfg.lora_target_modules else None
    return LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, target_modules=targets)
