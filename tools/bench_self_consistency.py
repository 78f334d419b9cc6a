"""Benchmark: samples/s of self-consistency's batched sampling at n=16 against one
``generate(num_return_sequences=16)`` call, the fair baseline.

    OMP_NUM_THREADS=1 python tools/bench_self_consistency.py   # CPU, embedded tiny model
    python tools/bench_self_consistency.py --device cuda       # a GPU

Two ways to draw 16 samples for each of P prompts, run in ONE process and interleaved round by
round (so machine load hits them alike):
- batched: posttrain.generation.decode.sample, one generate per chunk of prompts x 16 samples, the
  prompt's KV cache computed once and shared by its 16 samples (what the plugin uses);
- one generate call: ``model.generate`` over all P prompts with ``num_return_sequences=16``, as a
  user of transformers would write it (each prompt is prefilled 16 times).
An earlier version compared against 16 single-prompt ``generate`` calls per prompt, which measured
call overhead, not sampling. Wall time and process CPU time are both recorded; the thread count
is fixed by ``OMP_NUM_THREADS`` and recorded. Writes reports/benchmarks/self-consistency.json
(medians of the rounds) and the page section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from posttrain.generation.decode import sample
from posttrain.inference.recipe import ComputeMeter, load_model, load_problems
from posttrain.interface import RunContext

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "reports" / "benchmarks" / "self-consistency.json"
PAGE = ROOT / "site" / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:self-consistency -->", "<!-- /bench:self-consistency -->"


def page_section(report: dict) -> str:
    """The markdown shown in the `## Self-consistency sampling` section of site/docs/benchmarks.md."""
    r = report["results"]
    speedup = report["speedup"]["batched_vs_one_generate_call"]
    lines = [
        f"Drawing n = {report['n']} samples for each of {report['prompts']} prompts ({report['model']}, "
        f"{report['device']}, {report['threads']} thread(s), up to {report['max_new_tokens']} new tokens), "
        f"median of {report['rounds']} interleaved rounds in one process (`{report['command'].strip()}`; "
        f"a shared 2-core machine, 1-minute load average {report['load_average_at_end'][0]:.1f} at the end; "
        f"{report['date']}). At 148K parameters this is an overhead measurement.",
        "",
        "| implementation | samples/s (wall) | tokens/s (wall) | CPU s per round | batched's speedup, wall | CPU |",
        "|---|---|---|---|---|---|",
        f"| batched (`posttrain.generation.decode.sample`, shared prompt cache) | {r['batched']['samples_per_second']} | "
        f"{r['batched']['tokens_per_second']} | {r['batched']['cpu_seconds_median']} | 1.0x | 1.0x |",
        f"| one `generate(num_return_sequences={report['n']})` call over all prompts | "
        f"{r['one_generate_call']['samples_per_second']} | {r['one_generate_call']['tokens_per_second']} | "
        f"{r['one_generate_call']['cpu_seconds_median']} | {speedup['wall']}x | {speedup['cpu']}x |",
        "",
        f"On a shared machine wall times swing with the load; the CPU time of this one-threaded process is the "
        f"steady reading: one `generate` call takes {speedup['cpu']}x the CPU time of batched sampling, which "
        "prefills each prompt once and shares its cache among the n samples.",
        "",
        "From `reports/benchmarks/self-consistency.json` (`OMP_NUM_THREADS=1 python "
        "tools/bench_self_consistency.py`; `--device cuda` on a GPU). The earlier baseline, "
        f"{report['n']} single-prompt `generate` calls per prompt, measured call overhead and is no longer reported.",
    ]
    return "\n".join(lines)


def update_page(report: dict) -> None:
    if not PAGE.is_file() or BEGIN not in PAGE.read_text():
        return
    head, _, rest = PAGE.read_text().partition(BEGIN)
    _, _, tail = rest.partition(END)
    PAGE.write_text(f"{head}{BEGIN}\n{page_section(report)}\n{END}{tail}")


def batched(model, tok, prompts, n, new_tokens):
    meter = ComputeMeter(model)
    sample(model, tok, prompts, n, new_tokens, meter, temperature=1.0, batch_size=1024)
    meter.close()
    return meter.generated_tokens


def _generate(model, tok, prompts, new_tokens, num_return_sequences):
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left").to(model.device)
    out = model.generate(
        **enc,
        num_return_sequences=num_return_sequences,
        max_new_tokens=new_tokens,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    new = out[:, enc["input_ids"].shape[1] :]
    return int((new != tok.pad_token_id).sum())


def one_generate_call(model, tok, prompts, n, new_tokens):
    return _generate(model, tok, prompts, new_tokens, num_return_sequences=n)


def threads_prefix() -> str:
    """``OMP_NUM_THREADS=k `` when the thread count was fixed that way, for the recorded command."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return f"OMP_NUM_THREADS={threads} " if threads else ""


def timed(fn, *args) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, generated tokens) of one call of ``fn``."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        tokens = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="HF id or folder (default: the embedded tiny model)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    ctx = RunContext(output_dir=Path("."), device=args.device, model=args.model)
    model, tok = load_model(ctx)
    prompts = [r["prompt"] for r in load_problems(RunContext(output_dir=Path(".")), args.prompts).records]
    methods = {"batched": batched, "one_generate_call": one_generate_call}
    for fn in methods.values():  # warm-up
        timed(fn, model, tok, prompts[:2], 2, args.max_new_tokens)
    walls: dict[str, list[float]] = {k: [] for k in methods}
    cpus: dict[str, list[float]] = {k: [] for k in methods}
    tokens: dict[str, list[int]] = {k: [] for k in methods}
    for r in range(args.rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for name in order:
            wall, cpu, toks = timed(methods[name], model, tok, prompts, args.n, args.max_new_tokens)
            walls[name].append(wall)
            cpus[name].append(cpu)
            tokens[name].append(toks)
    samples = len(prompts) * args.n
    results = {}
    for name in methods:
        sec = statistics.median(walls[name])
        results[name] = {
            "seconds_median": round(sec, 4),
            "seconds_all": [round(t, 4) for t in walls[name]],
            "cpu_seconds_median": round(statistics.median(cpus[name]), 4),
            "cpu_seconds_all": [round(t, 4) for t in cpus[name]],
            "samples_per_second": round(samples / sec, 1),
            "tokens_per_second": round(statistics.median(tokens[name]) / sec, 1),
        }
    speedup = {
        "batched_vs_one_generate_call": {
            "wall": round(results["one_generate_call"]["seconds_median"] / results["batched"]["seconds_median"], 2),
            "cpu": round(
                results["one_generate_call"]["cpu_seconds_median"] / results["batched"]["cpu_seconds_median"], 2
            ),
        }
    }
    report = {
        "benchmark": "self-consistency sampling, n=16",
        "command": threads_prefix()
        + "python tools/bench_self_consistency.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "model": args.model or "embedded tiny Llama (148K parameters)",
        "prompts": len(prompts),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "rounds": args.rounds,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "load_average_at_end": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
        "speedup": speedup,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    if args.output == OUT:
        update_page(report)
    for name, r in results.items():
        print(f"{name:16s} {r['samples_per_second']:9.1f} samples/s  {r['tokens_per_second']:9.1f} tokens/s")
    print(f"speedup: {speedup}  -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
