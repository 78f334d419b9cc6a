"""The "Use it" block of a runnable method's page, and the box of a method that has no plugin yet.

Every part is generated, never written by hand per method:

- the data formats the plugin reads: found statically in its source (the ``posttrain.data`` calls it
  makes, ``task_records(ctx, "preference", ...)``), one example JSON Lines record per format of
  ``posttrain.data.FORMATS``;
- a command on a real hub model and its memory need, from the model's parameter count and the kind
  of method (trainer, adapter, test-time), with the formula;
- a glossary of the objective's symbols: the Config fields whose description starts with a symbol
  ("β, strength of the KL penalty ...") and the notation the objectives share;
- when to use it and its pitfalls, when the catalog entry has those fields;
- the recorded run: its curves when the report holds them, and the headline held-out result with
  fixed/broken counts and the sign-test p.

Nothing here imports torch or a plugin: plugin sources are read with ``ast``.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from posttrain.cli.configinfo import FieldInfo, module_file
from posttrain.data import FORMATS

# The hub model the commands use; its size is from its model card.
HUB_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
HUB_MODEL_PARAMETERS = 0.49e9
HUB_MODEL_CARD = "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct"

# Bytes per parameter on CUDA, where --dtype auto trains in bf16 (posttrain.hf.default_dtype) and
# AdamW keeps its two moments in the parameters' dtype: weights 2 + gradients 2 + moments 4.
TRAINED_BYTES = 8
FROZEN_BYTES = 2

DATA_CALLS = ("task_records", "check_format", "checked_records")
# Loaders that take a literal kind elsewhere: the kind they read.
KIND_OF_LOADER = {
    "load_pairs": "preference",
    "preference_data": "preference",
    "sft_data": "sft",
    "check_unpaired": "unpaired",  # KTO: single completions labelled desirable or not
}
# Record shapes a plugin reads beyond posttrain.data.FORMATS.
EXTRA_FORMATS = {"unpaired": [("prompt", "completion", "label")]}

# One example value per column of posttrain.data.FORMATS (a 2-digit addition, as the embedded task).
EXAMPLE_VALUES: dict[str, Any] = {
    "messages": [
        {"role": "user", "content": "What is 17 + 25?"},
        {"role": "assistant", "content": "42"},
    ],
    "prompt": "What is 17 + 25?",
    "completion": "42",
    "text": "What is 17 + 25? 42",
    "chosen": "42",
    "rejected": "32",
    "label": True,
}
KIND_TITLES = {
    "sft": "supervised examples",
    "preference": "preference pairs",
    "prompt": "prompts (an optional answer is what rewards and accuracy check against)",
    "unpaired": "single completions labelled desirable (true) or undesirable (false)",
}
FILE_NAMES = {
    "sft": "examples.jsonl",
    "preference": "pairs.jsonl",
    "prompt": "prompts.jsonl",
    "unpaired": "labelled.jsonl",
}

# Notation the catalog's objectives share: LaTeX as written in the entries -> meaning.
SHARED_SYMBOLS: list[tuple[tuple[str, ...], str, str]] = [
    (("\\pi_\\theta", "\\pi_{\\theta}"), "π_θ", "the policy being trained (the model, with parameters θ)"),
    (
        ("\\pi_{\\mathrm{ref}}", "\\pi_\\mathrm{ref}", "\\pi_{\\text{ref}}", "\\pi_{ref}"),
        "π_ref",
        "the frozen reference policy (the model before training)",
    ),
    (("\\pi_{\\theta_{\\mathrm{old}}}", "\\pi_{\\mathrm{old}}"), "π_old", "the policy that sampled the rollout"),
    (("y_w",), "y_w", "the preferred (chosen) response"),
    (("y_l",), "y_l", "the dispreferred (rejected) response"),
    (("\\sigma",), "σ", "the logistic function 1 / (1 + e^(−z))"),
    (("\\mathcal{D}",), "𝒟", "the training data"),
    (("\\mathbb{E}",), "𝔼", "expectation (in practice the mean over a batch)"),
    (("\\mathrm{KL}", "D_{\\mathrm{KL}}", "\\mathbb{D}_{\\mathrm{KL}}"), "KL", "Kullback–Leibler divergence"),
    (("\\hat{A}", "\\hat A", "A_{i", "A_t"), "A", "the advantage of a completion or token"),
    (("r_\\phi", "r_{\\phi}", "r(x", "r_i"), "r", "the reward"),
    (("\\mid x", "|x)"), "x", "the prompt"),
]

GREEK = {
    "α": "\\alpha",
    "β": "\\beta",
    "γ": "\\gamma",
    "δ": "\\delta",
    "ε": "\\epsilon",
    "η": "\\eta",
    "λ": "\\lambda",
    "μ": "\\mu",
    "ρ": "\\rho",
    "τ": "\\tau",
    "κ": "\\kappa",
    "ω": "\\omega",
}


@dataclass
class PluginFacts:
    """What the page needs to know about a plugin, read from its source without importing it."""

    kind: str  # trainer | inference | pipeline
    data_kinds: list[str]
    own_dataset_note: str | None  # a plugin that refuses --dataset says why
    has_reference: bool


# --- reading a plugin's source -----------------------------------------------------------------


@cache
def _tree(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _kinds_called(tree: ast.Module) -> list[str]:
    """The data kinds a module reads: literal kinds given to posttrain.data's loaders, and known loaders."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name in KIND_OF_LOADER:
            found.append(KIND_OF_LOADER[name])
        elif name in DATA_CALLS:
            for arg in node.args[1:3]:
                if isinstance(arg, ast.Constant) and arg.value in FORMATS:
                    found.append(arg.value)
    return found


def _imported_modules(tree: ast.Module) -> list[str]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "posttrain_plugins":
                out += [f"posttrain_plugins.{a.name}" for a in node.names]
            else:
                out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return [m for m in out if m.startswith(("posttrain.", "posttrain_plugins."))]


def _module_tree(name: str) -> ast.Module | None:
    path = module_file(name)
    return _tree(path) if path is not None and path.is_file() else None


def _data_kinds(tree: ast.Module, seen: set[str]) -> list[str]:
    """Kinds read by the plugin's module, by the plugin modules it builds on (all the way down) and by
    the core modules it imports directly (one level: the core's own imports are not the plugin's data)."""
    kinds = _kinds_called(tree)
    for name in _imported_modules(tree):
        if name in seen:
            continue
        seen.add(name)
        sub = _module_tree(name)
        if sub is None:
            continue
        kinds += _data_kinds(sub, seen) if name.startswith("posttrain_plugins.") else _kinds_called(sub)
    return kinds


def _plugin_kind(tree: ast.Module) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "Plugin":
            for kw in node.keywords:
                if kw.arg == "kind" and isinstance(kw.value, ast.Constant):
                    return str(kw.value.value)
    return "trainer"


def _dataset_refusal(tree: ast.Module) -> str | None:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "--dataset is not supported" in node.value
        ):
            return node.value
    return None


def _uses_reference(tree: ast.Module, source: str) -> bool:
    return "frozen_reference" in source or "Reference" in "".join(_imported_names(tree))


def _imported_names(tree: ast.Module) -> list[str]:
    return [a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names]


def plugin_facts(source: Path) -> PluginFacts:
    tree = _tree(source)
    if tree is None:
        return PluginFacts("trainer", [], None, False)
    text = source.read_text(encoding="utf-8")
    kinds = list(dict.fromkeys(_data_kinds(tree, set())))
    return PluginFacts(_plugin_kind(tree), kinds, _dataset_refusal(tree), _uses_reference(tree, text))


# --- the parts of the block ----------------------------------------------------------------------


def example_records(kind: str) -> list[str]:
    """One JSON Lines record per accepted column set of ``kind`` (posttrain.data.FORMATS)."""
    lines = []
    for columns in {**FORMATS, **EXTRA_FORMATS}[kind]:
        record = {c: EXAMPLE_VALUES[c] for c in columns}
        if kind == "prompt":
            record["answer"] = "42"
        lines.append(json.dumps(record, ensure_ascii=False))
    if kind == "preference":  # TRL's implicit prompt: two conversations that share their first turn
        user = EXAMPLE_VALUES["messages"][0]
        implicit = {
            "chosen": [user, {"role": "assistant", "content": EXAMPLE_VALUES["chosen"]}],
            "rejected": [user, {"role": "assistant", "content": EXAMPLE_VALUES["rejected"]}],
        }
        lines.append(json.dumps(implicit, ensure_ascii=False))
    return lines


def data_part(facts: PluginFacts, fence) -> list[str]:
    if facts.own_dataset_note:
        return [f"**Data.** This plugin runs on the embedded task only: {facts.own_dataset_note}", ""]
    if facts.kind == "pipeline":
        return [
            "**Data.** A pipeline runs several stages, each on its own data: set each stage's dataset "
            "field (see the configuration below) rather than `--dataset`.",
            "",
        ]
    if not facts.data_kinds:
        return ["**Data.** `--dataset` takes the records the plugin's docstring describes (below).", ""]
    out = [
        "**Data.** `--dataset` takes a JSON Lines file (or parquet, CSV, a `save_to_disk` folder or a hub "
        "id) whose records look like one of these; a value can be a plain string or a list of chat messages.",
        "",
    ]
    for kind in facts.data_kinds:
        out += [f"*{KIND_TITLES[kind]}*", "", fence("\n".join(example_records(kind)), "json"), ""]
    return out


def memory_estimate(facts: PluginFacts, peft: bool, parameters: float) -> str:
    """GPU memory for the weights and the optimizer, with the formula it comes from."""
    gib = parameters / 2**30
    if facts.kind == "inference":
        return (
            f"about **{FROZEN_BYTES * gib:.1f} GiB**: {FROZEN_BYTES} bytes × parameters (bf16 weights; nothing trains)"
        )
    if peft:
        return (
            f"about **{FROZEN_BYTES * gib:.1f} GiB**: {FROZEN_BYTES} bytes × parameters (the frozen bf16 weights; "
            "the adapter's own weights, gradients and AdamW moments are a small fraction of that)"
        )
    full = f"{TRAINED_BYTES} bytes × parameters (bf16 weights {FROZEN_BYTES} + gradients 2 + AdamW's two moments 4)"
    with_ref = (TRAINED_BYTES + FROZEN_BYTES) * gib
    if facts.has_reference:
        return (
            f"about **{with_ref:.1f} GiB**: {full} + {FROZEN_BYTES} bytes × parameters for the frozen reference "
            "model its KL term compares against"
        )
    return (
        f"about **{TRAINED_BYTES * gib:.1f} GiB**: {full}; {with_ref:.1f} GiB when a frozen reference copy is "
        f"kept for a KL term (+{FROZEN_BYTES} bytes × parameters)"
    )


def command_part(method_id: str, facts: PluginFacts, peft: bool, fence) -> list[str]:
    if facts.own_dataset_note:
        return []  # it runs on the embedded model's own prompts only
    data_kind = facts.data_kinds[0] if facts.data_kinds else "sft"
    args = f"--model {HUB_MODEL}"
    if facts.kind != "pipeline":
        args += f" --dataset {FILE_NAMES.get(data_kind, 'data.jsonl')}"
    return [
        "**Run it on a hub model** (it is downloaded once; on CUDA it runs in bf16):",
        "",
        fence(f"catalog run {method_id} {args}", "bash"),
        "",
        f"Memory for {HUB_MODEL} ({HUB_MODEL_PARAMETERS / 1e9:.2f}B parameters, [model card]({HUB_MODEL_CARD})): "
        f"{memory_estimate(facts, peft, HUB_MODEL_PARAMETERS)}. Activations and the KV cache come on top and grow with "
        "batch size × sequence length (`--gradient-checkpointing` trades them for compute). For another "
        "model, scale by its parameter count.",
        "",
    ]


def _symbol_of(description: str) -> str | None:
    """The symbol a Config field's description starts with: "β, ...", "λ_D, ...", "π_ref: ...", "α of ..."."""
    head = description.strip().split(" ", 1)[0]
    word = head.rstrip(",:;")
    if len(description.strip().split(" ", 1)) < 2:
        return None
    if head == word and not description.strip()[len(head) :].startswith(" of "):
        return None
    base = word.split("_", 1)[0]
    return word if len(base) == 1 and base.isalpha() and not base.isascii() else None


def _in_objective(symbol: str, objective: str) -> bool:
    base, _, sub = symbol.partition("_")
    latex = GREEK.get(base)
    if latex is None:
        return base in objective
    if latex not in objective and base not in objective:
        return False
    return not sub or sub in objective


def glossary(objective: str, fields: list[FieldInfo]) -> list[tuple[str, str, str]]:
    """(symbol, meaning, config option) for the symbols the objective uses."""
    rows, seen = [], set()
    for f in fields:
        symbol = _symbol_of(f.description)
        if symbol and symbol not in seen and _in_objective(symbol, objective):
            meaning = f.description.strip()[len(symbol) :].lstrip(",:; ").removeprefix("of ").strip()
            rows.append((symbol, meaning, f.name))
            seen.add(symbol)
    for forms, symbol, meaning in SHARED_SYMBOLS:
        if symbol not in seen and any(form in objective for form in forms):
            rows.append((symbol, meaning, ""))
            seen.add(symbol)
    return rows


def glossary_part(objective: str, fields: list[FieldInfo], inline_md, code_text) -> list[str]:
    rows = glossary(objective, fields)
    if not rows:
        return []
    out = ["**Symbols in the objective**", "", "| symbol | meaning | option |", "|---|---|---|"]
    for symbol, meaning, option in rows:
        out.append(f"| {inline_md(symbol)} | {inline_md(meaning)} | {code_text(option) if option else ''} |")
    return [*out, ""]


def advice_part(entry: Any, inline_md, cite) -> list[str]:
    """The catalog entry's practitioner fields (when to use it, when not, data, compute, failure
    modes, the paper's headline results), each claim with its source as ``cite(source, where)``
    writes it; nothing for an entry without them."""
    out: list[str] = []

    def claims(title: str, items: list[Any]) -> None:
        if items:
            out.extend([f"**{title}**", ""])
            out.extend(f"- {inline_md(c.text)} ({cite(c.source, c.where)})" for c in items)
            out.append("")

    claims("When to use it", getattr(entry, "when_to_use", []))
    claims("Avoid it when", getattr(entry, "avoid_when", []))
    out += _data_needs(getattr(entry, "data", None), inline_md, cite)
    out += _compute_needs(getattr(entry, "compute", None), inline_md, cite)
    claims("Failure modes", getattr(entry, "failure_modes", []))
    results = getattr(entry, "results", [])
    if results:
        out += ["**What the paper reports**", ""]
        out += [f"- {inline_md(r.text)} ({cite(r.paper, r.where)})" for r in results] + [""]
    return out


def _data_needs(data: Any, inline_md, cite) -> list[str]:
    if data is None:
        return []
    line = "**Data:** " + ", ".join(f.value for f in data.formats)
    if data.amount is not None:
        line += f"; {inline_md(data.amount.text)} ({cite(data.amount.source, data.amount.where)})"
    return [line, ""]


def _compute_needs(compute: Any, inline_md, cite) -> list[str]:
    if compute is None:
        return []
    models = ", ".join(m.value for m in compute.models_in_memory)
    per_prompt = compute.generations_per_prompt
    if compute.source.startswith("reports/"):  # no verified figure from the paper: the project's own run
        per_prompt = f"{per_prompt} in this project's default run"
    line = (
        f"**Compute:** models in memory: {models}; generations per prompt: {per_prompt} "
        f"({cite(compute.source, compute.where)}); cost against SFT: {inline_md(compute.cost_vs_sft.text)} "
        f"({cite(compute.cost_vs_sft.source, compute.cost_vs_sft.where)})"
    )
    if compute.cost_vs_sft.source.startswith("reports/"):
        line += f" {REPORT_SECONDS_CAVEAT}"
    return [line, ""]


# The committed reports were recorded one at a time on a shared 2-core machine, on different days:
# grpo's 200 steps took 39.43 s in reports/runs/grpo.json and 5.62 s in grpo-top-entropy.json.
REPORT_SECONDS_CAVEAT = (
    "*Seconds come from single CPU runs recorded under different machine loads: compare the models, the "
    "generations and the sampling share, not the seconds across methods.*"
)
