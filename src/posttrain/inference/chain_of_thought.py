"""Chain-of-thought prompting, shared by the ``cot`` and ``zero-shot-cot`` plugins: few-shot
exemplars with worked reasoning (Wei 2022, arXiv:2201.11903), or a zero-shot trigger followed by an
answer-extraction step (Kojima 2022, arXiv:2205.11916). The method, its baseline and its
deviations on the embedded model are described in ``posttrain_plugins/cot.py``.

- few-shot (``few_shot_prompt``): k (question, rationale, answer) exemplars, then the question;
- zero-shot (``zero_shot_prompt`` then ``answer_prompt``): the question and the trigger, the
  generated reasoning, then the answer trigger and the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pydantic import Field

from posttrain import RunContext, RunResult
from posttrain.generation.decode import sample
from posttrain.inference.recipe import (
    REASONING_MODEL,
    SWEEP,
    InferenceConfig,
    PerProblem,
    finish,
    new_tokens,
    setup,
    step_stop,
)

FEWSHOT_MODEL = "embedded:reasoning-fewshot"


class ChainOfThoughtConfig(InferenceConfig):
    task: str = Field(
        "reasoning", pattern="^(addition|reasoning)$", description="Embedded task when no --dataset is given."
    )
    mode: str = Field(
        "few_shot", pattern="^(few_shot|zero_shot)$", description="Wei 2022 few-shot CoT or Kojima 2022 zero-shot CoT."
    )
    exemplars: int = Field(
        4, ge=0, description="k: worked exemplars in a few-shot prompt (Wei 2022: 8).", json_schema_extra=SWEEP
    )
    trigger: str | None = Field(
        None,
        description='Zero-shot reasoning trigger (Kojima: "Let\'s think step by step."; empty on the embedded model).',
    )
    answer_trigger: str | None = Field(
        None, description="Answer extraction trigger (Kojima: 'Therefore, the answer is'; '#' on the embedded model)."
    )
    separator: str = Field("\n", description="Text between exemplars.")


# --- prompt construction (pure) ------------------------------------------------------------------------


def few_shot_prompt(exemplars: Sequence[tuple[str, str]], question: str, separator: str = "\n") -> str:
    """Wei 2022: exemplars (question, worked answer) then the question.

    few_shot_prompt([("1+2=", "3;#3")], "4+5=") == "1+2=3;#3\\n4+5=".
    """
    return "".join(q + a + separator for q, a in exemplars) + question


def zero_shot_prompt(question: str, trigger: str) -> str:
    """Kojima 2022 stage 1: the question followed by the reasoning trigger."""
    return question + (" " + trigger if trigger and not question.endswith((" ", "\n")) else trigger)


def answer_prompt(reasoning_prompt: str, reasoning: str, answer_trigger: str) -> str:
    """Kojima 2022 stage 2: the stage-1 prompt, the generated reasoning, then the answer trigger."""
    return reasoning_prompt + reasoning + answer_trigger


def answer_only(worked: str, answer_trigger: str) -> str:
    """An exemplar's answer without its rationale (standard prompting): "12;13;6;#632" -> "#632"."""
    cut = worked.rfind(answer_trigger) if answer_trigger else -1
    return worked[cut:] if cut >= 0 else worked


# --- run ------------------------------------------------------------------------------------------------


def embedded_defaults(cfg: ChainOfThoughtConfig, embedded: bool) -> tuple[str, str]:
    trigger = cfg.trigger if cfg.trigger is not None else ("" if embedded else "Let's think step by step.")
    answer = (
        cfg.answer_trigger if cfg.answer_trigger is not None else ("#" if embedded else " Therefore, the answer is")
    )
    return trigger, answer


def exemplar_pairs(cfg: ChainOfThoughtConfig, ctx: RunContext, problems) -> list[tuple[str, str]]:
    if cfg.exemplars == 0:
        return []
    if ctx.dataset is None:
        from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK

        return [(r["prompt"], r["completion"]) for r in DEFAULT_REASONING_TASK.sft_examples(cfg.exemplars, ctx.seed)]
    worked = [r for r in problems.records if isinstance(r.get("completion"), str)]
    return [(r["prompt"], r["completion"]) for r in worked[: cfg.exemplars]]


def embedded_model(cfg: ChainOfThoughtConfig, ctx: RunContext) -> RunContext:
    """On the embedded reasoning task the default model is the few-shot variant of the reasoning
    model (trained on pages of several problems, see posttrain.embedded.fewshot)."""
    if ctx.model is None and ctx.dataset is None and cfg.task == "reasoning":
        return replace(ctx, model=FEWSHOT_MODEL)
    return ctx


def run(cfg: ChainOfThoughtConfig, ctx: RunContext) -> RunResult:
    cfg = cfg.model_copy(update={"baseline": False})  # `before` is standard prompting, computed below
    ctx = embedded_model(cfg, ctx)
    model, tokenizer, problems, _, meter = setup(cfg, ctx)
    embedded = ctx.dataset is None and ctx.model in (None, REASONING_MODEL, FEWSHOT_MODEL)
    trigger, answer_trigger = embedded_defaults(cfg, embedded)
    questions = [str(r["prompt"]) for r in problems.records]
    tokens = new_tokens(cfg, problems)
    shots = exemplar_pairs(cfg, ctx, problems) if cfg.mode == "few_shot" else []
    per_problem = PerProblem.of(len(questions))
    # standard prompting (the papers' baseline): answers without rationales
    std_shots = [(q, answer_only(a, answer_trigger)) for q, a in shots]
    std_prompts = [few_shot_prompt(std_shots, q, cfg.separator) + answer_trigger for q in questions]
    std = sample(model, tokenizer, std_prompts, 1, tokens, None, greedy=True, batch_size=cfg.batch_size)
    std_preds = [answer_trigger + row[0] for row in std.texts]
    from posttrain.inference.recipe import accuracy, record_accuracy

    record_accuracy(problems, std_preds)  # the paired test's `before`: standard prompting
    before = {
        "accuracy": accuracy(problems, std_preds),
        "generated_tokens_per_problem": sum(sum(r) for r in std.lengths()) / len(questions),
    }
    # chain of thought
    stop = step_stop(tokenizer, cfg.separator) if shots else {}
    if cfg.mode == "few_shot":
        cot_prompts = [few_shot_prompt(shots, q, cfg.separator) for q in questions]
        out = sample(
            model, tokenizer, cot_prompts, 1, tokens, meter, greedy=True, batch_size=cfg.batch_size, extra_generate=stop
        )
        predictions = [row[0].removesuffix(cfg.separator) for row in out.texts]
        per_problem.add_tokens(range(len(questions)), [r[0] for r in out.lengths()])
    else:
        stage1 = [zero_shot_prompt(q, trigger) for q in questions]
        think = sample(
            model,
            tokenizer,
            stage1,
            1,
            tokens,
            meter,
            greedy=True,
            batch_size=cfg.batch_size,
            extra_generate=step_stop(tokenizer, answer_trigger) if answer_trigger else None,
        )
        reasoning = [row[0].removesuffix(answer_trigger) for row in think.texts]
        stage2 = [answer_prompt(p, r, answer_trigger) for p, r in zip(stage1, reasoning, strict=True)]
        ans = sample(model, tokenizer, stage2, 1, 8, meter, greedy=True, batch_size=cfg.batch_size)
        predictions = [r + answer_trigger + row[0] for r, row in zip(reasoning, ans.texts, strict=True)]
        per_problem.add_tokens(
            range(len(questions)), [a[0] + b[0] for a, b in zip(think.lengths(), ans.lengths(), strict=True)]
        )
    return finish(ctx, problems, predictions, meter, before, per_problem.rows, mode=cfg.mode, exemplars=len(shots))
