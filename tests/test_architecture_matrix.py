"""Plugins on tiny random models of each architecture family (tools/architecture_matrix.py builds
them: Llama, Qwen2, Qwen3, Mistral, Gemma 3, Phi-3, GPT-2, OLMo-2), loaded through ``--model`` as a
hub checkpoint would be, with tokenizers lacking a pad token or a chat template; and the shared
plumbing those need (adapter target names, plain-text chat rendering).

The default suite runs ``sft`` and ``grpo`` on every family and every plugin of the matrix on GPT-2
(no chat template, no pad token, Conv1D and fused q/k/v); the rest of the cross product is marked
``slow`` and ``extended`` (run with ``-m extended``). fastpath equality per family is in
tests/test_fastpath.py. Each cell either runs or stops with the one-line error it is expected to.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.runs.runner import execute, prepare

TOOL = Path(__file__).resolve().parents[1] / "tools" / "architecture_matrix.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("architecture_matrix", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


matrix = _load_tool()
FAMILIES = list(matrix.FAMILIES)
PLUGINS = [p for p in matrix.PLUGINS if p != "qlora"]  # qlora stops on CPU: test_qlora_on_cpu_is_one_line_error

# (family, plugin) -> the error it must stop with: what transformers has no class for.
UNSUPPORTED = {
    ("gemma3", "prm"): "prm needs a token-classification head .* for gemma3_text models",
    ("olmo2", "prm"): "prm needs a token-classification head .* for olmo2 models",
}

DEFAULT_CELLS = {(f, p) for f in FAMILIES for p in ("sft", "grpo")} | {("gpt2", p) for p in PLUGINS}
EXTENDED_CELLS = sorted({(f, p) for f in FAMILIES for p in PLUGINS} - DEFAULT_CELLS)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """family -> its saved folder, built on first use."""
    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = matrix.build_model(family, root / family)
        return built[family]

    return get


def check_cell(family: str, plugin: str, model_dir: Path, out: Path) -> None:
    prepared = prepare(plugin, model=str(model_dir), output_dir=out, smoke=True, device="cpu")
    expected = UNSUPPORTED.get((family, plugin))
    if expected:
        with pytest.raises(UserError, match=expected):
            execute(prepared, progress=False)
        return
    execute(prepared, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["after"], "no held-out metrics after the run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    if prepared.plugin.kind == "trainer":
        assert losses and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("family,plugin", sorted(DEFAULT_CELLS))
def test_plugin_runs_on_family(family, plugin, model_dirs, tmp_path):
    check_cell(family, plugin, model_dirs(family), tmp_path)


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.parametrize("family,plugin", EXTENDED_CELLS)
def test_plugin_runs_on_family_extended(family, plugin, model_dirs, tmp_path):
    check_cell(family, plugin, model_dirs(family), tmp_path)


def test_qlora_on_cpu_is_one_line_error(model_dirs, tmp_path):
    prepared = prepare("qlora", model=str(model_dirs("qwen3")), output_dir=tmp_path, smoke=True, device="cpu")
    with pytest.raises(UserError, match=r"^qlora: needs a CUDA GPU and bitsandbytes .*use `catalog run lora`$") as info:
        execute(prepared, progress=False)
    assert "\n" not in str(info.value)


def test_committed_report_covers_the_matrix(repo):
    report = json.loads((repo / "reports" / "architecture-matrix.json").read_text())
    cells = {(c["family"], c["plugin"]): c for c in report["cells"]}
    assert set(cells) == {(f, p) for f in FAMILIES for p in matrix.PLUGINS}
    assert not [c for c in cells.values() if c["outcome"] == "crash"]
    assert {k for k, c in cells.items() if c["outcome"] == "error" and k[1] != "qlora"} == set(UNSUPPORTED)


# --- tokenizers without a pad token or a chat template ------------------------------------------------


def test_missing_pad_token_becomes_eos(model_dirs):
    from posttrain.hf import load_tokenizer

    tok = load_tokenizer(str(model_dirs("llama")))
    assert tok.pad_token_id == tok.eos_token_id is not None


def test_plain_chat_text_by_hand():
    from posttrain.data import plain_chat_text, prompt_ids, tokenize_prompt_completion

    tok = matrix.build_tokenizer("plain")
    messages = [{"role": "system", "content": "Add."}, {"role": "user", "content": "1+2="}]
    assert plain_chat_text(tok, messages, add_generation_prompt=True) == "Add.\n1+2=\n"
    reply = [{"role": "assistant", "content": "3"}]
    assert plain_chat_text(tok, messages + reply, add_generation_prompt=False) == "Add.\n1+2=\n3<eos>"
    assert prompt_ids(tok, messages) == tok("Add.\n1+2=\n")["input_ids"]
    encoded = tokenize_prompt_completion({"prompt": messages, "completion": reply}, tok)
    completion = [t for t, m in zip(encoded["input_ids"], encoded["completion_mask"], strict=True) if m]
    assert completion == tok("3", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_chat_template_is_used_when_present():
    from posttrain.data import chat_text

    tok = matrix.build_tokenizer("chat")
    messages = [{"role": "user", "content": "1+2="}]
    assert chat_text(tok, messages, add_generation_prompt=True) == "<bos><|user|>1+2=<|end|><|assistant|>"


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("plugin", ["sft", "dpo", "grpo"])
def test_conversational_data_on_a_model_without_chat_template(plugin, model_dirs, tmp_path):
    """Message lists are rendered as plain text (one message per line, EOS after assistant turns)."""

    def user(i):
        return [{"role": "user", "content": f"{i}+1="}]

    def assistant(text):
        return [{"role": "assistant", "content": text}]

    rows = {
        "sft": [{"messages": user(i) + assistant(str(i + 1))} for i in range(12)],
        "dpo": [{"prompt": user(i), "chosen": assistant(str(i + 1)), "rejected": assistant("0")} for i in range(12)],
        "grpo": [{"prompt": user(i), "answer": str(i + 1)} for i in range(12)],
    }[plugin]
    data = _write_jsonl(tmp_path / "data.jsonl", rows)
    prepared = prepare(
        plugin, model=str(model_dirs("gpt2")), dataset=data, output_dir=tmp_path / "run", smoke=True, device="cpu"
    )
    result = execute(prepared, progress=False)
    assert result.metrics["after"]


# --- adapter target names across architectures --------------------------------------------------------


@pytest.mark.parametrize(
    "family,expected",
    [
        ("llama", ["q_proj", "v_proj", "gate_proj", "down_proj"]),
        ("phi3", ["qkv_proj", "gate_up_proj", "down_proj"]),
        ("gpt2", ["c_attn", "c_fc", "mlp.c_proj"]),
    ],
)
def test_llama_style_targets_map_to_each_architecture(family, expected):
    from posttrain.hf import architecture_targets

    model, _ = matrix.tiny_model(family)
    assert architecture_targets(model, ["q_proj", "v_proj", "gate_proj", "down_proj"]) == expected
    assert architecture_targets(model, ["no_such_module"]) == ["no_such_module"]  # peft names it


def test_ia3_on_gpt2_rescales_the_modules_that_hold_k_v_and_the_ffn():
    from peft import IA3Config

    from posttrain.training.peft_methods import apply_peft

    model, _ = matrix.tiny_model("gpt2")
    config = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])
    wrapped = apply_peft(model, config, "ia3")
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("attn.c_attn" in n for n in trainable) and any("mlp.c_proj" in n for n in trainable)


def test_unknown_target_module_is_one_line_error():
    from posttrain.hf import LoraSettings, apply_lora

    model, _ = matrix.tiny_model("olmo2")
    with pytest.raises(UserError, match="no_such_module.*set lora_target_modules"):
        apply_lora(model, LoraSettings(target_modules=("no_such_module",)))
