"""Math-Shepherd MC estimation (algorithms.md 7.1): N fresh completions from every prefix of sampled solutions.

Per problem, ``solutions`` full solutions are sampled from the question; then from every prefix
s_1..s_i (i < K) of every solution, ``completions`` (N) continuations are sampled to a final answer, each
verified against the gold answer. Step i's soft label is the share of its own N completions that reach the
gold answer (Math-Shepherd's y^SE), its hard label whether any does (y^HE); the last step's is the solution's
own verdict. Math-Shepherd used N = 8 and pooled 15 solutions per problem from two generators.

Unlike the tree-based MC labels of an MCTS run (the verified leaves below a step, wherever PUCT sent them),
these are independent samples of the policy from each prefix. One `Tree` per problem holds everything:
each solution is a chain from the root and each completion a chain below the prefix it started from, so the
HF backend's prefix KV cache serves all N completions of a prefix and the tree shows what was sampled.
``config["mc"]`` maps each prefix's node id to ``[correct, N]`` of its own completions, and
``config["solutions"]`` lists the solutions' last nodes; `prm.labels` reads both. Every leaf backs up +1 / -1
as in MCTS, so the other label kinds read these trees too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from data.problems import Problem
from search.mcts import SearchTimer, grow_chains, require_positive
from search.protocols import StepGenerator
from search.tree import Tree

__all__ = ["ShepherdConfig", "run_shepherd", "own_mc"]


@dataclass
class ShepherdConfig:
    """Math-Shepherd sampling settings: ``solutions`` per problem, ``completions`` (N = 8) per prefix."""

    solutions: int = 4
    completions: int = 8
    temperature: float = 1.0
    max_depth: int = 12
    max_step_tokens: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(self, "solutions", "completions", "max_depth", "max_step_tokens")


def run_shepherd(problems: Sequence[Problem], generator: StepGenerator, config: ShepherdConfig,
                 timer: SearchTimer | None = None) -> list[Tree]:
    """Sample every problem's solutions (one batched rollout), then every prefix's N completions (another)."""
    timer = timer or SearchTimer()
    trees = [Tree(p.id, p.question, p.answer, config={"algo": "shepherd", **asdict(config), "mc": {}, "solutions": []})
             for p in problems]
    sample = dict(temperature=config.temperature, max_depth=config.max_depth, max_step_tokens=config.max_step_tokens,
                  timer=timer)
    starts = [(t, 0) for t in range(len(trees)) for _ in range(config.solutions)]
    prefixes = []
    for (t, _), ids in zip(starts, grow_chains(trees, starts, generator, **sample)):
        if ids:
            trees[t].config["solutions"].append(ids[-1])
            prefixes.extend((t, node_id) for node_id in ids[:-1] for _ in range(config.completions))
    for (t, node_id), ids in zip(prefixes, grow_chains(trees, prefixes, generator, **sample)):
        counts = trees[t].config["mc"].setdefault(str(node_id), [0, 0])
        counts[0] += bool(ids and trees[t].nodes[ids[-1]].correct)
        counts[1] += 1
    return trees


def own_mc(tree: Tree) -> list[tuple[list[int], list[float]]] | None:
    """For a Math-Shepherd tree, per solution its node ids (first step to last) and per step the MC value from
    that prefix's own completions (the last step: the solution's verdict); None for any other tree."""
    if tree.config.get("algo") != "shepherd":
        return None
    mc = tree.config.get("mc") or {}
    result = []
    for leaf_id in tree.config.get("solutions", []):
        ids = [node.id for node in tree.path(int(leaf_id))[1:]]
        counts = [mc.get(str(i)) or (0, 0) for i in ids[:-1]]
        values = [correct / total if total else 0.0 for correct, total in counts]
        result.append((ids, values + [float(bool(tree.nodes[ids[-1]].correct))]))
    return result
