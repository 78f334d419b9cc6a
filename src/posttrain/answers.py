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
ANSWER_MARK = "#"  # ends a rationale: "... so the sum is 82 # 82"


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


def final_answer(text: str) -> str | None:
    """The answer of a completion that may carry a rationale: the integer after the last '#', else the last one."""
    tail = text.rsplit(ANSWER_MARK, 1)[-1] if ANSWER_MARK in text else text
    found = _NUMBER.findall(tail)
    if not found:
        return None
    return found[0] if ANSWER_MARK in text else found[-1]


def final_answer_correct(text: str, answer: str) -> bool:
    got = final_answer(text)
    return got is not None and got.lstrip("0") == str(answer).strip().lstrip("0")
