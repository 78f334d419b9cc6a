"""The embedded task: integer addition with verifiable answers.

Problems are ``a+b=`` with operands below 10**digits; the answer is the decimal sum. The split
into train and held-out problems is a fixed function of the operands (a hash), so it is the same
on every machine and no held-out problem is ever trained on. The task provides:

- SFT examples (``prompt``/``completion``),
- preference pairs (``prompt``/``chosen``/``rejected``) whose rejected answers are the mistakes a
  learner of addition makes (a dropped carry, an extra carry, a digit off by one),
- prompts with a checker (``answer``; ``posttrain.answers.is_correct``) for evaluation, RL and
  test-time search.

No torch here: this module is pure Python and deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class AdditionTask:
    digits: int = 2
    operands: int = 2
    heldout_share: float = 0.1

    @property
    def name(self) -> str:
        return f"add{self.operands}x{self.digits}"

    # --- problems -----------------------------------------------------------------------------
    def is_heldout(self, numbers: tuple[int, ...]) -> bool:
        digest = hashlib.sha256(",".join(map(str, numbers)).encode()).digest()
        return digest[0] / 256 < self.heldout_share

    def sample(self, rng: random.Random, split: str) -> tuple[int, ...]:
        want_heldout = split == "test"
        while True:
            numbers = tuple(rng.randrange(10**self.digits) for _ in range(self.operands))
            if self.is_heldout(numbers) == want_heldout:
                return numbers

    @staticmethod
    def prompt(numbers: tuple[int, ...]) -> str:
        return "+".join(map(str, numbers)) + "="

    @staticmethod
    def answer(numbers: tuple[int, ...]) -> str:
        return str(sum(numbers))

    # --- data in the formats TRL users have -------------------------------------------------
    def sft_examples(self, n: int, seed: int, split: str = "train") -> list[dict]:
        rng = random.Random(f"sft-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            out.append({"prompt": self.prompt(nums), "completion": self.answer(nums)})
        return out

    def prompts(self, n: int, seed: int, split: str = "test") -> list[dict]:
        rng = random.Random(f"prompts-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            out.append({"prompt": self.prompt(nums), "answer": self.answer(nums)})
        return out

    def preference_pairs(self, n: int, seed: int, split: str = "train") -> list[dict]:
        rng = random.Random(f"pref-{split}-{seed}")
        out = []
        for _ in range(n):
            nums = self.sample(rng, split)
            correct = self.answer(nums)
            out.append({"prompt": self.prompt(nums), "chosen": correct, "rejected": plausible_mistake(nums, rng)})
        return out


def plausible_mistake(numbers: tuple[int, ...], rng: random.Random) -> str:
    """A wrong answer of the kind a learner makes: dropped carry, spurious carry, or one digit off."""
    correct = sum(numbers)
    candidates = {_sum_without_carries(numbers), correct + 10, correct - 10, correct + 1, correct - 1}
    digits = list(str(correct))
    i = rng.randrange(len(digits))
    digits[i] = str((int(digits[i]) + rng.choice([1, 9])) % 10)
    candidates.add(int("".join(digits)))
    candidates = sorted(c for c in candidates if c != correct and c >= 0)
    return str(rng.choice(candidates))


def _sum_without_carries(numbers: tuple[int, ...]) -> int:
    width = max(len(str(n)) for n in numbers)
    cols = [sum((n // 10**k) % 10 for n in numbers) % 10 for k in range(width)]
    return sum(d * 10**k for k, d in enumerate(cols))


DEFAULT_TASK = AdditionTask()
