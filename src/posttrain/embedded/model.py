"""The tiny embedded model and its one-time preparation (the "base model" every method starts from).

A ~150K-parameter Llama (hidden 64, 2 layers, 4 heads, MLP 256) with the byte-level tokenizer.
The base checkpoint is trained on the addition task until held-out exact match first reaches
``TARGET_ACCURACY``, while the learning rate is still high (a checkpoint annealed mid-jump is
fragile, see the site's *The embedded task* page), so post-training methods start from a capable but imperfect model with
room to improve. The seed-0 build ships in the package (``posttrain.embedded.frozen``); the recipe
here rebuilds it (``catalog embedded build base``) and builds other seeds into ``$POSTTRAIN_CACHE``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from posttrain.embedded.task import DEFAULT_TASK, AdditionTask

MODEL_SHAPE = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=256
)
TARGET_ACCURACY = 0.55
BASE_VERSION = "v1"  # bump when the recipe below changes, so stale caches are not reused


def cache_root() -> Path:
    return Path(os.environ.get("POSTTRAIN_CACHE", Path.home() / ".cache" / "posttrain"))


def build_model(tokenizer, seed: int = 0, shape: dict | None = None, model_class=None, **config_extra):
    """A freshly initialised tiny Llama sized for the tokenizer (``MODEL_SHAPE`` unless given);
    ``model_class`` (default ``LlamaForCausalLM``) and ``config_extra`` serve other heads."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **(shape or MODEL_SHAPE),
        **config_extra,
    )
    torch.manual_seed(seed)
    return (model_class or LlamaForCausalLM)(config)


def base_model_dir(task: AdditionTask = DEFAULT_TASK, seed: int = 0, console=None) -> Path:
    """Folder of the base model: the shipped artifact (``posttrain.embedded.frozen``) for the
    default task and seed 0; another task or seed is built from the recipe on first use and cached."""
    from posttrain.embedded.frozen import shipped_dir

    if task == DEFAULT_TASK and seed == 0:
        return shipped_dir("base")
    target = cache_root() / "embedded" / f"{task.name}-{BASE_VERSION}-seed{seed}"
    return cached_model(target, lambda out: _pretrain(task, seed, out), "base model", console)


def build_base(seed: int, out: Path, console=None) -> dict:
    """The base model's recipe, trained into ``out`` (``catalog embedded build base``)."""
    return _pretrain(DEFAULT_TASK, seed, out)


def cached_model(target: Path, prepare, what: str, console=None, marker: str = "base.json") -> Path:
    """``target`` once ``prepare(tmp_folder) -> info`` has filled it (atomically, on first use);
    ``info`` is written to ``marker``, whose presence marks a complete folder."""
    if (target / marker).is_file():
        return target
    if console is not None:
        console.print(f"Preparing the embedded {what} (one time, cached in {target}) ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        info = prepare(tmp)
        (tmp / marker).write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.replace(tmp, target)  # atomic; if another process won the race, keep theirs
        except OSError:
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _pretrain(task: AdditionTask, seed: int, out: Path) -> dict:
    from posttrain.embedded.tokenizer import build_tokenizer
    from posttrain.evaluation import exact_match

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed)
    heldout = task.prompts(200, seed=seed + 1000, split="test")

    def accuracy() -> float:
        return exact_match(model, tokenizer, heldout, batch_size=200)["exact_match"]

    step, acc = train_until(
        model, tokenizer, task.sft_examples(20000, seed), seed, accuracy, TARGET_ACCURACY, 3000, 100, lr=3e-3, warmup=50
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"task": task.name, "seed": seed, "steps": step, "heldout_exact_match": acc}


def train_until(model, tokenizer, records, seed, accuracy, target, max_steps, check_every, lr, warmup, batch=64):
    """SFT (AdamW, warmup + cosine over ``max_steps``) until ``accuracy()``, checked every
    ``check_every`` steps, first reaches ``target``: stopping while the learning rate is still high
    keeps the checkpoint stable under further training. Returns (steps, last accuracy)."""
    import torch

    from posttrain.data import pad_sequences, tokenize_prompt_completion
    from posttrain.logprobs import completion_nll

    torch.manual_seed(seed)
    examples = [tokenize_prompt_completion(r, tokenizer) for r in records]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, max_steps) / max_steps))
    )
    g = torch.Generator().manual_seed(seed)
    acc, step = 0.0, 0
    for step in range(1, max_steps + 1):
        idx = torch.randint(len(examples), (batch,), generator=g).tolist()
        enc = pad_sequences([examples[i] for i in idx], tokenizer.pad_token_id)
        model.train()
        loss = completion_nll(model, enc)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % check_every == 0:
            acc = accuracy()
            if os.environ.get("POSTTRAIN_DEBUG_PRETRAIN"):
                print(f"step {step} loss {loss.item():.4f} held-out accuracy {acc:.3f}", flush=True)
            if acc >= target:
                break
    return step, acc


# --- the reasoning base model (scratchpad addition with verify / refine / polish sub-skills) ---

REASONING_SHAPE = dict(
    hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, intermediate_size=256
)
REASONING_TARGET_ACCURACY = 0.5
REASONING_VERSION = "v1"
REASONING_MIX = {"solve": 0.55, "noisy": 0.05, "verify": 0.2, "refine": 0.1, "polish": 0.1}


def reasoning_model_dir(seed: int = 0, console=None) -> Path:
    """Folder of the reasoning base model: shipped for seed 0, else built on first use and cached."""
    from posttrain.embedded.frozen import model_dir
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task

    target = cache_root() / "embedded" / f"{task.name}-{REASONING_VERSION}-seed{seed}"
    return model_dir(
        "reasoning",
        seed,
        lambda: cached_model(target, lambda out: build_reasoning(seed, out), "reasoning model", console),
    )


def reasoning_variant_dir(kind: str, version: str, prepare, what: str, seed: int = 0, console=None, marker="base.json"):
    """Folder of a model built from the reasoning model (the few-shot, diverse-paths and s1 models):
    the shipped artifact ``kind`` for seed 0, else ``<task>-<kind>-<version>-seed<seed>`` in the
    cache, built by ``prepare(out) -> info`` on first use."""
    from posttrain.embedded.frozen import model_dir
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task

    target = cache_root() / "embedded" / f"{task.name}-{kind}-{version}-seed{seed}"
    return model_dir(kind, seed, lambda: cached_model(target, prepare, what, console, marker))


def load_reasoning_model(seed: int = 0, console=None):
    """(model, tokenizer, folder) of the reasoning model, where its variants start."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = reasoning_model_dir(seed, console)
    return AutoModelForCausalLM.from_pretrained(source), AutoTokenizer.from_pretrained(source), source


def train_steps(model, tokenizer, records, seed: int, steps: int, lr: float, warmup: int = 50) -> int:
    """``train_until`` with a fixed budget (no early stop on a held-out score): the same recipe for
    every seed. Returns the steps taken."""
    return train_until(model, tokenizer, records, seed, lambda: 0.0, 1.0, steps, steps, lr=lr, warmup=warmup)[0]


def reasoning_mixture(n: int, seed: int) -> list[dict]:
    """The training mixture of the reasoning base model: solve, noisy solve, verify, refine, polish."""
    import random

    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task

    counts = {k: int(n * share) for k, share in REASONING_MIX.items()}
    noisy = [
        {"prompt": r["prompt"], "completion": task.solution(tuple(r["numbers"]))}
        for r in task.noisy_prompts(counts["noisy"], seed, "train")
    ]
    records = (
        task.sft_examples(counts["solve"], seed)
        + noisy
        + task.verify_examples(counts["verify"], seed)
        + task.refine_examples(counts["refine"], seed)
        + task.polish_examples(counts["polish"], seed)
    )
    random.Random(seed).shuffle(records)
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in records]


def build_reasoning(seed: int, out: Path, console=None, max_steps: int = 6000) -> dict:
    """The reasoning model's recipe, trained into ``out`` (``catalog embedded build reasoning``)."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import is_correct
    from posttrain.embedded.tokenizer import build_tokenizer
    from posttrain.generation.decode import generate

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed, REASONING_SHAPE)
    heldout = task.prompts(200, seed=seed + 1000, split="test")

    def accuracy() -> float:
        texts = generate(model, tokenizer, [r["prompt"] for r in heldout], max_new_tokens=16, batch_size=200)
        return sum(is_correct(t, r["answer"]) for t, r in zip(texts, heldout, strict=True)) / len(heldout)

    records = reasoning_mixture(40000, seed)
    step, acc = train_until(
        model, tokenizer, records, seed, accuracy, REASONING_TARGET_ACCURACY, max_steps, 250, lr=3e-3, warmup=50
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {"task": task.name, "seed": seed, "steps": step, "heldout_exact_match": acc}
    return info | reasoning_skills(model, tokenizer, seed)


def reasoning_skills(model, tokenizer, seed: int = 0, n: int = 200) -> dict:
    """Held-out accuracy of the reasoning model's sub-skills (recorded in ``base.json``)."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import is_correct, parse_problem
    from posttrain.generation.decode import generate

    def accuracy(records, check, max_new_tokens):
        texts = generate(model, tokenizer, [r["prompt"] for r in records], max_new_tokens=max_new_tokens, batch_size=n)
        return round(sum(check(t, r) for t, r in zip(texts, records, strict=True)) / len(records), 3)

    def refined(text, record):
        nums = parse_problem(record["prompt"][2:].split("=")[0] + "=")
        return nums is not None and is_correct(text, str(sum(nums)))

    noisy = task.noisy_prompts(n, seed + 1000, "test")
    return {
        "verify_accuracy": accuracy(task.verify_examples(n, seed + 1000, "test"), lambda t, r: t == r["completion"], 1),
        "refine_accuracy": accuracy(task.refine_examples(n, seed + 1000, "test"), refined, 16),
        "polish_accuracy": accuracy(
            [{"prompt": "P:" + r["prompt"], "canonical": r["canonical"]} for r in noisy],
            lambda t, r: t.strip() == r["canonical"],
            12,
        ),
        "noisy_exact_match": accuracy(noisy, lambda t, r: is_correct(t, r["answer"]), 16),
    }
