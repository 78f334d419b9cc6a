"""Fuzz (hypothesis): mutated catalog entries, run configs and dataset lines each end in success or a
clear one-line UserError, never a traceback, and never leave a partial write behind.

The default suite tries POSTTRAIN_FUZZ_EXAMPLES cases per test (default 30, derandomized so CI is
stable). A longer, random run:

    POSTTRAIN_FUZZ_EXAMPLES=1000 python -m pytest tests/test_fuzz.py -s -p no:randomly

Each test prints how many cases it tried (visible with -s); POSTTRAIN_FUZZ_REPORT=path.json also
writes the counts to a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from posttrain.errors import UserError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("POSTTRAIN_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="POSTTRAIN_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
    database=None,
)
COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    total = sum(COUNTS.values())
    print(f"\nfuzz cases tried: {total} ({', '.join(f'{k} {v}' for k, v in COUNTS.items())})")
    if os.environ.get("POSTTRAIN_FUZZ_REPORT"):
        Path(os.environ["POSTTRAIN_FUZZ_REPORT"]).write_text(json.dumps({"total": total, **COUNTS}, indent=2) + "\n")


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


# --- catalog entries ------------------------------------------------------------------------------

BASE_METHODS = ("sft", "dpo", "lora")


def cited_paper_ids(entry: dict) -> set[str]:
    """Paper ids an entry cites: its papers and the sources of its practitioner fields and results."""
    ids = {p for p in entry["papers"] if isinstance(p, str)}
    claims = [c for name in ("when_to_use", "avoid_when", "failure_modes") for c in entry.get(name, [])]
    claims += [(entry.get("data") or {}).get("amount") or {}, (entry.get("compute") or {}).get("cost_vs_sft") or {}]
    ids |= {c["source"] for c in claims if c.get("source") and not c["source"].startswith("reports/")}
    ids |= {r["paper"] for r in entry.get("results", [])}
    return ids


@pytest.fixture(scope="module")
def mini_catalog():
    """A valid catalog of three methods (their papers, taxonomy), copied to a temporary folder."""
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-catalog-"))
    root = tmp / "catalog"
    (root / "methods").mkdir(parents=True)
    (root / "papers").mkdir()
    shutil.copy(REPO / "catalog" / "taxonomy.yaml", root / "taxonomy.yaml")
    for mid in BASE_METHODS:
        entry = yaml.safe_load((REPO / "catalog" / "methods" / f"{mid}.yaml").read_text())
        entry["related"] = [r for r in entry.get("related", []) if r in BASE_METHODS]
        entry["related_one_way"] = [r for r in entry.get("related_one_way", []) if r in BASE_METHODS]
        if entry.get("lineage") and entry["lineage"].get("parent") not in BASE_METHODS:
            entry.pop("lineage")
        for pid in cited_paper_ids(entry):
            shutil.copy(REPO / "catalog" / "papers" / f"{pid}.yaml", root / "papers" / f"{pid}.yaml")
        (root / "methods" / f"{mid}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False, allow_unicode=True))
    for paper in (root / "papers").iterdir():  # papers may name methods outside the mini catalog
        record = yaml.safe_load(paper.read_text())
        record["methods"] = [m for m in record.get("methods", []) if m in BASE_METHODS]
        paper.write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    from posttrain.catalog.load import validate

    _, problems = validate(root, {m: "posttrain-catalog" for m in BASE_METHODS})
    assert problems == [], problems
    yield root
    shutil.rmtree(tmp, ignore_errors=True)


@st.composite
def catalog_mutation(draw):
    mid = draw(st.sampled_from(BASE_METHODS))
    kind = draw(st.sampled_from(["drop", "set", "add", "insert-text", "truncate", "bytes", "nested"]))
    return mid, kind, draw(st.data())


def _mutate(text: str, kind: str, data) -> bytes:
    entry = yaml.safe_load(text)
    keys = list(entry)
    if kind == "drop":
        entry.pop(data.draw(st.sampled_from(keys)))
    elif kind == "set":
        entry[data.draw(st.sampled_from(keys))] = data.draw(values)
    elif kind == "add":
        entry[data.draw(st.text(min_size=1, max_size=12))] = data.draw(values)
    elif kind == "nested":
        key = data.draw(st.sampled_from([k for k in keys if isinstance(entry[k], list | dict)]))
        if isinstance(entry[key], list) and entry[key]:
            entry[key][data.draw(st.integers(0, len(entry[key]) - 1))] = data.draw(values)
        elif isinstance(entry[key], dict) and entry[key]:
            entry[key][data.draw(st.sampled_from(list(entry[key])))] = data.draw(values)
    else:
        raw = text.encode()
        at = data.draw(st.integers(0, len(raw)))
        if kind == "truncate":
            return raw[:at]
        if kind == "bytes":
            return raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
        return raw[:at] + data.draw(st.text(max_size=20)).encode() + raw[at:]
    return yaml.safe_dump(entry, sort_keys=False, allow_unicode=True).encode()


@FUZZ
@given(catalog_mutation())
def test_fuzz_catalog_entries(mini_catalog, monkeypatch, mutation):
    from posttrain.catalog.load import validate
    from posttrain.cli.main import app

    mid, kind, data = mutation
    path = mini_catalog / "methods" / f"{mid}.yaml"
    original = path.read_bytes()
    before = _snapshot(mini_catalog)
    path.write_bytes(_mutate(original.decode(), kind, data))
    mutated_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        _, problems = validate(mini_catalog, {m: "posttrain-catalog" for m in BASE_METHODS})
        for p in problems:
            _one_line(str(p))
        runner = CliRunner()
        for args in (["validate", str(mini_catalog)], ["show", mid, "--catalog", str(mini_catalog)]):
            result = runner.invoke(app, args, catch_exceptions=True)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                assert isinstance(result.exception, UserError), repr(result.exception)
                _one_line(str(result.exception))
        after = _snapshot(mini_catalog)
        assert after.pop(f"methods/{mid}.yaml") == mutated_hash  # nothing rewrote the entry
        before.pop(f"methods/{mid}.yaml")
        assert after == before  # and nothing else in catalog/ was written
    finally:
        path.write_bytes(original)
    _count("catalog")


# --- run configs (--set and --config) -------------------------------------------------------------

CONFIG_KEYS = ["learning_rate", "max_steps", "batch_size", "schedule", "lora", "lora_target_modules", "parallel"]
CONTEXT_KEYS = ["seed", "device", "model", "dataset", "output_dir"]
set_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=25)


@st.composite
def run_config(draw):
    keys = st.sampled_from(CONFIG_KEYS + ["no_such_option", ""]) | st.text(max_size=10)
    sets = draw(st.lists(st.builds(lambda k, v: f"{k}={v}", keys, set_text) | set_text, max_size=3))
    file_kind = draw(st.sampled_from(["none", "mapping", "context", "text"]))
    file_text = None
    if file_kind == "mapping":
        file_text = yaml.safe_dump(draw(st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=8), values)))
    elif file_kind == "context":
        file_text = yaml.safe_dump(draw(st.dictionaries(st.sampled_from(CONTEXT_KEYS), values, min_size=1)))
    elif file_kind == "text":
        file_text = draw(st.text(max_size=60))
    return sets, file_text


@FUZZ
@given(run_config())
def test_fuzz_run_configs(tmp_path_factory, config):
    from posttrain.runs.runner import prepare

    sets, file_text = config
    tmp = tmp_path_factory.mktemp("cfg")
    config_file = None
    if file_text is not None:
        config_file = tmp / "run.yaml"
        config_file.write_text(file_text, encoding="utf-8")
    out = tmp / "out"
    try:
        prepared = prepare("sft", sets=sets, config_file=config_file, output_dir=out, device="cpu")
    except UserError as exc:
        _one_line(str(exc))
        assert not out.exists()  # an invalid config never creates the run folder
    else:
        assert not prepared.ctx.output_dir.exists()  # created only when the run starts (execute)
        assert isinstance(prepared.ctx.seed, int) and isinstance(prepared.ctx.device, str)
        assert prepared.ctx.model is None or isinstance(prepared.ctx.model, str)
        assert prepared.ctx.dataset is None or isinstance(prepared.ctx.dataset, str)
    _count("run-config")


# --- dataset lines --------------------------------------------------------------------------------

VALID = {
    "sft": [
        {"prompt": "12+30=", "completion": "42"},
        {"messages": [{"role": "user", "content": "1+1="}, {"role": "assistant", "content": "2"}]},
        {"text": "7+8=15"},
    ],
    "preference": [{"prompt": "2+2=", "chosen": "4", "rejected": "5"}],
    "prompt": [{"prompt": "3+4=", "answer": "7"}],
}


@st.composite
def dataset_line(draw):
    kind = draw(st.sampled_from(list(VALID)))
    record = json.loads(json.dumps(draw(st.sampled_from(VALID[kind]))))
    how = draw(st.sampled_from(["drop", "set", "add", "nested", "raw", "truncate", "not-object"]))
    keys = list(record)
    if how == "drop":
        record.pop(draw(st.sampled_from(keys)))
    elif how == "set":
        record[draw(st.sampled_from(keys))] = draw(values)
    elif how == "add":
        record[draw(st.text(max_size=8))] = draw(values)
    elif how == "nested" and "messages" in record:
        record["messages"][draw(st.integers(0, 1))] = draw(values)
    line = json.dumps(record)
    if how == "raw":
        line = draw(st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s))
    elif how == "truncate":
        line = line[: draw(st.integers(0, len(line)))]
    elif how == "not-object":
        line = json.dumps(draw(values))
    return kind, line


@pytest.fixture(scope="module")
def tokenizer():
    from posttrain.embedded.tokenizer import build_tokenizer

    return build_tokenizer()


@FUZZ
@given(dataset_line(), st.integers(0, 3))
def test_fuzz_dataset_lines(tmp_path_factory, tokenizer, case, position):
    from posttrain.data import pad_sequences, task_records, tokenize_preference, tokenize_sft
    from posttrain.interface import RunContext

    kind, bad_line = case
    lines = [json.dumps(VALID[kind][0])] * 4
    lines.insert(position, bad_line)
    path = tmp_path_factory.mktemp("data") / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx = RunContext(output_dir=path.parent, dataset=str(path))
    try:
        train, heldout, _ = task_records(ctx, kind, 100, 10)
        for record in train + heldout:
            if kind == "sft":
                pad_sequences([tokenize_sft(record, tokenizer, 64)], tokenizer.pad_token_id)
            elif kind == "preference":
                pad_sequences(list(tokenize_preference(record, tokenizer, 64)), tokenizer.pad_token_id)
            else:
                from posttrain.data import prompt_ids

                assert prompt_ids(tokenizer, record["prompt"])
    except UserError as exc:
        _one_line(str(exc))
        assert str(path) in str(exc)  # the message names the file (and the line)
    _count("dataset-line")


def test_bad_dataset_through_the_cli_leaves_no_partial_files(tmp_path, cli):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "1+1=", "completion": "2"}\n{"prompt": 5, "completion": "2"}\n')
    out = tmp_path / "run"
    code, message = cli("run", "sft", "--dataset", str(data), "--output-dir", str(out), "--device", "cpu")
    assert code == 2 and "bad.jsonl:2" in message
    _one_line(message)
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert leftovers == []
    for p in out.rglob("*"):
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix in (".yaml", ".jsonl"):
            list(yaml.safe_load_all(p.read_text())) if p.suffix == ".yaml" else [
                json.loads(x) for x in p.read_text().splitlines()
            ]
    assert not (out / "summary.json").exists() and not (out / "model").exists()
