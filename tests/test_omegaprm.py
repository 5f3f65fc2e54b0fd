"""OmegaPRM (`search.omegaprm`): MC estimates, a binary search that pins the first wrong step, its labels."""

import math

import pytest

from data.synthetic import load_split
from prm.labels import label_trees
from reasoner.steps import get_format
from scripted import ScriptedGenerator
from search.omegaprm import OmegaPRMConfig, omega_labelled_leaves, run_omegaprm
from search.runner import SearchConfig, run_search
from search.tree import read_trees

PROBLEMS = load_split("test", limit=12)
GOLD = {p.question: p.solution.split("\n") for p in PROBLEMS}


def on_track(tree, node_id):
    steps = tree.steps(node_id)
    return steps == GOLD[tree.question][: len(steps)]


def test_binary_search_pins_the_first_step_off_the_gold_solution():
    generator = ScriptedGenerator(PROBLEMS, p_correct=0.8, seed=5)
    config = OmegaPRMConfig(rollouts=8, rollout_budget=64)
    trees = run_omegaprm(PROBLEMS, generator, config)
    searched = 0
    for tree in trees:
        mc = tree.config["mc"]
        assert "0" in mc and all(total == config.rollouts for _, total in mc.values())
        for node_id, (correct, _) in mc.items():
            if not on_track(tree, int(node_id)):
                assert correct == 0  # the scripted policy never recovers from a wrong step
        # the budget is checked before each search: one search may overrun it by its own estimates
        longest = max(len(GOLD[tree.question]), 1)
        assert len(mc) * config.rollouts <= config.rollout_budget + config.rollouts * math.ceil(math.log2(longest + 1))
        for leaf, first_error in tree.config["searched"]:
            searched += 1
            assert tree.nodes[leaf].terminal and not tree.nodes[leaf].correct
            assert first_error in [n.id for n in tree.path(leaf)]
            parent = tree.nodes[first_error].parent
            assert not on_track(tree, first_error) and on_track(tree, parent)
    assert searched >= 10
    # lockstep: one generator call per rollout step for all problems' estimates together
    estimates = sum(len(tree.config["mc"]) for tree in trees)
    assert generator.calls < estimates


def test_search_limit_and_a_hopeless_question_stop_the_loop():
    trees = run_omegaprm(PROBLEMS[:4], ScriptedGenerator(PROBLEMS, p_correct=0.8, seed=1),
                         OmegaPRMConfig(rollouts=4, search_limit=1))
    assert all(len(tree.config["searched"]) <= 1 for tree in trees)
    hopeless = run_omegaprm(PROBLEMS[:3], ScriptedGenerator(PROBLEMS, p_correct=0.0, seed=1), OmegaPRMConfig(rollouts=4))
    for tree in hopeless:  # MC(question) = 0: nothing to search, nothing labelled
        assert list(tree.config["mc"]) == ["0"] and tree.config["searched"] == []
        assert omega_labelled_leaves(tree) == {}
    _, report = label_trees(hopeless, "mc-labels", get_format("tiny"))
    assert report.empty == {"no correct or binary-searched rollout (OmegaPRM: MC of the question was 0)": 3}
    with pytest.raises(ValueError, match="alpha and beta"):
        OmegaPRMConfig(alpha=0)
    with pytest.raises(ValueError, match="rollouts must be at least 1"):
        OmegaPRMConfig(rollouts=0)


def test_mc_labels_of_an_omegaprm_run_are_good_up_to_the_first_error(tmp_path):
    config = SearchConfig(problems="synthetic:test", limit=8, output=str(tmp_path / "run"), algo="omegaprm",
                          rollouts=4, rollout_budget=40, batch_problems=5, quiet=True)
    summary = run_search(config, make_generator=lambda c: ScriptedGenerator(p_correct=0.8, seed=2))
    assert summary["problems"] == 8
    trees = list(read_trees(tmp_path / "run" / "trees.jsonl"))  # counts and searches survive the round trip
    assert trees[0].config["c_puct"] == 0.125 and trees[0].config["algo"] == "omegaprm"
    # --omega_c_puct is OmegaPRM's constant and is checked; MCTS's --c_puct is not OmegaPRM's concern
    assert SearchConfig(algo="omegaprm", c_puct=-0.5).omegaprm().c_puct == 0.125
    with pytest.raises(ValueError, match="OmegaPRM c_puct must be at least 0, got -1"):
        SearchConfig(algo="omegaprm", omega_c_puct=-1.0).omegaprm()
    records, report = label_trees(trees, "mc-labels", get_format("tiny"))
    expected = [(tree, leaf) for tree in trees for leaf in omega_labelled_leaves(tree)]
    assert report.records == len(records) == len(expected) > 0
    first_errors = {(tree.problem_id, leaf): err for tree in trees for leaf, err in tree.config["searched"]}
    wrong = 0
    for record, (tree, leaf) in zip(records, expected):
        path = [n.id for n in tree.path(leaf)[1:]]
        assert record["completions"] == [tree.nodes[i].step for i in path]
        if tree.nodes[leaf].correct:
            assert all(record["labels"])
        else:
            wrong += 1
            cut = path.index(first_errors[(tree.problem_id, leaf)])
            assert record["labels"] == [True] * cut + [False] * (len(path) - cut)
        for i, node_id in enumerate(path[:-1]):  # an estimated prefix keeps its own k rollouts' value
            if str(node_id) in tree.config["mc"]:
                correct, total = tree.config["mc"][str(node_id)]
                assert record["values"][i] == correct / total
    assert wrong > 0
    pairs, _ = label_trees(trees, "step-dpo", get_format("tiny"))  # the other kinds read these trees too
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)


def test_a_searched_rollout_is_wrong_from_its_first_error_on_even_where_a_copy_did_better():
    from search.tree import Tree

    tree = Tree("p", "q", "4", config={"algo": "omegaprm", "mc": {}, "searched": []})
    good = [tree.add_child(0, "a").id]  # a correct rollout from the question: a, x, "The answer is 4"
    good.append(tree.add_child(good[-1], "x").id)
    good.append(tree.add_child(good[-1], "The answer is 4", terminal=True, answer="4", correct=True).id)
    wrong = [tree.add_child(0, "a").id]  # a wrong one: a, x, The answer is 4 (copy), y, The answer is 5
    for text in ("x", "The answer is 4", "y"):
        wrong.append(tree.add_child(wrong[-1], text).id)
    wrong.append(tree.add_child(wrong[-1], "The answer is 5", terminal=True, answer="5", correct=False).id)
    tree.config["mc"] = {"0": [1, 2], str(wrong[0]): [1, 4], str(wrong[1]): [0, 4]}
    tree.config["searched"] = [[wrong[-1], wrong[1]]]  # its first wrong step: the second ("x", MC 0)
    records, _ = label_trees([tree], "mc-labels", get_format("tiny"))
    assert [r["labels"] for r in records] == [[True, True, True], [True, False, False, False, False]]
    assert records[1]["values"] == [0.25, 0.0, 0.0, 0.0, 0.0]  # the copy of the correct step below x stays 0


def test_more_rollouts_at_the_question_start_the_search_on_hard_problems():
    # p_correct 0.6 per step: with k = 2 at the question most problems see no correct rollout and stop unlabelled
    hard = ScriptedGenerator(PROBLEMS, p_correct=0.6, seed=3)
    plain = run_omegaprm(PROBLEMS, hard, OmegaPRMConfig(rollouts=2, rollout_budget=40))
    wide = run_omegaprm(PROBLEMS, ScriptedGenerator(PROBLEMS, p_correct=0.6, seed=3),
                        OmegaPRMConfig(rollouts=2, root_rollouts=16, rollout_budget=40))
    for tree in wide:
        assert tree.config["mc"]["0"][1] == 16 and all(k == 2 for node, (_, k) in tree.config["mc"].items() if node != "0")
    searched = lambda trees: sum(bool(tree.config["searched"]) for tree in trees)
    assert searched(plain) <= 2 and searched(wide) >= 8
    with pytest.raises(ValueError, match="root_rollouts"):
        OmegaPRMConfig(root_rollouts=-1)
