"""Test-Time Reinforcement Learning (TTRL): GRPO on prompts without answers, rewarded by majority vote.

Paper: Zuo, Zhang, Sheng, Qu, Cui, Zhu, Li, Zhang, Long, Hua, Qi, Sun, Ma, Yuan, Ding, Zhou, 2025,
"TTRL: Test-Time Reinforcement Learning", arXiv:2504.16084. Catalog entry: catalog/methods/ttrl.yaml.

    catalog run ttrl                                   # embedded tiny model + addition prompts
    catalog run ttrl --model Qwen/Qwen2.5-0.5B-Instruct --dataset questions.jsonl \\
        --set answer=last-integer --set max_completion_length=512 --set lora=true

Data: ``prompt`` (string or message list); an ``answer`` is optional and never trained on. With
answers, the run logs how often the vote found them (``ttrl/label_accuracy``) and the held-out
evaluation uses them, as every RL plugin's does; without any (a prompt-only file) it trains all
the same and the held-out exact match and reward are reported as None.

For each prompt, G completions are sampled and each one's final answer is read
(``answer``: the first integer, the last integer, the integer after the last '#', or
``posttrain.answers.answer_of``'s last integer or trimmed text). The
majority answer of the group is the pseudo-label, and a completion's reward is 1 when its answer
equals it, else 0 (``majority_vote_rewards``). The policy is then trained with GRPO on these
rewards: group-standardised advantages, the clipped surrogate and beta times the k3 KL
(posttrain_plugins.grpo; DeepSeekMath, arXiv:2402.03300, Eq. 3). Answers are removed from the
records before sampling (``unlabeled``), so no reward can see them.

Checked against a full-text copy of the paper (not the arXiv page itself): the pseudo-label is
the majority vote over the sampled answers and the reward is 1 on agreement with it, else 0 (Eq.
1 and 3); the policy is trained with a standard RL algorithm (GRPO or PPO). Per reading notes of
the paper, its runs vote with 64 samples and train on 32 of them, sample at temperature 0.6 (1.0
for Qwen2.5-Math and reasoning models) and use GRPO with a cosine learning rate peaking at 5e-7;
the authors' code (PRIME-RL/TTRL ``ppo_trainer_ttrl.yaml``) has separate ``n_votes_per_prompt``
and ``n_samples_per_prompt``.

Deviations from the paper:
1. By default the vote is over the G completions that are trained on; ``num_votes`` samples more
   completions per prompt that only vote (the paper votes with 64 and trains on 32, see above).
2. Ties are broken by the answer that appears first among the group's samples (sampling order);
   a completion whose answer cannot be read never wins and is never rewarded, and a group with no
   readable answer gets reward 0 everywhere (zero advantage).
3. The paper trains on the benchmark's own (test) questions and evaluates on them. Here the
   embedded task trains on its train-split prompts (answers dropped) and the held-out exact match
   is on separate test-split problems; pass ``--dataset`` with a folder whose test.jsonl holds the
   same questions for the paper's setting.
4. The GRPO settings are those of this catalog's grpo plugin, sized for the embedded tiny model
   (lr 5e-5, G = 8, 8 prompts per rollout, 200 steps, beta 0.04), not the paper's.

Measured (embedded task, 3 seeds, 500 held-out problems): at the defaults held-out greedy exact
match falls -17.9 ± 2.3 points (pooled 60 fixed / 329 broken, p = 4.8e-46) and the sampled reward
-6.3 ± 3.6 points (reports/runs/ttrl.json). Before training one sampled answer is right less often
than the greedy one (0.574 against 0.794), so the vote of 8 samples can be a worse label than the
answer the model already gives. 32 voters harm less (-9.6 ± 2.2 points, reports/runs/ttrl-votes32.json);
temperature 0.7 does not help (reports/runs/ttrl-t0.7.json, reports/runs/ttrl-votes32-t0.7.json);
learning rate 1e-5 leaves exact match unchanged (-0.1 ± 0.9 points, p = 0.92, reports/runs/ttrl-lr1e-5.json).
With the true answer as the label the same code gives grpo's run exactly (tests/test_ttrl.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.answers import answer_of, extract_answer, final_answer
from posttrain.errors import UserError
from posttrain.evaluation import reference_of
from posttrain.rl.group import SMOKE, grpo_loss, train_with_group_advantages
from posttrain.rl.rollout import Rollout
from posttrain.rl.rollout_config import GroupConfig


class Config(GroupConfig):
    learning_rate: float = Field(
        5e-5, gt=0, description="Peak learning rate of AdamW (the grpo plugin's, sized for the embedded model)."
    )
    epsilon: float = Field(0.2, gt=0, description="epsilon, clipping range of GRPO's ratio (DeepSeekMath Eq. 3).")
    beta: float = Field(0.04, ge=0, description="beta, coefficient of GRPO's k3 KL to the reference (DeepSeekMath).")
    std_epsilon: float = Field(1e-4, gt=0, description="Added to the group std in the advantage denominator.")
    answer: Literal["first-integer", "last-integer", "after-mark", "answer-of"] = Field(
        "first-integer",
        description="How a completion's answer is read for the vote: its first integer (the embedded task's "
        "checker), its last integer, the integer after the last '#' (a rationale's final answer), or "
        "posttrain.answers.answer_of (the last integer, else the trimmed text: for text answers).",
    )
    num_votes: int | None = Field(
        None,
        ge=1,
        description="Completions per prompt that vote on the pseudo-label; the first num_generations of them are "
        "trained on (None: the num_generations trained completions vote). The authors' code separates "
        "n_votes_per_prompt and n_samples_per_prompt.",
    )
    rewards: list[str] = Field(
        ["exact-match"],
        description="Held-out evaluation rewards only (they use the true answers); training is rewarded by the vote.",
    )


# --- reading answers -----------------------------------------------------------------------------


INTEGER = re.compile(r"-?\d+")


def last_integer(text: str) -> str | None:
    """The last integer of a completion, or None."""
    found = INTEGER.findall(text)
    return found[-1] if found else None


ANSWER_READERS: dict[str, Callable[[str], str | None]] = {
    "first-integer": extract_answer,
    "last-integer": last_integer,
    "answer-of": lambda text: answer_of(text) or None,  # last integer, else the trimmed text (text answers)
    "after-mark": final_answer,
}


def normalised(answer: str | None) -> str | None:
    """An integer without leading zeros, as the task checker compares ("082" == "82"); other text
    trimmed; None stays None."""
    if answer is None:
        return None
    answer = answer.strip()
    if not INTEGER.fullmatch(answer):
        return answer
    sign, digits = ("-", answer[1:]) if answer.startswith("-") else ("", answer)
    return sign + (digits.lstrip("0") or "0")


def read_answers(texts: Sequence[str], reader: str) -> list[str | None]:
    return [normalised(ANSWER_READERS[reader](t)) for t in texts]


# --- the vote and its reward ----------------------------------------------------------------------


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The most frequent readable answer; None (unreadable) never wins. Ties go to the answer that
    appears first in ``answers`` (the sampling order), so the vote is deterministic.

    ["7", "5", "5", "7", None] -> "7" (2 votes each, "7" first); [None, None, "3"] -> "3";
    ["1", "2", "3"] -> "1"; [None, None] -> None.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def agreement_rewards(answers_grouped: Sequence[Sequence[str | None]], labels: Sequence[str | None]) -> torch.Tensor:
    """(P, G): 1 where a completion's answer equals its prompt's label, else 0 (a None label rewards nothing)."""
    rows = [
        [1.0 if label is not None and a == label else 0.0 for a in answers]
        for answers, label in zip(answers_grouped, labels, strict=True)
    ]
    return torch.tensor(rows, dtype=torch.float32)


def majority_vote_rewards(answers_grouped: Sequence[Sequence[str | None]]) -> torch.Tensor:
    """(P, G) rewards: 1 where a completion's answer equals its group's majority answer, else 0.

    [["5", "5", "7", None]] -> [[1, 1, 0, 0]]; all answers different -> 1 for the first, 0 elsewhere;
    no readable answer -> all 0.
    """
    return agreement_rewards(answers_grouped, [majority_answer(a) for a in answers_grouped])


def label_accuracy(majorities: Sequence[str | None], references: Sequence[str | None]) -> float | None:
    """Share of prompts whose majority answer equals the true answer, over the prompts that have one
    (None when none has). Logged only, never trained on."""
    pairs = [(m, r) for m, r in zip(majorities, references, strict=True) if r is not None]
    if not pairs:
        return None
    return sum(m is not None and m == normalised(r) for m, r in pairs) / len(pairs)


# --- the leak guard -------------------------------------------------------------------------------


def unlabeled(record: dict) -> dict:
    """The record as training sees it: its prompt (and source line, for error messages) only, so
    no reward or bug can read its answer."""
    return {k: record[k] for k in ("prompt", "_line") if k in record}


# --- GRPO's loss (DeepSeekMath Eq. 3), as in posttrain_plugins.grpo -------------------------------


def unscored(rollout: Rollout) -> Rollout:
    """Training rollouts skip the config's rewards: ``vote_rollout`` sets them after the vote."""
    return rollout


def group_answers(answers: Sequence[str | None], per_prompt: int) -> list[list[str | None]]:
    return [list(answers[i : i + per_prompt]) for i in range(0, len(answers), per_prompt)]


def vote_rollout(reader: str, num_votes: int | None) -> Callable:
    """make_rollout: sample the batch's prompts without their answers (G completions each, plus
    more until ``num_votes`` per prompt when it is larger), take each prompt's majority answer over
    all of them, and reward the G trained completions for agreeing with it. Logs the vote's label
    accuracy against the answers the records had (when they had any)."""

    def make_rollout(prompts_for, sample) -> Rollout:
        records = prompts_for(0)
        prompts = [unlabeled(r) for r in records]
        rollout = sample(prompts)
        g = rollout.num_generations
        votes = group_answers(read_answers(rollout.texts, reader), g)
        while num_votes and len(votes[0]) < num_votes:  # the extra voters are sampled, never trained on
            extra = sample(prompts)
            rollout.timings["generate"] += extra.timings.get("generate", 0.0)
            more = group_answers(read_answers(extra.texts, reader), g)
            votes = [(v + m)[:num_votes] for v, m in zip(votes, more, strict=True)]
        labels = [majority_answer(v) for v in votes]
        rewards = agreement_rewards([v[:g] for v in votes], labels)
        rollout.rewards = rewards.reshape(-1).to(rollout.input_ids.device)
        rollout.reward_components = {"majority-vote": rollout.rewards}
        accuracy = label_accuracy(labels, [reference_of(r) for r in records])
        if accuracy is not None:
            rollout.stats["ttrl/label_accuracy"] = accuracy
        return rollout

    return make_rollout


def run(cfg: Config, ctx: RunContext) -> RunResult:
    if cfg.num_votes is not None and cfg.num_votes < cfg.num_generations:
        raise UserError(f"num_votes {cfg.num_votes}: must be at least num_generations ({cfg.num_generations})")
    return train_with_group_advantages(
        cfg,
        ctx,
        "ttrl",
        grpo_loss,
        cfg.epsilon,
        cfg.beta,
        make_rollout=vote_rollout(cfg.answer, cfg.num_votes),
        score=unscored,
    )


plugin = Plugin(
    id="ttrl",
    config=Config,
    run=run,
    summary="Test-Time RL: GRPO on unlabeled prompts, rewarded for agreeing with the group's majority answer.",
    smoke=SMOKE,
)
