"""What a run prints while it works: phase lines (``announce``) and warnings (``warn``), no torch."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_announcer: ContextVar[Any] = ContextVar("posttrain_announcer", default=None)


@contextlib.contextmanager
def announcing(console) -> Iterator[None]:
    """Route :func:`announce` to ``console`` (``catalog run`` does, for the run's duration)."""
    token = _announcer.set((console, time.perf_counter()))
    try:
        yield
    finally:
        _announcer.reset(token)


def announce(message: str) -> None:
    """One line saying what the run is doing now, with the seconds since it started, flushed at once
    so it shows in a piped log; silent outside ``catalog run`` (tests, library use)."""
    console, start = _announcer.get() or (None, 0.0)
    if console is None:
        return
    console.print(f"[{time.perf_counter() - start:6.1f} s] {message}", markup=False, highlight=False)
    console.file.flush()


def warn(message: str) -> None:
    """A warning on stderr, one line, flushed at once (also outside ``catalog run``: it is about the data)."""
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)
