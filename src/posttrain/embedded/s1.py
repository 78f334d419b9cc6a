"""The embedded s1 model: the reasoning model fine-tuned on traces that re-check themselves after "Wait".

s1 (Muennighoff et al. 2025, arXiv:2501.19393) applies budget forcing to a model fine-tuned (SFT)
on 1,000 reasoning traces (s1K) whose thinking checks itself; "Wait" then starts a re-check the
model knows how to do. The embedded reasoning model never saw "Wait" (extending its thinking gives
0%), so this module writes such traces for the scratchpad task and continues the reasoning model's
training on them, the way s1 fine-tunes Qwen2.5-32B-Instruct:

- a *re-check* recomputes the sum column by column, writing the column's digits and the carry
  next to each sum, after the problem rewritten with aligned operands, ``347+285=`` ->
  ``347+285:7+5=12;4+8+1=13;3+2+1=6;``: each sum is then a local addition of the digits just
  written instead of a lookup of prompt digits plus a carry;
- an *s1 trace* is a first attempt, ``Wait``, the re-check and the answer read off the last pass:
  ``12;13;6;Wait347+285:7+5=12;4+8+1=13;3+2+1=6;#632``;
- the mixture (``S1_MIX``): plain scratchpads that end at ``#`` directly, and s1 traces whose
  first attempt is correct, a coherent wrong one (``wrong_trace``), or the reasoning model's own
  greedy first pass; a share carries a second ``Wait`` after a re-check (possibly wrong) so that
  forcing a second extension stays in distribution.

Training-split problems only (``s1_examples`` refuses a held-out one); the held-out split is kept
for evaluation. Preparation (2000 steps, batch 64, lr 1e-3: ~530 CPU-seconds, 1 thread, ~9 min wall
on a loaded 2-core machine, over the ~3 minutes of the other embedded models: shorter fine-tunes
did not learn the re-check, e.g. 650-800 steps at lr 3e-3 re-check worse than the first pass) is
deterministic for a seed and cached in
``$POSTTRAIN_CACHE/embedded/scratch2x3-s1-v2-seed0``; ``s1.json`` records its held-out greedy and
forced-re-check accuracy (89.0% and 93.5% on 200 problems of seed 1000).

Deviations from s1's fine-tune: the traces are generated, not distilled from a stronger model;
in s1 traces the loss covers the whole trace, here the first attempt and the ``Wait`` are part of
the prompt (no loss on them), so the model does not learn to write wrong first passes and never
says "Wait" on its own: extending is left to budget forcing, as the budget-forcing plugin measures.
"""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path

S1_VERSION = "v2"  # bump when the recipe below changes, so stale caches are not reused
CONTINUATION = "Wait"
HEADER_END = ":"  # ends the re-check's rewritten problem
S1_MIX = {"plain": 0.4, "correct": 0.15, "wrong": 0.2, "own": 0.15, "twice": 0.1}
S1_TRAIN_PROBLEMS = 20000
S1_STEPS = 2000
S1_LR = 1e-3
EMBEDDED_S1_MODEL = "embedded:reasoning-s1"  # the --model value that names this model


# --- the trace format (pure Python) ---------------------------------------------------------------


def recheck(numbers: tuple[int, ...], width: int, errors: dict[int, int] | None = None) -> list[str]:
    """The explicit re-check: the problem rewritten with aligned operands (``HEADER_END``), then
    right to left ``digit+digit(+carry)=sum;`` per column.

    recheck((347, 85), 3) == ["347+085:", "7+5=12;", "4+8+1=13;", "3+0+1=4;"]; ``errors`` maps a
    column to a sum offset (a wrong re-check whose later columns carry on from it, like
    ``reasoning.trace``).
    """
    from posttrain.embedded.reasoning import explicit_columns

    a, b = numbers
    # the aligned rewrite puts every column's digits at a fixed offset: the copy errors on short
    # operands (713+99 read as 8+9) were most of the unaligned re-check's mistakes
    return [f"{a:0{width}d}+{b:0{width}d}{HEADER_END}"] + explicit_columns(numbers, width, errors)


def answer_of_pass(steps: list[str]) -> str:
    """The answer read off a pass of column sums (right to left): its last digits, then the carry.

    answer_of_pass(["7+5=12;", "4+8+1=13;", "3+2+1=6;"]) == "632" (also for "12;13;6;").
    """
    sums = [int(step.rstrip(";").rpartition("=")[2]) for step in steps if step.endswith(";")]
    digits = "".join(str(s % 10) for s in reversed(sums))
    return str(int(("1" if sums and sums[-1] >= 10 else "") + digits))


def s1_trace(first: list[str], numbers: tuple[int, ...], width: int = 3) -> str:
    """A first attempt (its steps, no answer), ``Wait``, the re-check and the answer of the re-check.

    s1_trace(["12;", "13;", "6;"], (347, 285)) == "12;13;6;Wait347+285:7+5=12;4+8+1=13;3+2+1=6;#632".
    """
    again = recheck(numbers, width)
    return "".join(first) + CONTINUATION + "".join(again) + "#" + answer_of_pass(again)


def thinking_steps(text: str) -> list[str]:
    """The steps of a completion before its answer mark: "12;13;6;#632" -> ["12;", "13;", "6;"]."""
    from posttrain.embedded.reasoning import split_steps

    return [s for s in split_steps(text.partition("#")[0]) if s.endswith(";")]


def s1_examples(problems: list[dict], own: list[str], seed: int) -> list[dict]:
    """The s1 fine-tune's records (``prompt``/``completion``/``kind``) of training problems.

    ``own[i]`` is the reasoning model's greedy completion of ``problems[i]``; the kind of each
    record is drawn with ``S1_MIX``. Plain: the scratchpad. Others: the prompt holds the problem,
    a first attempt and ``Wait`` (no loss there), the completion is the re-check and the answer."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import wrong_trace

    if len(own) != len(problems):
        raise ValueError(f"{len(problems)} problems but {len(own)} own completions")
    rng = random.Random(f"s1-examples-{seed}")
    kinds, weights = zip(*S1_MIX.items(), strict=True)
    out = []
    for record, text in zip(problems, own, strict=True):
        nums = tuple(record["numbers"])
        if task.is_heldout(nums):
            raise ValueError(
                f"{task.prompt(nums)} is a held-out problem; the s1 model trains on training problems only"
            )
        kind = rng.choices(kinds, weights)[0]
        prompt, correct = task.prompt(nums), task.steps(nums)[:-1]
        if kind == "plain":
            out.append({"prompt": prompt, "completion": task.solution(nums), "kind": kind})
            continue
        first = {
            "correct": correct,
            "wrong": wrong_trace(nums, task.digits, rng)[:-1],
            "own": thinking_steps(text) or correct,
        }.get(kind)
        if kind == "twice":  # a first pass, Wait, a re-check (wrong half the time), Wait again
            errors = {rng.randrange(task.digits): rng.choice([-10, 10, -1, 1])} if rng.random() < 0.5 else None
            first = correct + [CONTINUATION] + recheck(nums, task.digits, errors)
        full = s1_trace(first, nums, task.digits)
        cut = len("".join(first)) + len(CONTINUATION)
        out.append({"prompt": prompt + full[:cut], "completion": full[cut:], "kind": kind})
    return out


# --- preparation ---------------------------------------------------------------------------------


def s1_model_dir(seed: int = 0, console=None) -> Path:
    """Folder of the embedded s1 model (shipped for seed 0; other seeds built from the reasoning model)."""
    from posttrain.embedded.model import reasoning_variant_dir

    prepare = functools.partial(build_s1, seed, console=console)  # prepare(out)
    return reasoning_variant_dir("s1", S1_VERSION, prepare, "s1 reasoning model", seed, console, "s1.json")


def forced_accuracy(model, tokenizer, n: int = 200, seed: int = 0) -> dict:
    """Held-out greedy accuracy, and the accuracy when the first pass's ``#`` is replaced by ``Wait``
    and the model re-checks (one forced extension, what budget forcing does at its default)."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import is_correct
    from posttrain.generation.decode import generate

    problems = task.prompts(n, seed + 1000, "test")
    prompts = [r["prompt"] for r in problems]
    greedy = generate(model, tokenizer, prompts, max_new_tokens=24, batch_size=n)
    forced = [p + t.partition("#")[0] + CONTINUATION for p, t in zip(prompts, greedy, strict=True)]
    again = generate(model, tokenizer, forced, max_new_tokens=48, batch_size=n)

    def acc(texts):
        return round(sum(is_correct(t, r["answer"]) for t, r in zip(texts, problems, strict=True)) / n, 3)

    return {"heldout_greedy_accuracy": acc(greedy), "heldout_forced_recheck_accuracy": acc(again)}


def build_s1(seed: int, out: Path, console=None) -> dict:
    import torch

    from posttrain.embedded.model import load_reasoning_model, train_steps
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.generation.decode import generate

    model, tokenizer, source = load_reasoning_model(seed, console)
    start = time.process_time()
    problems = task.prompts(S1_TRAIN_PROBLEMS, seed, "train")
    with torch.no_grad():
        own = generate(model, tokenizer, [r["prompt"] for r in problems], max_new_tokens=24, batch_size=500)
    records = s1_examples(problems, own, seed)
    steps = train_steps(model, tokenizer, records, seed, S1_STEPS, S1_LR)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    kinds = {k: sum(r["kind"] == k for r in records) for k in S1_MIX}
    return {
        "source": source.name,
        "steps": steps,
        "lr": S1_LR,
        "train_problems": len(problems),
        "mixture": kinds,
        "cpu_seconds": round(time.process_time() - start, 1),
    } | forced_accuracy(model, tokenizer, seed=seed)
