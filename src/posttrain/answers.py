"""Reading the final answer out of a completion: the numeric checker of evaluation and rewards, and
the answer a test-time-scaling method votes on or groups by (self-consistency, confidence sampling,
compute-optimal).

    extract_answer("the sum is 82, check 80+2")  == "82"     # first integer
    is_correct(" 082 and more", "82")            is True     # first integer equals the reference
    answer_of("carry 1, so 7+8=15\\nanswer 015") == "15"     # last integer, leading zeros stripped

Pure Python, no torch.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d+")


def extract_answer(text: str) -> str | None:
    """The first integer in a completion, or None."""
    match = _NUMBER.search(text)
    return match.group(0) if match else None


def is_correct(completion: str, answer: str) -> bool:
    """The numeric checker: the completion's first integer equals the reference answer."""
    got = extract_answer(completion)
    return got is not None and got.lstrip("0") == str(answer).strip().lstrip("0")


def answer_of(completion: str) -> str:
    """The final answer of a completion: its last integer, else the stripped text."""
    numbers = _NUMBER.findall(completion)
    if numbers:
        return numbers[-1].lstrip("0") or "0"
    return completion.strip()
