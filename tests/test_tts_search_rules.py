"""Search rules of the step-level test-time plugins, with hand-worked numbers and limiting cases."""

import math
import random

import pytest

from posttrain.inference.chain_of_thought import answer_only, answer_prompt, few_shot_prompt, zero_shot_prompt
from posttrain_plugins.beam_search import beams_kept, prune
from posttrain_plugins.budget_forcing import Config as BudgetConfig
from posttrain_plugins.budget_forcing import forcing_action
from posttrain_plugins.compute_optimal import (
    allocate,
    assign_bin,
    bin_edges,
    choose_shares,
    difficulty,
    quantile_bins,
    sequential_share,
    weighted_best,
)
from posttrain_plugins.dvts import best_per_subtree, subtrees
from posttrain_plugins.graph_of_thoughts import aggregate_steps, keep_best
from posttrain_plugins.mcts import Node, backpropagate, descend, most_visited_path, select_child, uct
from posttrain_plugins.particle_filtering import effective_sample_size, multinomial_resample, resampling_weights
from posttrain_plugins.self_polish import converged, usable
from posttrain_plugins.self_refine import approved_prefix, flagged_step, pick_attempt, should_stop
from posttrain_plugins.speculative_rejection import survivors
from posttrain_plugins.tree_of_thoughts import dfs_order, select_states

# --- beam search and DVTS -----------------------------------------------------------------------------


def test_prune_keeps_the_top_scores_and_the_earlier_on_ties():
    assert prune([0.2, 0.9, 0.5, 0.9], 2) == [1, 3]
    assert prune([0.2, 0.9, 0.5], 1) == [1]
    assert prune([0.3, 0.1], 5) == [0, 1]  # keep >= N keeps all
    assert prune([0.3, 0.1], 0) == []


def test_beams_kept_is_n_over_m():
    assert beams_kept(16, 4) == 4
    assert beams_kept(4, 4) == 1
    assert beams_kept(2, 4) == 1  # at least one beam


def test_dvts_best_per_subtree():
    assert best_per_subtree([0.1, 0.8, 0.5, 0.5, 0.9, 0.2], 2) == [1, 2, 4]
    assert best_per_subtree([0.3, 0.7, 0.1, 0.2], 4) == [1]  # one subtree = greedy beam search
    assert subtrees(16, 4) == 4 and subtrees(3, 4) == 1


# --- particle filtering ---------------------------------------------------------------------------------


def test_resampling_weights_softmax():
    w = resampling_weights([0.0, math.log(3)], 1.0)
    assert w == pytest.approx([0.25, 0.75])
    assert resampling_weights([0.4, 0.4, 0.4]) == pytest.approx([1 / 3] * 3)
    # temperature -> 0 puts all the weight on the argmax
    assert resampling_weights([0.1, 0.9], 1e-3) == pytest.approx([0.0, 1.0], abs=1e-12)


def test_multinomial_resample_follows_the_weights():
    rng = random.Random(0)
    draws = multinomial_resample([0.0, 1.0, 0.0], 50, rng)
    assert draws == [1] * 50
    draws = multinomial_resample([0.25, 0.75], 20000, random.Random(1))
    assert draws.count(1) / 20000 == pytest.approx(0.75, abs=0.02)


def test_effective_sample_size():
    assert effective_sample_size([0.25] * 4) == pytest.approx(4.0)
    assert effective_sample_size([1.0, 0.0, 0.0]) == pytest.approx(1.0)


# --- speculative rejection ------------------------------------------------------------------------------


def test_survivors_reject_the_lowest_share():
    assert survivors([0.1, 0.9, 0.5, 0.7], 0.5) == [1, 3]
    assert survivors([0.1, 0.9, 0.5, 0.7], 0.0) == [0, 1, 2, 3]
    assert survivors([0.1, 0.9, 0.5], 0.9) == [1]  # at least one survives
    assert survivors([0.1, 0.9, 0.5], 0.5) == [1, 2]  # ceil(3 * 0.5) = 2


# --- MCTS ------------------------------------------------------------------------------------------------


def test_uct_hand_worked():
    assert uct(1.5, 2, 8, 1.0) == pytest.approx(0.75 + math.sqrt(math.log(8) / 2))
    assert uct(1.5, 2, 8, 0.0) == 0.75  # c = 0: pure exploitation
    assert uct(0.0, 0, 8, 1.0) == math.inf  # unvisited first


def test_select_child_prefers_unvisited_then_uct():
    assert select_child([(3.0, 4), (0.0, 0)], 4, 1.0) == 1
    # Q: 0.75 vs 0.5, same visits -> exploitation decides
    assert select_child([(1.5, 2), (1.0, 2)], 4, 1.0) == 0
    # a rarely visited child with a lower mean wins through the exploration term
    assert select_child([(9.0, 10), (0.5, 1)], 11, 2.0) == 1


def test_backpropagate_and_descend():
    root = Node("")
    a, b = Node("1;", parent=root), Node("2;", parent=root)
    root.children = [a, b]
    backpropagate(a, 1.0)
    backpropagate(b, 0.0)
    assert (root.visits, root.value_sum) == (2, 1.0)
    assert (a.visits, a.value_sum) == (1, 1.0)
    assert descend(root, 0.0) is a
    backpropagate(b, 1.0)
    backpropagate(b, 1.0)
    assert most_visited_path(root) is b


# --- tree of thoughts --------------------------------------------------------------------------------------


def test_tot_bfs_selection_and_dfs_pruning():
    assert select_states([0.3, 0.9, 0.6], 2) == [1, 2]
    assert dfs_order([0.3, 0.9, 0.6], 0.5) == [1, 2]
    assert dfs_order([0.3, 0.9, 0.6], 0.0) == [1, 2, 0]
    assert dfs_order([0.3, 0.4], 0.5) == []  # all pruned: backtrack


# --- graph of thoughts ----------------------------------------------------------------------------------------


def test_aggregate_steps_votes_per_position():
    thoughts = [["1;", "5;", "#51"], ["1;", "6;", "#61"], ["2;", "5;", "#52"]]
    assert aggregate_steps(thoughts) == ["1;", "5;", "#51"]
    assert aggregate_steps([["3;"], ["3;", "4;"]]) == ["3;", "4;"]
    assert aggregate_steps([]) == []
    assert keep_best([0.2, 0.8, 0.8], 2) == [1, 2]


# --- self-refine and self-polish ------------------------------------------------------------------------------


def test_self_refine_stop_and_pick():
    assert should_stop(0.7, 0.5) and not should_stop(0.3, 0.5)
    assert should_stop(0.0, 0.0)  # threshold 0: never refine
    assert not should_stop(1.0, 1.01)
    assert pick_attempt([0.2, 0.9, 0.4], "last") == 2
    assert pick_attempt([0.2, 0.9, 0.9], "best") == 1


def test_self_refine_localized_feedback_flags_the_first_doubtful_step():
    # 347+285 with the tens carry forgotten: "12;" is right, "12;" (should be 13) and all after it wrong
    steps = ["12;", "12;", "6;", "#622"]
    scores = [0.93, 0.21, 0.08, 0.04]
    k = flagged_step(scores, 0.5)
    assert k == 1 and approved_prefix(steps, k) == "12;"  # keep "12;", solve on from the tens column
    assert flagged_step([0.9, 0.8, 0.7, 0.6], 0.5) is None  # every step approved: stop (Madaan's stop indicator)
    assert flagged_step([0.9, 0.8, 0.6, 0.3], 0.5) == 3  # only the answer step doubted: keep the three column steps
    assert approved_prefix(steps, 3) == "12;12;6;"
    assert flagged_step([0.4, 0.9], 0.5) == 0 and approved_prefix(steps, 0) == ""  # regenerate it all
    assert flagged_step([0.5, 0.49], 0.5) == 1  # a score equal to the threshold is approved
    assert flagged_step([], 0.5) == 0  # an empty attempt is refined from scratch
    assert flagged_step([0.2, 0.1], 0.0) is None  # threshold 0: never refine


def test_self_polish_fixed_point():
    assert not converged(["1+2 ="])
    assert not converged(["1+2 =", "1+2="])
    assert converged(["1+2 =", "1+2=", "1+2="])
    assert usable("12+3=") and not usable("12+3") and not usable("=")


# --- budget forcing ---------------------------------------------------------------------------------------------


def test_forcing_action():
    cfg = BudgetConfig(max_thinking_tokens=10, min_thinking_tokens=6, max_waits=1)
    assert forcing_action(10, False, 0, cfg) == "answer"  # cap reached
    assert forcing_action(12, True, 0, cfg) == "answer"
    assert forcing_action(4, True, 0, cfg) == "wait"  # too early: suppress the end, append Wait
    assert forcing_action(4, True, 1, cfg) == "answer"  # no waits left
    assert forcing_action(7, True, 0, cfg) == "answer"
    assert forcing_action(4, False, 0, cfg) == "think"


# --- compute-optimal -----------------------------------------------------------------------------------------------


def test_difficulty_bins_and_allocation():
    assert difficulty([0.9, 0.7]) == pytest.approx(0.2)
    assert quantile_bins([0.1, 0.9, 0.5, 0.3], 2) == [0, 1, 1, 0]
    assert quantile_bins([0.5, 0.2], 1) == [0, 0]
    assert sequential_share(0, 5) == 1.0 and sequential_share(4, 5) == 0.0 and sequential_share(2, 5) == 0.5
    assert allocate(6, 0.5) == (3, 3)
    assert allocate(6, 1.0) == (6, 0)
    assert allocate(6, 0.0) == (0, 6)
    assert allocate(6, 0.25) == (2, 4)  # round(1.5) = 2


def test_bin_edges_and_assignment():
    assert bin_edges([0.1, 0.9, 0.5, 0.3], 2) == [0.3]
    assert bin_edges([0.4, 0.2], 1) == []
    edges = bin_edges([0.1, 0.2, 0.3, 0.6, 0.7, 0.9], 3)  # bins {0.1, 0.2}, {0.3, 0.6}, {0.7, 0.9}
    assert edges == [0.2, 0.6]
    assert [assign_bin(v, edges) for v in [0.0, 0.2, 0.25, 0.6, 0.65, 1.0]] == [0, 0, 1, 1, 2, 2]
    assert assign_bin(0.5, []) == 0


def test_choose_shares_per_bin():
    assert choose_shares([[0.5, 0.7, 0.7], [0.4, 0.2, 0.1]], [0.0, 0.5, 1.0]) == [0.5, 0.0]
    assert choose_shares([[0.3, 0.3]], [0.0, 1.0]) == [0.0]  # a tie goes to the earlier (parallel) share


def test_weighted_best_of_n():
    assert weighted_best(["3", "5", "5"], [0.9, 0.5, 0.6]) == 2  # "5": 1.1 > 0.9, its best candidate
    assert weighted_best(["3", "5", "5"], [0.9, 0.4, 0.4]) == 0  # "3": 0.9 > 0.8
    assert weighted_best(["7", "7"], [0.2, 0.2]) == 0  # equal scores: the earlier candidate


# --- chain of thought ---------------------------------------------------------------------------------------------


def test_cot_prompts():
    assert few_shot_prompt([("1+2=", "3;#3")], "4+5=") == "1+2=3;#3\n4+5="
    assert few_shot_prompt([], "4+5=") == "4+5="
    assert zero_shot_prompt("Q: 2+2?", "Let's think step by step.") == "Q: 2+2? Let's think step by step."
    assert zero_shot_prompt("4+5=", "") == "4+5="
    assert (
        answer_prompt("Q A:", " 2 and 2 make 4.", " Therefore, the answer is")
        == "Q A: 2 and 2 make 4. Therefore, the answer is"
    )
    assert answer_only("12;13;6;#632", "#") == "#632"
