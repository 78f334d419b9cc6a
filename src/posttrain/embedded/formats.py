"""The embedded addition task in the data formats of the SFT presets: instructions (Alpaca-style
templates, some held out), multi-turn conversations (a running sum over turns) and short
rationales (column-by-column sums before the answer, in the reasoning task's scratchpad style). Pure Python, deterministic per seed.

The held-out split of problems is the task's (a hash of the operands), so no held-out problem is
trained on in any format.
"""

from __future__ import annotations

import random

from posttrain.embedded.task import DEFAULT_TASK, AdditionTask

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"

# Instruction phrasings: the first ones are trained on, the last are only seen at evaluation, so
# the held-out score measures following an unseen instruction (FLAN's zero-shot question).
TRAIN_TEMPLATES = [
    "Add: {a}+{b}",
    "What is {a}+{b}?",
    "Compute {a}+{b}.",
    "Give the sum {a}+{b}.",
    "{a}+{b} = ?",
    "Work out {a}+{b}.",
]
HELDOUT_TEMPLATES = ["Tell me {a}+{b}.", "Please evaluate {a}+{b}"]


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    if input_text:
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_PROMPT.format(instruction=instruction)


def flan_prompt(instruction: str) -> str:
    """FLAN-style zero-shot input: the instruction text itself, then a newline before the answer."""
    return instruction + "\n"


def chat_prompt(instruction: str) -> list[dict]:
    """The instruction as the user turn of a conversation (rendered by the tokenizer's chat template)."""
    return [{"role": "user", "content": instruction}]


def instruction_examples(
    n: int,
    seed: int,
    split: str = "train",
    task: AdditionTask = DEFAULT_TASK,
    style: str = "chat",
    templates: str | None = None,
) -> list[dict]:
    """prompt (an instruction around ``a+b``: a chat user turn, FLAN-style plain text, or the Alpaca template) /
    completion (the sum) / answer records. ``templates``: ``"seen"`` (TRAIN_TEMPLATES) or
    ``"unseen"`` (HELDOUT_TEMPLATES); default seen for the train split, unseen for the test split."""
    rng = random.Random(f"instruction-{split}-{seed}")
    which = templates or ("seen" if split == "train" else "unseen")
    pool = TRAIN_TEMPLATES if which == "seen" else HELDOUT_TEMPLATES
    render = {"alpaca": alpaca_prompt, "flan": flan_prompt, "chat": chat_prompt}[style]
    out = []
    for _ in range(n):
        a, b = task.sample(rng, split)
        instruction = rng.choice(pool).format(a=a, b=b)
        answer = str(a + b)
        out.append({"prompt": render(instruction), "completion": answer, "answer": answer})
    return out


def conversations(n: int, seed: int, split: str = "train", turns: int = 3, task: AdditionTask = DEFAULT_TASK):
    """``messages`` records: the user starts with ``a+b=``, then adds numbers (``plus c``); each
    assistant turn is the running total, so later answers depend on earlier turns."""
    rng = random.Random(f"dialogue-{split}-{seed}")
    out = []
    for _ in range(n):
        a, b = task.sample(rng, split)
        total = a + b
        messages = [{"role": "user", "content": f"{a}+{b}="}, {"role": "assistant", "content": str(total)}]
        for _ in range(turns - 1):
            c = rng.randrange(10)
            total += c
            messages += [{"role": "user", "content": f"plus {c}"}, {"role": "assistant", "content": str(total)}]
        out.append({"messages": messages})
    return out


def last_turn_prompts(records: list[dict]) -> list[dict]:
    """Evaluation records: the conversation up to the last user turn as ``prompt``, its reply as ``answer``."""
    return [{"prompt": r["messages"][:-1], "answer": r["messages"][-1]["content"]} for r in records]


def rationale(numbers: tuple[int, ...]) -> str:
    """Column sums from the units up, each with the carry in, then the answer after ``#`` (the
    reasoning task's scratchpad style): 47+29 -> '16;7;#76' (7+9 = 16, carry 1; 4+2+1 = 7)."""
    width = max(len(str(n)) for n in numbers)
    steps, carry = [], 0
    for k in range(width):
        column = sum((n // 10**k) % 10 for n in numbers) + carry
        steps.append(str(column))
        carry = column // 10
    return ";".join(steps) + f";#{sum(numbers)}"


def rationale_examples(n: int, seed: int, split: str = "train", task: AdditionTask = DEFAULT_TASK) -> list[dict]:
    """prompt ``a+b=`` / completion rationale + answer / answer records."""
    rng = random.Random(f"rationale-{split}-{seed}")
    out = []
    for _ in range(n):
        numbers = task.sample(rng, split)
        out.append({"prompt": task.prompt(numbers), "completion": rationale(numbers), "answer": task.answer(numbers)})
    return out
