"""OmegaPRM (algorithms.md 7.2): MC estimates plus a binary search for the first wrong step of wrong rollouts.

Per problem, one loop of estimates, each ``rollouts`` (k) fresh continuations of a prefix verified against the
gold answer, MC(s) = correct / k:

1. estimate the question itself; if 0 < MC < 1, every wrong rollout (s, r) joins a candidate pool;
2. pop the candidate with the highest ``Q(s, r) + U(s)``, where
   ``Q(s, r) = alpha^(1 - MC(s)) * beta^(len(r) / L)`` (len = the rollout's word count: confident states and
   short rollouts first) and ``U(s) = c_puct * sqrt(sum_s' N(s')) / (1 + N(s))`` (N = times a state's
   rollouts were popped); the priorities are recomputed at every pop, which is the re-prioritisation of the
   reference's maintenance phase;
3. binary-search the popped rollout's steps: estimate the prefix up to the middle step; MC = 0 puts the first
   error at or before it (search the left half from the same state), MC > 0 makes that prefix a new good state
   (search the right half from it). Every estimate with 0 < MC < 1 adds its own wrong rollouts to the pool;
4. stop at ``search_limit`` pops, or when ``rollout_budget`` rollouts are spent (checked before a pop, so a
   search under way finishes), or when the pool is empty.

The last step of a wrong rollout is its verdict: a wrong answer, or a step cut off at the depth limit (wrong, as
everywhere in our search). So the search covers the steps before it (the reference spends one more estimate on
the whole wrong solution). When it ends, the first wrong step is pinned: its parent has MC > 0 and it has
MC = 0, or it is the last step itself.

Deviations from the re-implementation this follows (openr ``omegaprm.py``): N(s) counts pops (openr never
increments it, so its U is a constant); one estimate per tested prefix (openr runs each twice); correctness is
`data.is_equivalent` on the extracted answer, not "gold string in the last sentence". [UNVERIFIED]: the
paper's own k and the re-implementations' defaults (alpha 0.5, beta 0.9, L 500, c_puct 0.125, search limit
100; openr's example k 16, rollout budget 200) are what algorithms.md 7.2 records.

``root_rollouts`` (ours, not in the paper or the re-implementations) gives the question's own estimate more
rollouts than the later ones: with k = 8 a hard problem often gets MC = 0 at the question and ends with no
label at all (and an easy one MC = 1); a larger k there finds the rare correct (or wrong) rollout that lets the
search start. The extra rollouts count against ``rollout_budget``.

Problems advance in lockstep: every round, each problem still searching needs exactly one estimate, and one
batched rollout serves them all (k rollouts per prefix share its KV cache in the HF backend). The tree stores
every rollout as a chain below the prefix it started from; ``config["mc"]`` maps each estimated node id to
``[correct, k]`` and ``config["searched"]`` lists the last node of every binary-searched rollout with the
first wrong node's id. Leaves back up +1 / -1 as in MCTS, so every label kind reads these trees.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

from data.problems import Problem
from search.mcts import SearchTimer, grow_chains, require_positive
from search.protocols import StepGenerator
from search.tree import Tree

__all__ = ["OmegaPRMConfig", "run_omegaprm", "omega_labelled_leaves"]


@dataclass
class OmegaPRMConfig:
    """OmegaPRM settings (module docstring); defaults are the re-implementations' except k = 8 (the paper's,
    as commonly quoted) and a rollout budget sized like one default MCTS tree (~200 rollouts)."""

    rollouts: int = 8
    root_rollouts: int = 0  # k of the question's own estimate; 0: ``rollouts``
    search_limit: int = 100
    rollout_budget: int = 200
    alpha: float = 0.5
    beta: float = 0.9
    length_scale: int = 500
    c_puct: float = 0.125
    temperature: float = 1.0
    max_depth: int = 12
    max_step_tokens: int = 48
    seed: int = 0  # recorded with the trees; the sampling is seeded by the generator's own seed

    def __post_init__(self) -> None:
        if self.c_puct < 0:
            raise ValueError(f"OmegaPRM c_puct must be at least 0, got {self.c_puct}")
        if self.root_rollouts < 0:
            raise ValueError(f"OmegaPRM root_rollouts must be 0 (use --rollouts) or positive, got {self.root_rollouts}")
        require_positive(self, "rollouts", "search_limit", "rollout_budget", "length_scale", "max_depth",
                         "max_step_tokens")
        if not (0 < self.alpha <= 1 and 0 < self.beta <= 1):
            raise ValueError(f"OmegaPRM alpha and beta must lie in (0, 1], got alpha={self.alpha}, beta={self.beta}")


@dataclass
class _Search:
    """One problem's loop: the candidate pool, pop counts and the binary search under way."""

    pool: list[tuple[int, list[int]]] = field(default_factory=list)  # (state node id, wrong rollout's node ids)
    pops: dict[int, int] = field(default_factory=dict)  # N(s)
    searches: int = 0
    rollouts: int = 0
    chain: list[int] = field(default_factory=list)  # the rollout being searched (its wrong answer excluded)
    left: int = 0
    right: int = -1
    leaf: int = 0

    def searching(self) -> bool:
        return self.left <= self.right


def run_omegaprm(problems: Sequence[Problem], generator: StepGenerator, config: OmegaPRMConfig,
                 timer: SearchTimer | None = None) -> list[Tree]:
    """Run OmegaPRM on every problem, one batched rollout of k continuations per problem per round."""
    timer = timer or SearchTimer()
    trees = [Tree(p.id, p.question, p.answer, config={"algo": "omegaprm", **asdict(config), "mc": {}, "searched": []})
             for p in problems]
    searches = [_Search() for _ in trees]
    targets = {t: 0 for t in range(len(trees))}  # the root is estimated first
    sample = dict(temperature=config.temperature, max_depth=config.max_depth, max_step_tokens=config.max_step_tokens,
                  timer=timer)
    while targets:
        starts = [(t, node_id) for t, node_id in targets.items()
                  for _ in range((config.root_rollouts or config.rollouts) if node_id == 0 else config.rollouts)]
        chains: dict[int, list[list[int]]] = {t: [] for t in targets}
        for (t, _), ids in zip(starts, grow_chains(trees, starts, generator, **sample)):
            chains[t].append(ids)
        for t, node_id in targets.items():
            mc = _record_estimate(trees[t], searches[t], node_id, chains[t])
            _advance(trees[t], searches[t], mc)
        # a problem without a next estimate is over for good: its pool and counts no longer change
        following = {t: _next_target(trees[t], searches[t], config) for t in targets}
        targets = {t: node_id for t, node_id in following.items() if node_id is not None}
    return trees


def _record_estimate(tree: Tree, search: _Search, node_id: int, chains: list[list[int]]) -> float:
    """Store a prefix's k verified rollouts as its MC counts; wrong ones join the pool when 0 < MC < 1."""
    correct = [bool(ids) and bool(tree.nodes[ids[-1]].correct) for ids in chains]
    tree.config["mc"][str(node_id)] = [sum(correct), len(chains)]
    search.rollouts += len(chains)
    mc = sum(correct) / len(chains)
    if 0 < mc < 1:
        search.pool.extend((node_id, ids) for ids, ok in zip(chains, correct) if ids and not ok)
    return mc


def _advance(tree: Tree, search: _Search, mc: float) -> None:
    """Move the binary search under way past the prefix just estimated (a no-op for the root's estimate)."""
    if not search.searching():
        return
    mid = (search.left + search.right) // 2
    if mc == 0:  # the first wrong step is at or before mid
        search.right = mid - 1
    else:  # the prefix up to mid is good: search on from it
        search.left = mid + 1
    if not search.searching():  # the first wrong step is chain[left] (the wrong answer when left = len(chain))
        first_error = search.chain[search.left] if search.left < len(search.chain) else search.leaf
        tree.config["searched"].append([search.leaf, first_error])


def _next_target(tree: Tree, search: _Search, config: OmegaPRMConfig) -> int | None:
    """The prefix this problem estimates next, or None when its loop is over."""
    while not search.searching():
        if not search.pool or search.searches >= config.search_limit or search.rollouts >= config.rollout_budget:
            return None
        state, chain = search.pool.pop(_best_candidate(tree, search, config))
        search.pops[state] = search.pops.get(state, 0) + 1
        search.searches += 1
        search.chain, search.leaf = chain[:-1], chain[-1]
        search.left, search.right = 0, len(chain) - 2
        if not search.searching():  # a one-step rollout: its only step is the wrong answer
            tree.config["searched"].append([search.leaf, search.leaf])
    return search.chain[(search.left + search.right) // 2]


def _best_candidate(tree: Tree, search: _Search, config: OmegaPRMConfig) -> int:
    """Index in the pool of the highest Q(s, r) + U(s); the earliest added wins ties."""
    total = math.sqrt(max(1, sum(search.pops.values())))

    def score(index: int) -> float:
        state, chain = search.pool[index]
        correct, k = tree.config["mc"][str(state)]
        words = sum(len(tree.nodes[i].step.split()) for i in chain)
        q = config.alpha ** (1 - correct / k) * config.beta ** (words / config.length_scale)
        return q + config.c_puct * total / (1 + search.pops.get(state, 0))

    return max(range(len(search.pool)), key=lambda i: (score(i), -i))


def omega_labelled_leaves(tree: Tree) -> dict[int, int | None] | None:
    """For an OmegaPRM tree, the last nodes of the solutions whose every step has a known label, each with its
    pinned first wrong node: every correct rollout (all its steps reach the gold answer; None) and every
    binary-searched wrong rollout (good up to its first wrong step), in node order; None for any other tree.
    Wrong rollouts never searched are left out: their first wrong step is unknown."""
    if tree.config.get("algo") != "omegaprm":
        return None
    first_errors = {int(leaf): int(node) for leaf, node in tree.config.get("searched", [])}
    return {node.id: first_errors.get(node.id) for node in tree.nodes
            if node.terminal and not node.children and (node.correct or node.id in first_errors)}
