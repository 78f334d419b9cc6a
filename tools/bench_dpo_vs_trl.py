"""Benchmark: the ``dpo`` plugin against TRL's DPOTrainer on the same model, data, batch size,
sequence length and number of steps; tokens/s, peak memory and final loss for both.

    python tools/bench_dpo_vs_trl.py                      # embedded tiny model, CPU
    python tools/bench_dpo_vs_trl.py --model-config 0.5b --device cuda --steps 50
    python tools/bench_dpo_vs_trl.py --repeats 3 --out reports/benchmarks/dpo-vs-trl.json

Each run (phase) is a fresh subprocess, so its peak RSS (``ru_maxrss``) and, on CUDA, its peak
allocated GPU memory belong to that trainer alone. Phases alternate (ours, TRL, TRL with
precomputed reference log-probs, then the next repeat in a rotated order) so machine load hits
all of them alike. Needs TRL (``pip install 'posttrain-catalog[trl]'``).

What is measured, identically for both:
- tokens: non-pad tokens in the policy's loss forward (attention mask of chosen + rejected), summed
  over the steps; tokens/s divides by the training time;
- training time: TRL's ``trainer.train()`` (plus, with ``precompute_ref_log_probs``, its
  reference pass in ``DPOTrainer.__init__``); ours, the plugin's reference precompute over the
  training pairs plus its training loop (the plugin's held-out evaluation is excluded, as TRL
  runs none). Reported as wall time (tokens/s) and as process CPU time (tokens per CPU-second,
  all threads): on a machine shared with other jobs the CPU-time figure is the steadier one;
- final loss: mean training loss over the last 10 steps;
- peak memory: the process's RSS high-water mark (model, optimizer, data, imports), and on CUDA
  ``torch.cuda.max_memory_allocated``.
``--model-config 0.5b`` builds a Qwen2 model with Qwen2.5-0.5B's shape (24 layers, hidden 896,
vocabulary 151,936) from config with random weights: speed and memory do not depend on the
weights, and the embedded byte tokenizer's ids index into the full-size vocabulary so the LM
head costs what it costs on the real model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# tools/ is on sys.path when these scripts run
from bench_report import print_and_write
from gpu_bench import QWEN25_05B

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("ours", "trl", "trl-precompute")


# --- setup (parent) -------------------------------------------------------------------------------


def prepare_model(kind: str, workdir: Path) -> Path:
    if kind == "tiny":
        from posttrain.embedded.model import base_model_dir

        return base_model_dir()
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from posttrain.embedded.model import base_model_dir

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir())
    config = Qwen2Config(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **QWEN25_05B,
    )
    import torch

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    target = workdir / "qwen2-0.5b-shape"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    print(f"built {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M-parameter Qwen2 in {target}")
    return target


def prepare_data(n_train: int, workdir: Path) -> Path:
    from posttrain.embedded.task import DEFAULT_TASK

    folder = workdir / "pairs"
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in (
        ("train.jsonl", DEFAULT_TASK.preference_pairs(n_train, seed=0)),
        ("test.jsonl", DEFAULT_TASK.preference_pairs(8, seed=1, split="test")),
    ):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


# --- phases (subprocesses) ------------------------------------------------------------------------


def peak_memory(device: str) -> dict:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        import torch

        out["peak_gpu_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def phase_ours(args) -> dict:
    """Run the dpo plugin as users do, timing its reference precompute and its training loop."""
    import torch

    import posttrain.training.preference as preference
    import posttrain.training.trainer as train
    import posttrain_plugins.dpo as dpo
    from posttrain.interface import RunContext

    torch.manual_seed(args.seed)
    n_train = args.steps * args.batch_size
    timings = {"reference": 0.0, "loop": 0.0, "cpu": 0.0}
    losses: list[float] = []
    tokens = [0]
    dataset_logps, train_loop = preference.dataset_logps, train.train_loop  # train_pairwise imports it at call time

    def timed_dataset_logps(model, pairs, *a, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        out = dataset_logps(model, pairs, *a, **kw)
        if len(pairs) == n_train:  # the reference pass over the training pairs (not held-out scoring)
            timings["reference"] += time.perf_counter() - t0
            timings["cpu"] += time.process_time() - c0
        return out

    def timed_train_loop(model, ctx, settings, loss_fn, description=""):
        def counting(step, micro):
            loss, metrics = loss_fn(step, micro)
            tokens[0] += int(metrics.get("tokens", 0))
            losses.append(float(loss.detach()))
            return loss, metrics

        t0, c0 = time.perf_counter(), time.process_time()
        result = train_loop(model, ctx, settings, counting, description)
        timings["loop"] = time.perf_counter() - t0
        timings["cpu"] += time.process_time() - c0
        return result

    preference.dataset_logps, train.train_loop = timed_dataset_logps, timed_train_loop
    cfg = dpo.Config(
        rpo_alpha=0.0,  # plain DPO, as TRL's loss_type=["sigmoid"] below
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup,
        beta=0.1,
        max_length=args.max_length,
        train_examples=n_train,
        eval_examples=8,
        log_every=10,
        save_every=0,
        max_new_tokens=4,
    )
    with tempfile.TemporaryDirectory() as out:
        ctx = RunContext(output_dir=Path(out), device=args.device, seed=args.seed, model=args.model, dataset=args.data)
        dpo.run(cfg, ctx)
    seconds = timings["reference"] + timings["loop"]
    return {
        "tokens": tokens[0],
        "train_seconds": seconds,
        "train_cpu_seconds": timings["cpu"],
        "reference_seconds": timings["reference"],
        "final_loss": statistics.fmean(losses[-10:]),
    }


def phase_trl(args, precompute: bool) -> dict:
    import copy

    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from posttrain.hf import default_dtype, quiet_transformers

    quiet_transformers()
    torch.manual_seed(args.seed)
    n_train = args.steps * args.batch_size
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=default_dtype(args.device)).to(args.device)
    reference = copy.deepcopy(model).requires_grad_(False).eval()  # in memory, as our plugin starts
    rows = [json.loads(line) for line in (Path(args.data) / "train.jsonl").read_text().splitlines()][:n_train]
    cuda = args.device.startswith("cuda")
    config = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup,
        beta=0.1,
        loss_type=["sigmoid"],
        max_length=args.max_length,
        precompute_ref_log_probs=precompute,
        logging_steps=min(10, args.steps),
        save_strategy="no",
        report_to=[],
        bf16=cuda,
        use_cpu=not cuda,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        seed=args.seed,
        disable_tqdm=True,
        max_grad_norm=1.0,
        weight_decay=0.0,
    )

    class Timer(TrainerCallback):  # training time starts at the first step, as ours does
        start = cpu_start = None

        def on_train_begin(self, *a, **kw):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    # TRL precomputes reference log-probs inside DPOTrainer.__init__; that pass counts as training
    # time, as our plugin's reference pass does.
    reference_time = {"wall": 0.0, "cpu": 0.0}
    precompute_ref = DPOTrainer._precompute_ref_logps

    def timed_precompute(self, *a, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        out = precompute_ref(self, *a, **kw)
        reference_time["wall"] += time.perf_counter() - t0
        reference_time["cpu"] += time.process_time() - c0
        return out

    DPOTrainer._precompute_ref_logps = timed_precompute
    timer = Timer()
    trainer = DPOTrainer(
        model=model,
        ref_model=reference,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    end, cpu_end = time.perf_counter(), time.process_time()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "tokens": int(trainer._total_train_tokens),
        "train_seconds": end - (timer.start or t0) + reference_time["wall"],
        "train_cpu_seconds": cpu_end - (timer.cpu_start or c0) + reference_time["cpu"],
        "reference_seconds": reference_time["wall"],
        "final_loss": logged[-1],
    }


def run_phase(args) -> None:
    t0 = time.perf_counter()
    result = phase_ours(args) if args.phase == "ours" else phase_trl(args, precompute=args.phase == "trl-precompute")
    result.update(peak_memory(args.device), phase=args.phase, wall_seconds=time.perf_counter() - t0)
    result["tokens_per_second"] = result["tokens"] / result["train_seconds"]
    result["tokens_per_cpu_second"] = result["tokens"] / result["train_cpu_seconds"]
    result["steps_per_second"] = args.steps / result["train_seconds"]
    print("BENCH " + json.dumps(result), flush=True)


# --- driver ---------------------------------------------------------------------------------------


def summarize(runs: list[dict]) -> dict:
    out = {}
    for phase in PHASES:
        mine = [r for r in runs if r["phase"] == phase]
        if not mine:
            continue
        out[phase] = {
            "tokens_per_second_median": statistics.median(r["tokens_per_second"] for r in mine),
            "tokens_per_cpu_second_median": statistics.median(r["tokens_per_cpu_second"] for r in mine),
            "steps_per_second_median": statistics.median(r["steps_per_second"] for r in mine),
            "train_seconds_median": statistics.median(r["train_seconds"] for r in mine),
            "tokens_per_run": mine[0]["tokens"],
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in mine),
            "final_loss_mean": statistics.fmean(r["final_loss"] for r in mine),
        }
        if "peak_gpu_allocated_mb" in mine[0]:
            out[phase]["peak_gpu_allocated_mb_max"] = max(r["peak_gpu_allocated_mb"] for r in mine)
    for phase in ("trl", "trl-precompute"):
        if "ours" in out and phase in out:
            out[f"throughput_ratio_vs_{phase}"] = (
                out["ours"]["tokens_per_second_median"] / out[phase]["tokens_per_second_median"]
            )
            out[f"cpu_throughput_ratio_vs_{phase}"] = (
                out["ours"]["tokens_per_cpu_second_median"] / out[phase]["tokens_per_cpu_second_median"]
            )
            out[f"rss_ratio_vs_{phase}"] = out["ours"]["peak_rss_mb_max"] / out[phase]["peak_rss_mb_max"]
            if "peak_gpu_allocated_mb_max" in out["ours"]:
                out[f"gpu_memory_ratio_vs_{phase}"] = (
                    out["ours"]["peak_gpu_allocated_mb_max"] / out[phase]["peak_gpu_allocated_mb_max"]
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-config", choices=["tiny", "0.5b"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32, help="preference pairs per step")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ", ".join(PHASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: run one phase
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        run_phase(args)
        return 0

    import platform

    import torch
    import transformers
    import trl

    workdir = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    model = prepare_model(args.model_config, workdir)
    data = prepare_data(args.steps * args.batch_size, workdir)
    phases = [p for p in args.phases.split(",") if p]
    runs = []
    for repeat in range(args.repeats):
        order = phases[repeat % len(phases) :] + phases[: repeat % len(phases)]  # rotate who goes first
        for phase in order:
            cmd = [sys.executable, __file__, "--phase", phase, "--model", str(model), "--data", str(data)]
            for k in ("device", "steps", "batch_size", "max_length", "learning_rate", "warmup", "seed"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
            if proc.returncode or line is None:
                sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
            result = json.loads(line[len("BENCH ") :])
            result["repeat"] = repeat
            runs.append(result)
            print(
                f"repeat {repeat} {phase:15s} {result['tokens_per_second']:10.0f} tok/s "
                f"{result['tokens_per_cpu_second']:8.0f} tok/cpu-s  "
                f"{result['train_seconds']:7.2f} s  rss {result['peak_rss_mb']:7.0f} MB  loss {result['final_loss']:.4f}"
            )
    report = {
        "benchmark": "dpo plugin vs TRL DPOTrainer (sigmoid loss, beta 0.1)",
        "command": "python tools/bench_dpo_vs_trl.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {
            "model_config": args.model_config,
            "device": args.device,
            "steps": args.steps,
            "batch_size_pairs": args.batch_size,
            "max_length": args.max_length,
            "learning_rate": args.learning_rate,
            "warmup_steps": args.warmup,
            "repeats": args.repeats,
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
            "load_average_at_end": os.getloadavg(),
        },
        "date": time.strftime("%Y-%m-%d"),
        "summary": summarize(runs),
        "runs": runs,
    }
    print_and_write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
