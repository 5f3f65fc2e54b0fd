"""Math-Shepherd MC estimation (`search.shepherd`): N completions per prefix, own-completion labels."""

import pytest

from data.synthetic import load_split
from prm.labels import label_trees
from reasoner.steps import get_format
from scripted import ScriptedGenerator
from search.runner import SearchConfig, run_search
from search.shepherd import ShepherdConfig, own_mc, run_shepherd
from search.tree import read_trees

PROBLEMS = load_split("test", limit=10)


def test_every_prefix_of_every_solution_gets_its_own_completions():
    generator = ScriptedGenerator(PROBLEMS, p_correct=0.7, seed=3)
    config = ShepherdConfig(solutions=3, completions=4)
    trees = run_shepherd(PROBLEMS, generator, config)
    assert generator.calls <= 2 * config.max_depth  # all solutions in one rollout, all completions in another
    gold = {p.question: p.solution.split("\n") for p in PROBLEMS}
    on_track_values = []
    for tree in trees:
        solutions = own_mc(tree)
        assert len(solutions) == config.solutions
        for ids, values in solutions:
            steps = [tree.nodes[i].step for i in ids]
            assert tree.nodes[ids[-1]].terminal and len(values) == len(ids)
            for depth, node_id in enumerate(ids[:-1]):
                correct, total = tree.config["mc"][str(node_id)]
                assert total == config.completions and values[depth] == correct / total
                if steps[: depth + 1] != gold[tree.question][: depth + 1]:
                    assert correct == 0  # the scripted policy never recovers from a wrong step
                else:
                    on_track_values.append(values[depth])
            assert values[-1] == float(bool(tree.nodes[ids[-1]].correct))
        # a prefix's completions hang below it: N more children than the solution's own next step
        for node_id in tree.config["mc"]:
            assert len(tree.nodes[int(node_id)].children) == config.completions + 1
    assert on_track_values and sum(on_track_values) / len(on_track_values) > 0.3
    with pytest.raises(ValueError, match="completions must be at least 1"):
        ShepherdConfig(completions=0)


def test_mc_labels_of_a_shepherd_run_are_one_record_per_solution(tmp_path):
    config = SearchConfig(problems="synthetic:test", limit=6, output=str(tmp_path / "run"), algo="shepherd",
                          solutions=2, completions=3, batch_problems=4, quiet=True)
    summary = run_search(config, make_generator=lambda c: ScriptedGenerator(p_correct=0.7, seed=1))
    assert summary["problems"] == 6
    trees = list(read_trees(tmp_path / "run" / "trees.jsonl"))  # the MC counts survive the JSONL round trip
    records, report = label_trees(trees, "mc-labels", get_format("tiny"))
    assert report.records == 6 * 2
    for record, (tree, (ids, values)) in zip(records, ((t, s) for t in trees for s in own_mc(t))):
        assert record["completions"] == [tree.nodes[i].step for i in ids]
        assert record["values"] == values and record["labels"] == [v > 0 for v in values]
    rewards, _ = label_trees(trees, "step-rewards", get_format("tiny"))
    assert all(len(r["responses"]) == 2 for r in rewards)
    pairs, _ = label_trees(trees, "step-dpo", get_format("tiny"))  # the other kinds read these trees too
    assert all(p["chosen"] != p["rejected"] for p in pairs)
