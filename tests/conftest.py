import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("POSTTRAIN_BUILTIN_ONLY", "1")  # tests see only this distribution's plugins
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # `import learning`: the learning tests' assertions


@pytest.fixture(autouse=True)
def _one_torch_thread_in_slow_tests(request, monkeypatch):
    """Slow tests run as the committed reports were recorded, on one thread (torch in this process,
    OMP_NUM_THREADS for the runs they start): results equal ``reports/runs/*.json`` bit for bit."""
    if request.node.get_closest_marker("slow") is None:
        yield
        return
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def cli():
    """Invoke the CLI in-process and return (exit_code, combined output)."""
    from typer.testing import CliRunner

    from posttrain.cli.main import app
    from posttrain.errors import UserError

    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, list(args), catch_exceptions=True)
        if isinstance(result.exception, UserError):
            return 2, f"error: {result.exception}"
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return invoke


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def tiny_classifier():
    """``make(folder, head="sequence"|"token")``: a random 1-label Llama classifier with the embedded
    tokenizer saved to ``folder`` (a stand-in for a trained reward model or PRM); returns the folder."""

    def make(folder: Path, head: str = "sequence") -> Path:
        import torch
        from transformers import LlamaConfig, LlamaForSequenceClassification, LlamaForTokenClassification

        from posttrain.embedded.tokenizer import build_tokenizer

        tok = build_tokenizer()
        config = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=32,
            num_labels=1,
            pad_token_id=tok.pad_token_id,
        )
        torch.manual_seed(0)
        cls = LlamaForSequenceClassification if head == "sequence" else LlamaForTokenClassification
        cls(config).save_pretrained(folder)
        tok.save_pretrained(folder)
        return Path(folder)

    return make
