"""Turn a `catalog run` command line into a validated config and run context, run the plugin, and
write the run folder: config.yaml, metrics.jsonl, summary.json, plot.png and the model.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shlex
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from posttrain.catalog import yamlsafe
from posttrain.errors import UserError, clipped, quoted
from posttrain.interface import Plugin, RunContext, RunResult
from posttrain.registry import discover, load, load_file, suggest

CONTEXT_KEYS = {"model", "dataset", "seed", "device", "output_dir"}
DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32")
CONFIG_FILE_LIMIT = 1024 * 1024  # bytes in a --config file (a few hundred is typical)


@dataclass
class PreparedRun:
    method: str
    plugin: Plugin
    config: BaseModel
    ctx: RunContext
    command: str
    resolved: dict[str, Any] | None = None  # what config.yaml records (see resolved_run)
    overwrite: bool = False  # --overwrite: replace the run artifacts already in the folder


def resolve_plugin(method: str) -> tuple[str, Plugin]:
    """A method id or alias from the catalog, a registered plugin name, or a user's .py file."""
    name, plugin, _ = resolve_method(method)
    return name, plugin


def resolve_method(method: str) -> tuple[str, Plugin, dict[str, Any]]:
    """``resolve_plugin`` plus the Config values the method's entry runs its plugin with (``run_as.set``:
    ``catalog run high-entropy-token-rl`` is grpo with top_entropy_fraction=0.2); {} for a plugin name
    or a file."""
    if method.endswith(".py"):
        plugin = load_file(Path(method))
        return plugin.id, plugin, {}
    specs = discover()
    if method in specs:
        return method, load(method), {}
    from posttrain.catalog.load import load_catalog

    try:
        cat = load_catalog()
    except UserError:
        cat = None
    entry = cat.resolve(method) if cat else None
    if entry is not None:
        if entry.plugin is None:
            raise UserError(
                f"'{entry.id}' is catalogued but has no runnable plugin yet ({entry.status_note or 'status catalogued'})"
            )
        return entry.id, load(entry.plugin), dict(entry.run_as.set) if entry.run_as else {}
    names = sorted(set(specs) | (set(cat.methods) if cat else set()))
    raise UserError(f"unknown method '{method}'{suggest(method, names)} (see `catalog list --runnable`)")


def parse_sets(sets: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {clipped(item)}: expected key=value")
        try:
            out[key.strip()] = yamlsafe.load(raw) if raw.strip() else ""
        except yamlsafe.AliasError as exc:
            raise UserError(f"--set {clipped(key.strip())}: {exc}") from None
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def read_run_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"--config {path}: file does not exist")
    size = path.stat().st_size
    if size > CONFIG_FILE_LIMIT:
        raise UserError(f"--config {path}: {size} bytes, at most {CONFIG_FILE_LIMIT} expected for a file of options")
    from posttrain.data import read_text  # bytes that are not UTF-8: one line naming line and column

    try:
        text = read_text(path)
    except UserError as exc:
        raise UserError(f"--config {exc}") from None
    try:
        data = yamlsafe.load(text)
    except yamlsafe.AliasError as exc:
        raise UserError(f"--config {path}:{exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"--config {path}:{mark.line + 1 if mark else 1}: invalid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option: value")
    return data


def build_config(plugin: Plugin, values: dict[str, Any], origin: dict[str, str]) -> BaseModel:
    fields = plugin.config.model_fields
    removed = getattr(plugin.config, "removed_options", {})  # option: why this plugin has none of it
    for key in values:
        if key in removed:
            raise UserError(f"{origin.get(key, '--set')} {clipped(key)}: not an option of {plugin.id}: {removed[key]}")
        if key not in fields:
            hint = suggest(key, list(fields))
            raise UserError(
                f"{origin.get(key, '--set')} {clipped(key)}: unknown option for {plugin.id}{hint} "
                f"(see `catalog show {plugin.id}`)"
            )
    try:
        return plugin.config.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(config)"
        where = origin.get(str(err["loc"][0]) if err["loc"] else "", "--set")
        raise UserError(f"{where} {clipped(key)}: {err['msg']} (got {quoted(err.get('input'))})") from None


def check_context_values(values: dict[str, Any], config_file: Path | None) -> None:
    """Run-file values that go to the RunContext: seed an integer, the others strings."""
    for key, value in values.items():
        expected_int = key == "seed"
        ok = (isinstance(value, int) and not isinstance(value, bool)) if expected_int else isinstance(value, str)
        if not ok or (isinstance(value, str) and not value.strip()):
            expected = "an integer" if expected_int else "a non-empty string"
            raise UserError(f"--config {config_file}: {key}: expected {expected} (got {quoted(value, 60)})")


def default_output_dir(method: str, resume: bool) -> Path:
    """``runs/ID/TIMESTAMP``; with --resume the newest folder there that holds a run of ID (a saved
    model or anything else kept under runs/ID is never taken for one)."""
    from posttrain.runs.runfolder import read_owner

    base = Path("runs") / method
    if resume:
        folders = sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []
        runs = [p for p in folders if (read_owner(p) or {}).get("method") == method]
        if not runs:
            raise UserError(f"--resume: no earlier run of {method} under {base} (pass --output-dir)")
        return runs[-1]
    return base / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


SEED_RANGE = (0, 2**32 - 1)  # what numpy's seed accepts


def check_run_options(model: str | None, dataset: str | None, seed: int | None) -> None:
    """Command-line values that no later step would explain well: empty names, a seed out of range."""
    for option, value in (("--model", model), ("--dataset", dataset)):
        if value is not None and not value.strip():
            raise UserError(f"{option}: expected a name or a path, got an empty string")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise UserError(f"--seed {seed}: expected an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}")


def resolved_run(method: str, plugin: Plugin, config: BaseModel, ctx: RunContext) -> dict[str, Any]:
    """The resolved configuration config.yaml records (and a resume is compared with)."""
    return {
        "method": method,
        "plugin": plugin.id,
        "model": ctx.model or "embedded",
        "dataset": ctx.dataset or "embedded",
        "seed": ctx.seed,
        "device": ctx.device,
        "dtype": ctx.dtype,
        "gradient_checkpointing": ctx.gradient_checkpointing,
        "logit_chunk_size": ctx.logit_chunk_size,
        "config": config.model_dump(mode="json"),
    }


def check_sources(ctx: RunContext) -> None:
    """A local --model folder and --dataset path exist (checked again, in full, when they load), so a
    mistyped path fails before the run folder is made."""
    from posttrain.data import check_dataset_path
    from posttrain.hf import checked_model_path

    for option, value, check in (
        ("--model", ctx.model, lambda v: checked_model_path(v, "--model", adapters=True)),
        ("--dataset", ctx.dataset, check_dataset_path),
    ):
        if value is None or value.startswith("embedded:"):
            continue
        try:
            check(value)
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise UserError(f"{option} {value[:200]!r}: not a usable path ({exc.strerror or exc})") from None


def check_run_folder(prepared: PreparedRun, force_resume: bool) -> None:
    """Before anything is written: a new run takes a new or empty folder (or --overwrite), a resume
    only a run of the same method and options (or --force-resume) with a valid checkpoint."""
    from posttrain.runs import runfolder

    ctx = prepared.ctx
    runfolder.check_writable_parent(ctx.output_dir)
    if not ctx.resume:
        runfolder.check_new_run(ctx.output_dir, prepared.overwrite, ctx.dataset)
        return
    step = _resume_step(ctx.output_dir)
    runfolder.check_resume(ctx.output_dir, prepared.method, prepared.resolved or {}, step, force_resume)
    if step is None and prepared.plugin.kind == "trainer":
        raise UserError(f"--resume: no valid checkpoint in {ctx.output_dir / 'checkpoints'}")


def prepare(
    method: str,
    *,
    model: str | None = None,
    dataset: str | None = None,
    sets: list[str] | None = None,
    config_file: Path | None = None,
    output_dir: Path | None = None,
    device: str = "auto",
    seed: int | None = None,
    resume: bool = False,
    trust_remote_code: bool = False,
    dtype: str = "auto",
    gradient_checkpointing: bool = False,
    logit_chunk_size: int = 0,
    smoke: bool = False,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    force_resume: bool = False,
) -> PreparedRun:
    check_run_options(model, dataset, seed)
    resume = resume or force_resume
    if resume and overwrite:
        raise UserError("--resume and --overwrite: pass one of them (continue the run, or replace it)")
    name, plugin, entry_values = resolve_method(method)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    file_values = read_run_file(config_file) if config_file else {}
    context_from_file = {k: file_values.pop(k) for k in list(file_values) if k in CONTEXT_KEYS}
    check_context_values(context_from_file, config_file)
    if seed is None and "seed" in context_from_file:
        check_run_options(None, None, context_from_file["seed"])
    if smoke:
        values.update(plugin.smoke)
    values.update(entry_values)  # what makes the entry's method of its plugin, under any --config or --set
    origin.update({k: f"catalog/methods/{name}.yaml run_as.set:" for k in entry_values})
    values.update(file_values)
    origin.update({k: f"--config {config_file}:" for k in file_values})
    values.update(extra or {})
    set_values = parse_sets(sets or [])
    values.update(set_values)
    origin.update({k: "--set" for k in set_values})
    config = build_config(plugin, values, origin)
    if dtype not in DTYPE_CHOICES:
        raise UserError(f"--dtype {dtype}: expected one of {', '.join(DTYPE_CHOICES)}")
    if logit_chunk_size < 0:
        raise UserError(f"--logit-chunk-size {logit_chunk_size}: expected 0 (off) or a positive number of tokens")

    from posttrain import distributed
    from posttrain.hf import resolve_device  # imports torch: only now that the input is known to be valid

    run_device = distributed.setup(
        resolve_device(device if device != "auto" else str(context_from_file.get("device", "auto")))
    )
    out = Path(output_dir or context_from_file.get("output_dir") or default_output_dir(name, resume))
    out = distributed.same_on_all_ranks(out)
    ctx = RunContext(
        output_dir=out,
        device=run_device,
        seed=seed if seed is not None else int(context_from_file.get("seed", 0)),
        model=model or context_from_file.get("model"),
        dataset=dataset or context_from_file.get("dataset"),
        resume=resume,
        smoke=smoke,
        trust_remote_code=trust_remote_code,
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
        logit_chunk_size=logit_chunk_size,
    )
    command = run_command(
        method if method.endswith(".py") else name,
        model=model,
        dataset=dataset,
        sets=sets or [],
        config_file=config_file,
        seed=seed,
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
        logit_chunk_size=logit_chunk_size,
    )
    check_sources(ctx)
    resolved = resolved_run(name, plugin, config, ctx)
    prepared = PreparedRun(name, plugin, config, ctx, command, resolved=resolved, overwrite=overwrite)
    if distributed.is_main():  # the other ranks would see the folder rank 0 is creating
        check_run_folder(prepared, force_resume)
    return prepared


def run_command(
    method: str,
    *,
    model: str | None = None,
    dataset: str | None = None,
    sets: list[str] | None = None,
    config_file: Path | None = None,
    seed: int | None = None,
    dtype: str = "auto",
    gradient_checkpointing: bool = False,
    logit_chunk_size: int = 0,
) -> str:
    """The `catalog run` line that repeats a run (summary.json's and a report's `command`), built
    from the run's options rather than sys.argv: under tools/record_run.py, pytest or `catalog compare`
    the process's own arguments are not a `catalog run` command."""
    parts = ["catalog", "run", method]
    for option, value in (("--model", model), ("--dataset", dataset), ("--config", config_file)):
        if value:
            parts += [option, str(value)]
    for item in sets or []:
        parts += ["--set", item]
    if seed:
        parts += ["--seed", str(seed)]
    if dtype != "auto":
        parts += ["--dtype", dtype]
    if gradient_checkpointing:
        parts.append("--gradient-checkpointing")
    if logit_chunk_size:
        parts += ["--logit-chunk-size", str(logit_chunk_size)]
    return shlex.join(parts)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _resume_step(out: Path) -> int | None:
    from posttrain.training.trainer import latest_checkpoint

    found = latest_checkpoint(out / "checkpoints", warn=lambda _: None)
    return int(found.name.split("-")[1]) if found else None


def execute(prepared: PreparedRun, console=None, progress: bool = True) -> RunResult:
    """Run the plugin in its run folder: created (and locked) only now, and removed again when the
    run fails before its training loop began; run.json says whether it finished."""
    from posttrain.distributed import is_main
    from posttrain.runs.runfolder import RunFolder

    ctx = prepared.ctx
    resolved = prepared.resolved or resolved_run(prepared.method, prepared.plugin, prepared.config, ctx)
    folder = RunFolder(ctx.output_dir, prepared.method, prepared.plugin.id, resolved) if is_main() else None
    if folder is not None:
        folder.open(overwrite=prepared.overwrite, resume=ctx.resume)
    failed = True
    try:
        result = _execute(prepared, resolved, console, progress)
        failed = False
        if folder is not None:
            folder.set_status("finished")
        return result
    finally:
        if folder is not None:
            folder.close(failed)


def _execute(prepared: PreparedRun, resolved: dict[str, Any], console, progress: bool) -> RunResult:
    from posttrain import outcomes
    from posttrain.console import announcing
    from posttrain.distributed import barrier, is_main
    from posttrain.files import write_atomic, write_json
    from posttrain.runs.tracking import MetricsLogger, plot_metrics, rich_progress

    ctx = prepared.ctx
    seed_everything(ctx.seed)
    main = is_main()  # under torchrun only rank 0 writes files and draws the progress bar
    if main:
        ctx.metrics = MetricsLogger(ctx.output_dir, resume_step=_resume_step(ctx.output_dir) if ctx.resume else None)
    barrier()  # the other ranks read checkpoints only after rank 0 has looked at the folder
    if progress and main:
        ctx.progress = rich_progress(console)
    if main:
        write_atomic(ctx.output_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    if console is not None and main:
        console.print(f"[bold]{prepared.method}[/bold] on {ctx.device}, seed {ctx.seed} -> {ctx.output_dir}")
    t0 = time.perf_counter()
    with outcomes.recording() as log, announcing(console if main and progress else None):
        result = prepared.plugin.run(prepared.config, ctx)
    seconds = time.perf_counter() - t0
    pairs = outcomes.pair(log, result.metrics.get("before") or {}, result.metrics.get("after") or {})
    summary = {
        "method": prepared.method,
        "command": prepared.command,
        "device": ctx.device,
        "seed": ctx.seed,
        "model": ctx.model or "embedded",
        "dataset": ctx.dataset or "embedded",
        "seconds": round(seconds, 2),
        "date": dt.date.today().isoformat(),
        **result.metrics,
        "paired": outcomes.paired_statistics(pairs),
        "artifacts": result.artifacts,
    }
    summary["heldout_examples"] = heldout_size(summary["paired"])
    if not main:
        return result
    if pairs:
        outcomes.write_outcomes(ctx.output_dir / "outcomes.jsonl", pairs)
        result.artifacts["outcomes"] = str(ctx.output_dir / "outcomes.jsonl")
    result.metrics["paired"] = summary["paired"]
    write_json(ctx.output_dir / "summary.json", summary)
    plot = plot_metrics(
        ctx.metrics.rows(),  # type: ignore[union-attr]
        ctx.output_dir / "plot.png",
        title=prepared.method,
        before=summary.get("before"),
        after=summary.get("after"),
        paired=summary["paired"] or {},
    )
    if plot:
        result.artifacts["plot"] = str(plot)
    if console is not None:
        print_summary(console, summary, ctx.output_dir / "summary.json")
    return result


def run_sweep(
    method: str,
    field_name: str,
    values: list[str],
    base_sets: list[str],
    output_dir: Path | None,
    console=None,
    **prepare_kwargs,
) -> dict[str, Any]:
    """Run the method once per value of the budget field ``field_name`` (in ``<output_dir>/<field>=<value>``)
    and write sweep.json and sweep.png in output_dir (``posttrain.runs.sweeps``)."""
    from posttrain.runs.sweeps import write_sweep

    root = Path(output_dir or default_output_dir(method, False))
    points = []
    greedy = None
    for value in values:
        prepared = prepare(
            method,
            sets=[*base_sets, f"{field_name}={value}"],
            output_dir=root / f"{field_name}={value}",
            **prepare_kwargs,
        )
        result = execute(prepared, console=console)
        after = result.metrics.get("after", {})
        points.append({"value": getattr(prepared.config, field_name), **after})
        greedy = greedy or result.metrics.get("before")
    sweep = write_sweep(method, field_name, points, greedy, prepared.ctx, root)
    if console is not None:
        console.print(f"sweep: {root / 'sweep.json'}, {root / 'sweep.png'}")
    return sweep


def print_summary(console, summary: dict[str, Any], path: Path | None = None) -> None:
    """The end-of-run table: each held-out metric before and after, and for those with per-problem
    outcomes the paired test (fixed / broken, difference ± SE, sign-test p, verdict); then, when the
    headline metric fell, a plain sentence saying so and naming the likely cause."""
    from rich.table import Table

    from posttrain import stats

    before, after = summary.get("before") or {}, summary.get("after") or {}
    paired = summary.get("paired") or {}
    table = Table(
        "held-out metric",
        "before",
        "after",
        "fixed/broken",
        "Δ ± SE (points)",
        "p",
        "verdict",
        title=f"{summary['method']}: {summary['seconds']} s",
    )
    for key in after:
        test = paired.get(key)
        if test:
            table.add_row(
                key,
                _fmt(before.get(key)),
                _fmt(after.get(key)),
                f"{test['fixed']} / {test['broken']}",
                f"{100 * test['difference']:+.1f} ± {100 * test['se']:.1f}",
                f"{test['p']:.2g}",
                test["verdict"],
            )
        else:
            table.add_row(key, _fmt(before.get(key)), _fmt(after.get(key)), "", "", "", "")
    console_for_table(console).print(table)
    headline = headline_metric(paired)
    if headline and paired[headline]["difference"] < 0:
        test = paired[headline]
        if test["verdict"] == "harm":
            console.print(
                f"[bold red]Held-out {headline} fell significantly[/bold red]: {stats.describe(test)}. "
                f"{likely_cause(summary)}",
                highlight=False,
            )
        else:
            console.print(f"Held-out {headline} fell, within noise: {stats.describe(test)}.", highlight=False)
    warn_small_heldout(console, summary.get("heldout_examples"))
    if path is not None:  # the run folder's, also for methods that save no model (test-time methods)
        console.print(f"summary: {path}", markup=False, highlight=False)


SMALL_HELDOUT = 50  # below this, a held-out difference of a few problems is mostly noise


def heldout_size(paired: dict[str, Any]) -> int | None:
    """How many held-out problems the headline metric was measured on (None without per-problem outcomes)."""
    headline = headline_metric(paired)
    return int(paired[headline]["n"]) if headline else None


def warn_small_heldout(console, size: int | None) -> None:
    if size is not None and size < SMALL_HELDOUT:
        console.print(
            f"warning: the held-out set has only {size} problems (fewer than {SMALL_HELDOUT}): its before/after "
            "difference is mostly noise; give a test split (a folder with train and test files) or more data",
            markup=False,
            highlight=False,
        )


def console_for_table(console):
    """A log or pipe has no width to respect (rich assumes 80 columns): print the table whole there."""
    from rich.console import Console

    if console.is_terminal or console.width >= 110:
        return console
    return Console(file=console.file, width=110)


def headline_metric(paired: dict[str, Any]) -> str | None:
    """exact_match for trainers, accuracy for test-time methods, else the first paired metric."""
    for key in ("exact_match", "accuracy"):
        if key in paired:
            return key
    return next(iter(paired), None)


def likely_cause(summary: dict[str, Any]) -> str:
    before, after = summary.get("before") or {}, summary.get("after") or {}
    chosen_b, chosen_a = before.get("chosen_logp_per_token"), after.get("chosen_logp_per_token")
    if "reward_margin" in after and (chosen_b is None or chosen_a is None or chosen_a < chosen_b):
        return (
            "Likely cause: likelihood displacement (the preference loss widens the chosen-rejected margin by "
            "lowering both answers' likelihood); an NLL term on the chosen answers (rpo_alpha), a lower "
            "learning_rate or fewer max_steps counter it."
        )
    if "accuracy" in after:
        return "Likely cause: the method's selection or search is worse than greedy decoding for this model and budget."
    return (
        "Likely cause: the updates move the model away from the held-out task (learning_rate or max_steps too "
        "large for this model, or training data unlike the held-out problems)."
    )


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))


def smoke_all(ids: list[str], device: str = "auto", console=None) -> list[dict[str, Any]]:
    """Run each plugin with its smoke overrides (2 steps) in a temporary folder."""
    names = ids or list(discover())
    results = []
    for name in names:
        t0 = time.perf_counter()
        ok, detail, resolved_device = False, "", device
        with tempfile.TemporaryDirectory(prefix=f"smoke-{Path(name).name}-") as tmp:
            try:
                prepared = prepare(name, device=device, output_dir=Path(tmp), smoke=True)
                resolved_device = prepared.ctx.device
                if console is not None:
                    console.print(f"smoke: {name} on {resolved_device}")
                if prepared.plugin.requires_gpu and not resolved_device.startswith("cuda"):
                    ok, detail = True, "skipped: needs a CUDA GPU"
                else:
                    result = execute(prepared, console=None, progress=False)
                    ok, detail = True, _short(result.metrics)
            except UserError as exc:
                detail = f"error: {exc}"
            except Exception as exc:  # a smoke test reports every failure and goes on with the next plugin
                tb = traceback.extract_tb(exc.__traceback__)[-1]
                detail = f"{type(exc).__name__}: {exc} ({os.path.basename(tb.filename)}:{tb.lineno})"
        results.append(
            {
                "plugin": name,
                "ok": ok,
                "seconds": round(time.perf_counter() - t0, 2),
                "detail": detail,
                "device": resolved_device,
                "date": dt.date.today().isoformat(),
            }
        )
    return results


def _short(metrics: dict[str, Any]) -> str:
    after = metrics.get("after", {})
    return ", ".join(f"{k}={_fmt(v)}" for k, v in list(after.items())[:3])
