"""Run model-written code in a separate, limited process (for rewards that execute code).

    from posttrain.scoring.sandbox import run_untrusted, code_execution_reward
    result = run_untrusted("print(int(input()) * 2)", "21", timeout=2.0)   # result.stdout == "42\n"
    reward = code_execution_reward(completion, {"tests": [{"input": "21", "output": "42"}]})
    reward = code_execution_reward(completion, {"tests": ["assert double(21) == 42"]})

The RL reward ``code-tests`` (``--set rewards='[code-tests]'``, ``posttrain.scoring.rewards``) is
``code_execution_factory``: the share of a record's ``tests`` the completion's last code block passes.

What limits the child (a fresh ``python -I -S`` process in an empty temporary folder, own session):
- wall-clock ``timeout`` (the whole process group is killed) and RLIMIT_CPU;
- RLIMIT_AS (address space), RLIMIT_FSIZE (largest file), RLIMIT_NOFILE (open files),
  RLIMIT_NPROC (no fork bombs) and RLIMIT_CORE = 0;
- an empty environment; when started as root, the child drops to user ``nobody`` so the
  process limit applies and the rest of the file system is not writable (using the system
  ``python3`` when this interpreter lives in a folder ``nobody`` cannot enter);
- an audit hook, installed before the untrusted code runs, that refuses process creation
  (fork, exec, spawn, system, subprocess), sockets and ctypes.

This is defence in depth for rewards on benchmark-style code, not a jail for hostile code: there
is no seccomp or namespace isolation here. For adversarial settings run the trainer in a
container (or gVisor / firejail) as well. No torch import here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from posttrain.errors import UserError

DEFAULT_MEMORY_MB = 512
DEFAULT_FILE_MB = 16
OUTPUT_LIMIT = 64_000  # characters of stdout/stderr kept

# Runs first in the child: blocks process creation, sockets and ctypes for the code that follows.
_PRELUDE = r"""
import sys
_BLOCKED = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
            "socket.", "ctypes.", "pty.")
def _guard(event, args):
    if event.startswith(_BLOCKED):
        raise PermissionError(f"sandbox: {event} is not allowed")
sys.addaudithook(_guard)
del _guard
_code = sys.argv[1]
sys.argv = ["solution.py"]
exec(compile(_code, "solution.py", "exec"), {"__name__": "__main__"})
"""


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    returncode: int | None
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _limits(cpu_seconds: int, memory_mb: int, file_mb: int, drop_to: tuple[int, int] | None):
    def apply() -> None:
        import resource

        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * mb, memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * mb, file_mb * mb))
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if drop_to is not None:
            os.setgroups([])
            os.setgid(drop_to[1])
            os.setuid(drop_to[0])
        # The current user's other processes count too, so 0 new processes means: no fork at all.
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))

    return apply


def _others_can_run(path: str) -> bool:
    """The file and every folder above it are open to other users (the dropped-to ``nobody``)."""
    import stat

    current = Path(path)
    if not current.is_file() or not current.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in current.parents)


def _interpreter(drop_to: tuple[int, int] | None) -> str:
    """This Python, or (when dropping to nobody and ours sits in a private folder) a system python3."""
    own = os.path.realpath(sys.executable)
    if drop_to is None or _others_can_run(own):
        return own
    for folder in ("/usr/bin", "/usr/local/bin", "/bin"):
        candidate = os.path.realpath(os.path.join(folder, "python3"))
        if _others_can_run(candidate):
            return candidate
    return ""


def _unprivileged() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return nobody.pw_uid, nobody.pw_gid


def run_untrusted(
    code: str,
    input: str = "",
    timeout: float = 5.0,
    memory_mb: int = DEFAULT_MEMORY_MB,
    file_mb: int = DEFAULT_FILE_MB,
) -> SandboxResult:
    """Run Python ``code`` with ``input`` on stdin in a limited child process; never raises for
    anything the code does (errors, crashes, timeouts are in the result)."""
    if timeout <= 0:
        raise UserError(f"sandbox timeout must be positive (got {timeout})")
    drop_to = _unprivileged()
    python = _interpreter(drop_to)
    if not python:  # no interpreter that user nobody may run: keep the limits, skip the drop
        drop_to, python = None, os.path.realpath(sys.executable)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="posttrain-sandbox-") as workdir:
        if drop_to is not None:
            os.chown(workdir, *drop_to)
        proc = subprocess.Popen(
            [python, "-I", "-S", "-c", _PRELUDE, code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,
            preexec_fn=_limits(max(1, int(timeout + 0.999)), memory_mb, file_mb, drop_to),
        )
        timed_out = False
        try:
            out, err = proc.communicate(input.encode("utf-8", "replace"), timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()
        returncode = proc.returncode
        if returncode == -signal.SIGXCPU:  # RLIMIT_CPU (set to the timeout) fired before the wall clock did
            timed_out = True
    return SandboxResult(
        stdout=out.decode("utf-8", "replace")[:OUTPUT_LIMIT],
        stderr=err.decode("utf-8", "replace")[-OUTPUT_LIMIT:],
        returncode=None if timed_out else returncode,
        timed_out=timed_out,
        seconds=time.perf_counter() - t0,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


# --- the code-execution reward --------------------------------------------------------------------

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(completion: str) -> str:
    """The last fenced code block of a completion (```python ... ```), else the whole text."""
    blocks = _FENCE.findall(completion)
    return blocks[-1] if blocks else completion


def outputs_match(actual: str, expected: str) -> bool:
    """Token-wise comparison, as competitive-programming judges do (whitespace-insensitive)."""
    return actual.split() == str(expected).split()


def passes_io_test(code: str, test: dict, timeout: float) -> bool:
    """A stdin/stdout test: the program reads ``test["input"]`` and prints ``test["output"]``."""
    result = run_untrusted(code, str(test.get("input", "")), timeout=timeout)
    return result.ok and outputs_match(result.stdout, str(test["output"]))


def passes_assert_test(code: str, test: str, timeout: float) -> bool:
    """An assert test (MBPP / HumanEval style, e.g. ``assert add(2, 3) == 5``) run after the code."""
    return run_untrusted(f"{code}\n\n{test}\n", timeout=timeout).ok


def passes_test(code: str, test: dict | str, timeout: float) -> bool:
    if isinstance(test, str):
        return passes_assert_test(code, test, timeout)
    return passes_io_test(code, test, timeout)


def code_execution_reward(completion: str, record: dict, timeout: float = 2.0) -> float:
    """Share of the record's tests the completion's code passes: 0.0 .. 1.0.

    ``record["tests"]`` is a list of tests, each ``{"input": str, "output": str}`` (the program reads
    stdin and writes stdout) or an assert statement as a string (run after the code). A record
    without tests scores 0.0; a test that times out or crashes fails.
    """
    tests = record.get("tests") or []
    if not tests:
        return 0.0
    code = extract_code(completion)
    return sum(passes_test(code, test, timeout) for test in tests) / len(tests)


TESTS_EXPECTED = 'a list of {"input": ..., "output": ...} objects or assert strings'


def check_tests(record: dict) -> None:
    """A clear error unless ``record["tests"]`` is a non-empty list of io objects or assert strings."""
    where = f"reward code-tests: record {record.get('_line', '?')}"
    tests = record.get("tests")
    if not isinstance(tests, list) or not tests:
        raise UserError(f"{where} has no 'tests' (expected {TESTS_EXPECTED})")
    for test in tests:
        if not (isinstance(test, str) and test.strip()) and not (isinstance(test, dict) and "output" in test):
            raise UserError(f"{where}: {str(test)[:60]!r} is not a test (expected {TESTS_EXPECTED})")


def code_execution_rewards(prompts, completions, records, timeout: float = 2.0) -> list[float]:
    """Batch form with the reward-function signature of ``posttrain.scoring.rewards``:
    ``(prompts, completions, records) -> [share of each record's tests passed]``."""
    if len(completions) != len(records):
        raise UserError(f"reward code-tests: {len(completions)} completions but {len(records)} records")
    for record in records:
        check_tests(record)
    return [code_execution_reward(c, r, timeout) for c, r in zip(completions, records, strict=True)]


def code_execution_factory(options=None, argument: str = ""):
    """Factory of the ``code-tests`` reward (``posttrain.scoring.rewards``): ``code-tests`` or
    ``code-tests:SECONDS`` (per-test timeout, default 2)."""
    try:
        timeout = float(argument) if argument else 2.0
    except ValueError:
        raise UserError(f"reward code-tests:{argument}: expected a timeout in seconds") from None
    if not timeout > 0:
        raise UserError(f"reward code-tests:{argument}: the timeout must be positive")

    def reward(prompts, completions, records) -> list[float]:
        return code_execution_rewards(prompts, completions, records, timeout)

    return reward
