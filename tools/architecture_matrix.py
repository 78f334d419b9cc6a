"""Run representative plugins for 2 steps on tiny random models of each supported architecture
family and write the outcome (family x plugin: ok, or the one-line error) to
``reports/architecture-matrix.json``.

Each family's model is built in code (random weights, hidden size 32, 2 layers) with the embedded
byte-level tokenizer and saved with ``save_pretrained``, so plugins load it through ``--model``
exactly as a hub checkpoint. Some families get a tokenizer with no chat template or no pad token,
as their hub checkpoints often have (GPT-2 has neither). With ``--model`` and no ``--dataset`` the
plugins use the embedded tasks, as ``catalog run X --model M`` does; each runs its ``plugin.smoke``
overrides, as ``catalog smoke`` does. tests/test_architecture_matrix.py runs the same cells.

    python tools/architecture_matrix.py                       # every family x every plugin
    python tools/architecture_matrix.py --families qwen3 gpt2 --plugins sft grpo --output /tmp/m.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPORT = Path(__file__).resolve().parent.parent / "reports" / "architecture-matrix.json"

PLUGINS = [
    "sft",
    "lora",
    "dpo",
    "kto",
    "orpo",
    "reward-model",
    "prm",
    "grpo",
    "ppo",
    "rloo",
    "best-of-n",
    "beam-search",
    "mcts",
    "qlora",
]

# family -> (transformers config class, its extra arguments, tokenizer variant)
# Tokenizer variants: "chat" (the embedded tokenizer: chat template, pad token), "no-pad" (no pad
# token: EOS pads, as most base checkpoints), "plain" (no chat template and no pad token, as GPT-2).
SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
FAMILIES: dict[str, tuple[str, dict, str]] = {
    "llama": ("LlamaConfig", dict(SHAPE, num_key_value_heads=2), "no-pad"),
    "qwen2": ("Qwen2Config", dict(SHAPE, num_key_value_heads=2), "chat"),
    "qwen3": ("Qwen3Config", dict(SHAPE, num_key_value_heads=2, head_dim=8), "chat"),
    "mistral": ("MistralConfig", dict(SHAPE, num_key_value_heads=2, sliding_window=None), "no-pad"),
    "gemma3": (
        "Gemma3TextConfig",
        dict(
            SHAPE,
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
        ),
        "chat",
    ),
    "phi3": ("Phi3Config", dict(SHAPE, num_key_value_heads=2), "chat"),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=512), "plain"),
    "olmo2": ("Olmo2Config", dict(SHAPE, num_key_value_heads=2), "plain"),
}


def build_tokenizer(variant: str):
    """The embedded byte-level tokenizer, without its chat template ("plain") or pad token ("no-pad", "plain")."""
    from posttrain.embedded.tokenizer import build_tokenizer as embedded_tokenizer

    tok = embedded_tokenizer()
    if variant in ("no-pad", "plain"):
        tok.pad_token = None
    if variant == "plain":
        tok.chat_template = None
    return tok


def tiny_model(family: str, seed: int = 0):
    """(random-initialised causal LM of ``family``, its tokenizer), in memory."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    class_name, extra, variant = FAMILIES[family]
    tok = build_tokenizer(variant)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = getattr(transformers, class_name)(vocab_size=len(tok), **ids, **extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def build_model(family: str, folder: Path, seed: int = 0) -> Path:
    """``tiny_model(family)`` saved to ``folder`` with ``save_pretrained`` (what ``--model`` loads)."""
    model, tok = tiny_model(family, seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)


def run_cell(plugin: str, model_dir: Path, output_dir: Path) -> dict:
    """One plugin for its smoke steps on one model: {"outcome": "ok" | "error" | "crash", "detail"}:
    the first held-out metrics after the run, the one-line UserError, or where an exception came from."""
    from posttrain.errors import UserError
    from posttrain.runs.runner import execute, prepare

    try:
        prepared = prepare(plugin, model=str(model_dir), output_dir=output_dir, smoke=True, device="cpu")
        result = execute(prepared, progress=False)
    except UserError as exc:
        return {"outcome": "error", "detail": str(exc)}
    except Exception as exc:  # a crash is a finding: record where it happened and go on
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return {
            "outcome": "crash",
            "detail": f"{type(exc).__name__}: {exc} ({Path(frame.filename).name}:{frame.lineno})",
        }
    after = result.metrics.get("after") or {}
    return {"outcome": "ok", "detail": ", ".join(f"{k}={v:.4g}" for k, v in list(after.items())[:3])}


def run_matrix(families: list[str], plugins: list[str], console=print) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="archmatrix-") as tmp:
        for family in families:
            model_dir = build_model(family, Path(tmp) / family / "model")
            for plugin in plugins:
                t0 = time.perf_counter()
                cell = run_cell(plugin, model_dir, Path(tmp) / family / plugin)
                cell["detail"] = cell["detail"].replace(str(model_dir), f"<{family} model>")  # no temp paths
                seconds = round(time.perf_counter() - t0, 1)
                console(f"{family:8} {plugin:13} {cell['outcome']:5} ({seconds} s) {cell['detail'][:140]}")
                rows.append({"family": family, "plugin": plugin, **cell})
    return rows


def report(rows: list[dict]) -> dict:
    import torch
    import transformers

    return {
        "date": dt.date.today().isoformat(),
        "device": "cpu",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__},
        "families": {
            f: {"config": FAMILIES[f][0], "tokenizer": FAMILIES[f][2]} for f in dict.fromkeys(r["family"] for r in rows)
        },
        "cells": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--plugins", nargs="+", default=PLUGINS)
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    from posttrain.hf import quiet_transformers

    quiet_transformers()
    rows = run_matrix(args.families, args.plugins)
    args.output.write_text(json.dumps(report(rows), indent=2) + "\n")
    print(f"report: {args.output}")
    return 0 if all(r["outcome"] != "crash" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
