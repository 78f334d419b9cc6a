"""Rejection-sampling fine-tuning (RAFT / RFT): sample, keep what the verifier or reward model
accepts, fine-tune on it, repeat.

Papers: Dong et al. 2023, "RAFT: Reward rAnked FineTuning for Generative Foundation Model
Alignment", arXiv:2304.06767 (rounds of: sample K per prompt, keep the top-1 by reward, SFT);
Yuan et al. 2023, "Scaling Relationship on Learning Mathematical Reasoning with Large Language
Models" (RFT), arXiv:2308.01825 (keep every distinct correct sample); DeepSeek-AI 2025,
"DeepSeek-R1", arXiv:2501.12948, §2.3.3 (the rejection-sampling + SFT stage); Llama 2,
arXiv:2307.09288, §3.2.3 (rejection sampling with a reward model). Catalog entry:
catalog/methods/rejection-sampling-ft.yaml.

    catalog run rejection-sampling-ft                                   # embedded model, checker
    catalog run rejection-sampling-ft --model ./sft --dataset prompts.jsonl --set rounds=3 --set samples_per_prompt=16
    catalog run rejection-sampling-ft --set reward_model=runs/reward-model/<stamp>/model   # RAFT top-1

Data: ``prompt`` records with ``answer`` (checked by the task checker: first integer for numeric
answers, else exact match), or any ``prompt`` records plus ``--set reward_model=PATH``.

Each round r = 1..R: draw ``prompts_per_round`` prompts, sample k completions each from the current
policy (temperature T), accept them (verifier: every distinct correct completion, as RFT; reward
model: the top-1 completion per prompt, as RAFT), then run ``steps_per_round`` SFT steps on the
accepted set (loss on the completion tokens). The next round samples from the updated policy.
A round that accepts nothing trains on the previous round's accepted set again (with a warning);
when nothing has been accepted yet the run stops with an error naming the round.

Deviations from the papers:
1. One optimizer and learning-rate schedule span all rounds (RAFT restarts fine-tuning each stage);
   DeepSeek-R1 fine-tunes the base model once on the collected data, which is ``rounds=1`` here
   with ``--model`` the base and the samples drawn from that same model (R1 samples from its RL
   checkpoint; pass that checkpoint's samples as SFT data to ``sft`` to reproduce exactly).
2. No general (non-reasoning) SFT data is mixed in (DeepSeek-R1 adds ~200K samples); R1's
   readability filters (language mixing, long paragraphs) are not applied.
3. Sizes (rounds, prompts, k, steps, learning rate) are set for the embedded tiny model.
4. On ``--resume`` the current round's samples are redrawn from the resumed policy.
"""

from __future__ import annotations

import random
from typing import ClassVar

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.console import warn
from posttrain.data import batch_indices, pad_sequences, task_records, tokenize_prompt_completion
from posttrain.errors import UserError
from posttrain.evaluation import exact_match, reference_of, score
from posttrain.generation.decode import generate
from posttrain.hf import load_policy, lora_settings, parameter_counts
from posttrain.logprobs import completion_nll
from posttrain.training.config import TrainingConfig
from posttrain.training.trainer import Trainer, finish, loop_settings


class Config(TrainingConfig):
    rounds: int = Field(3, ge=1, description="R, sample-filter-fine-tune rounds (RAFT: stages).")
    samples_per_prompt: int = Field(8, ge=1, description="k, completions sampled per prompt (RAFT: K; RFT: k=100).")
    prompts_per_round: int = Field(512, ge=1, description="Prompts sampled per round (RAFT: b).")
    steps_per_round: int = Field(40, ge=1, description="SFT optimizer steps on each round's accepted samples.")
    temperature: float = Field(
        1.0, gt=0, description="Sampling temperature T (RFT: 0.7; 1.0 on the embedded model for diverse samples)."
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    dedupe: bool = Field(True, description="Keep each distinct accepted completion once per prompt (RFT).")
    reward_model: str | None = Field(
        None, description="Reward-model folder (catalog run reward-model): accept the top-1 of k by reward (RAFT)."
    )
    learning_rate: float = Field(3e-4, gt=0, description="Peak learning rate (sized for the embedded model).")
    batch_size: int = Field(64, ge=1, description="Accepted samples per SFT micro-batch.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    # ClassVar removes TrainingConfig's field; build_config names the reason when one is set.
    max_steps: ClassVar[None] = None
    removed_options: ClassVar[dict[str, str]] = {
        "max_steps": "the run takes rounds × steps_per_round optimizer steps; set rounds and steps_per_round"
    }
    train_examples: int = Field(
        5000, ge=1, description="Prompt pool drawn from the embedded task (ignored with --dataset)."
    )


# --- selection rules -------------------------------------------------------------------------------


def select_verified(
    completions: list[list[str]], accepted: list[list[bool]], dedupe: bool = True
) -> list[tuple[int, int]]:
    """(prompt, sample) indices of the accepted completions, distinct ones only when ``dedupe`` (RFT).

    ``completions[i][j]`` is sample j of prompt i; ``accepted[i][j]`` the verifier's verdict.
    A prompt with no accepted sample contributes nothing.
    """
    kept = []
    for i, (group, verdicts) in enumerate(zip(completions, accepted, strict=True)):
        seen: set[str] = set()
        for j, (text, ok) in enumerate(zip(group, verdicts, strict=True)):
            if ok and not (dedupe and text.strip() in seen):
                kept.append((i, j))
                seen.add(text.strip())
    return kept


def select_top1(rewards: torch.Tensor) -> torch.Tensor:
    """Index of the highest-reward sample per prompt (RAFT), rewards (P, k) -> (P,); ties: first."""
    return rewards.argmax(dim=-1)


# --- run -----------------------------------------------------------------------------------------


class Sampler:
    """One round's data: sample k completions per prompt from the policy and keep the accepted ones."""

    def __init__(self, cfg: Config, ctx: RunContext, policy, tokenizer, pool: list[dict], max_new_tokens: int):
        self.cfg, self.ctx, self.policy, self.tokenizer = cfg, ctx, policy, tokenizer
        self.pool, self.max_new_tokens = pool, max_new_tokens
        self.judge = None
        if cfg.reward_model:
            from posttrain.scoring.scorers import load_reward_model

            self.judge = load_reward_model(cfg.reward_model, ctx.device, what="--set reward_model")

    def collect(self, round_index: int) -> tuple[list[dict], dict]:
        cfg, k = self.cfg, self.cfg.samples_per_prompt
        rng = random.Random(self.ctx.seed * 1_000_003 + round_index)
        records = rng.sample(self.pool, min(cfg.prompts_per_round, len(self.pool)))
        torch.manual_seed(self.ctx.seed * 1_000_003 + round_index)
        flat = generate(
            self.policy,
            self.tokenizer,
            [r["prompt"] for r in records for _ in range(k)],
            self.max_new_tokens,
            batch_size=256,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
        )
        groups = [flat[i * k : (i + 1) * k] for i in range(len(records))]
        correct = [[score(c, r) for c in g] for g, r in zip(groups, records, strict=True)]
        if self.judge is not None:
            from posttrain.scoring.scorers import score as rm_score

            rewards = rm_score(*self.judge, [r["prompt"] for r in records for _ in range(k)], flat).view(-1, k)
            kept = [(i, int(j)) for i, j in enumerate(select_top1(rewards).tolist())]
        else:
            kept = select_verified(groups, correct, cfg.dedupe)
        data = [{"prompt": records[i]["prompt"], "completion": groups[i][j]} for i, j in kept]
        stats = {
            "round": round_index + 1,
            "samples/accuracy": sum(map(sum, correct)) / max(1, len(flat)),
            "samples/accepted": len(data),
            "samples/prompts_with_accepted": len({i for i, _ in kept}) / max(1, len(records)),
            "samples/accepted_accuracy": sum(correct[i][j] for i, j in kept) / max(1, len(kept)),
        }
        return data, stats


def run(cfg: Config, ctx: RunContext) -> RunResult:
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    pool, heldout, source = task_records(ctx, "prompt", cfg.train_examples, cfg.eval_examples)
    if cfg.reward_model is None:
        missing = next((r for r in pool if reference_of(r) is None), None)
        if missing is not None:
            raise UserError(
                f"{source}:{missing.get('_line', '?')}: no `answer` to verify against; add one or pass --set reward_model=PATH"
            )
    max_new_tokens = cfg.max_new_tokens or (8 if ctx.dataset is None else 128)
    sampler = Sampler(cfg, ctx, policy, tokenizer, pool, max_new_tokens)
    counts = parameter_counts(policy)
    ctx.log(0, counts)

    def evaluate() -> dict:
        return {"exact_match": exact_match(policy, tokenizer, heldout, max_new_tokens)["exact_match"]}

    def sft_loss(data: list[dict], step: int, micro: int):
        idx = batch_indices(len(data), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pad_sequences([data[i] for i in idx], tokenizer.pad_token_id, ctx.device)
        return completion_nll(policy, batch), {"tokens": int(batch["attention_mask"].sum())}

    before = evaluate()
    settings = loop_settings(cfg)
    settings.max_steps = cfg.rounds * cfg.steps_per_round
    data: list[dict] = []
    with Trainer(policy, ctx, settings, f"rejection-sampling-ft on {source}") as trainer:
        # A resumed run redraws the samples of the round it stopped in (from the resumed policy).
        for round_index in range(trainer.start_step // cfg.steps_per_round, cfg.rounds):
            with trainer.micro_batch():  # as the round's SFT steps: under the training forward's autocast
                accepted, stats = sampler.collect(round_index)
                ctx.log(trainer.done, {**stats, "round/heldout_exact_match": evaluate()["exact_match"]})
            if accepted:
                data = [tokenize_prompt_completion(d, tokenizer, cfg.max_length) for d in accepted]
            elif not data:
                raise UserError(nothing_accepted_message(round_index, cfg))
            else:  # nothing accepted this round: no new SFT data, the last round's samples again
                warn(f"rejection-sampling-ft round {round_index + 1}: no sample accepted; training on the last round's")
            first = round_index * cfg.steps_per_round
            for step in range(max(first, trainer.start_step), first + cfg.steps_per_round):
                for micro in range(cfg.grad_accum):
                    with trainer.micro_batch():
                        trainer.step(*sft_loss(data, step, micro))
    after = evaluate()
    return finish(ctx, policy, tokenizer, trainer.result, before, after, data=source, rounds=cfg.rounds, **counts)


def nothing_accepted_message(round_index: int, cfg: Config) -> str:
    judge = "the reward model" if cfg.reward_model else "the verifier"
    return (
        f"rejection-sampling-ft round {round_index + 1}: {judge} accepted none of the "
        f"{cfg.prompts_per_round} x {cfg.samples_per_prompt} samples, so there is nothing to fine-tune on; "
        "raise samples_per_prompt, prompts_per_round or temperature, or start from a stronger --model"
    )


plugin = Plugin(
    id="rejection-sampling-ft",
    config=Config,
    run=run,
    summary="Rejection-sampling fine-tuning (RAFT / RFT): SFT on the samples a verifier or reward model accepts.",
    smoke={
        "rounds": 2,
        "steps_per_round": 1,
        "prompts_per_round": 16,
        "samples_per_prompt": 4,
        "train_examples": 64,
        "eval_examples": 16,
        "batch_size": 8,
        "log_every": 1,
    },
)
