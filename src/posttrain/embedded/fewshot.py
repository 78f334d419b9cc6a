"""Few-shot pages for the embedded reasoning model: the in-context variant that `cot` runs on.

The reasoning base model (``reasoning_model_dir``) only ever saw one problem per sequence, so a
few-shot prompt is out of its distribution and it answers nothing (0% with one exemplar or more).
Language models learn in context because their pretraining text holds many examples of one format
in a row. This module writes such text for the scratchpad task and continues the reasoning
model's training on it:

- a *page* is up to ``MAX_SHOTS`` solved problems, one per line, then an unsolved one;
- all problems of a page share one format, drawn per page: worked (the scratchpad, ``12;13;6;#632``)
  or direct (the answer only, ``#632``);
- the loss is on the last problem's solution, so the format must be read off the exemplars.

Wei et al. 2022's comparison then holds on the tiny model: standard prompting (direct exemplars)
against chain-of-thought prompting (worked exemplars) of the same questions.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

FEWSHOT_VERSION = "v1"
MAX_SHOTS = 4
DIRECT_SHARE = 0.5  # share of pages written in the direct (answer-only) format
SEPARATOR = "\n"
ANSWER_MARK = "#"
TRAIN_STEPS = 1500


def direct_answer(worked: str) -> str:
    """A worked solution's answer part: "12;13;6;#632" -> "#632"."""
    cut = worked.rfind(ANSWER_MARK)
    return worked[cut:] if cut >= 0 else worked


def page(shots: list[dict], question: dict, direct: bool) -> dict:
    """One page as a prompt/completion record (records with ``prompt`` and a worked ``completion``).

    page([{"prompt": "1+2=", "completion": "3;#3"}], {"prompt": "4+5=", "completion": "9;#9"}, True)
    == {"prompt": "1+2=#3\\n4+5=#", "completion": "9"}.
    """
    if direct:
        lines = "".join(s["prompt"] + direct_answer(s["completion"]) + SEPARATOR for s in shots)
        return {
            "prompt": lines + question["prompt"] + ANSWER_MARK,
            "completion": direct_answer(question["completion"])[1:],
        }
    lines = "".join(s["prompt"] + s["completion"] + SEPARATOR for s in shots)
    return {"prompt": lines + question["prompt"], "completion": question["completion"]}


def pages(n: int, seed: int) -> list[dict]:
    """``n`` training pages with 0 to ``MAX_SHOTS`` exemplars each (training split problems only)."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task

    pool = task.sft_examples(4 * n, seed)
    rng = random.Random(f"fewshot-pages-{seed}")
    out = []
    for _ in range(n):
        k = rng.randint(0, MAX_SHOTS)
        chosen = rng.sample(pool, k + 1)
        out.append(page(chosen[:k], chosen[k], rng.random() < DIRECT_SHARE))
    return out


def fewshot_accuracy(model, tokenizer, shots: int, direct: bool, n: int = 200, seed: int = 0) -> float:
    """Held-out accuracy with ``shots`` training-split exemplars in the given format, greedy."""
    return round(sum(fewshot_outcomes(model, tokenizer, shots, direct, n, seed)) / n, 3)


def fewshot_outcomes(model, tokenizer, shots: int, direct: bool, n: int = 200, seed: int = 0) -> list[bool]:
    """Per held-out problem (the same ``n`` problems for a seed, whatever the format): correct or not."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import is_correct
    from posttrain.generation.decode import generate

    exemplars = task.sft_examples(shots, seed + 7)
    questions = task.prompts(n, seed + 1000, "test")
    records = [page(exemplars, {"prompt": q["prompt"], "completion": ""}, direct) for q in questions]
    texts = generate(model, tokenizer, [r["prompt"] for r in records], max_new_tokens=16, batch_size=n)
    prefix = ANSWER_MARK if direct else ""
    return [is_correct(prefix + t.split(SEPARATOR)[0], q["answer"]) for t, q in zip(texts, questions, strict=True)]


def fewshot_model_dir(seed: int = 0, console=None) -> Path:
    """Folder of the few-shot reasoning model (shipped for seed 0; other seeds built from the reasoning model)."""
    from posttrain.embedded.model import reasoning_variant_dir

    prepare = functools.partial(build_fewshot, seed, console=console)  # prepare(out)
    return reasoning_variant_dir("fewshot", FEWSHOT_VERSION, prepare, "few-shot reasoning model", seed, console)


def build_fewshot(seed: int, out: Path, console=None) -> dict:
    from posttrain.embedded.model import load_reasoning_model, train_steps

    model, tokenizer, source = load_reasoning_model(seed, console)
    steps = train_steps(model, tokenizer, pages(40000, seed), seed, TRAIN_STEPS, lr=1e-3)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    scores = {
        f"{'direct' if direct else 'worked'}_{k}_shot_accuracy": fewshot_accuracy(
            model, tokenizer, k, direct, seed=seed
        )
        for k in (0, MAX_SHOTS)
        for direct in (True, False)
    }
    return {"source": source.name, "pages_steps": steps, "max_shots": MAX_SHOTS, "direct_share": DIRECT_SHARE} | scores
