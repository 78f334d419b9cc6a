"""Online / iterative DPO: DPO on pairs sampled from the current policy and judged online.

Paper: Guo, Zhang, Liu, et al. 2024, "Direct Language Model Alignment from Online AI Feedback"
(OAIF), arXiv:2402.04792, Algorithm 1: sample two responses from the current policy, let an
annotator pick the better one, take a DPO step on that pair, repeat. Iterative (round-based)
variants: Xu et al. 2023, "Some things are more CRINGE than others: Iterative Preference
Optimization with the Pairwise Cringe Loss", arXiv:2312.16682; Xiong et al. 2023, "Iterative
Preference Learning from Human Feedback", arXiv:2312.11456; Pang et al. 2024, "Iterative Reasoning
Preference Optimization", arXiv:2404.19733 (correct vs wrong answers as pairs, NLL term, reference
= previous iteration). Catalog entry: catalog/methods/online-dpo.yaml.

    catalog run online-dpo                                                  # embedded model, checker
    catalog run online-dpo --set reward_model=runs/reward-model/<stamp>/model   # a trained RM as annotator
    catalog run online-dpo --model ./sft --dataset prompts.jsonl --set samples_per_prompt=4 --set reference=previous_round

Data: ``prompt`` records with ``answer`` (the task checker judges), or any ``prompt`` records plus
``--set reward_model=PATH`` (the reward model judges).

Each round: draw ``prompts_per_round`` prompts, sample k completions each from the current policy,
score them with the annotator, pair the best against the worst sample of each prompt (no pair when
all k tie), compute the reference log-probs of the new pairs once, and take ``steps_per_round``
DPO steps on them (``posttrain.training.preference.dpo_loss``). ``steps_per_round=1`` with batches as large
as the round is OAIF's fully online setting. A round whose prompts all tie trains on the previous
round's pairs again (with a warning); when no round has given a pair yet the run stops with an
error naming the round.

Deviations from the papers:
1. The annotator is the task checker (binary, so pairs need one right and one wrong sample) or a
   trained reward model, not an LLM prompted to compare two responses (OAIF's AI feedback).
2. Pairs are best vs worst of k samples (Xiong et al.; Pang et al. use correct vs wrong); with
   k = 2 this is exactly OAIF's pair.
3. Rounds of several steps on one batch of samples instead of one step per sample batch by default
   (cheaper generation on CPU); the reference is the initial policy (OAIF) unless
   ``reference=previous_round`` (Pang et al., Xu et al.).
4. AdamW with warmup and cosine decay; sizes are set for the embedded tiny model.
5. On ``--resume`` the current round's samples are redrawn from the resumed policy.
6. The default adds RPO's NLL term on the chosen samples (``rpo_alpha=1``, Pang et al.'s
   iterative RPO; OAIF has none, ``rpo_alpha=0``). Over 3 seeds on 500 held-out problems the NLL-free
   loss lowers greedy exact match, 79.4% -> 76.4% for seed 0 (pooled 96 fixed / 153 broken,
   p = 0.00037; reports/runs/online-dpo-plain.json), the default raises it (pooled 113 fixed /
   65 broken, p = 0.0004; reports/runs/online-dpo.json).
"""

from __future__ import annotations

import random
from typing import ClassVar, Literal

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.console import warn
from posttrain.data import batch_indices, task_records, tokenize_preference
from posttrain.errors import UserError
from posttrain.evaluation import exact_match, reference_of, score
from posttrain.generation.decode import generate
from posttrain.hf import frozen_reference, load_policy, lora_settings, parameter_counts, reference_mode
from posttrain.training.config import TrainingConfig
from posttrain.training.preference import all_logps, batch_loss, pair_batch, preference_accuracy
from posttrain.training.trainer import Trainer, finish, loop_settings


class Config(TrainingConfig):
    beta: float = Field(0.1, gt=0, description="β of the DPO loss (DPO's default 0.1).")
    rounds: int = Field(10, ge=1, description="Sample-judge-train rounds.")
    samples_per_prompt: int = Field(2, ge=2, description="k, on-policy samples per prompt (OAIF: 2).")
    prompts_per_round: int = Field(256, ge=1, description="Prompts sampled per round.")
    steps_per_round: int = Field(10, ge=1, description="DPO optimizer steps on each round's pairs (OAIF: 1).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the policy's on-policy samples.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    reference: Literal["initial", "previous_round"] = Field(
        "initial",
        description="π_ref: the starting policy (OAIF) or the policy at the start of each round (Pang et al.).",
    )
    rpo_alpha: float = Field(
        1.0, ge=0, description="α of the NLL term on the chosen sample (Pang et al.: 1, the default; OAIF: 0)."
    )
    reward_model: str | None = Field(
        None, description="Reward-model folder (catalog run reward-model) used as the annotator instead of the checker."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (sized for the embedded model).")
    batch_size: int = Field(32, ge=1, description="Pairs per micro-batch.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    # ClassVar removes TrainingConfig's field; build_config names the reason when one is set.
    max_steps: ClassVar[None] = None
    removed_options: ClassVar[dict[str, str]] = {
        "max_steps": "the run takes rounds × steps_per_round optimizer steps; set rounds and steps_per_round"
    }
    train_examples: int = Field(
        5000, ge=1, description="Prompt pool drawn from the embedded task (ignored with --dataset)."
    )


# --- pairing rule ------------------------------------------------------------------------------------


def best_worst_pairs(rewards: torch.Tensor) -> torch.Tensor:
    """Rows (prompt, chosen sample, rejected sample) for rewards (P, k): the argmax against the argmin
    of each prompt, skipping prompts whose samples all tie (no preference to learn). -> (M, 3) long."""
    best, worst = rewards.argmax(dim=-1), rewards.argmin(dim=-1)
    keep = rewards.max(dim=-1).values > rewards.min(dim=-1).values
    prompts = torch.arange(rewards.shape[0], device=rewards.device)
    return torch.stack([prompts, best, worst], dim=-1)[keep]


# --- run ---------------------------------------------------------------------------------------------


class Annotator:
    """Scores samples: the task checker (1 right, 0 wrong) or a reward model's scalar."""

    def __init__(self, cfg: Config, ctx: RunContext):
        self.model = None
        if cfg.reward_model:
            from posttrain.scoring.scorers import load_reward_model

            self.model = load_reward_model(cfg.reward_model, ctx.device, what="--set reward_model")

    def __call__(self, records: list[dict], completions: list[str]) -> torch.Tensor:
        if self.model is not None:
            from posttrain.scoring.scorers import score as rm_score

            return rm_score(*self.model, [r["prompt"] for r in records], completions)
        return torch.tensor([float(score(c, r)) for c, r in zip(completions, records, strict=True)])


def run(cfg: Config, ctx: RunContext) -> RunResult:
    policy, tokenizer = load_policy(ctx, lora_settings(cfg))
    initial = frozen_reference(policy) if cfg.reference == "initial" else None
    pool, heldout, source = task_records(ctx, "prompt", cfg.train_examples, cfg.eval_examples)
    if cfg.reward_model is None:
        missing = next((r for r in pool if reference_of(r) is None), None)
        if missing is not None:
            raise UserError(
                f"{source}:{missing.get('_line', '?')}: no `answer` for the checker; add one or pass --set reward_model=PATH"
            )
    annotator = Annotator(cfg, ctx)
    pad, k = tokenizer.pad_token_id, cfg.samples_per_prompt
    max_new_tokens = cfg.max_new_tokens or (8 if ctx.dataset is None else 128)
    counts = parameter_counts(policy)
    ctx.log(0, counts)

    def judged_pairs(records: list[dict], seed: int) -> tuple[list[dict], torch.Tensor]:
        """Sample k completions per prompt from the current policy, judge them, pair best vs worst."""
        torch.manual_seed(seed)
        repeated = [r for r in records for _ in range(k)]
        flat = generate(
            policy,
            tokenizer,
            [r["prompt"] for r in repeated],
            max_new_tokens,
            256,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
        )
        rewards = annotator(repeated, flat).view(-1, k)
        texts = [
            {"prompt": records[i]["prompt"], "chosen": flat[i * k + c], "rejected": flat[i * k + r]}
            for i, c, r in best_worst_pairs(rewards).tolist()
        ]
        return [tokenize_preference(t, tokenizer, cfg.max_length) for t in texts], rewards

    def reference_logps(pairs: list) -> tuple[torch.Tensor, torch.Tensor]:
        policy.eval()
        if cfg.reference == "initial":
            with reference_mode(policy, initial) as model:
                ref = all_logps(model, pairs, pad, ctx.device)
        else:  # the policy as it stands at the start of this round
            ref = all_logps(policy, pairs, pad, ctx.device)
        policy.train()
        return ref

    # Held-out on-policy pairs: the initial policy's samples on held-out prompts, judged once; their
    # implicit-reward accuracy (against the initial policy) measures what the run learned to prefer.
    heldout_pairs, _ = judged_pairs(heldout, ctx.seed * 1_000_003 - 1)
    with reference_mode(policy, initial) as model:
        heldout_ref = all_logps(model, heldout_pairs, pad, ctx.device) if heldout_pairs else None

    def evaluate() -> dict:
        out = {"exact_match": exact_match(policy, tokenizer, heldout, max_new_tokens)["exact_match"]}
        if annotator.model is not None:
            greedy = generate(policy, tokenizer, [r["prompt"] for r in heldout], max_new_tokens)
            out["reward"] = annotator(heldout, greedy).mean().item()
        if heldout_pairs:
            policy.eval()
            chosen, rejected = all_logps(policy, heldout_pairs, pad, ctx.device)
            policy.train()
            out["preference_accuracy"] = preference_accuracy(chosen - heldout_ref[0], rejected - heldout_ref[1]).item()
        return out

    def collect(round_index: int) -> tuple[list, tuple | None, dict]:
        """This round's on-policy pairs and their reference log-probs."""
        rng = random.Random(ctx.seed * 1_000_003 + round_index)
        records = rng.sample(pool, min(cfg.prompts_per_round, len(pool)))
        pairs, rewards = judged_pairs(records, ctx.seed * 1_000_003 + round_index)
        ref = reference_logps(pairs) if pairs else None
        stats = {"round": round_index + 1, "samples/reward": rewards.mean().item(), "samples/pairs": len(pairs)}
        return pairs, ref, stats

    def pair_loss(pairs: list, ref: tuple, step: int, micro: int):
        idx = batch_indices(len(pairs), cfg.batch_size, step * cfg.grad_accum + micro, ctx.seed)
        batch = pair_batch([pairs[i] for i in idx], pad, ctx.device)
        return batch_loss(policy, batch, ref[0][idx], ref[1][idx], cfg)

    before = evaluate()
    settings = loop_settings(cfg)
    settings.max_steps = cfg.rounds * cfg.steps_per_round
    pairs, ref = [], None
    with Trainer(policy, ctx, settings, f"online-dpo on {source}") as trainer:
        # A resumed run redraws the samples of the round it stopped in (from the resumed policy).
        for round_index in range(trainer.start_step // cfg.steps_per_round, cfg.rounds):
            with trainer.micro_batch():  # as the round's DPO steps: under the training forward's autocast
                new_pairs, new_ref, stats = collect(round_index)
                ctx.log(trainer.done, {**stats, **{f"round/heldout_{k}": v for k, v in evaluate().items()}})
            if new_pairs:
                pairs, ref = new_pairs, new_ref
            elif not pairs:
                raise UserError(no_pairs_message(round_index, cfg))
            else:  # every prompt's samples tied: nothing new to prefer, the last round's pairs again
                warn(f"online-dpo round {round_index + 1}: every prompt's samples tied; training on the last pairs")
            first = round_index * cfg.steps_per_round
            for step in range(max(first, trainer.start_step), first + cfg.steps_per_round):
                for micro in range(cfg.grad_accum):
                    with trainer.micro_batch():
                        trainer.step(*pair_loss(pairs, ref, step, micro))
    after = evaluate()
    return finish(ctx, policy, tokenizer, trainer.result, before, after, data=source, rounds=cfg.rounds, **counts)


def no_pairs_message(round_index: int, cfg: Config) -> str:
    return (
        f"online-dpo round {round_index + 1}: every prompt's {cfg.samples_per_prompt} samples got the same score, "
        "so there is no pair to learn from; raise samples_per_prompt, prompts_per_round or temperature"
    )


plugin = Plugin(
    id="online-dpo",
    config=Config,
    run=run,
    summary="Online / iterative DPO on on-policy pairs judged by the checker or a reward model.",
    smoke={
        "rounds": 2,
        "steps_per_round": 1,
        "prompts_per_round": 24,
        "samples_per_prompt": 2,
        "train_examples": 64,
        "eval_examples": 8,
        "batch_size": 8,
        "log_every": 1,
    },
)
