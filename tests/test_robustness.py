"""Robustness suite (#23 item 7): generated datasets, command-line options, --config files and catalog
entries, each through the real CLI in-process (typer's CliRunner). Every case ends either in success
(the input was valid) or in exit status 2 with one line on stderr and no traceback; a failed case
leaves nothing on disk (no run folder, no runs/ in the working directory), and a finished run folder
made before the suite is byte-identical after every case.

Cases stay cheap: option and --config cases stop after `prepare()` (data and option checks; the
training in `execute` is replaced by a stub that only checks nothing was written yet); dataset cases
run for real, so a valid generated dataset trains 1 step of the embedded tiny model.

Two sizes, selected with hypothesis' ``max_examples``:
- the default suite: ROBUST_DEFAULT cases per family (about 100 in all, derandomized so CI is stable);
- ``-m extended``: POSTTRAIN_ROBUST_EXAMPLES cases per family (default 250, so 1,000 in all), random:

      OMP_NUM_THREADS=1 python -m pytest -q -s tests/test_robustness.py -m extended

Each test counts the cases it ran; ``-s`` prints the totals.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from posttrain.errors import UserError

REPO = Path(__file__).resolve().parents[1]
ROBUST_DEFAULT = {"datasets": 30, "options": 30, "configs": 25, "entries": 20}  # 105 cases in all
EXTENDED_PER_FAMILY = int(os.environ.get("POSTTRAIN_ROBUST_EXAMPLES", "250"))
ERROR_LIMIT = 2100  # characters of an error line: errors.MESSAGE_LIMIT plus the "error: " prefix
FAST_SETS = ["--set", "max_steps=1", "--set", "train_examples=8", "--set", "eval_examples=2", "--set", "batch_size=4"]
COUNTS: dict[str, int] = {}


def sized(family: str, extended: bool) -> settings:
    return settings(
        max_examples=EXTENDED_PER_FAMILY if extended else ROBUST_DEFAULT[family],
        deadline=None,
        derandomize=not extended,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


def extended_test(test):
    return pytest.mark.slow(pytest.mark.extended(test))


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    if COUNTS:
        print(f"\nrobustness cases: {sum(COUNTS.values())} ({', '.join(f'{k} {v}' for k, v in COUNTS.items())})")


# --- the CLI, in-process ------------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    """``catalog ARGS`` as ``posttrain.cli.main`` runs it: (exit status, stderr). A UserError becomes
    ``error: <message>`` and status 2, as main() prints it; any other exception fails the case."""
    from posttrain.cli.main import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    exc = result.exception
    if isinstance(exc, UserError):
        return 2, result.stderr + f"error: {exc}\n"
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        pytest.fail(f"catalog {' '.join(map(repr, args))[:500]}: traceback\n{tb}")
    return result.exit_code, result.stderr


def assert_one_line_error(code: int, stderr: str, args: tuple) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, f"exit {code} for {args!r:.500}: {stderr[-2000:]}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr for {args!r:.500}:\n{stderr[-3000:]}"
    assert lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    assert len(lines[0]) <= ERROR_LIMIT, f"a {len(lines[0])}-character error line"


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _count(family: str) -> None:
    COUNTS[family] = COUNTS.get(family, 0) + 1


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The working directory of every case (a run without --output-dir would go to its runs/), and a
    finished 2-step sft run in it that no case may change."""
    root = tmp_path_factory.mktemp("robust")
    finished = root / "finished"
    old_cwd = Path.cwd()
    os.chdir(root)
    try:
        code, stderr = invoke("run", "sft", "--device", "cpu", "--output-dir", str(finished), *FAST_SETS)
        assert code == 0, stderr
        yield root, finished, fingerprint(finished)
    finally:
        os.chdir(old_cwd)


class Case:
    """One case's fresh output folder, and the checks every case ends with."""

    number = 0

    def __init__(self, work):
        self.root, self.finished, self.finished_hashes = work
        Case.number += 1
        self.out = self.root / "cases" / f"out-{Case.number}"

    def check_nothing_changed(self) -> None:
        assert not (self.root / "runs").exists(), "a case wrote runs/ into the working directory"
        assert fingerprint(self.finished) == self.finished_hashes, "the finished run folder changed"

    def check_failure(self, code: int, stderr: str, args: tuple, created: list[Path]) -> None:
        assert_one_line_error(code, stderr, args)
        left = [str(p) for p in created if p.exists()]
        assert not left, f"a failed case left {left}"


@contextlib.contextmanager
def prepare_only():
    """`catalog run` up to prepare() (all of its checks); the run itself (execute, or a budget sweep) is skipped."""

    with (
        mock.patch("posttrain.runs.runner.execute", lambda *a, **k: None),
        mock.patch("posttrain.runs.runner.run_sweep", lambda *a, **k: None),
    ):
        yield


# --- generated values ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
TRICKY_TEXT = [
    "",
    " ",
    "nan",
    "-inf",
    "1e400",
    "-1",
    "0",
    "true",
    "null",
    "[1, 2]",
    "{a: 1}",
    "&a [1, *a]",
    "!!python/object/apply:os.system ['true']",
    "a: b: c",
    "x" * 5000,
    "1,2,3",
    "'unclosed",
    "\x00",
    "é\u202e",
]
tricky = st.sampled_from(TRICKY_TEXT) | st.text(max_size=40)


# --- datasets ---------------------------------------------------------------------------------------

CHAT = [{"role": "user", "content": "1+1="}, {"role": "assistant", "content": "2"}]
TEMPLATES = {
    "sft": [
        {"prompt": "12+30=", "completion": "42"},
        {"messages": CHAT},
        {"text": "7+8=15"},
        {"prompt": CHAT[:1], "completion": CHAT[1:]},
    ],
    "dpo": [
        {"prompt": "2+2=", "chosen": "4", "rejected": "5"},
        {"chosen": "2+2=4", "rejected": "2+2=5"},
        {"prompt": CHAT[:1], "chosen": CHAT[1:], "rejected": [{"role": "assistant", "content": "3"}]},
    ],
}
LINE_MUTATIONS = ["drop", "set", "add", "nested", "raw", "truncate", "not-object", "bad-bytes", "deep"]
FILE_MUTATIONS = ["lines", "empty", "blank-lines", "bom", "crlf", "json-array", "one-record", "huge-value"]


@st.composite
def line_mutation(draw, record: dict) -> bytes:
    how = draw(st.sampled_from(LINE_MUTATIONS))
    record = json.loads(json.dumps(record))
    keys = list(record)
    if how == "drop":
        record.pop(draw(st.sampled_from(keys)))
    elif how == "set":
        record[draw(st.sampled_from(keys))] = draw(values)
    elif how == "add":
        record[draw(st.text(max_size=8))] = draw(values)
    elif how == "nested":
        key = draw(st.sampled_from(keys))
        if isinstance(record[key], list) and record[key]:
            record[key][draw(st.integers(0, len(record[key]) - 1))] = draw(values)
        else:
            record[key] = {"content": record[key], "extra": draw(values)}
    line = json.dumps(record, allow_nan=True).encode()
    if how == "raw":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    if how == "truncate":
        return line[: draw(st.integers(0, len(line)))]
    if how == "not-object":
        return json.dumps(draw(values)).encode()
    if how == "bad-bytes":
        at = draw(st.integers(0, len(line)))
        return (
            line[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf"])) + line[at:]
        )
    if how == "deep":
        depth = draw(st.sampled_from([50, 900, 5000, 100_000]))
        return b'{"prompt": ' + b"[" * depth + b"]" * depth + b', "completion": "1"}'
    return line


@st.composite
def dataset_case(draw) -> tuple[str, str, bytes]:
    """(method, file suffix, file bytes): ten valid records with a few mutated lines or a file-level change."""
    method = draw(st.sampled_from(sorted(TEMPLATES)))
    template = draw(st.sampled_from(TEMPLATES[method]))
    lines = [json.dumps(template).encode()] * 10
    kind = draw(st.sampled_from(FILE_MUTATIONS))
    if kind == "lines":
        for _ in range(draw(st.integers(1, 3))):
            lines.insert(draw(st.integers(0, len(lines))), draw(line_mutation(template)))
    suffix = ".jsonl"
    body = b"\n".join(lines) + b"\n"
    if kind == "empty":
        body = b""
    elif kind == "blank-lines":
        body = b"\n \n".join(lines) + b"\n\n"
    elif kind == "bom":
        body = b"\xef\xbb\xbf" + body
    elif kind == "crlf":
        body = body.replace(b"\n", b"\r\n")
    elif kind == "json-array":
        suffix, body = ".json", json.dumps([json.loads(x) for x in lines] + [draw(values)]).encode()
    elif kind == "one-record":
        body = lines[0] + b"\n"
    elif kind == "huge-value":
        record = dict(template, **{draw(st.sampled_from(list(template))): "9" * 200_000})
        body += json.dumps(record).encode() + b"\n"
    return method, suffix, body


def check_dataset_case(work, case) -> None:
    method, suffix, body = case
    c = Case(work)
    data = c.root / "cases" / f"data-{Case.number}{suffix}"
    data.parent.mkdir(exist_ok=True)
    data.write_bytes(body)
    args = ("run", method, "--dataset", str(data), "--device", "cpu", "--output-dir", str(c.out), *FAST_SETS)
    code, stderr = invoke(*args)
    if code == 0:
        assert json.loads((c.out / "run.json").read_text())["status"] == "finished"
        shutil.rmtree(c.out)
    else:
        c.check_failure(code, stderr, args, [c.out])
        assert str(data) in stderr or data.name in stderr, f"the error does not name the dataset: {stderr}"
    assert data.read_bytes() == body
    data.unlink()
    c.check_nothing_changed()
    _count("datasets")


@sized("datasets", extended=False)
@given(case=dataset_case())
def test_generated_datasets(work, case):
    check_dataset_case(work, case)


@extended_test
@sized("datasets", extended=True)
@given(case=dataset_case())
def test_generated_datasets_extended(work, case):
    check_dataset_case(work, case)


# --- command-line options -----------------------------------------------------------------------------

SFT_FIELDS = ["learning_rate", "max_steps", "batch_size", "train_examples", "eval_examples", "log_every", "seed"]
PATH_KINDS = ["new", "nested-new", "finished", "finished-file", "finished-model", "empty", "nul", "long", "dev-null"]


def a_path(kind: str, c: Case) -> str:
    return {
        "new": str(c.out),
        "nested-new": str(c.out / "a" / "b"),
        "finished": str(c.finished),
        "finished-file": str(c.finished / "metrics.jsonl"),
        "finished-model": str(c.finished / "model"),
        "empty": "",
        "nul": str(c.out) + "\x00x",
        "long": str(c.out / ("n" * 300)),
        "dev-null": "/dev/null/run",
    }[kind]


@st.composite
def option_case(draw) -> dict:
    key = st.sampled_from(SFT_FIELDS + ["no_such_option", " ", "max_steps "]) | st.text(max_size=10)
    sets = draw(st.lists(st.builds(lambda k, v: f"{k}={v}", key, tricky) | tricky, max_size=3))
    maybe = lambda strategy: st.none() | strategy  # noqa: E731
    return {
        "method": draw(st.sampled_from(["sft", "dpo", "sft"]) | st.sampled_from(["", "no-such", "./no-such.py"])),
        "sets": sets,
        "seed": draw(maybe(st.integers(-(2**40), 2**40).map(str) | tricky)),
        "dtype": draw(maybe(st.sampled_from(["auto", "bf16", "fp16", "fp32"]) | tricky)),
        "logit_chunk_size": draw(maybe(st.integers(-(2**40), 2**40).map(str) | tricky)),
        "device": draw(maybe(st.sampled_from(["cpu", "auto", "cuda", "cuda:1", "mps"]) | tricky)),
        "output_dir": draw(maybe(st.sampled_from(PATH_KINDS))),
        "model": draw(maybe(st.sampled_from(["finished-model", "finished", "empty", "new", "nul", "long"]))),
        "dataset": draw(maybe(st.sampled_from(["finished-file", "finished", "empty", "new", "nul", "dev-null"]))),
        "flags": draw(st.lists(st.sampled_from(["--resume", "--overwrite", "--force-resume"]), max_size=2)),
    }


def option_args(case: dict, c: Case) -> tuple:
    args = ["run", case["method"]]
    for item in case["sets"]:
        args += ["--set", item]
    for option in ("seed", "dtype", "logit_chunk_size", "device"):
        if case[option] is not None:
            args += [f"--{option.replace('_', '-')}", case[option]]
    for option in ("output_dir", "model", "dataset"):
        if case[option] is not None:
            args += [f"--{option.replace('_', '-')}", a_path(case[option], c)]
    return (*args, *case["flags"])


def check_option_case(work, case: dict) -> None:
    c = Case(work)
    args = option_args(case, c)
    with prepare_only():
        code, stderr = invoke(*args)
    if code != 0:
        c.check_failure(code, stderr, args, [c.out])
    assert not c.out.exists(), "prepare() created the run folder"
    c.check_nothing_changed()
    _count("options")


SEED_MINUS_ONE = {
    **dict.fromkeys(["seed", "dtype", "logit_chunk_size", "device", "output_dir", "model", "dataset"]),
    "method": "sft",
    "sets": [],
    "flags": [],
}


@sized("options", extended=False)
@given(case=option_case())
@example(case={**SEED_MINUS_ONE, "seed": "abc"})  # click's usage error: one line too
@example(case={**SEED_MINUS_ONE, "logit_chunk_size": "1e400"})
@example(case={**SEED_MINUS_ONE, "sets": ["max_steps=&a [1, *a]"]})
@example(case={**SEED_MINUS_ONE, "sets": ["\x1e"]})  # a control character in the quoted value
@example(case={**SEED_MINUS_ONE, "sets": ["\x1b[2J=1"]})
def test_generated_options(work, case):
    check_option_case(work, case)


@extended_test
@sized("options", extended=True)
@given(case=option_case())
def test_generated_options_extended(work, case):
    check_option_case(work, case)


# --- --config files -----------------------------------------------------------------------------------

CONTEXT_KEYS = ["seed", "device", "model", "dataset", "output_dir"]
ALIAS_BOMB = "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nlearning_rate: *c\n"


@st.composite
def config_text(draw) -> bytes:
    kind = draw(st.sampled_from(["mapping", "context", "text", "bytes", "alias", "documents", "scalar", "big"]))
    if kind == "mapping":
        keys = st.sampled_from(SFT_FIELDS) | st.text(max_size=8)
        mapping = draw(st.dictionaries(keys, values | tricky, max_size=4))
        return yaml.safe_dump(mapping, allow_unicode=True).encode()
    if kind == "context":
        mapping = draw(st.dictionaries(st.sampled_from(CONTEXT_KEYS), values | tricky, min_size=1, max_size=3))
        return yaml.safe_dump(mapping, allow_unicode=True).encode()
    if kind == "text":
        return draw(st.text(max_size=80)).encode()
    if kind == "bytes":
        good = b"max_steps: 1\nlearning_rate: 0.001\n"
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.binary(min_size=1, max_size=6)) + good[at:]
    if kind == "alias":
        return ALIAS_BOMB.encode()
    if kind == "documents":
        return b"max_steps: 1\n---\nmax_steps: 2\n"
    if kind == "scalar":
        return draw(st.sampled_from([b"[1, 2]", b"42", b"'text'", b"~", b"- max_steps: 1"]))
    return b"# padding\n" * 110_000  # over the 1 MiB --config limit


def check_config_case(work, text: bytes, where: str) -> None:
    c = Case(work)
    config = c.root / "cases" / f"config-{Case.number}.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_bytes(text)
    path = {"file": config, "missing": config.with_suffix(".nope"), "folder": config.parent}[where]
    args = ("run", "sft", "--config", str(path), "--device", "cpu", "--output-dir", str(c.out))
    with prepare_only():
        code, stderr = invoke(*args)
    if code != 0:
        c.check_failure(code, stderr, args, [c.out])
    assert not c.out.exists(), "prepare() created the run folder"
    assert config.read_bytes() == text
    config.unlink()
    c.check_nothing_changed()
    _count("configs")


where_strategy = st.sampled_from(["file"] * 8 + ["missing", "folder"])


@sized("configs", extended=False)
@given(text=config_text(), where=where_strategy)
@example(text=b"max_steps: 1\xff\n", where="file")  # not UTF-8
@example(text=ALIAS_BOMB.encode(), where="file")
def test_generated_config_files(work, text, where):
    check_config_case(work, text, where)


@extended_test
@sized("configs", extended=True)
@given(text=config_text(), where=where_strategy)
def test_generated_config_files_extended(work, text, where):
    check_config_case(work, text, where)


# --- catalog entries ----------------------------------------------------------------------------------

ENTRY = "dpo"
PAYLOADS = [
    "<script>alert(1)</script>",
    "[x](javascript:alert(1))",
    '<img src=x onerror="alert(1)">',
    "x" * 20_000,
    "&a [1, *a]",
]


@pytest.fixture(scope="module")
def entry_catalog(tmp_path_factory):
    """A copy of the catalog (taxonomy, papers, methods) whose ``dpo`` entry each case rewrites."""
    root = tmp_path_factory.mktemp("catalog") / "catalog"
    shutil.copytree(REPO / "catalog", root)
    code, stdout = _validate(root)
    assert code == 0, stdout
    return root


NAMES_A_FILE = re.compile(r"^[^:\n]+\.yaml:\d+: ")


def _validate(root: Path) -> tuple[int, str]:
    from posttrain.cli.main import app

    result = CliRunner().invoke(app, ["validate", str(root)], catch_exceptions=True)
    exc = result.exception
    if isinstance(exc, UserError):
        return 2, f"error: {exc}"
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        pytest.fail(f"catalog validate: traceback\n{tb}")
    return result.exit_code, result.stdout + result.stderr


@st.composite
def entry_mutation(draw) -> tuple[str, object]:
    """(how, what): a field set to a random value or payload, a nested value, or the file's raw bytes."""
    how = draw(st.sampled_from(["set", "add", "nested", "payload", "truncate", "bytes"]))
    if how in ("set", "add", "nested"):
        return how, draw(values)
    if how == "payload":
        return how, draw(st.sampled_from(PAYLOADS))
    return how, draw(st.binary(min_size=1, max_size=8))


def mutated_entry(text: str, how: str, what, data) -> bytes:
    entry = yaml.safe_load(text)
    keys = list(entry)
    if how in ("set", "payload"):
        entry[data.draw(st.sampled_from(keys))] = what
    elif how == "add":
        entry[data.draw(st.text(min_size=1, max_size=12))] = what
    elif how == "nested":
        key = data.draw(st.sampled_from([k for k in keys if isinstance(entry[k], list | dict) and entry[k]]))
        if isinstance(entry[key], list):
            entry[key][data.draw(st.integers(0, len(entry[key]) - 1))] = what
        else:
            entry[key][data.draw(st.sampled_from(list(entry[key])))] = what
    else:
        raw = text.encode()
        at = data.draw(st.integers(0, len(raw)))
        return raw[:at] if how == "truncate" else raw[:at] + what + raw[at:]
    return yaml.safe_dump(entry, sort_keys=False, allow_unicode=True).encode()


def check_entry_case(root: Path, mutation, data) -> None:
    path = root / "methods" / f"{ENTRY}.yaml"
    original = path.read_bytes()
    before = fingerprint(root)
    mutated = mutated_entry(original.decode(), *mutation, data)
    path.write_bytes(mutated)
    try:
        code, output = _validate(root)
        assert code in (0, 2), f"exit {code}: {output[-2000:]}"
        lines = output.strip().splitlines()
        if code == 2:
            assert lines and "Traceback" not in output, output
            problems = lines[:-1] if lines[-1].endswith("problem(s) found") else lines
            for line in problems:
                assert line.startswith("error: ") or NAMES_A_FILE.match(line), (
                    f"a problem line naming no file: {line!r:.300}"
                )
                assert len(line) <= ERROR_LIMIT, f"a {len(line)}-character problem line"
        else:
            assert lines[-1].startswith("ok: "), output
        after = fingerprint(root)
        assert after.pop(f"methods/{ENTRY}.yaml") == hashlib.sha256(mutated).hexdigest()
        before.pop(f"methods/{ENTRY}.yaml")
        assert after == before, "catalog validate wrote into the catalog"
    finally:
        path.write_bytes(original)
    _count("entries")


@sized("entries", extended=False)
@given(mutation=entry_mutation(), data=st.data())
def test_generated_catalog_entries(entry_catalog, mutation, data):
    check_entry_case(entry_catalog, mutation, data)


@extended_test
@sized("entries", extended=True)
@given(mutation=entry_mutation(), data=st.data())
def test_generated_catalog_entries_extended(entry_catalog, mutation, data):
    check_entry_case(entry_catalog, mutation, data)


# --- two processes, one run folder --------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_process_on_a_locked_folder_gets_one_line(tmp_path):
    """Two real `catalog run` processes on one --output-dir: while the first holds the folder's lock,
    the second ends with one line and exit 2, and writes nothing into the folder."""
    from posttrain.runs.runfolder import LOCK_FILE

    out = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "plugins")])}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "posttrain", "run", "sft", "--device", "cpu", "--output-dir", str(out)]
    first = subprocess.Popen(
        [*command, "--set", "max_steps=100000", "--set", "save_every=100000"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _locked_by(out / LOCK_FILE, first.pid):
            assert first.poll() is None, f"the first run ended early: {first.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.2)
        second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"another run (pid {first.pid}) is writing to this folder" in lines[0]
        assert first.poll() is None, "the first run did not outlive the second"
        owner = json.loads((out / "run.json").read_text())
        assert owner["status"] == "running" and owner["pid"] == first.pid  # still the first run's folder
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        first.stderr.close()


def _locked_by(lock: Path, pid: int) -> bool:
    try:
        return lock.read_text().strip() == str(pid)
    except OSError:
        return False


# --- what the suite found, pinned -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "sft", "--seed", "abc"), "error: catalog run: Invalid value for '--seed'"),
        (("run", "sft", "--sed", "1"), "error: catalog run: No such option: --sed"),
        (("runn",), "error: catalog: No such command 'runn'"),
        (("embedded", "verify", "--nope"), "error: catalog embedded verify: No such option: --nope"),
        (("run", "sft", "--seed", "\x1b[31m\x1e"), "error: catalog run: Invalid value for '--seed': "),
    ],
)
def test_a_usage_error_is_one_line(args, expected):
    """Click's usage errors were four lines (usage, hint, blank, error); now one, as every bad input."""
    from posttrain.cli.main import app

    result = CliRunner().invoke(app, list(args), prog_name="catalog")
    assert result.exit_code == 2 and result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_config_file_that_is_not_utf8_names_line_and_column(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"max_steps: 1\nlearning_rate: 0.1\xff\n")
    code, stderr = invoke("run", "sft", "--config", str(config), "--output-dir", str(tmp_path / "out"))
    assert_one_line_error(code, stderr, ())
    assert f"error: --config {config}:2: not UTF-8 text (byte 0xff at column 19)" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["\x1d", "\x1b[2J", "a\nb", "\u2028"])
def test_a_field_named_by_a_control_character_stays_on_its_problem_line(entry_catalog, name):
    """Found by the extended run: a field named '\\x1d' split its `catalog validate` problem in two."""
    path = entry_catalog / "methods" / f"{ENTRY}.yaml"
    original = path.read_bytes()
    entry = yaml.safe_load(original)
    entry[name] = None
    path.write_text(yaml.safe_dump(entry, sort_keys=False, allow_unicode=True), encoding="utf-8")
    try:
        code, output = _validate(entry_catalog)
    finally:
        path.write_bytes(original)
    lines = output.strip().splitlines()
    assert code == 2 and lines[-1].endswith("problem(s) found"), output
    assert all(NAMES_A_FILE.match(line) for line in lines[:-1]), output
    assert any(": unknown field" in line for line in lines) and "\x1b" not in output, output
