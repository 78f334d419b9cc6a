"""The embedded "diverse-paths" model: the reasoning model fine-tuned to solve each problem by one
of several valid, checkable paths, the premise of self-consistency (Wang et al. 2022).

The reasoning model (``reasoning_model_dir``) knows one way of thinking, so its mistakes are the
same on every sample of a problem and a majority vote converges to the greedy answer. Wang et al.
assume a problem "admits multiple different ways of thinking leading to its unique correct answer"
whose errors differ. This module writes such ways for the scratchpad task; a one-letter path
marker opens every solution, so the first sampled token chooses the path (temperature sampling
explores paths; greedy decoding follows the most likely one). For ``347+285=``:

- ``c`` columns, right to left (the reasoning model's own format): ``c12;13;6;#632``
- ``x`` explicit digits and carry, a first: ``x7+5=12;4+8+1=13;3+2+1=6;#632``
- ``s`` explicit, the operands swapped (b first): ``s5+7=12;8+4+1=13;2+3+1=6;#632``

Every step of every path is checkable (the ``*_trace`` functions give the correct steps). The
fine-tune sees training-split problems only, each written in a path drawn uniformly at random
(``PATH_MIX``): ``TRAIN_STEPS`` = 1500 SFT steps at lr 1e-3 (batch 64, warmup 50, cosine),
deterministic for a seed, ~190 CPU-seconds (1 thread). ``base.json`` in the cache folder
(``$POSTTRAIN_CACHE/embedded/scratch2x3-diverse-v2-seed0``) records each path's held-out greedy
accuracy (the marker forced), which paths free greedy decoding takes, and ``error_overlap``:
P(both wrong) / (P(one wrong) P(other wrong)) per pair of paths, 1 for independent errors.

Measured (v2, 1000 held-out problems of another seed than the plugins'): forced greedy accuracy
c 35.4%, x 51.0%, s 45.4%; error overlap c/x 1.12, c/s 1.09, x/s 1.33 (nearly independent; the
two explicit paths, which differ only in operand order, are the most alike); free greedy 49.0%,
taking x on 44% of problems, s on 32%, c on 24%. The fine-tune costs the column path accuracy
(the reasoning model's greedy is 58%): 1500 steps learn two new formats but do not finish.

A fourth path, left to right (the running total of the leading columns, ``l5;62;632;#632``), was tried in v1 (four paths, same recipe) and dropped: 1500 steps learnt it
to 1.3% forced accuracy (a step's value depends on the carries of columns not yet read), yet
greedy decoding chose it on ~40% of problems; its errors were independent of the others' (overlap
1.00) but it never voted for the right answer.
"""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path

DIVERSE_VERSION = "v2"  # bump when the recipe below changes, so stale caches are not reused
DIVERSE_MODEL = "embedded:reasoning-diverse"  # its --model value
PATHS = ("c", "x", "s")  # a left-to-right path was not learned: see the module docstring
PATH_MIX = {p: 1 / len(PATHS) for p in PATHS}  # share of training solutions written in each path
TRAIN_STEPS = 1500
TRAIN_LR = 1e-3
MAX_NEW_TOKENS = 40  # the longest path, "x" with 4-digit answers, is 31 tokens
WIDTH = 3


# --- the paths (pure functions) -------------------------------------------------------------------


def column_trace(numbers: tuple[int, int], width: int = WIDTH) -> list[str]:
    """Column sums right to left, carry included: (347, 285) -> ["12;", "13;", "6;", "#632"]."""
    from posttrain.embedded.reasoning import trace

    return trace(numbers, width)


def explicit_trace(numbers: tuple[int, int], width: int = WIDTH, swap: bool = False) -> list[str]:
    """Column sums right to left with the digits and the carry written out (``+1`` only when the
    previous column carried); ``swap`` writes b's digit first.

    (347, 285) -> ["7+5=12;", "4+8+1=13;", "3+2+1=6;", "#632"];
    swap -> ["5+7=12;", "8+4+1=13;", "2+3+1=6;", "#632"].
    """
    from posttrain.embedded.reasoning import explicit_columns

    a, b = numbers
    return explicit_columns((b, a) if swap else (a, b), width) + [f"#{a + b}"]


def path_steps(numbers: tuple[int, int], path: str, width: int = WIDTH) -> list[str]:
    """The correct steps of ``path`` (one of ``PATHS``), the marker excluded."""
    if path == "c":
        return column_trace(numbers, width)
    if path == "x":
        return explicit_trace(numbers, width)
    if path == "s":
        return explicit_trace(numbers, width, swap=True)
    raise ValueError(f"unknown path {path!r}; expected one of {', '.join(PATHS)}")


def path_solution(numbers: tuple[int, int], path: str, width: int = WIDTH) -> str:
    """The full completion: marker + steps, e.g. (347, 285), "l" -> "l5;62;632;#632"."""
    return path + "".join(path_steps(numbers, path, width))


def path_of(completion: str) -> str | None:
    """The path a completion took (its first character when it is a marker), else None."""
    return completion[:1] if completion[:1] in PATHS else None


def pick_path(rng: random.Random, mix: dict[str, float] = PATH_MIX) -> str:
    """One path drawn with the mixture's probabilities."""
    return rng.choices(list(mix), weights=list(mix.values()))[0]


def diverse_examples(n: int, seed: int, split: str = "train", mix: dict[str, float] = PATH_MIX) -> list[dict]:
    """``n`` prompt/completion records, each problem solved in a path drawn from ``mix``."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task

    rng = random.Random(f"diverse-{split}-{seed}")
    out = []
    for _ in range(n):
        nums = task.sample(rng, split)
        path = pick_path(rng, mix)
        out.append(
            {
                "prompt": task.prompt(nums),
                "completion": path_solution(nums, path),
                "answer": task.answer(nums),
                "path": path,
            }
        )
    return out


def error_overlap(wrong: dict[str, list[bool]]) -> dict[str, float]:
    """Per pair of paths: P(both wrong) / (P(wrong_1) * P(wrong_2)); 1 = independent errors,
    larger = correlated. wrong = {"c": [T, T, F, F], "x": [T, F, T, F]} -> {"c/x": 0.25 / 0.25 = 1.0}."""
    keys, out = list(wrong), {}
    for i, p in enumerate(keys):
        for q in keys[i + 1 :]:
            n = len(wrong[p])
            both = sum(a and b for a, b in zip(wrong[p], wrong[q], strict=True)) / n
            expected = (sum(wrong[p]) / n) * (sum(wrong[q]) / n)
            out[f"{p}/{q}"] = round(both / expected, 3) if expected else float("nan")
    return out


# --- the model ------------------------------------------------------------------------------------


def path_accuracy(model, tokenizer, n: int = 1000, seed: int = 0) -> dict:
    """Held-out greedy accuracy of each path (marker forced), of free greedy decoding, the share of
    paths greedy picks, and the error overlap between paths."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import is_correct
    from posttrain.generation.decode import generate

    problems = task.prompts(n, seed + 1000, "test")

    def run(prefix: str) -> list[str]:
        prompts = [r["prompt"] + prefix for r in problems]
        return [prefix + t for t in generate(model, tokenizer, prompts, MAX_NEW_TOKENS, batch_size=500)]

    wrong = {}
    for p in PATHS:
        wrong[p] = [not is_correct(t, r["answer"]) for t, r in zip(run(p), problems, strict=True)]
    free = run("")
    picked = [path_of(t) for t in free]
    return {
        "path_accuracy": {p: round(1 - sum(w) / n, 3) for p, w in wrong.items()},
        "greedy_accuracy": round(sum(is_correct(t, r["answer"]) for t, r in zip(free, problems, strict=True)) / n, 3),
        "greedy_path_share": {p: round(picked.count(p) / n, 3) for p in PATHS},
        "error_overlap": error_overlap(wrong),
        "heldout_problems": n,
    }


def diverse_model_dir(seed: int = 0, console=None) -> Path:
    """Folder of the diverse-paths model (shipped for seed 0; other seeds built from the reasoning model)."""
    from posttrain.embedded.model import reasoning_variant_dir

    prepare = functools.partial(build_diverse, seed, console=console)  # prepare(out)
    return reasoning_variant_dir("diverse", DIVERSE_VERSION, prepare, "diverse-paths model", seed, console)


def build_diverse(seed: int, out: Path, console=None) -> dict:
    from posttrain.embedded.model import load_reasoning_model, train_steps

    model, tokenizer, source = load_reasoning_model(seed, console)
    start, cpu = time.time(), time.process_time()
    steps = train_steps(model, tokenizer, diverse_examples(40000, seed), seed, TRAIN_STEPS, TRAIN_LR)
    info = {
        "source": source.name,
        "steps": steps,
        "lr": TRAIN_LR,
        "path_mix": PATH_MIX,
        "train_seconds": round(time.time() - start, 1),
        "train_cpu_seconds": round(time.process_time() - cpu, 1),
    }
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return info | path_accuracy(model, tokenizer, seed=seed)
