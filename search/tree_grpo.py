"""Tree-GRPO tree sampler (algorithms.md section 6.1), batched over problems.

Per prompt, ``trees_per_prompt`` (m) trees: each starts with one complete chain sampled from the prompt;
then, for ``rounds`` (l) rounds, each tree draws ``expand_nodes`` (n) nodes uniformly with replacement from
{root} ∪ {its non-leaf nodes} and continues a full chain from each. A new branch shares the chosen node's
prefix, so only its suffix costs tokens (and the HF backend's prefix KV cache makes the prefix free).

All m trees of a prompt live in one `Tree` record: they share the root (the prompt), and
``config["tree_of_root_child"]`` maps each root child to its tree index, so every leaf knows its tree
(needed for the intra-tree advantage). Leaves get reward +1 (correct) or -1, backed up so that every node
also has a Q value. `grpo_leaves` lists the trajectories with their tree index and reward.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Sequence

from data.problems import Problem
from search.mcts import SearchTimer, grow_chains, require_positive
from search.protocols import StepGenerator
from search.tree import Tree

__all__ = ["TreeGRPOConfig", "run_tree_grpo", "grpo_leaves", "tree_index_of"]


@dataclass
class TreeGRPOConfig:
    """Tree-GRPO sampling settings; defaults are the released scripts' m = 2, n = 2, l = 1."""

    trees_per_prompt: int = 2
    expand_nodes: int = 2
    rounds: int = 1
    temperature: float = 1.0
    max_depth: int = 12
    max_step_tokens: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(self, "trees_per_prompt", "expand_nodes", "rounds", "max_depth", "max_step_tokens")


def tree_index_of(tree: Tree, node_id: int) -> int:
    """Index (0..m-1) of the Tree-GRPO tree that a node belongs to (via its depth-1 ancestor)."""
    path = tree.path(node_id)
    if len(path) < 2:
        raise ValueError("the root belongs to every tree")
    return int(tree.config["tree_of_root_child"][str(path[1].id)])


def grpo_leaves(tree: Tree) -> list[dict]:
    """Every terminal leaf as ``{tree, node, steps, reward}`` (reward 1.0 correct, 0.0 otherwise)."""
    return [
        {"tree": tree_index_of(tree, node.id), "node": node.id, "steps": tree.steps(node.id),
         "reward": 1.0 if node.correct else 0.0}
        for node in tree.nodes
        if node.terminal and not node.children
    ]


def run_tree_grpo(problems: Sequence[Problem], generator: StepGenerator, config: TreeGRPOConfig,
                  timer: SearchTimer | None = None) -> list[Tree]:
    """Sample the Tree-GRPO trees of every problem; all chains of a round go through the generator together."""
    timer = timer or SearchTimer()
    trees = [Tree(p.id, p.question, p.answer, config={"algo": "tree-grpo", **asdict(config), "tree_of_root_child": {}})
             for p in problems]
    rngs = [random.Random(f"{config.seed}:{p.id}") for p in problems]
    # Initial chains: m per prompt, from the root.
    starts = [(t, 0, m) for t in range(len(trees)) for m in range(config.trees_per_prompt)]
    _grow(trees, starts, generator, config, timer)
    for _ in range(config.rounds):
        starts = []
        for t, tree in enumerate(trees):
            for m in range(config.trees_per_prompt):
                pool = [0] + [n.id for n in tree.nodes[1:] if n.children and tree_index_of(tree, n.id) == m]
                starts.extend((t, rngs[t].choice(pool), m) for _ in range(config.expand_nodes))
        _grow(trees, starts, generator, config, timer)
    return trees


def _grow(trees: list[Tree], starts: list[tuple[int, int, int]], generator: StepGenerator,
          config: TreeGRPOConfig, timer: SearchTimer) -> None:
    """Roll out a full chain from every (tree, node, tree index) start and insert it; back up its reward."""
    chains = grow_chains(trees, [(t, node_id) for t, node_id, _ in starts], generator, temperature=config.temperature,
                         max_depth=config.max_depth, max_step_tokens=config.max_step_tokens, timer=timer)
    for (t, node_id, m), ids in zip(starts, chains):
        if node_id == 0 and ids:
            trees[t].config["tree_of_root_child"][str(ids[0])] = m
