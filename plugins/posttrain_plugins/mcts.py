"""Monte Carlo tree search (UCT) over reasoning steps, with values from a PRM or from rollouts.

Papers: Kocsis & Szepesvari 2006, "Bandit based Monte-Carlo Planning" (UCT); for LLM reasoning,
Hao et al. 2023, "Reasoning with Language Model is Planning with World Model" (RAP),
arXiv:2305.14992, and Zhang et al. 2024, "ReST-MCTS*", arXiv:2406.03816. Catalog entry:
catalog/methods/mcts.yaml.

    catalog run mcts                                  # embedded reasoning model (scratchpad task)
    catalog run mcts --set simulations=2,4,8,16       # budget sweep
    catalog run mcts --set value=rollout              # value from a greedy rollout scored by the verifier

Each problem has a tree whose nodes are partial solutions (a node adds one step). One simulation:
(1) selection: from the root, follow the child with the largest UCT score
    Q/N + c * sqrt(ln N_parent / N) (unvisited children first) down to a leaf;
(2) expansion: sample ``expand`` next steps at the leaf (one batched generate for the leaves of
    all problems), adding them as children;
(3) evaluation: each new child's value is the PRM score of its partial solution (``value=prm``),
    or the verifier's score of a greedy rollout to the end (``value=rollout``);
(4) backpropagation: add the value to N and Q of every node on the path.
After the simulations, the answer follows the most visited child from the root down, then is
completed greedily if the path is not finished.

Deviations: on the embedded reasoning task the value is the embedded PRM (``posttrain.embedded.prm``: a separate token-classification model trained once on training-split scratchpads with exact step labels; an attempt's score is its last step's probability, Snell 2024 §5 / App.; ``prm.json`` in its cache folder has its held-out step accuracy) (ReST-MCTS* trains its PRM
from tree-search labels); with your own ``--model``/``--dataset`` and no ``prm``/``reward_model`` it
is the policy's mean log-likelihood (``scorer=verifier``: the reasoning model's ``V:`` sub-skill);
c = 1.0 and ``expand`` = 4 (RAP uses c = 1, 4 actions per node); the best path is chosen by
visits (RAP by max reward); the simulation count is small (8) for the tiny task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.generation.decode import sample
from posttrain.inference.recipe import (
    SWEEP,
    PerProblem,
    StepSearchConfig,
    attempt_scorer,
    extend_steps,
    finish,
    setup,
    text_prompt,
)


class Config(StepSearchConfig):
    simulations: int = Field(8, ge=1, description="MCTS simulations per problem.", json_schema_extra=SWEEP)
    expand: int = Field(4, ge=1, description="Children sampled when a leaf is expanded (actions per node).")
    exploration: float = Field(1.0, ge=0, description="UCT exploration constant c.")
    value: str = Field(
        "prm", pattern="^(prm|rollout)$", description="Leaf value: PRM of the prefix, or a scored greedy rollout."
    )


# --- UCT ------------------------------------------------------------------------------------------------


def uct(value_sum: float, visits: int, parent_visits: int, c: float) -> float:
    """Q/N + c * sqrt(ln N_parent / N); an unvisited child scores +inf (it is tried first).

    uct(1.5, 2, 8, 1.0) = 0.75 + sqrt(ln 8 / 2) = 0.75 + 1.0197 = 1.7697; c = 0 gives the mean Q/N.
    """
    if visits == 0:
        return math.inf
    return value_sum / visits + c * math.sqrt(math.log(max(parent_visits, 1)) / visits)


def select_child(stats: Sequence[tuple[float, int]], parent_visits: int, c: float) -> int:
    """Index of the child (value_sum, visits) with the largest UCT score; ties go to the first."""
    scores = [uct(v, n, parent_visits, c) for v, n in stats]
    best = max(scores)
    return scores.index(best)


@dataclass(eq=False)
class Node:
    text: str
    done: bool = False
    visits: int = 0
    value_sum: float = 0.0
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None


def backpropagate(node: Node | None, value: float) -> None:
    """Add one visit and ``value`` to the node and all its ancestors."""
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent


def descend(root: Node, c: float) -> Node:
    """Selection: follow UCT until a node without children (or a finished one)."""
    node = root
    while node.children and not node.done:
        node = node.children[select_child([(ch.value_sum, ch.visits) for ch in node.children], node.visits, c)]
    return node


def most_visited_path(root: Node) -> Node:
    node = root
    while node.children:
        node = max(node.children, key=lambda ch: ch.visits)
    return node


# --- run ------------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer, problems, before, meter = setup(cfg, ctx)
    score, scorer = attempt_scorer(cfg, ctx, model, tokenizer, meter)
    prompts = [text_prompt(tokenizer, r["prompt"]) for r in problems.records]
    per_problem = PerProblem.of(len(prompts))
    roots = [Node("") for _ in prompts]
    max_tokens = cfg.max_new_tokens or 24

    def rollout_values(owners: list[int], nodes: list[Node]) -> list[float]:
        if cfg.value == "prm":
            return score([prompts[i] for i in owners], [n.text for n in nodes])
        todo = [k for k, n in enumerate(nodes) if not n.done]
        texts = [n.text for n in nodes]
        if todo:
            out = sample(
                model,
                tokenizer,
                [prompts[owners[k]] + nodes[k].text for k in todo],
                1,
                max_tokens,
                meter,
                greedy=True,
                batch_size=cfg.batch_size,
            )
            per_problem.add_tokens([owners[k] for k in todo], [r[0] for r in out.lengths()])
            for k, row in zip(todo, out.texts, strict=True):
                texts[k] += row[0]
        return score([prompts[i] for i in owners], texts)

    for _ in progress_range(ctx, cfg.simulations):
        leaves = [(i, descend(root, cfg.exploration)) for i, root in enumerate(roots)]
        grow = [
            (i, leaf) for i, leaf in leaves if not leaf.done and leaf.text.count(cfg.step_delimiter) < cfg.max_steps
        ]
        if grow:
            out = extend_steps(
                model,
                tokenizer,
                [prompts[i] + leaf.text for i, leaf in grow],
                cfg.expand,
                meter,
                cfg,
                cfg.step_delimiter,
                cfg.max_step_tokens,
            )
            per_problem.add_tokens([i for i, _ in grow], [sum(r) for r in out.lengths()])
            owners, new = [], []
            for (i, leaf), texts, ended in zip(grow, out.texts, out.ended, strict=True):
                for t, e in zip(texts, ended, strict=True):
                    child = Node(leaf.text + t, done=e or not t, parent=leaf)
                    leaf.children.append(child)
                    owners.append(i)
                    new.append(child)
            for child, v in zip(new, rollout_values(owners, new), strict=True):
                backpropagate(child, v)
        grown = {id(leaf) for _, leaf in grow}
        finished = [(i, leaf) for i, leaf in leaves if id(leaf) not in grown]
        if finished:  # a finished leaf is re-evaluated, which sharpens its Q
            for (_, leaf), v in zip(
                finished, rollout_values([i for i, _ in finished], [f[1] for f in finished]), strict=True
            ):
                backpropagate(leaf, v)
    ends = [most_visited_path(root) for root in roots]
    unfinished = [i for i, n in enumerate(ends) if not n.done]
    predictions = [n.text for n in ends]
    if unfinished:
        out = sample(
            model,
            tokenizer,
            [prompts[i] + ends[i].text for i in unfinished],
            1,
            max_tokens,
            meter,
            greedy=True,
            batch_size=cfg.batch_size,
        )
        per_problem.add_tokens(unfinished, [r[0] for r in out.lengths()])
        for i, row in zip(unfinished, out.texts, strict=True):
            predictions[i] += row[0]
    return finish(
        ctx, problems, predictions, meter, before, per_problem.rows, scorer=scorer, simulations=cfg.simulations
    )


def progress_range(ctx: RunContext, n: int):
    return ctx.progress(range(n), total=n, description="mcts simulations") if ctx.progress else range(n)


plugin = Plugin(
    id="mcts",
    config=Config,
    run=run,
    summary="UCT tree search over reasoning steps; leaf values from a PRM or from scored rollouts.",
    smoke={"simulations": 2, "expand": 2, "eval_examples": 4},
    kind="inference",
)
