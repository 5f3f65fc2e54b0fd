"""Decoders over the `StepGenerator` / `StepScorer` protocols: aggregation, best-of-N, weighted majority,
value-guided step beam search and MCTS as a decoder (the scripted generator and test-double scorers)."""

import itertools
import math

import pytest

from data.answers import is_equivalent
from data.synthetic import load_split
from search.beam import beam_search, mcts_decode, tree_answer
from search.decode import (accuracy_report, aggregate, best_of_n, greedy, majority_vote, pass_at_k,
                           weighted_majority)
from search.mcts import MCTSConfig, run_mcts
from search.tree import Tree
from tests.scripted import ConstantScorer, GoldTrackScorer, ScriptedGenerator

PROBLEMS = load_split("test")[:40]


def test_aggregations_follow_search_and_learn():
    assert aggregate([0.9, 0.2, 0.7], "min") == pytest.approx(0.2)
    assert aggregate([0.9, 0.2, 0.7], "prod") == pytest.approx(0.9 * 0.2 * 0.7)
    assert aggregate([0.9, 0.2, 0.7], "last") == pytest.approx(0.7)
    assert aggregate([-1.0, 0.0, 1.0], "prod", head="tanh") == pytest.approx(0.0)  # tanh values mapped to [0, 1]
    assert aggregate([0.0, 0.5], "last", head="tanh") == pytest.approx(0.75)
    assert aggregate([], "min") == 0.0
    with pytest.raises(ValueError, match="aggregation"):
        aggregate([0.5], "mean")


def test_vote_rules_group_equivalent_answers():
    answers = ["1/2", "3", "0.5", None, "3", "3"]
    assert majority_vote(answers) == "3"
    # weighted majority: 1/2 and 0.5 are one group of weight 0.9 + 0.8 against 3's 0.1 * 3
    assert is_equivalent(weighted_majority(answers, [0.9, 0.1, 0.8, 1.0, 0.1, 0.1]), "1/2")
    assert best_of_n(answers, [0.2, 0.1, 0.3, 0.99, 0.3, 0.0]) == "0.5"  # None never wins; ties go to the earliest
    assert majority_vote([None, None]) is None and best_of_n([None], [1.0]) is None


def test_beam_search_with_a_good_value_beats_greedy_and_counts_every_sampled_token():
    questions = [p.question for p in PROBLEMS]
    greedy_hits = sum(is_equivalent(s.answer, p.answer)
                      for s, p in zip(greedy(ScriptedGenerator(PROBLEMS, p_correct=0.6, seed=1), questions), PROBLEMS))
    generator, scorer = ScriptedGenerator(PROBLEMS, p_correct=0.6, seed=1), GoldTrackScorer(PROBLEMS)
    results = beam_search(generator, scorer, questions, width=1, samples=5)
    hits = sum(is_equivalent(r.answer, p.answer) for r, p in zip(results, PROBLEMS))
    assert hits >= len(PROBLEMS) - 1 > greedy_hits
    rounds = max(len(r.steps) for r in results)
    assert generator.calls == rounds and scorer.calls == rounds  # one generator and one scorer call per round
    assert all(r.tokens >= 5 * len(r.steps) for r in results)  # five candidates per kept step, each >= 1 token


def test_beam_width_samples_b1_times_b2_first_steps_and_keeps_b1():
    seen = []

    class Recording(ScriptedGenerator):
        def expand(self, states, n, **kwargs):
            seen.append((len(states), n))
            return super().expand(states, n, **kwargs)

    beam_search(Recording(PROBLEMS[:1]), ConstantScorer(0.5), [PROBLEMS[0].question], width=3, samples=4, max_steps=2)
    assert seen[0] == (3, 4)  # 3 x 4 candidates from the root
    assert seen[1][0] <= 3 and seen[1][1] == 4  # at most B1 beams kept, B2 samples each


def test_tree_answer_follows_q_and_skips_dead_ends():
    tree = Tree("p", "q", "7")
    good = tree.add_child(0, "a")
    dead = tree.add_child(0, "", terminal=True)  # a dead end (no answer) never wins, whatever its value
    tree.nodes[dead.id].visits, tree.nodes[dead.id].value_sum = 1, 0.99
    low = tree.add_child(good.id, "The answer is 3", terminal=True, answer="3")
    high = tree.add_child(good.id, "The answer is 7", terminal=True, answer="7")
    tree.backup(low.id, -0.5)
    tree.backup(high.id, 0.5)
    assert tree_answer(tree).id == high.id
    open_leaf = tree.add_child(0, "b")  # a higher-valued path that has not reached an answer yet
    tree.backup(open_leaf.id, 0.9)
    assert tree_answer(tree).id == open_leaf.id
    assert tree_answer(Tree("p", "q", "7")).id == 0
    # a step-by-step search plays its committed path, then best Q below its last committed step
    tree.config["committed"] = [0, good.id]
    assert tree_answer(tree).id == high.id
    tree.config["committed"] = [0, dead.id]  # committed to a dead end: read from its parent (the root)
    assert tree_answer(tree).id == open_leaf.id


def test_tree_answer_never_prefers_an_unvisited_child_to_a_visited_one():
    """``leaf_value="leaf"`` leaves open children unvisited with Q = 0: not a value, so not above a visited -0.3."""
    tree = Tree("p", "q", "7")
    visited = tree.add_child(0, "a")
    tree.backup(visited.id, -0.3)
    unvisited = tree.add_child(0, "b")
    answer = tree.add_child(visited.id, "The answer is 7", terminal=True, answer="7")
    tree.backup(answer.id, -0.2)
    tree.add_child(visited.id, "c")  # unvisited, below the visited child too
    assert tree.nodes[unvisited.id].q == 0 and tree_answer(tree).id == answer.id
    fresh = Tree("p", "q", "7")
    first, _ = fresh.add_child(0, "a"), fresh.add_child(0, "b")  # nothing visited yet: the first child, as before
    assert tree_answer(fresh).id == first.id


def test_mcts_decoder_uses_the_value_not_the_gold_answer():
    with pytest.raises(ValueError, match="StepScorer"):
        run_mcts(PROBLEMS[:1], ScriptedGenerator(PROBLEMS), MCTSConfig(reward="value"))
    questions = [p.question for p in PROBLEMS[:24]]

    def hits(scorer, leaf_value):
        results = mcts_decode(ScriptedGenerator(PROBLEMS, p_correct=0.6, seed=2), scorer, questions,
                              MCTSConfig(simulations=24, children=3, leaf_value=leaf_value))
        assert all(r.answer is not None and r.tokens > 0 for r in results)  # unfinished paths are completed
        return sum(is_equivalent(r.answer, p.answer) for r, p in zip(results, PROBLEMS))

    # the problems handed to MCTS carry no gold answer: only the value can steer it, whichever nodes it values
    for leaf_value in ("children", "leaf"):
        assert hits(GoldTrackScorer(PROBLEMS), leaf_value) >= hits(ConstantScorer(0.0), leaf_value) + 6
    committed = mcts_decode(ScriptedGenerator(PROBLEMS, p_correct=0.6, seed=2), GoldTrackScorer(PROBLEMS), questions,
                            MCTSConfig(simulations=8, children=3, commit_simulations=4))
    assert sum(is_equivalent(r.answer, p.answer) for r, p in zip(committed, PROBLEMS)) >= 18


def test_pass_at_k_equals_the_share_of_k_subsets_holding_a_correct_sample():
    for n in range(1, 9):
        for c in range(n + 1):
            outcomes = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(outcomes, k))
                assert pass_at_k(n, c, k) == pytest.approx(sum(map(any, subsets)) / len(subsets), abs=1e-12)
    assert pass_at_k(16, 1, 16) == 1.0 and pass_at_k(16, 0, 16) == 0.0  # n == k: "any sample correct"
    assert pass_at_k(200, 3, 16) == pytest.approx(1 - math.comb(197, 16) / math.comb(200, 16))
    with pytest.raises(ValueError):
        pass_at_k(8, 1, 16)


def test_accuracy_report_estimates_pass_at_k_from_more_samples():
    questions, golds = [p.question for p in PROBLEMS], [p.answer for p in PROBLEMS]
    plain = accuracy_report(ScriptedGenerator(PROBLEMS, p_correct=0.6, seed=1), questions, golds, k=4)
    assert plain["samples"] == 4 and plain["pass@4"] * len(golds) == pytest.approx(round(plain["pass@4"] * len(golds)))
    more = accuracy_report(ScriptedGenerator(PROBLEMS, p_correct=0.6, seed=1), questions, golds, k=4, samples=32)
    assert more["samples"] == 32
    # 0/1 per problem with 4 draws; a graded estimate with 32, so a smaller standard error over problems.
    assert more["mean_sample_accuracy"] < more["pass@4"] < 1
    assert 0 < more["pass@4_stderr"] < plain["pass@4_stderr"]
    with pytest.raises(ValueError, match="at least k"):
        accuracy_report(ScriptedGenerator(PROBLEMS), questions, golds, k=4, samples=2)
