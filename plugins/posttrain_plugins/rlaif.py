"""Reinforcement learning from AI feedback (RLAIF): RLHF with preference labels from an AI labeller.

Paper: Lee, Phatale, Mansoor, Mesnard, Ferret, Lu, Bishop, Hall, Carbune, Rastogi, Prakash, 2023,
"RLAIF vs. RLHF: Scaling Reinforcement Learning from Human Feedback with AI Feedback",
arXiv:2309.00267 (AI preference labelling, position debiasing, reward-model training on AI
labels, then RL). Precursor: Bai et al. 2022, "Constitutional AI", arXiv:2212.08073.
Catalog entry: catalog/methods/rlaif.yaml.

    catalog run rlaif                                  # embedded model; the SFT model labels its own samples
    catalog run rlaif --model Qwen/Qwen2.5-0.5B --set judge=prompted --set judge_model=Qwen/Qwen2.5-7B-Instruct \\
        --set sft_dataset=demos.jsonl --set prompt_dataset=prompts.jsonl

Stages, each in a sub-folder of this run:

1. ``1-sft/``: ``sft`` on demonstrations;
2. ``2-ai-feedback/``: two responses per prompt are sampled from the SFT model and an AI labeller
   states which is better; the pairs are written as prompt/chosen/rejected JSONL (``train.jsonl``,
   each with the labeller's probability ``p_ai``);
3. ``3-reward-model/``: ``reward-model`` (Bradley-Terry) on the AI-labelled pairs;
4. ``4-ppo/``: ``ppo`` from the SFT model against that reward model (critic from the reward model).

WHO JUDGES (be clear about it). Two labellers are implemented:

- ``judge=likelihood`` (default): the judge model's own likelihood: p_AI(y1 > y2) =
  σ((log π_J(y1|x) - log π_J(y2|x)) / τ). The judge is ``judge_model``, by default the SFT model of
  stage 1, so the policy labels its own samples. The embedded tiny model cannot read a "which
  answer is better?" prompt, so this is the AI feedback it can give: its preference for the answer
  it finds more probable. It is a weak labeller (right when the model's likelihood ranks the
  correct sum higher), and it is the only source of training labels: the task checker never
  labels a training pair. The run reports how often the AI labels agree with the checker
  (``ai-feedback/agreement_with_checker``, over pairs where exactly one response is correct), and
  the reward model's held-out accuracy is measured on the task's true preference pairs.
- ``judge=prompted``: the labelling of Lee et al. for instruction-following judges: the judge model
  is asked which of two responses is better and p_AI is the softmax over its next-token logits of
  "1" and "2", averaged over both presentation orders (position debiasing). Use it
  with a real instruct model as ``judge_model``; it is meaningless on the embedded model.

Measured on the embedded task (reports/runs/rlaif.json, defaults, seed 0, embedded base rebuilt on
2026-12-02): held-out exact match 0.778 (base) -> 0.896 (SFT) -> 0.848 (PPO). The AI labels agree
with the checker on 94.5% of the 14454 pairs with exactly one correct response (17444 pairs from
40000 prompts); the reward model trained on them orders 0.645 of the task's held-out pairs
correctly (0.510 untrained). PPO raises that reward model's held-out score (0.811 -> 0.847) but
lowers exact match (0.886 -> 0.848, greedy on PPO's own 500 held-out prompts; binomial standard
error 0.014, so -2.7 SE): on this task RLAIF with the model as its own labeller does not help
after SFT.

Why 40000 labelled prompts and 1500 reward-model steps: with a fifth of the prompts and 400 steps
the reward model stayed at chance, also on held-out pairs of the SFT model's own samples (checker
used only to score, never to train). It had too few pairs and steps to learn to check a sum, not
a mismatch between the sampled pairs and the task's pairs.

Why PPO still does not beat SFT here: not only the judge. With the task checker itself as the
reward (the ppo plugin on this SFT model, or GRPO) greedy exact match does not rise beyond noise
either, over several rollout sizes and learning rates: sampled accuracy rises, but the greedy
answers of held-out problems flip both ways. The defaults take the least noisy of these settings
(big rollouts, few steps). These exploratory runs are not recorded as reports.

Default budgets, and why: 40000 prompts are labelled (above); the reward model trains 1500 steps
(~5.5 epochs of 17444 pairs); PPO stays close to the SFT model (β = 0.5) and uses large rollouts
(512 prompts, two 256-completion updates each, lr 1e-4, 60 steps): 64-prompt rollouts at lr 3e-5
(the former defaults) or 7.5e-5 flip greedy answers at random, and a learned reward is exploitable
when pushed (Gao et al. 2022, arXiv:2210.10760; with 150 reward-model steps and PPO's own β = 0.05,
lr 3e-4, 240 steps, exact match collapsed). See the rlhf plugin's docstring for more. PPO scores
completions with the reward model tokenized as in its training (prompt + completion + EOS).

Deviations from the paper:
1. Soft labels become hard ones: the response the labeller prefers (p_AI > 0.5) is "chosen", and
   the reward model is trained with the plain Bradley-Terry loss (the paper trains on p_AI with a
   soft cross-entropy). p_AI is kept in the JSONL.
2. No chain-of-thought rationales or few-shot exemplars in the judge prompt; the prompted judge
   uses a short fixed preamble (``judge_preamble``).
3. Budgets (150 SFT steps, 40000 labelled prompts, 1500 reward-model steps, 60 PPO steps of 256
   completions at β = 0.5 and lr 1e-4) are sized for the embedded tiny model.
"""

from __future__ import annotations

import json
import random
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.runs.pipeline import Pipeline, check_no_dataset


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sft_dataset: str | None = Field(None, description="Demonstrations for stage 1 (default: embedded).")
    prompt_dataset: str | None = Field(
        None, description="Prompts to label (stage 2) and to run PPO on (stage 4) (default: embedded prompts)."
    )
    judge: Literal["likelihood", "prompted"] = Field(
        "likelihood", description="AI labeller: the judge model's likelihood, or a prompted 1-vs-2 question."
    )
    judge_model: str | None = Field(None, description="The labeller model (default: the SFT model of stage 1).")
    judge_temperature: float = Field(1.0, gt=0, description="τ of the likelihood labeller.")
    judge_preamble: str = Field(
        "A good response answers the request correctly and helpfully. Given the request and two responses, "
        "answer with the number of the better response.\n",
        description="Instruction of the prompted labeller (Lee et al.: the preamble).",
    )
    label_prompts: int = Field(40000, ge=2, description="Prompts whose two sampled responses are labelled.")
    sample_temperature: float = Field(1.0, gt=0, description="Temperature of the two responses sampled per prompt.")
    sft: dict[str, Any] = Field({"max_steps": 150}, description="Overrides of stage 1 (sft).")
    reward_model: dict[str, Any] = Field({"max_steps": 1500}, description="Overrides of stage 3 (reward-model).")
    ppo: dict[str, Any] = Field(
        {
            "kl_coef": 0.5,
            "learning_rate": 1e-4,
            "max_steps": 60,
            "prompts_per_step": 512,
            "batch_size": 256,
            "policy_epochs": 1,
            "train_examples": 8000,
        },
        description="Overrides of stage 4 (ppo).",
    )


# --- the AI labeller (pure parts) -----------------------------------------------------------------


def likelihood_preference(logp_first: torch.Tensor, logp_second: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_AI(first > second) = σ((log π_J(first) - log π_J(second)) / τ); 0.5 when the judge is indifferent."""
    return torch.sigmoid((logp_first - logp_second) / temperature)


def position_debiased(p_first_shown_first: torch.Tensor, p_first_shown_second: torch.Tensor) -> torch.Tensor:
    """Lee et al.: average the preference for response 1 over both orders,
    ½ (P(1 | 1 shown first) + P(1 | 1 shown second)); inputs are P(response 1 is better)."""
    return 0.5 * (p_first_shown_first + p_first_shown_second)


def option_probability(logit_one: torch.Tensor, logit_two: torch.Tensor) -> torch.Tensor:
    """P("1") among the two answer tokens: softmax over their next-token logits."""
    return torch.sigmoid(logit_one - logit_two)


# --- labelling ------------------------------------------------------------------------------------


@torch.no_grad()
def judge_likelihood(judge, tokenizer, prompts, first, second, temperature: float) -> torch.Tensor:
    from posttrain.data import pad_sequences, tokenize_prompt_completion
    from posttrain.logprobs import sequence_logprobs

    def logps(completions):
        examples = [
            tokenize_prompt_completion({"prompt": p, "completion": c}, tokenizer)
            for p, c in zip(prompts, completions, strict=True)
        ]
        out = []
        for i in range(0, len(examples), 64):
            batch = pad_sequences(examples[i : i + 64], tokenizer.pad_token_id, str(judge.device))
            out.append(sequence_logprobs(judge, batch)[0])
        return torch.cat(out)

    return likelihood_preference(logps(first), logps(second), temperature).cpu()


@torch.no_grad()
def judge_prompted(judge, tokenizer, prompts, first, second, preamble: str) -> torch.Tensor:
    from posttrain.data import prompt_ids
    from posttrain.generation.sampler import left_pad, position_ids

    one = tokenizer("1", add_special_tokens=False)["input_ids"][-1]
    two = tokenizer("2", add_special_tokens=False)["input_ids"][-1]

    def p_one(a_list, b_list):
        texts = [
            f"{preamble}Request: {_text(p)}\nResponse 1: {a}\nResponse 2: {b}\nThe better response is number"
            for p, a, b in zip(prompts, a_list, b_list, strict=True)
        ]
        out = []
        for i in range(0, len(texts), 16):
            chunk = texts[i : i + 16]
            msgs = [[{"role": "user", "content": t}] if getattr(tokenizer, "chat_template", None) else t for t in chunk]
            ids, attn = left_pad([prompt_ids(tokenizer, m) for m in msgs], tokenizer.pad_token_id)
            ids, attn = ids.to(judge.device), attn.to(judge.device)
            logits = judge(input_ids=ids, attention_mask=attn, position_ids=position_ids(attn)).logits[:, -1].float()
            out.append(option_probability(logits[:, one], logits[:, two]).cpu())
        return torch.cat(out)

    # P(first better) when first is shown first, and when it is shown second (1 - P("1") of the swapped order).
    return position_debiased(p_one(first, second), 1 - p_one(second, first))


def _text(prompt) -> str:
    return prompt if isinstance(prompt, str) else " ".join(str(m.get("content", "")) for m in prompt)


def ai_feedback(cfg: Config, ctx: RunContext, sft_model: str, out) -> dict[str, float]:
    """Sample two responses per prompt from the SFT model, label them with the AI judge, write JSONL."""
    from dataclasses import replace

    from posttrain.data import task_records
    from posttrain.evaluation import score
    from posttrain.generation.sampler import Sampling
    from posttrain.hf import load_model, load_tokenizer
    from posttrain.rl.rollout import sample_completions

    n_prompts = 16 if ctx.smoke else cfg.label_prompts
    records, _, _ = task_records(replace(ctx, dataset=cfg.prompt_dataset), "prompt", n_prompts, 1)
    records = records[:n_prompts]
    tokenizer = load_tokenizer(sft_model, ctx.trust_remote_code)
    policy = load_model(sft_model, ctx.device, ctx.trust_remote_code)
    sampling = Sampling(max_new_tokens=8 if cfg.prompt_dataset is None else 256, temperature=cfg.sample_temperature)
    rollout = sample_completions(policy, tokenizer, records, 2, sampling)
    pairs = [(rollout.records[i], rollout.texts[i], rollout.texts[i + 1]) for i in range(0, len(rollout), 2)]
    pairs = [(r, a, b) for r, a, b in pairs if a.strip() != b.strip()]  # identical responses carry no preference
    prompts, first, second = [r["prompt"] for r, _, _ in pairs], [a for _, a, _ in pairs], [b for _, _, b in pairs]
    if not pairs:
        return {"pairs": 0.0}
    if cfg.judge == "likelihood":
        judge = policy if cfg.judge_model is None else load_model(cfg.judge_model, ctx.device, ctx.trust_remote_code)
        judge_tok = tokenizer if cfg.judge_model is None else load_tokenizer(cfg.judge_model, ctx.trust_remote_code)
        p_first = judge_likelihood(judge, judge_tok, prompts, first, second, cfg.judge_temperature)
    else:
        source = cfg.judge_model or sft_model
        judge, judge_tok = load_model(source, ctx.device, ctx.trust_remote_code), load_tokenizer(source)
        p_first = judge_prompted(judge, judge_tok, prompts, first, second, cfg.judge_preamble)
    rows, agree, decided = [], 0, 0
    for (record, a, b), p in zip(pairs, p_first.tolist(), strict=True):
        chosen, rejected, p_ai = (a, b, p) if p >= 0.5 else (b, a, 1 - p)
        rows.append({"prompt": record["prompt"], "chosen": chosen, "rejected": rejected, "p_ai": round(p_ai, 4)})
        if "answer" in record and score(chosen, record) != score(rejected, record):
            decided += 1
            agree += int(score(chosen, record))
    out.mkdir(parents=True, exist_ok=True)
    random.Random(ctx.seed).shuffle(rows)
    with (out / "train.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    if cfg.prompt_dataset is None:  # held-out check of the reward model: the task's true preference pairs
        from posttrain.data import EVAL_SEED
        from posttrain.embedded.task import DEFAULT_TASK

        with (out / "test.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in DEFAULT_TASK.preference_pairs(200, EVAL_SEED, "test"))
    metrics = {"pairs": float(len(rows)), "mean_p_ai": sum(r["p_ai"] for r in rows) / len(rows)}
    if decided:
        metrics["agreement_with_checker"] = agree / decided
        metrics["pairs_with_one_correct"] = float(decided)
    return metrics


# --- run ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    check_no_dataset(ctx, "rlaif", "sft_dataset and prompt_dataset")
    pipe = Pipeline(ctx, "rlaif")
    sft = pipe.run("sft", model=ctx.model, dataset=cfg.sft_dataset, **cfg.sft)
    labels_dir = pipe.next_dir("ai-feedback")
    print(f"rlaif: stage 2: AI labels ({cfg.judge} judge) -> {labels_dir}")
    feedback = ai_feedback(cfg, ctx, sft.model, labels_dir)
    pipe.add("ai-feedback", feedback, {"model": sft.model, "labels": str(labels_dir / "train.jsonl")})
    if not feedback.get("pairs"):
        raise_no_pairs()
    rm = pipe.run("reward-model", model=sft.model, dataset=str(labels_dir), **cfg.reward_model)
    ppo_overrides = {"rewards": [f"reward-model:{rm.model}"], "critic_model": rm.model, **cfg.ppo}
    pipe.run("ppo", model=sft.model, dataset=cfg.prompt_dataset, **ppo_overrides)
    return pipe.result(ai_feedback=feedback)


def raise_no_pairs() -> None:
    from posttrain.errors import UserError

    raise UserError("rlaif: every prompt's two sampled responses were identical; raise sample_temperature")


plugin = Plugin(
    id="rlaif",
    config=Config,
    run=run,
    kind="pipeline",
    summary="RLHF with AI preference labels: SFT, AI-labelled pairs, a reward model on them, then PPO.",
    smoke={},
)
