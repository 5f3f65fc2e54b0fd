"""Batched MCTS on the scripted generator: tree invariants, determinism, virtual loss, scorer path."""

import pytest

from data.synthetic import load_split
from scripted import ConstantScorer, ScriptedGenerator
from search.mcts import MCTSConfig, SearchTimer, run_mcts

PROBLEMS = load_split("test", limit=8)


def _check_tree(tree):
    root = tree.root
    for node in tree.nodes[1:]:
        parent = tree.nodes[node.parent]
        assert node.depth == parent.depth + 1
        assert node.id in parent.children
        assert node.visits >= 0
        if node.terminal and node.answer is not None:
            assert node.correct in (True, False)
    # Every backup passes through the root, and a parent has at least its children's visits.
    for node in tree.nodes:
        assert node.visits >= sum(tree.nodes[c].visits for c in node.children) - 0  # values came from below
    assert root.visits > 0 and -1.0 <= root.q <= 1.0


def test_mcts_grows_valid_trees_and_finds_answers():
    config = MCTSConfig(simulations=8, children=3, seed=1)
    trees = run_mcts(PROBLEMS, ScriptedGenerator(p_correct=0.7), config)
    assert [t.problem_id for t in trees] == [p.id for p in PROBLEMS]
    for tree in trees:
        _check_tree(tree)
        assert len(tree.nodes) > 1 + config.children
    assert sum(t.is_solved() for t in trees) >= 6
    # Correct terminal leaves carry the gold answer; their Q is +1.
    for tree in trees:
        for node in tree.nodes:
            if node.correct:
                assert node.q == pytest.approx(1.0)


def test_mcts_is_deterministic_for_a_seed():
    config = MCTSConfig(simulations=5, children=3, seed=4)
    first = [t.to_record() for t in run_mcts(PROBLEMS, ScriptedGenerator(seed=2), config)]
    second = [t.to_record() for t in run_mcts(PROBLEMS, ScriptedGenerator(seed=2), config)]
    assert first == second


def test_one_generator_call_per_round_for_all_trees():
    generator = ScriptedGenerator(seed=3)
    scorer = ConstantScorer(0.25)
    config = MCTSConfig(simulations=4, children=2)
    trees = run_mcts(PROBLEMS, generator, config, scorer=scorer)
    assert generator.calls <= config.simulations  # expansions of all 8 trees batched per round
    assert scorer.calls <= config.simulations
    for tree in trees:
        _check_tree(tree)


@pytest.mark.parametrize("virtual_loss", [1.0, 0.0])
def test_virtual_loss_is_removed_after_selection(virtual_loss):
    config = MCTSConfig(simulations=4, children=2, parallel_leaves=3, seed=5, virtual_loss=virtual_loss)
    trees = run_mcts(PROBLEMS[:3], ScriptedGenerator(seed=5), config, scorer=ConstantScorer(0.0))
    for tree in trees:
        _check_tree(tree)
        # A verified leaf backs up its reward (+1 / -1) on every visit; a leftover virtual loss (one visit of
        # value -1) would break value_sum == reward * visits on the correct ones.
        for leaf in (n for n in tree.nodes if n.terminal and n.visits):
            assert leaf.value_sum == pytest.approx((1.0 if leaf.correct else -1.0) * leaf.visits)
        assert tree.root.visits == sum(n.visits for n in tree.nodes if n.parent == 0)
        # each leaf picked in a round is one simulation: no more expansions than the budget
        assert sum(1 for n in tree.nodes if n.children) <= config.simulations


def test_rollouts_are_stored_as_chains_and_timer_counts_model_time():
    timer = SearchTimer()
    trees = run_mcts(PROBLEMS[:4], ScriptedGenerator(seed=6), MCTSConfig(simulations=3, children=2), timer=timer)
    assert timer.calls > 0 and timer.model_seconds > 0
    for tree in trees:
        terminal = [n for n in tree.nodes if n.terminal]
        assert terminal, "every rollout ends in a terminal node"
        for node in terminal:
            assert tree.steps(node.id)[-1] == node.step


class _NeverFinishes:
    """A generator whose steps never hold an answer: every rollout runs to its step budget."""

    def expand(self, states, n, *, temperature, max_step_tokens):
        from search.protocols import StepSample

        return [[StepSample(text=f"step {len(s.steps)}", num_tokens=2, logprob=-1.0, finished=False)] * n
                for s in states]


def test_rollouts_stop_at_each_nodes_own_depth_limit_and_keep_step_priors():
    from search.decode import rollout
    from search.protocols import State

    solutions = rollout(_NeverFinishes(), [State("q"), State("q", ("a", "b", "c"))], temperature=1.0, max_steps=[4, 1])
    assert [len(s.steps) for s in solutions] == [4, 4] and not any(s.finished for s in solutions)
    assert solutions[1].step_priors == [1.0, 1.0, 1.0, pytest.approx(0.6065, abs=1e-4)]  # exp(-1 / 2)
    # the nodes of one batch sit at different depths: none may pass max_depth (each rollout has its own budget)
    trees = run_mcts(PROBLEMS[:3], _NeverFinishes(), MCTSConfig(simulations=6, children=2, max_depth=4))
    for tree in trees:
        assert max(n.depth for n in tree.nodes) == 4
        assert all(n.prior == pytest.approx(0.6065, abs=1e-4) for n in tree.nodes[1:])  # chain nodes too


def test_leaf_valuation_backs_up_the_expanded_leaf_and_terminal_children_only():
    """Super_MARIO's default (1.5): per simulation one scorer value (the expanded leaf's own) plus the ±1 rewards
    of its terminal children; open children stay unvisited until selected."""
    config = MCTSConfig(simulations=6, children=3, seed=2, leaf_value="leaf")
    scorer = ConstantScorer(0.5)
    trees = run_mcts(PROBLEMS, ScriptedGenerator(p_correct=0.7, seed=2), config, scorer=scorer)
    assert scorer.calls <= config.simulations
    for tree in trees:
        _check_tree(tree)
        expanded = [n for n in tree.nodes if n.children]
        terminal = [n for n in tree.nodes if n.terminal]
        # one visit per expansion plus one per terminal child, and nothing else
        assert tree.root.visits == len(expanded) + len(terminal)
        assert all(n.visits == 1 for n in terminal)
        assert any(n.visits == 0 and not n.terminal for n in tree.nodes)  # open children never valued
        # the root (bare question) backs up 0, every other expanded leaf the scorer's 0.5, terminals ±1
        expected = 0.5 * (len(expanded) - 1) + sum(1.0 if n.correct else -1.0 for n in terminal)
        assert tree.root.value_sum == pytest.approx(expected)
    with pytest.raises(ValueError, match="needs a StepScorer"):
        run_mcts(PROBLEMS[:1], ScriptedGenerator(), config)
    with pytest.raises(ValueError, match="leaf_value"):
        MCTSConfig(leaf_value="nodes")


def test_step_by_step_commitment_searches_below_each_committed_step():
    config = MCTSConfig(simulations=6, commit_simulations=3, children=2, seed=3)
    trees = run_mcts(PROBLEMS, ScriptedGenerator(p_correct=0.7, seed=5), config)
    for tree in trees:
        _check_tree(tree)
        committed = tree.config["committed"]
        assert committed[0] == 0 and len(committed) >= 2
        for parent, child in zip(committed, committed[1:]):
            assert tree.nodes[child].parent == parent and tree.nodes[child].visits > 0
        last = tree.nodes[committed[-1]]
        assert last.terminal or not any(tree.nodes[c].visits for c in last.children)
        # searching below committed steps spends more simulations than the first search alone
        assert tree.root.visits > config.simulations * config.children
    # the default (no commitment) grows the same trees as before and stores no path
    plain = run_mcts(PROBLEMS, ScriptedGenerator(p_correct=0.7, seed=5), MCTSConfig(simulations=6, children=2, seed=3))
    assert all("committed" not in tree.config and tree.root.visits <= 6 * 2 * 13 for tree in plain)
    with pytest.raises(ValueError, match="commit_simulations"):
        MCTSConfig(commit_simulations=-1)


def test_commitment_picks_the_best_q_child_then_the_more_visited():
    import random

    from search.mcts import _commit
    from search.tree import Tree

    tree = Tree("p", "q?", "5")
    a, b, c = (tree.add_child(0, step) for step in ("A", "B", "C"))
    for node, values in ((a, (0.5, 0.5)), (b, (0.5, 0.5, 0.5, 0.5)), (c, (1.0, -1.0, -1.0, -1.0, -1.0, -1.0))):
        for value in values:
            tree.backup(node.id, value)
    tree.add_child(0, "D")  # never visited: never committed to
    roots, budgets = [0], [0]  # B: Q 0.5 like A, more visits; C: the most visits, lower Q
    assert _commit(tree, roots, budgets, 0, random.Random(0), MCTSConfig(commit_simulations=7))
    assert roots == [b.id] and budgets == [7] and tree.config["committed"] == [0, b.id]
    assert not _commit(tree, [0], [0], 0, random.Random(0), MCTSConfig())  # no commitment asked for


def test_each_search_root_gets_its_own_budget_and_leaf_values_search_on_from_unvisited_children(monkeypatch):
    import search.mcts as mcts

    starts = []
    select = mcts._select_leaves
    monkeypatch.setattr(mcts, "_select_leaves", lambda tree, start, *rest: starts.append(start) or select(tree, start, *rest))
    tree, = run_mcts(PROBLEMS[:1], ScriptedGenerator(p_correct=0.7, seed=5),
                     MCTSConfig(simulations=5, commit_simulations=3, children=2, seed=3))
    committed = tree.config["committed"]
    counts = [starts.count(node) for node in committed[:-1]]
    assert counts[0] == 5 and all(count <= 3 for count in counts[1:]) and sum(counts) == len(starts)
    # Super_MARIO's leaf values leave the question's children unvisited after one simulation: commitment must
    # search on from the question rather than stop there
    trees = run_mcts(PROBLEMS, ScriptedGenerator(p_correct=0.7, seed=5),
                     MCTSConfig(simulations=1, commit_simulations=2, children=2, leaf_value="leaf"),
                     scorer=ConstantScorer(0.25))
    assert all(len(tree.config["committed"]) >= 2 and tree.nodes[tree.config["committed"][-1]].terminal
               for tree in trees)
