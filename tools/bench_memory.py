"""Peak memory of SFT and DPO training steps on CPU under each memory option, with a 151,936-token
vocabulary (Qwen2.5's), where the logits dominate a step's memory.

    python tools/bench_memory.py                                   # every option, both trainers
    python tools/bench_memory.py --out reports/benchmarks/memory-options.json
    python tools/bench_memory.py --options baseline chunked --trainers sft --steps 2

The model is a Qwen2 with Qwen2.5's vocabulary and tied embeddings but a small body (hidden 64, 2
layers), random weights, built in code: the LM head is the same width as the 0.5B model's, so the
logits cost what they cost there. Data are random token sequences of varied length (so padding
exists for packing to remove): SFT examples of 32-160 tokens with the loss on all but the first 16,
DPO pairs of a 24-token prompt and two completions of 8-104 tokens.

Each (trainer, option) runs in a fresh subprocess: it imports everything, records its RSS high-water
mark (``ru_maxrss``, the import baseline), builds the model, applies the option, and runs
``--steps`` optimizer steps (AdamW, lr 1e-4) with the trainers' own batch and loss functions
(``posttrain.training.sft``: padded or packed batch, full-logits or chunked loss;
``posttrain.training.preference.pair_logps`` + ``posttrain.training.preference.dpo_loss``). DPO's reference
log-probs are computed before the steps from the policy itself (equal to the frozen reference's at
step 0), so the peak is the training steps'. The reported peak is net of the import baseline:
model, optimizer state and the steps' activations. Throughput counts non-pad tokens over the steps
after the first, per wall second and per CPU second of the process (one thread); on a shared
machine the wall figure is noisy, and both are indicative only (one run each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_report import print_and_write  # tools/ is on sys.path when this script runs

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
MODEL_SHAPE = dict(
    vocab_size=151936,  # Qwen2.5's vocabulary
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    tie_word_embeddings=True,
)
CHUNK_SIZE = 128  # tokens per LM-head chunk for --logit-chunk-size
SFT_BATCH = 8  # examples per step
DPO_BATCH = 4  # pairs per step (8 sequences in the forward)

# option -> the settings it applies; "best" combines every option that lowers the peak
OPTIONS: dict[str, dict] = {
    "baseline": {},
    "bf16": {"dtype": "bf16"},
    "gradient_checkpointing": {"gradient_checkpointing": True},
    "lora": {"lora": True},
    "packing": {"packing": True},
    "chunked_logprobs": {"logit_chunk_size": CHUNK_SIZE},
    "best": {
        "dtype": "bf16",
        "gradient_checkpointing": True,
        "lora": True,
        "packing": True,
        "logit_chunk_size": CHUNK_SIZE,
    },
}
TRAINERS = ("sft", "dpo")


# --- one measured run (child process) --------------------------------------------------------------


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build_model(settings: dict):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from posttrain.hf import LoraSettings, apply_lora, enable_checkpointing
    from posttrain.logit_chunks import set_logit_chunk_size

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(pad_token_id=0, **MODEL_SHAPE))
    if settings.get("dtype") == "bf16":
        model = model.to(torch.bfloat16)
    if settings.get("gradient_checkpointing"):
        enable_checkpointing(model, with_adapters=settings.get("lora", False))
    if settings.get("lora"):
        model = apply_lora(model, LoraSettings())
    set_logit_chunk_size(model, settings.get("logit_chunk_size", 0))
    model.train()
    return model


def random_examples(n: int, lengths: tuple[int, int], prompt: int, seed: int) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
        ids = torch.randint(1, MODEL_SHAPE["vocab_size"], (length,), generator=g).tolist()
        out.append({"input_ids": ids, "completion_mask": [0] * prompt + [1] * (length - prompt)})
    return out


def sft_batches(model, settings: dict, steps: int) -> list:
    """One batch of random examples per step."""
    return [random_examples(SFT_BATCH, (32, 160), 16, seed=step) for step in range(steps)]


def sft_step_loss(model, settings: dict, examples: list[dict]):
    """(loss, tokens) with the SFT plugin's functions: padded or packed batch, full or chunked loss."""
    from posttrain.training.sft import chunked_loss, logits_loss, packed_batch, padded_batch

    make_batch = packed_batch if settings.get("packing") else padded_batch
    batch_loss = chunked_loss if settings.get("logit_chunk_size") else logits_loss
    inputs, batch = make_batch(model, examples, 0, "cpu")
    return batch_loss(model, inputs, batch), sum(len(e["input_ids"]) for e in examples)


def random_pairs(step: int) -> list[tuple[dict, dict]]:
    prompts = random_examples(DPO_BATCH, (24, 24), 24, seed=1000 + step)
    chosen = random_examples(DPO_BATCH, (8, 104), 0, seed=2000 + step)
    rejected = random_examples(DPO_BATCH, (8, 104), 0, seed=3000 + step)
    return [
        tuple(
            {"input_ids": p["input_ids"] + c["input_ids"], "completion_mask": [0] * 24 + [1] * len(c["input_ids"])}
            for c in (ch, rj)
        )
        for p, ch, rj in zip(prompts, chosen, rejected, strict=True)
    ]


def dpo_batches(model, settings: dict, steps: int) -> list:
    """(pairs, reference log-probs) per step; the policy before training is the reference."""
    from posttrain.training.preference import dataset_logps

    batches = [random_pairs(step) for step in range(steps)]
    return [(pairs, dataset_logps(model, pairs, 0, "cpu")) for pairs in batches]


def dpo_step_loss(model, settings: dict, item):
    """(loss, tokens) with the DPO plugin's functions: one chosen-then-rejected forward, sigmoid loss."""
    from posttrain.training.preference import dpo_loss, pair_batch, pair_logps

    pairs, ref = item
    batch = pair_batch(pairs, 0, "cpu")
    policy = pair_logps(model, batch)
    losses, _, _ = dpo_loss(policy.chosen, policy.rejected, ref.chosen, ref.rejected, beta=0.1)
    return losses.mean(), int(batch["attention_mask"].sum())


STEPS = {"sft": (sft_batches, sft_step_loss), "dpo": (dpo_batches, dpo_step_loss)}


def measure(trainer: str, option: str, steps: int) -> dict:
    import torch
    import transformers  # noqa: F401 (part of the import baseline)

    import posttrain.training.preference  # noqa: F401
    import posttrain.training.sft  # noqa: F401
    import posttrain_plugins.dpo  # noqa: F401

    torch.set_num_threads(1)
    baseline = rss_mb()
    settings = OPTIONS[option]
    model = build_model(settings)
    after_model = rss_mb()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    make_batches, step_loss = STEPS[trainer]
    tokens, seconds, cpu_seconds, losses = 0, 0.0, 0.0, []
    for step, item in enumerate(make_batches(model, settings, steps)):
        t0, c0 = time.perf_counter(), time.process_time()
        loss, n_tokens = step_loss(model, settings, item)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:  # the first step warms up (allocator, optimizer state, the options' one-time checks)
            tokens += n_tokens
            seconds += time.perf_counter() - t0
            cpu_seconds += time.process_time() - c0
        losses.append(float(loss))
    return {
        "trainer": trainer,
        "option": option,
        "settings": settings,
        "import_baseline_mb": baseline,
        "model_mb": after_model - baseline,
        "peak_mb": rss_mb() - baseline,
        "tokens_per_second": tokens / seconds if seconds else None,
        "tokens_per_cpu_second": tokens / cpu_seconds if cpu_seconds else None,
        "losses": losses,
    }


# --- driver (parent) ----------------------------------------------------------------------------------


def applies(trainer: str, option: str) -> bool:
    return not (trainer == "dpo" and option == "packing")  # packing is an SFT option


def run_child(trainer: str, option: str, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--phase", trainer, "--option", option, "--steps", str(steps)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
    if proc.returncode or line is None:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{trainer} {option} failed (exit {proc.returncode})")
    return json.loads(line[len("BENCH ") :])


def summarize(runs: list[dict]) -> dict:
    """trainer -> option -> peak MB, its ratio to the baseline's, tokens/s."""
    out: dict[str, dict] = {}
    for r in runs:
        base = next(b for b in runs if b["trainer"] == r["trainer"] and b["option"] == "baseline")
        out.setdefault(r["trainer"], {})[r["option"]] = {
            "peak_mb": round(r["peak_mb"]),
            "peak_vs_baseline": round(r["peak_mb"] / base["peak_mb"], 2),
            "tokens_per_second": round(r["tokens_per_second"]) if r["tokens_per_second"] else None,
            "tokens_per_cpu_second": round(r["tokens_per_cpu_second"]) if r["tokens_per_cpu_second"] else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=list(TRAINERS))
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run (the first is warm-up)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--phase", choices=TRAINERS, help=argparse.SUPPRESS)
    parser.add_argument("--option", choices=list(OPTIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print("BENCH " + json.dumps(measure(args.phase, args.option, args.steps)))
        return 0
    import torch
    import transformers

    runs = []
    for trainer in args.trainers:
        for option in [o for o in args.options if applies(trainer, o)]:
            result = run_child(trainer, option, args.steps)
            runs.append(result)
            print(
                f"{trainer:4s} {option:24s} peak {result['peak_mb']:7.0f} MB  {result['tokens_per_second'] or 0:7.0f} tok/s"
                f"  {result['tokens_per_cpu_second'] or 0:7.0f} tok/cpu-s"
            )
    report = {
        "benchmark": "peak RSS of SFT and DPO training steps per memory option, 151,936-token vocabulary, CPU",
        "command": "python tools/bench_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "threads": 1,
            "platform": platform.platform(),
            "load_average_at_end": os.getloadavg(),
        },
        "config": {
            "model": {"architecture": "Qwen2ForCausalLM", **MODEL_SHAPE},
            "steps": args.steps,
            "sft_batch_examples": SFT_BATCH,
            "sft_example_tokens": [32, 160],
            "dpo_batch_pairs": DPO_BATCH,
            "dpo_prompt_tokens": 24,
            "dpo_completion_tokens": [8, 104],
            "logit_chunk_size": CHUNK_SIZE,
            "optimizer": "AdamW lr 1e-4",
            "peak": "ru_maxrss at the end minus ru_maxrss after imports, MB (MiB)",
        },
        "summary": summarize(runs),
        "runs": runs,
    }
    print_and_write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
