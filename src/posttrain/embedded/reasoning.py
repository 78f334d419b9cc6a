"""The embedded reasoning task: multi-digit addition solved column by column, every step checkable.

A problem ``347+285=`` is solved as a scratchpad of column steps, right to left, each step the
column's sum including the carry from the previous column (``7+5=12``, ``4+8+1=13``, ``3+2+1=6``),
then the final answer after ``#``::

    347+285=  ->  12;13;6;#632

Every step can be checked on its own, which gives what test-time search and process supervision
need on a tiny offline model: chain-of-thought data, step-level labels for a process reward model,
steps to search over, and coherent wrong traces (one step wrong, the rest carried on from it).
The same model is also trained on three sub-skills, each behind its own prompt prefix:

- ``V:`` verify: ``V:347+285=<attempt>`` -> ``y`` or ``n`` (is the attempt, a full solution or a
  step prefix, correct so far?),
- ``R:`` refine: ``R:347+285=<wrong attempt>|`` -> a correct scratchpad,
- ``P:`` polish: ``P:<noisy problem>`` -> the canonical problem ``347+285=`` (noise: spaces,
  leading zeros).

No torch here: pure Python, deterministic for a given seed. The held-out split is a hash of the
operands, as in :mod:`posttrain.embedded.task`.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from posttrain.embedded.task import AdditionTask

STEP_END = ";"
ANSWER_MARK = "#"
VERIFY, REFINE, POLISH = "V:", "R:", "P:"
REFINE_END = "|"
_ANSWER = re.compile(r"#\s*(\d+)")


@dataclass(frozen=True)
class ScratchpadTask(AdditionTask):
    """Problems, prompts and answers as in :class:`AdditionTask` (3 digits, two operands: the
    scratchpad is written for two); a held-out split of its own; scratchpad data below."""

    digits: int = 3

    @property
    def name(self) -> str:
        return f"scratch2x{self.digits}"

    def is_heldout(self, numbers: tuple[int, ...]) -> bool:
        digest = hashlib.sha256(("scratch:" + ",".join(map(str, numbers))).encode()).digest()
        return digest[0] / 256 < self.heldout_share

    def steps(self, numbers: tuple[int, ...]) -> list[str]:
        """The correct scratchpad as a list of steps, the last one being the answer ``#632``."""
        return trace(numbers, self.digits)

    def solution(self, numbers: tuple[int, ...]) -> str:
        return "".join(self.steps(numbers))

    # --- data ----------------------------------------------------------------------------------
    def prompts(self, n: int, seed: int, split: str = "test") -> list[dict]:
        """Records with ``prompt``, ``answer`` (the checker's reference) and ``numbers``."""
        rng = random.Random(f"scratch-prompts-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            out.append({"prompt": self.prompt(nums), "answer": self.answer(nums), "numbers": list(nums)})
        return out

    def sft_examples(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """``prompt``/``completion`` pairs whose completion is the full correct scratchpad."""
        rng = random.Random(f"scratch-sft-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            out.append({"prompt": self.prompt(nums), "completion": self.solution(nums), "answer": self.answer(nums)})
        return out

    def preference_pairs(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """Full-solution pairs: chosen = correct scratchpad, rejected = a coherent wrong trace."""
        rng = random.Random(f"scratch-pref-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            wrong = wrong_trace(nums, self.digits, rng)
            out.append({"prompt": self.prompt(nums), "chosen": self.solution(nums), "rejected": "".join(wrong)})
        return out

    def step_pairs(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """Step-level pairs (Step-DPO): a correct prefix, then the correct vs. a wrong next step."""
        rng = random.Random(f"scratch-steppref-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            good = self.steps(nums)
            wrong = wrong_trace(nums, self.digits, rng)
            k = first_error(nums, wrong, self.digits)
            assert k is not None
            out.append(
                {
                    "prompt": self.prompt(nums) + "".join(good[:k]),
                    "chosen": good[k],
                    "rejected": wrong[k],
                    "answer": self.answer(nums),
                }
            )
        return out

    def verify_examples(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """``V:`` examples over full solutions and step prefixes, half of them wrong."""
        rng = random.Random(f"scratch-verify-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            steps = self.steps(nums) if rng.random() < 0.5 else wrong_trace(nums, self.digits, rng)
            cut = len(steps) if rng.random() < 0.5 else rng.randrange(1, len(steps) + 1)
            attempt = "".join(steps[:cut])
            ok = all(step_labels(nums, steps[:cut], self.digits))
            out.append({"prompt": verify_prompt(self.prompt(nums), attempt), "completion": "y" if ok else "n"})
        return out

    def refine_examples(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """``R:`` examples: a wrong attempt (full trace or bare wrong answer) -> the correct scratchpad."""
        rng = random.Random(f"scratch-refine-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            wrong = wrong_trace(nums, self.digits, rng)
            attempt = "".join(wrong) if rng.random() < 0.7 else wrong[-1]
            out.append({"prompt": refine_prompt(self.prompt(nums), attempt), "completion": self.solution(nums)})
        return out

    def noisy_prompts(self, n: int, seed: int, split: str = "test") -> list[dict]:
        """Problems written sloppily (spaces, leading zeros), with the canonical form and answer."""
        rng = random.Random(f"scratch-noisy-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            out.append(
                {
                    "prompt": noisy_problem(nums, rng),
                    "canonical": self.prompt(nums),
                    "answer": self.answer(nums),
                    "numbers": list(nums),
                }
            )
        return out

    def polish_examples(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """``P:`` examples: noisy problem -> canonical problem."""
        return [
            {"prompt": POLISH + r["prompt"], "completion": r["canonical"]}
            for r in self.noisy_prompts(n, seed + 7919, split)
        ]


# --- traces -----------------------------------------------------------------------------------


def trace(numbers: tuple[int, ...], width: int, errors: dict[int, int] | None = None) -> list[str]:
    """Column steps right to left, then ``#answer``; ``errors`` maps a column to a sum offset
    (a wrong step); later steps carry on correctly from whatever carry the wrong step produced,
    and the answer is read off the steps, so a wrong trace is coherent, like a learner's."""
    a, b = numbers
    carry, out, digits = 0, [], []
    for k in range(width):
        da, db = (a // 10**k) % 10, (b // 10**k) % 10
        s = max(0, min(19, da + db + carry + (errors or {}).get(k, 0)))
        out.append(f"{s}{STEP_END}")
        digits.append(s % 10)
        carry = s // 10
    value = int("".join(map(str, reversed(digits)))) + carry * 10**width
    out.append(f"{ANSWER_MARK}{value}")
    return out


def explicit_columns(numbers: tuple[int, ...], width: int, errors: dict[int, int] | None = None) -> list[str]:
    """Column steps right to left with the digits and carry written out, ``digit+digit(+1)=sum;``
    (``+1`` only when the previous column carried); ``errors`` as in ``trace``.

    (347, 285) -> ["7+5=12;", "4+8+1=13;", "3+2+1=6;"]."""
    a, b = numbers
    carry, out = 0, []
    for k in range(width):
        da, db = (a // 10**k) % 10, (b // 10**k) % 10
        s = max(0, min(19, da + db + carry + (errors or {}).get(k, 0)))
        out.append(f"{da}+{db}{'+1' if carry else ''}={s};")
        carry = s // 10
    return out


def wrong_trace(numbers: tuple[int, ...], width: int, rng: random.Random) -> list[str]:
    """A coherent trace with one wrong column sum (dropped carry, extra carry or a digit off)."""
    correct = trace(numbers, width)
    while True:
        column = rng.randrange(width)
        wrong = trace(numbers, width, {column: rng.choice([-10, 10, -1, 1, 2, -2])})
        if wrong != correct:
            return wrong


def split_steps(text: str) -> list[str]:
    """Steps of a (possibly partial) scratchpad: each ends with ``;`` or is the ``#answer``."""
    steps, rest = [], text
    while rest:
        if rest.startswith(ANSWER_MARK):
            match = re.match(r"#\d*", rest)
            steps.append(match.group(0))  # type: ignore[union-attr]
            break
        end = rest.find(STEP_END)
        if end < 0:
            steps.append(rest)
            break
        steps.append(rest[: end + 1])
        rest = rest[end + 1 :]
    return steps


def step_labels(numbers: tuple[int, ...], steps: list[str], width: int = 3) -> list[bool]:
    """Per step: is the solution still correct up to and including this step? Once a step is
    wrong every later step is labelled wrong (the answer can no longer be right), the hard
    reachability label of Math-Shepherd computed exactly instead of by rollouts."""
    good = trace(numbers, width)
    labels, ok = [], True
    for i, step in enumerate(steps):
        ok = ok and i < len(good) and step == good[i]
        labels.append(ok)
    return labels


def first_error(numbers: tuple[int, ...], steps: list[str], width: int = 3) -> int | None:
    labels = step_labels(numbers, steps, width)
    return labels.index(False) if False in labels else None


def extract_answer(text: str) -> str | None:
    """The number after the last ``#``, or None when the scratchpad never reached an answer."""
    found = _ANSWER.findall(text)
    return found[-1] if found else None


def is_correct(completion: str, answer: str) -> bool:
    got = extract_answer(completion)
    return got is not None and got.lstrip("0") == str(answer).strip().lstrip("0")


def parse_problem(prompt: str) -> tuple[int, ...] | None:
    """Operands of a canonical problem ``a+b=`` (None when it is not one)."""
    match = re.fullmatch(r"(\d+)\+(\d+)=", prompt.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def verify_prompt(problem: str, attempt: str) -> str:
    return f"{VERIFY}{problem}{attempt}"


def refine_prompt(problem: str, attempt: str) -> str:
    return f"{REFINE}{problem}{attempt}{REFINE_END}"


def noisy_problem(numbers: tuple[int, ...], rng: random.Random) -> str:
    """The problem with random spaces and leading zeros (the same operands, the same answer)."""
    parts = []
    for n in numbers:
        parts.append("0" * rng.choice([0, 1, 1, 2]) + str(n))
    sep = rng.choice(["+", " +", "+ ", " + ", "  + "])
    return rng.choice(["", " "]) + sep.join(parts) + rng.choice(["=", " =", " = "])


DEFAULT_REASONING_TASK = ScratchpadTask()
EMBEDDED_REASONING_MODEL = "embedded:reasoning"


def reasoning_records(kind: str, n_train: int, n_eval: int, seed: int) -> tuple[list[dict], list[dict], str]:
    """(train, held-out, source) of the reasoning task, like :func:`posttrain.data.task_records`.

    kind: ``sft`` (scratchpad solutions), ``preference`` (full-solution pairs), ``step-preference``
    (Step-DPO pairs), ``prompt`` (problems with answers), ``noisy-prompt`` (sloppily written
    problems), ``verify`` (``V:`` yes/no examples).
    """
    from posttrain.data import EVAL_SEED

    task = DEFAULT_REASONING_TASK
    makers = {
        "sft": task.sft_examples,
        "preference": task.preference_pairs,
        "step-preference": task.step_pairs,
        "prompt": task.prompts,
        "noisy-prompt": task.noisy_prompts,
        "verify": task.verify_examples,
    }
    if kind not in makers:
        raise ValueError(f"unknown reasoning data kind {kind!r}; expected one of {', '.join(makers)}")
    make = makers[kind]
    return make(n_train, seed, "train"), make(n_eval, EVAL_SEED, "test"), task.name
