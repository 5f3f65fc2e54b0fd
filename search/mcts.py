"""Batched PUCT MCTS over reasoning steps, many problems in lockstep (algorithms.md section 1).

One simulation per tree per round, all trees at once:

1. **select**: from the search root (the root, or the node committed to last, below), descend to the child
   with the highest ``Q(c) + c_puct * P(c) * sqrt(N(parent)) / (1 + N(c))`` among non-terminal children, until
   a node that was never expanded. ``P`` is the step's geometric-mean token probability. A node whose children are
   all terminal is exhausted (no expansion). With ``parallel_leaves > 1`` a tree contributes several
   leaves per round, each one simulation of its budget (fewer rounds, the same number of simulations); a
   virtual loss (one visit of value -1 per selected path) steers the later picks away, and is removed before
   the real backup.
2. **expand**: one generator call samples ``children`` next steps for every selected leaf of every tree.
3. **evaluate**: a terminal child (final answer, EOS, empty step or depth limit) gets the reward +1 / -1
   from `data.is_equivalent` against the gold answer (``reward="gold"``, for training data). A
   non-terminal child gets the `StepScorer`'s value of its last step when a scorer is given; otherwise it
   is rolled out (batched across all trees) to a final answer, the rollout's steps are stored in the tree
   as a chain below the child, and the rollout's reward is its value. With ``reward="value"`` (MCTS as a
   decoder, AlphaMath's test-time search) the gold answer is never looked at: a child with a final answer
   gets the scorer's value of its last step too, a terminal child without one gets -1.
4. **backup**: every value is added along the path to the root (``N += 1``, ``W += v``, ``Q = W / N``).

Step-by-step commitment (``commit_simulations > 0``, MCTS-DPO's search, algorithms.md 5.2): after the
``simulations`` of the first search, the search root moves to its visited child with the highest Q (ties: more
visits, then at random), and ``commit_simulations`` more simulations run from there, reusing its subtree; this
repeats until the committed node is terminal. A search root whose subtree is exhausted commits at once; one
with no visited child yet (``leaf_value="leaf"`` leaves children unvisited) searches on from the same node.
Selection then starts at the committed node; backups still run to the tree's root. The committed node ids are
stored in ``tree.config["committed"]``, where the ``mcts-dpo`` labels and the decoder's read-out
(`search.beam.tree_answer`) follow them. MCTS-DPO runs 64 simulations per search, four times that at the root:
``simulations=256, commit_simulations=64``.
Deviation: MCTS-DPO commits to the child with the highest ``N(c) * (visit gap of c's children + 1)``. Visits
mislead here, because a node whose children are all terminal is exhausted (1.3) and gets no more simulations,
so visits flow to the unfinished branches, often the wrong ones: with a value that knows the gold path
(`tests/scripted.py`, 24 problems, 16 + 8 simulations) the visit rule played 0 of 24 right, the Q rule 20.

Which values are backed up (``leaf_value``, 1.5):

- ``"children"`` (default): every new child is valued and backed up, Super_MARIO's option
  ``update_leaf_value=True``, which rollouts need (a rollout values a child, not the leaf). A child is never
  unvisited, and the root gains about ``children`` visits per simulation.
- ``"leaf"``: Super_MARIO's default, which needs a scorer. One simulation backs up the expanded leaf's own
  value V(leaf) (0 for the bare question, which has no step to score), plus the +1 / -1 rewards of its
  terminal children at creation; open children stay unvisited (Q = 0) until selection reaches them. With
  ``reward="value"`` a child holding an answer is scored in the same scorer call as the leaf (Super_MARIO
  scores it on its next model call; the value is the same).

Deterministic for a fixed seed (the generator's seed and the per-tree tie-break RNGs).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from data.answers import extract_answer, is_equivalent
from data.problems import Problem
from search.decode import as_probability, rollout
from search.protocols import State, StepGenerator, StepScorer, scorer_head
from search.tree import Tree

__all__ = ["MCTSConfig", "run_mcts", "SearchTimer", "add_rollout_chain", "grow_chains", "LEAF_VALUES"]

# What one simulation backs up (module docstring): every new child's value, or the expanded leaf's own.
LEAF_VALUES = ("children", "leaf")


@dataclass
class MCTSConfig:
    """MCTS settings; defaults are Super_MARIO's tree-generation config (40 simulations, 5 children, c_puct 1.5, T 1.0)."""

    simulations: int = 40
    children: int = 5
    c_puct: float = 1.5
    max_depth: int = 12  # the most steps a solution may have (Super_MARIO's N allows N + 1: depth > N ends it)
    temperature: float = 1.0
    rollout_temperature: float = 1.0
    max_step_tokens: int = 48
    parallel_leaves: int = 1
    virtual_loss: float = 1.0
    reward: str = "gold"
    leaf_value: str = "children"
    commit_simulations: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reward not in ("gold", "value"):
            raise ValueError(f"MCTS reward must be 'gold' (training data) or 'value' (decoding), got {self.reward!r}")
        if self.leaf_value not in LEAF_VALUES:
            raise ValueError(f"MCTS leaf_value must be 'children' (value every new child) or 'leaf' (Super_MARIO's "
                             f"default: the expanded leaf's own value), got {self.leaf_value!r}")
        require_positive(self, "simulations", "children", "max_depth", "max_step_tokens", "parallel_leaves")
        if self.commit_simulations < 0:
            raise ValueError(f"commit_simulations must be 0 (one search from the root) or positive (simulations after "
                             f"each step-by-step commitment), got {self.commit_simulations}")


def require_positive(config: object, *names: str) -> None:
    """ValueError naming the first of ``names`` whose value on ``config`` is below 1 (a search of 0 simulations
    or children would write root-only trees that count as done)."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")


class SearchTimer:
    """Wall time spent inside generator / scorer calls vs. the whole search (for `reasoner bench search`)."""

    def __init__(self) -> None:
        self.model_seconds = 0.0
        self.calls = 0

    def timed(self, function: Callable, *args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.model_seconds += time.perf_counter() - started
            self.calls += 1


def run_mcts(
    problems: Sequence[Problem],
    generator: StepGenerator,
    config: MCTSConfig,
    scorer: StepScorer | None = None,
    timer: SearchTimer | None = None,
) -> list[Tree]:
    """Search one tree per problem, all problems advancing in lockstep; returns the trees."""
    if config.reward == "value" and scorer is None:
        raise ValueError("MCTS with reward='value' (decoding without the gold answer) needs a StepScorer")
    if config.leaf_value == "leaf" and scorer is None:
        raise ValueError("MCTS with leaf_value='leaf' backs up the expanded leaf's value, which needs a StepScorer "
                         "(a value model); without one use leaf_value='children' (rollouts)")
    timer = timer or SearchTimer()
    trees = [Tree(p.id, p.question, p.answer, config={"algo": "mcts", **asdict(config)}) for p in problems]
    rngs = [random.Random(f"{config.seed}:{p.id}") for p in problems]
    expanded: list[set[int]] = [set() for _ in trees]
    exhausted: list[set[int]] = [set() for _ in trees]
    roots = [0] * len(trees)  # where selection starts: the root, or the node committed to last
    budgets = [config.simulations] * len(trees)  # simulations left before the next commitment
    done = [False] * len(trees)
    while True:
        leaves: list[tuple[int, int]] = []
        for t, tree in enumerate(trees):
            picked: list[int] = []
            while not done[t] and not picked:
                if budgets[t] == 0 and not _commit(tree, roots, budgets, t, rngs[t], config):
                    done[t] = True
                    break
                picked = _select_leaves(tree, roots[t], expanded[t], exhausted[t], rngs[t], config, budgets[t])
                if not picked:  # nothing left to expand below the search root: commit now, or stop
                    budgets[t] = 0
            if picked:
                budgets[t] -= len(picked)  # each selected leaf is one simulation
                leaves.extend((t, node_id) for node_id in picked)
        if not leaves:
            break
        for t, node_id in leaves:  # remove virtual losses before real values arrive
            if config.parallel_leaves > 1:
                _apply_virtual_loss(trees[t], node_id, config.virtual_loss, remove=True)
        new_children = _expand(trees, leaves, expanded, generator, config, timer)
        if config.leaf_value == "leaf":
            answered = [(t, n) for t, n in new_children if trees[t].nodes[n].terminal]
            _backup_scores(trees, leaves + answered, scorer, timer)
        else:
            _evaluate(trees, new_children, generator, scorer, config, timer)
    return trees


def _commit(tree: Tree, roots: list[int], budgets: list[int], t: int, rng: random.Random, config: MCTSConfig) -> bool:
    """Move tree ``t``'s search root one step down (module docstring) and refill its budget; False when the
    search of this tree is over (no commitment asked for, the committed node is terminal, or nothing below the
    search root was ever visited or can still be)."""
    if not config.commit_simulations:
        return False
    committed = tree.config.setdefault("committed", [0])
    below = [tree.nodes[c] for c in tree.nodes[roots[t]].children]
    children = [c for c in below if c.visits > 0]
    if not children:  # leaf values: children stay unvisited until selected, so search on from here
        budgets[t] = config.commit_simulations
        return any(not c.terminal for c in below)

    def rank(child) -> tuple[float, int]:
        return child.q, child.visits

    best = max(rank(c) for c in children)
    child = rng.choice([c for c in children if rank(c) == best])
    committed.append(child.id)
    if child.terminal:
        return False
    roots[t], budgets[t] = child.id, config.commit_simulations
    return True


def _select_leaves(tree: Tree, start: int, expanded: set[int], exhausted: set[int], rng: random.Random,
                   config: MCTSConfig, budget: int) -> list[int]:
    """Up to ``parallel_leaves`` distinct leaves below ``start``, and no more than the ``budget`` of simulations left."""
    picked: list[int] = []
    for _ in range(min(config.parallel_leaves, budget)):
        leaf = _select(tree, start, expanded, exhausted, rng, config.c_puct)
        if leaf is None or leaf in picked:
            break
        picked.append(leaf)
        if config.parallel_leaves > 1:
            _apply_virtual_loss(tree, leaf, config.virtual_loss)
    return picked


def _select(tree: Tree, start: int, expanded: set[int], exhausted: set[int], rng: random.Random,
            c_puct: float) -> int | None:
    """Descend by PUCT from node ``start`` to an unexpanded node; None when the subtree is exhausted."""
    while start not in exhausted:
        node = tree.nodes[start]
        while node.id in expanded:
            candidates = [tree.nodes[c] for c in node.children if not tree.nodes[c].terminal and c not in exhausted]
            if not candidates:
                exhausted.add(node.id)
                break
            scale = c_puct * math.sqrt(max(node.visits, 1))
            scores = [child.q + scale * child.prior / (1 + child.visits) for child in candidates]
            best = max(scores)
            node = rng.choice([c for c, s in zip(candidates, scores) if s == best])
        else:
            return node.id
    return None


def _apply_virtual_loss(tree: Tree, node_id: int, loss: float, remove: bool = False) -> None:
    """Add (or ``remove``) one visit of value ``-loss`` on the path to ``node_id``."""
    sign = -1 if remove else 1
    for node in tree.path(node_id):
        node.visits += sign
        node.value_sum -= sign * loss


def _terminal_verdict(tree: Tree, text: str, finished: bool, depth: int, config: MCTSConfig) -> tuple[bool, str | None, bool | None]:
    """(terminal, answer, correct) of a new step; ``correct`` stays None when the gold answer is off limits."""
    if finished:
        answer = extract_answer(text)
        if config.reward == "value":
            return True, answer, None
        return True, answer, answer is not None and is_equivalent(answer, tree.answer)
    if not text or depth >= config.max_depth:
        return True, None, False
    return False, None, None


def _expand(trees: list[Tree], leaves: list[tuple[int, int]], expanded: list[set[int]], generator: StepGenerator,
            config: MCTSConfig, timer: SearchTimer) -> list[tuple[int, int]]:
    """Add ``children`` sampled steps under every leaf; back up terminal rewards; return the new children
    that need a value (open ones, and with ``reward="value"`` also those holding an answer)."""
    states = [State(trees[t].question, tuple(trees[t].steps(node_id))) for t, node_id in leaves]
    samples = timer.timed(generator.expand, states, config.children, temperature=config.temperature,
                          max_step_tokens=config.max_step_tokens)
    open_children: list[tuple[int, int]] = []
    for (t, node_id), group in zip(leaves, samples):
        tree = trees[t]
        expanded[t].add(node_id)
        depth = tree.nodes[node_id].depth + 1
        for sample in group:
            terminal, answer, correct = _terminal_verdict(tree, sample.text, sample.finished, depth, config)
            child = tree.add_child(node_id, sample.text, prior=sample.prior, tokens=sample.num_tokens,
                                   logprob=sample.logprob, terminal=terminal, answer=answer, correct=correct)
            if terminal and config.reward == "value" and answer is not None:
                open_children.append((t, child.id))
            elif terminal:
                tree.backup(child.id, 1.0 if correct else -1.0)
            else:
                open_children.append((t, child.id))
    return open_children


def _evaluate(trees: list[Tree], children: list[tuple[int, int]], generator: StepGenerator,
              scorer: StepScorer | None, config: MCTSConfig, timer: SearchTimer) -> None:
    """Value of every new child in ``children``: the scorer's last-step value on [-1, 1], else a stored
    rollout's reward."""
    if not children:
        return
    if scorer is not None:
        _backup_scores(trees, children, scorer, timer)
        return
    states = [State(trees[t].question, tuple(trees[t].steps(n))) for t, n in children]
    remaining = [max(1, config.max_depth - trees[t].nodes[n].depth) for t, n in children]
    solutions = rollout(generator, states, temperature=config.rollout_temperature, max_steps=remaining,
                        max_step_tokens=config.max_step_tokens, call=timer.timed)
    for (t, node_id), state, solution in zip(children, states, solutions):
        add_rollout_chain(trees[t], node_id, solution, start=len(state.steps))


def _backup_scores(trees: list[Tree], nodes: list[tuple[int, int]], scorer: StepScorer, timer: SearchTimer) -> None:
    """Back up the scorer's value of each node's last step, mapped to [-1, 1] (0 for the bare question), in one
    scorer call."""
    if not nodes:
        return
    values = timer.timed(scorer.score, [trees[t].question for t, _ in nodes], [trees[t].steps(n) for t, n in nodes])
    head = scorer_head(scorer)
    for (t, node_id), row in zip(nodes, values):
        trees[t].backup(node_id, 2.0 * as_probability(float(row[-1]), head) - 1.0 if row else 0.0)


def add_rollout_chain(tree: Tree, parent: int, solution, start: int) -> list[int]:
    """Store ``solution.steps[start:]`` as a chain below ``parent``; verify its last step and back it up.

    The last step is terminal: correct when the rollout finished with an answer equal to the gold one;
    a rollout cut off by the step budget counts as wrong. Each node keeps its step's prior, so that it
    competes with siblings sampled later on equal terms (1.2). Returns the ids of the new nodes.
    """
    ids = []
    new_steps = solution.steps[start:]
    for index, text in enumerate(new_steps):
        last = index == len(new_steps) - 1
        answer = extract_answer(text) if last and solution.finished else None
        correct = (answer is not None and is_equivalent(answer, tree.answer)) if last else None
        child = tree.add_child(parent, text, prior=solution.step_priors[start + index],
                               tokens=solution.step_tokens[start + index], terminal=last, answer=answer, correct=correct)
        ids.append(parent := child.id)
    if ids:
        tree.backup(ids[-1], 1.0 if tree.nodes[ids[-1]].correct else -1.0)
    return ids


def grow_chains(trees: list[Tree], starts: list[tuple[int, int]], generator: StepGenerator, *, temperature: float,
                max_depth: int, max_step_tokens: int, timer: SearchTimer) -> list[list[int]]:
    """Roll out one full solution from every (tree index, node id) in ``starts``, all in one batched rollout,
    and store each as a chain below its node (`add_rollout_chain`, which backs up its reward); returns the new
    node ids per start. Each rollout has the depth its node has left."""
    states = [State(trees[t].question, tuple(trees[t].steps(node_id))) for t, node_id in starts]
    budgets = [max(1, max_depth - len(state.steps)) for state in states]
    solutions = rollout(generator, states, temperature=temperature, max_steps=budgets,
                        max_step_tokens=max_step_tokens, call=timer.timed)
    return [add_rollout_chain(trees[t], node_id, solution, start=len(state.steps))
            for (t, node_id), state, solution in zip(starts, states, solutions)]
