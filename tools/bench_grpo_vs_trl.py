"""Benchmark our `grpo` plugin against TRL's GRPOTrainer: step time, generation tokens/s, the share
of step time spent generating, and peak memory, on the same model, prompts, group size and lengths.

    python tools/bench_grpo_vs_trl.py                       # embedded tiny model, CPU
    python tools/bench_grpo_vs_trl.py --model-config 0.5b --device cuda --steps 20
    pip install -e '.[bench]'                               # TRL for the comparison

Each side runs in its own subprocess (so ru_maxrss is its own peak), and the sides alternate
(ours, TRL, ours, TRL, ...) so machine load affects both alike. Both sides are measured by the same
instruments: a wrapper around ``GenerationMixin.generate`` and our ``posttrain.generation.sampler.native_generate``
(time and non-pad generated tokens) and
a wrapper around ``torch.optim.AdamW.step`` (the time between consecutive optimizer steps is the
step time, so setup, evaluation and checkpointing are excluded). Under machine load wall times are noisy, so the CPU time
(user + system) per step of each single-threaded process (OMP_NUM_THREADS=1) is reported too. Both use 8 prompts x 8
completions per step, one optimizer step per rollout, the same max completion length,
temperature 1, lr 2e-4, beta 0 (no reference model) and TRL's plain "grpo" loss type.
Writes reports/benchmarks/grpo-vs-trl.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "reports" / "benchmarks" / "grpo-vs-trl.json"

# Qwen2.5-0.5B's architecture (24 layers, hidden 896, 14 heads / 2 KV heads, MLP 4864) with the
# embedded byte-level vocabulary, built from config: no hub access needed.
QWEN_05B = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    max_position_embeddings=4096,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
)


# --- shared instruments ----------------------------------------------------------------------------


class Probe:
    """Times generate() calls and optimizer steps in this process."""

    def __init__(self) -> None:
        self.generate: list[tuple[float, float, int]] = []  # (start, end, generated tokens)
        self.steps: list[float] = []  # end time of each optimizer step
        self.cpu: list[float] = []  # process CPU time (user + system) at the end of each step

    def install(self) -> None:
        import torch
        from transformers.generation.utils import GenerationMixin

        original_generate = GenerationMixin.generate
        original_step = torch.optim.AdamW.step
        probe = self

        def generate(model, *args, **kwargs):
            start = time.perf_counter()
            out = original_generate(model, *args, **kwargs)
            sync()
            ids = kwargs.get("input_ids", args[0] if args else None)
            seqs = out.sequences if hasattr(out, "sequences") else out
            pad = getattr(model.generation_config, "pad_token_id", None)
            new = seqs[:, ids.shape[1] :]
            tokens = int((new != pad).sum()) if pad is not None else new.numel()
            probe.generate.append((start, time.perf_counter(), tokens))
            return out

        def step(self, *args, **kwargs):
            out = original_step(self, *args, **kwargs)
            sync()
            probe.steps.append(time.perf_counter())
            probe.cpu.append(time.process_time())
            return out

        GenerationMixin.generate = generate
        torch.optim.AdamW.step = step

        import posttrain.generation.sampler as sampler

        original_native = sampler.native_generate

        def native_generate(model, prompts, num_generations, sampling, stop_ids, pad_id):
            start = time.perf_counter()
            ids, logps = original_native(model, prompts, num_generations, sampling, stop_ids, pad_id)
            sync()
            probe.generate.append((start, time.perf_counter(), int((ids != pad_id).sum())))
            return ids, logps

        sampler.native_generate = native_generate

    def summary(self) -> dict:
        """Steady-state numbers: from the end of the first optimizer step to the end of the last."""
        if len(self.steps) < 3:
            raise SystemExit("benchmark needs at least 3 optimizer steps")
        t0, t1 = self.steps[0], self.steps[-1]
        n = len(self.steps) - 1
        inside = [(s, e, k) for s, e, k in self.generate if s >= t0 and e <= t1]
        gen_seconds = sum(e - s for s, e, _ in inside)
        gen_tokens = sum(k for _, _, k in inside)
        gaps = [b - a for a, b in zip(self.steps, self.steps[1:], strict=False)]
        import torch

        peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        return {
            "steps_measured": n,
            "step_ms_mean": 1000 * (t1 - t0) / n,
            "step_ms_median": 1000 * statistics.median(gaps),
            "step_cpu_ms_mean": 1000 * (self.cpu[-1] - self.cpu[0]) / n,
            "generate_share": gen_seconds / (t1 - t0),
            "generate_tokens_per_s": gen_tokens / gen_seconds if gen_seconds else None,
            "generated_tokens_per_step": gen_tokens / n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": peak_gpu,
        }


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --- the model both sides load --------------------------------------------------------------------


def prepare_model(kind: str, folder: Path) -> str:
    """The model folder both sides load: the embedded base (tiny) or a 0.5B-class Qwen2 from config."""
    if kind == "tiny":
        from posttrain.embedded.model import base_model_dir

        return str(base_model_dir())
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from posttrain.embedded.tokenizer import build_tokenizer

    tok = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **QWEN_05B,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def prompts(n: int) -> list[dict]:
    from posttrain.embedded.task import DEFAULT_TASK

    return DEFAULT_TASK.prompts(n, 0, "train")


# --- the two sides (each run in its own subprocess) ---------------------------------------------------


def run_ours(args) -> dict:
    probe = Probe()
    probe.install()
    from posttrain.runs.runner import execute, prepare

    sets = [
        f"max_steps={args.steps}",
        f"prompts_per_step={args.prompts}",
        f"num_generations={args.generations}",
        f"batch_size={args.prompts * args.generations}",
        f"max_completion_length={args.max_new_tokens}",
        "learning_rate=2e-4",
        "beta=0",
        "eval_examples=1",
        f"train_examples={args.steps * args.prompts}",
        f"log_every={args.steps}",
        "save_every=0",
    ]
    with tempfile.TemporaryDirectory() as out:
        prepared = prepare("grpo", sets=sets, output_dir=Path(out), device=args.device, model=args.model_path)
        execute(prepared, progress=False)
    return probe.summary()


def run_trl(args) -> dict:
    probe = Probe()
    probe.install()
    import trl
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from posttrain.evaluation import score
    from posttrain.hf import load_model, load_tokenizer

    def exact_match(prompts, completions, answer, **kwargs):
        return [1.0 if score(c, {"answer": a}) else 0.0 for c, a in zip(completions, answer, strict=True)]

    tokenizer = load_tokenizer(args.model_path)
    tokenizer.padding_side = "left"
    model = load_model(args.model_path, args.device)
    cpu = args.device == "cpu"
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-grpo-"),
        per_device_train_batch_size=args.prompts * args.generations,
        gradient_accumulation_steps=1,
        num_generations=args.generations,
        max_completion_length=args.max_new_tokens,
        num_iterations=1,
        temperature=1.0,
        top_p=1.0,
        learning_rate=2e-4,
        lr_scheduler_type="constant",
        warmup_steps=0,
        beta=0.0,
        loss_type="grpo",
        max_steps=args.steps,
        logging_steps=args.steps,
        save_strategy="no",
        report_to="none",
        bf16=not cpu,
        use_cpu=cpu,
        gradient_checkpointing=False,
        seed=0,
        dataloader_num_workers=0,
    )
    data = Dataset.from_list(
        [{"prompt": p["prompt"], "answer": p["answer"]} for p in prompts(args.steps * args.prompts)]
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=exact_match, args=config, train_dataset=data, processing_class=tokenizer
    )
    trainer.train()
    return {**probe.summary(), "trl_version": trl.__version__}


# --- driver ---------------------------------------------------------------------------------------


def child(side: str, args) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--model-path", args.model_path, "--device", args.device]
    cmd += ["--steps", str(args.steps), "--prompts", str(args.prompts), "--generations", str(args.generations)]
    cmd += ["--max-new-tokens", str(args.max_new_tokens)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if res.returncode != 0:
        raise SystemExit(f"{side} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    out = {}
    for key, value in runs[0].items():
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        out[key] = statistics.median(values) if values and isinstance(value, (int, float)) else value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-config", choices=["tiny", "0.5b"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run (the first is warmup)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per side")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--side", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:  # child process: one side, one run, JSON on the last stdout line
        result = run_ours(args) if args.side == "ours" else run_trl(args)
        print(json.dumps(result))
        return 0

    with tempfile.TemporaryDirectory() as folder:
        args.model_path = prepare_model(args.model_config, Path(folder))
        runs: dict[str, list[dict]] = {"ours": [], "trl": []}
        for i in range(args.repeats):
            for side in ("ours", "trl"):
                runs[side].append(child(side, args))
                last = runs[side][-1]
                print(
                    f"run {i + 1}/{args.repeats} {side}: {last['step_ms_median']:.1f} ms/step, "
                    f"{last['step_cpu_ms_mean']:.1f} CPU ms/step",
                    flush=True,
                )
    ours, trl = median_of(runs["ours"]), median_of(runs["trl"])
    import torch

    report = {
        "model": args.model_config,
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "setup": {
            "prompts_per_step": args.prompts,
            "num_generations": args.generations,
            "max_new_tokens": args.max_new_tokens,
            "steps_per_run": args.steps,
            "repeats": args.repeats,
            "beta": 0.0,
            "learning_rate": 2e-4,
            "ours_backend": "native (posttrain.generation.sampler.native_generate)",
            "trl_backend": "transformers generate",
        },
        "ours": ours,
        "trl": trl,
        "speedup_step_time": trl["step_ms_median"] / ours["step_ms_median"],
        "speedup_step_cpu_time": trl["step_cpu_ms_mean"] / ours["step_cpu_ms_mean"],
        "speedup_generate_tokens_per_s": (ours["generate_tokens_per_s"] or 0) / (trl["generate_tokens_per_s"] or 1),
        "runs": runs,
        "date": time.strftime("%Y-%m-%d"),
        "command": "python tools/bench_grpo_vs_trl.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"step time: ours {ours['step_ms_median']:.1f} ms, TRL {trl['step_ms_median']:.1f} ms "
        f"-> {report['speedup_step_time']:.2f}x (CPU time per step: ours {ours['step_cpu_ms_mean']:.1f} ms, "
        f"TRL {trl['step_cpu_ms_mean']:.1f} ms -> {report['speedup_step_cpu_time']:.2f}x); generate share ours {ours['generate_share']:.0%}, "
        f"TRL {trl['generate_share']:.0%}; peak RSS ours {ours['peak_rss_mb']:.0f} MB, TRL {trl['peak_rss_mb']:.0f} MB"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
