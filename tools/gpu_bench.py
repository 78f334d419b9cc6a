"""The measured side of tools/gpu_check.py: build a 0.5B-class Qwen2 from its config, write the data,
and time one method (sft, dpo, grpo, qlora) with this project's plugin or with TRL.

    python tools/gpu_bench.py build --out WORK                       # WORK/model, WORK/data/<method>
    python tools/gpu_bench.py run --method dpo --side trl --work WORK --device cuda

``build`` makes Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 query / 2 KV heads, MLP 4864,
vocabulary 151,936, tied embeddings) with random weights, saved in bf16 with the embedded
byte-level tokenizer: nothing is downloaded, and speed and memory do not depend on the weights.
The data are random printable strings (one byte token each), so every sequence has the length
the settings give. ``--shape tiny`` keeps the vocabulary but shrinks the rest, to check the code
path on a CPU. ``--shape 30m`` is a ~30M-parameter Qwen2 (hidden 512, 8 layers, an 8,192-token
vocabulary) at sequence length 256, the compute-bound CPU comparison of tools/bench_30m.py.

``run`` prints one line ``RESULT {json}``. Both sides are measured by the same instruments, put in
place before anything is built: ``torch.optim.AdamW.step`` is wrapped to synchronise and note the
time at the end of every optimizer step, and ``torch.nn.Embedding.forward`` to count the non-pad
tokens entering the model's token embedding while gradients are enabled (the training forwards;
reference, old-policy and generation passes run without gradients and are not counted). The
window runs from the end of the warmup steps to the end of the last step; tokens/s divides the
tokens counted in it by its length; the process CPU time (user + system) is noted at the same
marks. Peak memory is ``torch.cuda.max_memory_allocated`` over the whole process (model, optimizer,
evaluation), or on a CPU the peak RSS, also net of the RSS after the side's imports. Generated
tokens are counted around ``GenerationMixin.generate`` and ``posttrain.generation.sampler.native_generate``.
"""

from __future__ import annotations

import argparse
import json
import os
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
# ~30M parameters with an 8,192-token vocabulary (about 4M of them in the tied embedding), so the
# LM head costs about what it costs in a small real model. At 8,192 entries a random model draws
# EOS rarely, so GRPO completions run to their length limit on both sides.
QWEN2_30M = dict(
    hidden_size=512,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=2,
    intermediate_size=1664,
    vocab_size=8192,
    max_position_embeddings=4096,
    rope_theta=1_000_000.0,
    tie_word_embeddings=True,
)
SHAPES = {
    "0.5b": QWEN25_05B,
    "30m": QWEN2_30M,
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
    # Sequence length 256 everywhere (the BOS / EOS tokens ride in the +8 of max_length), 8 sequences
    # per optimizer step: a step is a few CPU-seconds on one thread.
    "30m": {
        "sft": dict(batch=8, prompt=64, completion=192, warmup=1),
        "dpo": dict(batch=4, prompt=128, completion=128, warmup=1),
        "grpo": dict(prompts=2, generations=4, prompt=128, completion=128, warmup=1),
        "qlora": dict(batch=8, prompt=64, completion=192, warmup=1),
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
        self.cpu_marks: list[float] = []  # process CPU time (user + system) at each optimizer step's end
        self.generated: list[tuple[float, int]] = []  # (end time, generated non-pad tokens) per call

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
            probe.cpu_marks.append(time.process_time())
            probe.profiler_at_step_end()
            return out

        torch.nn.Embedding.forward = forward
        torch.optim.AdamW.step = step
        self._count_generation()

    def _count_generation(self) -> None:
        """Wrap transformers' ``generate`` (TRL, our hf backend) and our native sampler."""
        from transformers.generation.utils import GenerationMixin

        import posttrain.generation.sampler as sampler

        generate, native_generate = GenerationMixin.generate, sampler.native_generate
        probe = self

        def counted_generate(model, *args, **kwargs):
            out = generate(model, *args, **kwargs)
            ids = kwargs.get("input_ids", args[0] if args else None)
            seqs = out.sequences if hasattr(out, "sequences") else out
            probe.note_generated(seqs[:, ids.shape[1] :] if ids is not None else seqs)
            return out

        def counted_native(model, prompts, num_generations, sampling, stop_ids, pad_id):
            ids, logps = native_generate(model, prompts, num_generations, sampling, stop_ids, pad_id)
            probe.note_generated(ids)
            return ids, logps

        GenerationMixin.generate = counted_generate
        sampler.native_generate = counted_native

    def profile_step(self, index: int) -> None:
        """Profile optimizer step ``index`` (1-based), from the end of the one before to its end."""
        self.profile_index, self.profiler, self.profile = index, None, None

    def profiler_at_step_end(self) -> None:
        index = getattr(self, "profile_index", None)
        if index is None:
            return
        if len(self.marks) == index - 1:
            from torch.profiler import ProfilerActivity, profile

            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.start()
        elif len(self.marks) == index and self.profiler is not None:
            self.profiler.stop()
            self.profile = op_shares(self.profiler)
            self.profiler = None

    def note_generated(self, new_ids) -> None:
        self.generated.append((time.perf_counter(), int((new_ids != self.pad_id).sum())))

    def window(self, warmup: int) -> dict:
        first = max(warmup, 1)  # the window opens at the end of this step (1-based)
        if len(self.marks) <= first:
            raise SystemExit(f"measured {len(self.marks)} optimizer steps; need more than {first}")
        (t0, k0), (t1, k1) = self.marks[first - 1], self.marks[-1]
        gaps = [b[0] - a[0] for a, b in zip(self.marks[first - 1 :], self.marks[first:], strict=False)]
        cpu = self.cpu_marks[-1] - self.cpu_marks[first - 1]
        generated = sum(k for end, k in self.generated if t0 < end <= t1)
        return {
            "steps": len(self.marks),
            "steps_measured": len(gaps),
            "tokens": k1 - k0,
            "seconds": t1 - t0,
            "tokens_per_second": (k1 - k0) / (t1 - t0),
            "step_seconds_median": statistics.median(gaps),
            "cpu_seconds": cpu,
            "step_cpu_seconds_mean": cpu / len(gaps),
            "tokens_per_cpu_second": (k1 - k0) / cpu,
            "generated_tokens_per_step": generated / len(gaps),
        }


# aten ops that are dense matrix products (self time: the kernels themselves, not their callers)
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
ATTENTION_OPS = ("flash_attention", "scaled_dot_product")


def op_shares(profiler) -> dict:
    """Self CPU time of one profiled step by op: dense matmuls, the attention kernels, the rest."""
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    attention = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in ATTENTION_OPS))
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {
        "self_cpu_ms": total / 1000,
        "matmul_share": matmul / total,
        "attention_kernel_share": attention / total,
        "rest_share": (total - matmul - attention) / total,
        "top_ops": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in top],
    }


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory(rss_after_imports_gib: float) -> dict:
    import torch

    if torch.cuda.is_available():
        return {
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        }
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "peak_rss_gib": peak,
        "rss_after_imports_gib": rss_after_imports_gib,
        "peak_rss_net_gib": peak - rss_after_imports_gib,
    }


def current_rss_gib() -> float:
    """This process's resident set now (Linux ``/proc``; 0 where it cannot be read)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def import_side(side: str, method: str) -> None:
    """The libraries a side uses, imported before the RSS baseline is read, so the net peak is the
    training's (model, optimizer, activations, data), not the imports'."""
    import torch  # noqa: F401
    import transformers  # noqa: F401

    if side == "trl":
        import datasets  # noqa: F401
        import trl  # noqa: F401
    else:
        import importlib

        import posttrain.runs.runner  # noqa: F401

        importlib.import_module(f"posttrain_plugins.{'sft' if method == 'qlora' else method}")


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


def run_ours(method: str, size: dict, steps: int, model: Path, data: Path, device: str, precompute: bool) -> dict:
    from posttrain.runs.runner import execute, prepare

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
    return {"fast_forward": os.environ.get("POSTTRAIN_FAST_FORWARD", "1") != "0"}


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


def trl_trainer(method: str, size: dict, steps: int, model_dir: Path, data: Path, device: str, precompute: bool):
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
            per_device_train_batch_size=size["batch"],
            max_length=length,
            beta=0.1,
            loss_type=["sigmoid"],
            precompute_ref_log_probs=precompute,
            **common,
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


def run_trl(method: str, size: dict, steps: int, model: Path, data: Path, device: str, precompute: bool) -> dict:
    import trl

    trl_trainer(method, size, steps, model, data, device, precompute).train()
    return {"trl": trl.__version__, "trl_precompute_ref_log_probs": precompute and method == "dpo"}


# --- driver ---------------------------------------------------------------------------------------


def run(args) -> dict:
    import torch

    from posttrain.embedded.tokenizer import build_tokenizer

    import_side(args.side, args.method)
    rss_after_imports = current_rss_gib()
    config = json.loads((args.work / "model" / "config.json").read_text())
    probe = Probe(config["vocab_size"], build_tokenizer().pad_token_id)
    probe.install()
    size = SIZES[args.shape][args.method]
    if args.profile_step:
        probe.profile_step(size["warmup"] + 1)  # the first measured step
    steps = args.steps + size["warmup"]
    side = run_ours if args.side == "ours" else run_trl
    t0 = time.perf_counter()
    extra = side(
        args.method,
        size,
        steps,
        args.work / "model",
        args.work / "data" / args.method,
        args.device,
        args.trl_precompute_ref,
    )
    return {
        "method": args.method,
        "side": args.side,
        **size,
        **probe.window(size["warmup"]),
        **peak_memory(rss_after_imports),
        "wall_seconds": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        **({"profile": probe.profile} if args.profile_step else {}),
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
    one.add_argument(
        "--trl-precompute-ref",
        action="store_true",
        help="TRL's DPO computes the reference log-probs once before training (precompute_ref_log_probs)",
    )
    one.add_argument("--profile-step", action="store_true", help="profile the first measured step's ops (CPU)")
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
