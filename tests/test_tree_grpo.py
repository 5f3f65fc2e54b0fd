"""Tree-GRPO sampling: m trees per prompt, initial chains, l rounds of n expansions, leaves keep their path."""

from data.synthetic import load_split
from scripted import ScriptedGenerator
from search.tree_grpo import TreeGRPOConfig, grpo_leaves, run_tree_grpo, tree_index_of

PROBLEMS = load_split("test", limit=6)


def test_tree_grpo_shapes_and_membership():
    config = TreeGRPOConfig(trees_per_prompt=2, expand_nodes=2, rounds=1, seed=3)
    generator = ScriptedGenerator(p_correct=0.6, seed=3)
    trees = run_tree_grpo(PROBLEMS, generator, config)
    for tree in trees:
        leaves = grpo_leaves(tree)
        # one initial chain per tree + n new branches per tree per round, each ending in its own leaf
        assert len(leaves) == config.trees_per_prompt * (1 + config.expand_nodes * config.rounds)
        assert {leaf["tree"] for leaf in leaves} == {0, 1}
        for leaf in leaves:
            assert tree.steps(leaf["node"]) == leaf["steps"]
            assert leaf["reward"] in (0.0, 1.0)
            assert tree.nodes[leaf["node"]].visits >= 1
        for node in tree.nodes[1:]:
            assert tree_index_of(tree, node.id) in (0, 1)
    # All chains of a round go through the generator together: one call per step depth, not per chain.
    assert generator.calls <= 2 * (1 + config.rounds) * 12


def test_tree_grpo_is_deterministic():
    config = TreeGRPOConfig(rounds=2, seed=1)
    a = [t.to_record() for t in run_tree_grpo(PROBLEMS, ScriptedGenerator(seed=9), config)]
    b = [t.to_record() for t in run_tree_grpo(PROBLEMS, ScriptedGenerator(seed=9), config)]
    assert a == b


def test_each_micro_batch_of_an_optimizer_step_samples_its_own_stream():
    """With gradient accumulation the micro-batches of one optimizer step share ``global_step``; each must still
    draw its own trees (stream = step * accumulation + micro-batch); without accumulation the stream is the step."""
    from types import SimpleNamespace

    from reasoner.trainers.common import sampling_step

    for accumulation, expected in ((2, [0, 1, 2, 3]), (1, [0, 1])):
        trainer = SimpleNamespace(state=SimpleNamespace(global_step=0),
                                  args=SimpleNamespace(gradient_accumulation_steps=accumulation))
        streams = []
        for step in sorted(list(range(len(expected) // accumulation)) * accumulation):
            trainer.state.global_step = step
            streams.append(sampling_step(trainer))
        assert streams == expected
