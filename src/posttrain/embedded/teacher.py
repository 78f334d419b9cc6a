"""The embedded teacher for the distillation plugins: a larger tiny Llama trained well on the task.

Hidden 96, 3 layers, 4 heads, MLP 384 (~0.47M parameters, 3.2x the base student), same byte-level
tokenizer as the base, trained on two formats of the addition task: ``a+b=`` -> answer, and
``explain: a+b=`` -> a column-by-column rationale ending in the answer
(``posttrain.embedded.formats.rationale``), so it can serve logit distillation (kd, gkd) and write
rationales (distill-step-by-step, cot-distill). Trained once, until held-out exact match on both
formats reaches ``TEACHER_TARGET`` (checked every ``TEACHER_CHECK_EVERY`` steps, or the step cap), and
cached beside the base model. Sized so that preparation takes a few minutes at most on 2 CPU cores
(the earlier hidden-128 / 4-layer recipe was too slow to finish on a loaded machine).
"""

from __future__ import annotations

import math
from pathlib import Path

from posttrain.embedded.model import build_model, cache_root, cached_model
from posttrain.embedded.task import DEFAULT_TASK, AdditionTask

TEACHER_SHAPE = dict(
    hidden_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, intermediate_size=384
)
TEACHER_TARGET = 0.9
TEACHER_CHECK_EVERY = 100
TEACHER_MAX_STEPS = 3000
TEACHER_VERSION = "v2"  # bump when the recipe below changes, so stale caches are not reused
RATIONALE_PREFIX = "explain: "  # the teacher's instruction for writing a rationale


def teacher_model_dir(task: AdditionTask = DEFAULT_TASK, seed: int = 0, console=None) -> Path:
    """Folder of the teacher: shipped for the default task and seed 0, else built on first use and cached."""
    from posttrain.embedded.frozen import shipped_dir

    if task == DEFAULT_TASK and seed == 0:
        return shipped_dir("teacher")
    target = cache_root() / "embedded" / f"{task.name}-teacher-{TEACHER_VERSION}-seed{seed}"
    return cached_model(
        target, lambda out: _train_teacher(task, seed, out, console), "teacher model", console, marker="teacher.json"
    )


def build_teacher(seed: int, out: Path, console=None) -> dict:
    """The teacher's recipe, trained into ``out`` (``catalog embedded build teacher``)."""
    return _train_teacher(DEFAULT_TASK, seed, out, console)


def teacher_examples(task: AdditionTask, n: int, seed: int, split: str = "train") -> list[dict]:
    """Half answer-only records, half ``explain:`` rationale records."""
    from posttrain.embedded.formats import rationale_examples

    plain = task.sft_examples(n // 2, seed, split)
    explained = [
        {**r, "prompt": RATIONALE_PREFIX + r["prompt"]} for r in rationale_examples(n - n // 2, seed, split, task)
    ]
    return plain + explained


def _train_teacher(task: AdditionTask, seed: int, out: Path, console=None) -> dict:
    import torch

    from posttrain.answers import final_answer_correct
    from posttrain.data import pad_sequences, tokenize_prompt_completion
    from posttrain.embedded.formats import rationale_examples
    from posttrain.embedded.tokenizer import build_tokenizer
    from posttrain.evaluation import exact_match
    from posttrain.generation.decode import generate
    from posttrain.logprobs import completion_nll

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed, TEACHER_SHAPE)
    examples = [tokenize_prompt_completion(r, tokenizer) for r in teacher_examples(task, 40000, seed)]
    plain_heldout = task.prompts(200, seed=seed + 1000, split="test")
    explained_heldout = [
        {**r, "prompt": RATIONALE_PREFIX + r["prompt"]} for r in rationale_examples(100, seed + 1000, "test", task)
    ]
    total_steps, warmup, batch = TEACHER_MAX_STEPS, 50, 64
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    )
    g = torch.Generator().manual_seed(seed)
    plain = explained = 0.0
    step = 0
    for step in range(1, total_steps + 1):
        idx = torch.randint(len(examples), (batch,), generator=g).tolist()
        model.train()
        loss = completion_nll(model, pad_sequences([examples[i] for i in idx], tokenizer.pad_token_id))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % TEACHER_CHECK_EVERY == 0:
            plain = exact_match(model, tokenizer, plain_heldout, batch_size=200)["exact_match"]
            outs = generate(model, tokenizer, [r["prompt"] for r in explained_heldout], max_new_tokens=32)
            explained = sum(
                final_answer_correct(o, r["answer"]) for o, r in zip(outs, explained_heldout, strict=True)
            ) / len(outs)
            if console is not None:
                console.print(
                    f"  teacher step {step}: held-out exact match {plain:.2f}, with rationale {explained:.2f}"
                )
            if min(plain, explained) >= TEACHER_TARGET:
                break
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "task": task.name,
        "seed": seed,
        "steps": step,
        "heldout_exact_match": plain,
        "heldout_rationale_exact_match": explained,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
