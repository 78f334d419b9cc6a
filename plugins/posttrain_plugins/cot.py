"""Chain-of-thought prompting: few-shot exemplars with worked reasoning (Wei 2022), or a zero-shot
trigger followed by an answer-extraction step (Kojima 2022).

Papers: Wei, Wang, Schuurmans, Bosma, Ichter, Xia, Chi, Le, Zhou 2022, "Chain-of-Thought Prompting
Elicits Reasoning in Large Language Models", arXiv:2201.11903; Kojima, Gu, Reid, Matsuo, Iwasawa
2022, "Large Language Models are Zero-Shot Reasoners", arXiv:2205.11916. Catalog entries:
catalog/methods/cot.yaml and catalog/methods/zero-shot-cot.yaml (the ``zero-shot-cot`` plugin).

    catalog run cot                                        # few-shot CoT, embedded reasoning model
    catalog run cot --set exemplars=0,1,2,4                # sweep the number of exemplars
    catalog run zero-shot-cot --model Qwen/Qwen2.5-0.5B --dataset gsm8k.jsonl

``before`` is standard prompting, the papers' baseline: the same exemplars with answers only
(few-shot), or the question followed directly by the answer trigger (zero-shot). ``after`` is CoT:
- few-shot (``few_shot_prompt``): k (question, rationale, answer) exemplars, then the question;
- zero-shot (``zero_shot_prompt`` then ``answer_prompt``): the question and the trigger
  ("Let's think step by step."), the generated reasoning, then the answer trigger and the answer.
Greedy decoding, as in both papers.

Deviations: on the embedded task the model is ``embedded:reasoning-fewshot``, the reasoning model
trained further on pages of several problems in one format (worked or answer-only), because the
plain reasoning model never saw two problems in one context and stops at once after any
exemplar (0%); see ``posttrain.embedded.fewshot``. The rationale format is its scratchpad
(column sums ``12;13;6;``), the answer trigger is its answer mark ``#``, the separator between
exemplars is a newline, and the zero-shot trigger is empty (the model reads no English; its
scratchpad is its "step by step" mode). Exemplars come from the task's training split (Wei wrote
8 by hand).

Measured (reports/runs/cot.json, 200 held-out problems, 4 exemplars) on the current build of the
few-shot model: standard prompting 11.0%, chain of thought 24.5% (zero exemplars: 81.0%,
reports/runs/zero-shot-cot.json). The tiny model's in-context skill is fragile: absolute scores
differ between builds of the same recipe.
"""

from __future__ import annotations

from posttrain import Plugin
from posttrain.inference.chain_of_thought import ChainOfThoughtConfig, run


class Config(ChainOfThoughtConfig):
    """Few-shot chain of thought by default (Wei 2022); ``mode=zero_shot`` is Kojima 2022."""


plugin = Plugin(
    id="cot",
    config=Config,
    run=run,
    summary="Chain-of-thought prompting: worked exemplars (few-shot) or a reasoning trigger (zero-shot).",
    smoke={"exemplars": 1, "eval_examples": 4},
    kind="inference",
)
