"""Zero-shot chain of thought: a reasoning trigger, then an answer-extraction step.

Paper: Kojima, Gu, Reid, Matsuo, Iwasawa 2022, "Large Language Models are Zero-Shot Reasoners",
arXiv:2205.11916. Catalog entry: catalog/methods/zero-shot-cot.yaml.

    catalog run zero-shot-cot                                   # embedded:reasoning-fewshot
    catalog run zero-shot-cot --model Qwen/Qwen2.5-0.5B --dataset gsm8k.jsonl

The method is chain-of-thought prompting (``posttrain.inference.chain_of_thought``, shared with the ``cot``
plugin) in its zero-shot mode (one run function, the prompt builders ``zero_shot_prompt`` and
``answer_prompt`` there): stage 1 generates the reasoning after "Let's think step by step.", stage 2 appends "Therefore, the answer is" and decodes the answer.
``before`` is standard zero-shot prompting (the question, then the answer trigger).

Deviations: as in ``cot`` (the embedded model is ``embedded:reasoning-fewshot``): the trigger is empty (it reads no
English and writes its scratchpad unprompted) and the answer trigger is its answer mark ``#``.
"""

from __future__ import annotations

from pydantic import Field

from posttrain import Plugin
from posttrain.inference.chain_of_thought import ChainOfThoughtConfig, run


class Config(ChainOfThoughtConfig):
    mode: str = Field("zero_shot", pattern="^(few_shot|zero_shot)$", description="Kojima 2022 zero-shot CoT.")
    exemplars: int = Field(0, ge=0, description="Worked exemplars (0: zero-shot).")


plugin = Plugin(
    id="zero-shot-cot",
    config=Config,
    run=run,
    summary='Zero-shot chain of thought: "Let\'s think step by step", then extract the answer.',
    smoke={"eval_examples": 4},
    kind="inference",
)
