"""transformers announces the next major version's removals as FutureWarnings (``past_key_values`` in
``generate`` becomes ``cache``; ``gradient_checkpointing_enable`` becomes
``activation_checkpointing_enable``). These runs turn every FutureWarning into an error, so a
deprecation that reaches this project's own calls fails here the day it appears, not the day the
next major version breaks the call. The peft prompt-learning plugins are left out: peft itself still
passes ``past_key_values`` to the model's forward."""

import pytest

from posttrain.runs.runner import execute, prepare

# one trainer per loop (sft, preference, online RL) and the sampling and step-search inference paths
PLUGINS = ["sft", "dpo", "grpo", "best-of-n", "beam-search"]


@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_runs_without_future_warnings(name, tmp_path):
    execute(prepare(name, output_dir=tmp_path, device="cpu", smoke=True), progress=False)
