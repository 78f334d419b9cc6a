"""The measured side of tools/gpu_check.py: build a 0.5B-class Qwen2 from its config, write the data,
and time one method (sft, dpo, grpo, qlora) with this project's plugin or with TRL.

    python tools/gpu_bench.py build --out WORK                       # WORK/model, WORK/data/<method>
    python tools/gpu_bench.py run --method dpo --side trl --work WORK --device cuda

``build`` makes Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 query / 2 KV heads, MLP 4864,
vocabulary 151,936, tied embeddings) with random weights, saved in bf16 with the embedded
byte-level tokenizer: nothing is downloaded, and speed and memory do not depend on the weights.
The data are random printable strings (one byte token each), so every sequence has the length
the settings give. ``--shape tiny`` keeps the vocabulary but shrinks the rest, to check the code
path on a CPU.

``run`` prints one line ``RESULT {json}``. Both sides are measured by the same instruments, put in
place before anything is built: ``torch.optim.AdamW.step`` is wrapped to synchronise and note the
time at the end of every optimizer step, and ``torch.nn.Embedding.forward`` to count the non-pad
tokens entering the model's token embedding while gradients are enabled (the training forwards;
reference, old-policy and generation passes run without gradients and are not counted). The
window runs from the end of the warmup steps to the end of the last step; tokens/s divides the
tokens counted in it by its length. Peak memory is ``torch.cuda.max_memory_allocated`` over the
whole process (model, optimizer, evaluation), or the peak RSS on a CPU.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

QWEN25_05B = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    tie_word_embeddings=True,
)
SHAPES = {
    "0.5b": QWEN25_05B,
    "tiny": {
        **QWEN25_05B,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
    },
}
# Per shape and method: sequences per step and lengths in tokens, and the warmup steps left out
# of the measured window (CUDA start-up, kernel selection).
SIZES = {
    "0.5b": {
        "sft": dict(batch=16, prompt=16, completion=496, warmup=3),
        "dpo": dict(batch=8, prompt=128, completion=384, warmup=3),
        "grpo": dict(prompts=8, generations=8, prompt=64, completion=128, warmup=2),
        "qlora": dict(batch=16, prompt=16, completion=496, warmup=1),
    },
    "tiny": {
        "sft": dict(batch=2, prompt=8, completion=24, warmup=1),
        "dpo": dict(batch=2, prompt=8, completion=16, warmup=1),
        "grpo": dict(prompts=2, generations=2, prompt=8, completion=8, warmup=1),
        "qlora": dict(batch=2, prompt=8, completion=24, warmup=1),
    },
}
LEARNING_RATE = 1e-5


# --- instruments -----------------------------------------------------------------------------------


class Probe:
    """Optimizer-step end times and the training tokens counted by then."""

    def __init__(self, vocab_size: int, pad_id: int) -> None:
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.tokens = None  # a tensor on the model's device: no synchronisation per forward
        self.marks: list[tuple[float, int]] = []

    def install(self) -> None:
        import torch

        embedding_forward, adamw_step = torch.nn.Embedding.forward, torch.optim.AdamW.step
        probe = self

        def forward(module, ids):
            if torch.is_grad_enabled() and module.num_embeddings == probe.vocab_size:
                counted = (ids != probe.pad_id).sum()
                probe.tokens = counted if probe.tokens is None else probe.tokens + counted
            return embedding_forward(module, ids)

        def step(optimizer, *args, **kwargs):
            out = adamw_step(optimizer, *args, **kwargs)
            sync()
            probe.marks.append((time.perf_counter(), int(probe.tokens) if probe.tokens is not None else 0))
            return out

        torch.nn.Embedding.forward = forward
        torch.optim.AdamW.step = step

    def window(self, warmup: int) -> dict:
        first = max(warmup, 1)  # the window opens at the end of this step (1-based)
        if len(self.marks) <= first:
            raise SystemExit(f"measured {len(self.marks)} optimizer steps; need more than {first}")
        (t0, k0), (t1, k1) = self.marks[first - 1], self.marks[-1]
        gaps = [b[0] - a[0] for a, b in zip(self.marks[first - 1 :], self.marks[first:], strict=False)]
        return {
            "steps": len(self.marks),
            "steps_measured": len(gaps),
            "tokens": k1 - k0,
            "seconds": t1 - t0,
            "tokens_per_second": (k1 - k0) / (t1 - t0),
            "step_seconds_median": statistics.median(gaps),
        }


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory() -> dict:
    import torch

    if torch.cuda.is_available():
        return {
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        }
    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


# --- build: model and data -------------------------------------------------------------------------


def build_model(shape: str, folder: Path) -> int:
    """Save a random-initialised Qwen2 of the shape, in bf16, with the embedded tokenizer; its parameter count."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from posttrain.embedded.tokenizer import build_tokenizer

    tok = build_tokenizer()
    config = Qwen2Config(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **SHAPES[shape]
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())  # tied embeddings are counted once


def text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + " ") for _ in range(n))


def records(method: str, size: dict, n: int, seed: int) -> list[dict]:
    """Random records of the method's format, each of the lengths in ``size``."""
    rng = random.Random(seed)
    if method == "dpo":
        return [
            {
                "prompt": text(rng, size["prompt"]),
                "chosen": text(rng, size["completion"]),
                "rejected": text(rng, size["completion"]),
            }
            for _ in range(n)
        ]
    if method == "grpo":
        return [{"prompt": text(rng, size["prompt"]), "answer": "0"} for _ in range(n)]
    return [{"prompt": text(rng, size["prompt"]), "completion": text(rng, size["completion"])} for _ in range(n)]


def write_data(shape: str, steps: int, folder: Path) -> None:
    for method, size in SIZES[shape].items():
        per_step = size.get("batch") or size["prompts"]
        out = folder / method
        out.mkdir(parents=True, exist_ok=True)
        for name, n, seed in (("train.jsonl", per_step * (steps + size["warmup"]), 0), ("test.jsonl", 1, 1)):
            (out / name).write_text("".join(json.dumps(r) + "\n" for r in records(method, size, n, seed)))


# --- run: our plugin ------------------------------------------------------------------------------


def our_settings(method: str, size: dict, steps: int) -> list[str]:
    common = [
        f"max_steps={steps}",
        f"learning_rate={LEARNING_RATE}",
        "warmup_steps=0",
        "schedule=constant",
        "eval_examples=1",
        "max_new_tokens=1",
        f"log_every={steps}",
        "save_every=0",
    ]
    if method == "grpo":
        n = size["prompts"] * size["generations"]
        return common + [
            f"prompts_per_step={size['prompts']}",
            f"num_generations={size['generations']}",
            f"batch_size={n}",
            f"max_completion_length={size['completion']}",
            "beta=0",  # no reference model, as TRL's default
        ]
    extra = ["rpo_alpha=0", "beta=0.1"] if method == "dpo" else []  # plain sigmoid DPO, as TRL's
    return common + extra + [f"batch_size={size['batch']}", f"max_length={size['prompt'] + size['completion'] + 8}"]


def run_ours(method: str, size: dict, steps: int, model: Path, data: Path, device: str) -> dict:
    from posttrain.runner import execute, prepare

    with tempfile.TemporaryDirectory(prefix=f"gpu-check-{method}-") as out:
        prepared = prepare(
            method,
            model=str(model),
            dataset=str(data),
            sets=our_settings(method, size, steps),
            output_dir=Path(out),
            device=device,
        )
        execute(prepared, progress=False)
    return {}


# --- run: TRL -------------------------------------------------------------------------------------


def trl_common(steps: int, cuda: bool) -> dict:
    return dict(
        output_dir=tempfile.mkdtemp(prefix="gpu-check-trl-"),
        max_steps=steps,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=steps,
        save_strategy="no",
        report_to=[],
        bf16=cuda,
        use_cpu=not cuda,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
        max_grad_norm=1.0,
        weight_decay=0.0,
    )


def trl_trainer(method: str, size: dict, steps: int, model_dir: Path, data: Path, device: str):
    import trl
    from datasets import Dataset

    from posttrain.evaluation import score
    from posttrain.hf import load_model, load_tokenizer, quiet_transformers

    quiet_transformers()
    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(str(model_dir), device)
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    dataset = Dataset.from_list(rows)
    common = trl_common(steps, device.startswith("cuda"))
    length = size["prompt"] + size["completion"] + 8
    if method == "sft":
        config = trl.SFTConfig(per_device_train_batch_size=size["batch"], max_length=length, packing=False, **common)
        return trl.SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    if method == "dpo":
        config = trl.DPOConfig(
            per_device_train_batch_size=size["batch"], max_length=length, beta=0.1, loss_type=["sigmoid"], **common
        )
        return trl.DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)

    def exact_match(prompts, completions, answer, **kwargs):
        return [1.0 if score(c, {"answer": a}) else 0.0 for c, a in zip(completions, answer, strict=True)]

    tokenizer.padding_side = "left"
    config = trl.GRPOConfig(
        per_device_train_batch_size=size["prompts"] * size["generations"],
        gradient_accumulation_steps=1,
        num_generations=size["generations"],
        max_completion_length=size["completion"],
        num_iterations=1,
        temperature=1.0,
        top_p=1.0,
        beta=0.0,
        loss_type="grpo",
        **common,
    )
    return trl.GRPOTrainer(
        model=model, reward_funcs=exact_match, args=config, train_dataset=dataset, processing_class=tokenizer
    )


def run_trl(method: str, size: dict, steps: int, model: Path, data: Path, device: str) -> dict:
    import trl

    trl_trainer(method, size, steps, model, data, device).train()
    return {"trl": trl.__version__}


# --- driver ---------------------------------------------------------------------------------------


def run(args) -> dict:
    from posttrain.embedded.tokenizer import build_tokenizer

    config = json.loads((args.work / "model" / "config.json").read_text())
    probe = Probe(config["vocab_size"], build_tokenizer().pad_token_id)
    probe.install()
    size = SIZES[args.shape][args.method]
    steps = args.steps + size["warmup"]
    side = run_ours if args.side == "ours" else run_trl
    t0 = time.perf_counter()
    extra = side(args.method, size, steps, args.work / "model", args.work / "data" / args.method, args.device)
    return {
        "method": args.method,
        "side": args.side,
        **size,
        **probe.window(size["warmup"]),
        **peak_memory(),
        "wall_seconds": time.perf_counter() - t0,
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="the model and the data")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    build.add_argument("--steps", type=int, default=10, help="measured steps the data must cover")
    one = sub.add_parser("run", help="time one method on one side")
    one.add_argument("--method", choices=["sft", "dpo", "grpo", "qlora"], required=True)
    one.add_argument("--side", choices=["ours", "trl"], default="ours")
    one.add_argument("--work", type=Path, required=True, help="the folder `build` wrote")
    one.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    one.add_argument("--steps", type=int, default=10, help="measured optimizer steps, after the warmup")
    one.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    if args.command == "build":
        params = build_model(args.shape, args.out / "model")
        write_data(args.shape, args.steps, args.out / "data")
        print("RESULT " + json.dumps({"parameters": params, "shape": args.shape, "config": SHAPES[args.shape]}))
    else:
        print("RESULT " + json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
