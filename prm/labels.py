"""Trees → training records: step preference pairs, per-step rewards and Math-Shepherd MC labels.

Every rule reads the verified outcomes stored in a search tree (``correct`` on terminal nodes) and the
backed-up ``Q``. A node is *alive* when its subtree holds a correct terminal leaf. Kinds:

* ``step-dpo`` (algorithms.md 2.4): first-error pairs. For an alive node, chosen = an alive child (best Q),
  rejected = a child whose subtree was evaluated and holds no correct leaf (the step after which the answer
  is lost); the prompt is the question + the correct earlier steps.
* ``svpo`` / ``step-apo`` (1.10, 4.2, CPL's verified rule): siblings with ``max Q > 0 > min Q``; every
  (Q > 0, Q < 0) pair among intermediate steps, only (argmax, argmin) among final-answer steps. Step-APO
  scales the Q of final-step pairs by ``solution_weight`` = 0.3 as CPL does.
* ``mcts-dpo`` (5.3): best-Q child vs. a random lower-Q sibling, each extended through its unbranched
  descendants; at most 8 pairs per problem.
* ``mc-labels`` (7.1, 7.4): one record per root-to-leaf path in TRL's stepwise format (``prompt``,
  ``completions``, ``labels``) plus ``values``: the soft label of a step is the fraction of correct leaves
  among the verified leaves below it (Math-Shepherd SE over the tree's rollouts), the hard label is
  "some correct leaf below".
* ``step-rewards`` (3.2): per problem, up to 8 full solutions with outcome ``rewards`` (1/0) and per-step
  ``step_rewards`` = the MC values (or a trained value model's, mapped to [0, 1]) clipped to [0.01, 0.99], never
  exactly 0 (Full-Step-DPO treats 0 as padding).

Pairs follow TRL's preference columns (``prompt``/``chosen``/``rejected``) plus ``q_chosen``, ``q_rejected``,
``problem_id``, ``depth``, ``source``, so ``datasets.load_dataset("json", ...)`` reads every output as is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from reasoner.steps import StepFormat
from search.protocols import StepScorer, scorer_head
from search.tree import Node, Tree

__all__ = ["KINDS", "LabelReport", "label_trees", "subtree_outcomes"]

KINDS = ("step-dpo", "svpo", "step-apo", "mcts-dpo", "mc-labels", "step-rewards")


@dataclass
class LabelReport:
    """How many records a run produced, and why problems produced none."""

    kind: str
    problems: int = 0
    records: int = 0
    empty: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.empty[reason] = self.empty.get(reason, 0) + 1


def subtree_outcomes(tree: Tree) -> tuple[list[int], list[int]]:
    """Per node: (correct terminal leaves below it, verified terminal leaves below it), node included."""
    correct = [0] * len(tree.nodes)
    verified = [0] * len(tree.nodes)
    for node in reversed(tree.nodes):  # children always have larger ids than their parent
        if node.terminal:
            verified[node.id] += 1
            correct[node.id] += bool(node.correct)
        if node.parent is not None:
            correct[node.parent] += correct[node.id]
            verified[node.parent] += verified[node.id]
    return correct, verified


def _pair(tree: Tree, fmt: StepFormat, parent: Node, chosen: str, rejected: str, q_chosen: float,
          q_rejected: float, source: str) -> dict:
    return {"prompt": fmt.render(tree.question, tree.steps(parent.id)), "chosen": chosen, "rejected": rejected,
            "q_chosen": q_chosen, "q_rejected": q_rejected, "problem_id": tree.problem_id,
            "depth": parent.depth, "source": source}


def _step_dpo(tree: Tree, fmt: StepFormat, report: LabelReport, **_) -> list[dict]:
    correct, verified = subtree_outcomes(tree)
    if not correct[0]:
        report.skip("no correct leaf in the tree")
        return []
    records = []
    for node in tree.nodes:
        if not correct[node.id] or len(node.children) < 2:
            continue
        children = [tree.nodes[c] for c in node.children]
        alive = [c for c in children if correct[c.id]]
        lost = [c for c in children if verified[c.id] and not correct[c.id]]
        if not alive or not lost:
            continue
        best = max(alive, key=lambda c: (c.q, c.visits))
        records.extend(_pair(tree, fmt, node, best.step, bad.step, best.q, bad.q, "step-dpo") for bad in lost
                       if bad.step != best.step)
    if not records:
        report.skip("no step after which the answer is lost")
    return records


def _sibling_pairs(tree: Tree, fmt: StepFormat, report: LabelReport, *, source: str,
                   solution_weight: float = 1.0, **_) -> list[dict]:
    records = []
    for node in tree.nodes:
        children = [tree.nodes[c] for c in node.children if tree.nodes[c].visits > 0]
        if len(children) < 2 or not (max(c.q for c in children) > 0 > min(c.q for c in children)):
            continue
        if all(c.terminal for c in children):
            best, worst = max(children, key=lambda c: c.q), min(children, key=lambda c: c.q)
            records.append(_pair(tree, fmt, node, best.step, worst.step, best.q * solution_weight,
                                 worst.q * solution_weight, source))
            continue
        for winner in (c for c in children if c.q > 0):
            records.extend(_pair(tree, fmt, node, winner.step, loser.step, winner.q, loser.q, source)
                           for loser in children if loser.q < 0 and loser.step != winner.step)
    if not records:
        report.skip("no sibling pair with Q > 0 and Q < 0")
    return records


def _continuation(tree: Tree, node: Node, fmt: StepFormat) -> str:
    """The node's step plus its unbranched descendants as the policy wrote them after the pair's prompt: joined
    with the step delimiter, every step after the first with its header (the prompt ends with the first's)."""
    index = len(tree.steps(node.id)) - 1
    steps = [node.step]
    while len(node.children) == 1:
        node = tree.nodes[node.children[0]]
        steps.append(fmt.header(index + len(steps)) + node.step)
    return fmt.delimiter.join(steps)


def _mcts_dpo(tree: Tree, fmt: StepFormat, report: LabelReport, *, rng: random.Random, max_pairs: int = 8, **_) -> list[dict]:
    records = []
    for node in tree.nodes:
        children = [tree.nodes[c] for c in node.children if tree.nodes[c].visits > 0]
        if len(children) < 2:
            continue
        best = max(children, key=lambda c: (c.q, c.visits))
        worse = [c for c in children if c.q < best.q]
        if not worse:
            continue
        other = rng.choice(worse)
        records.append(_pair(tree, fmt, node, _continuation(tree, best, fmt), _continuation(tree, other, fmt),
                             best.q, other.q, "mcts-dpo"))
    if not records:
        report.skip("no node with two differently valued children")
    rng.shuffle(records)
    return records[:max_pairs]


def _paths(tree: Tree) -> tuple[list[list[Node]], list[int], list[int]]:
    correct, verified = subtree_outcomes(tree)
    leaves = [node for node in tree.nodes if node.terminal and not node.children]
    return [tree.path(leaf.id)[1:] for leaf in leaves], correct, verified


def _mc_labels(tree: Tree, fmt: StepFormat, report: LabelReport, **_) -> list[dict]:
    paths, correct, verified = _paths(tree)
    if not paths:
        report.skip("no terminal leaf")
    return [{"prompt": fmt.prompt(tree.question), "completions": [n.step for n in path],
             "labels": [correct[n.id] > 0 for n in path],
             "values": [correct[n.id] / verified[n.id] for n in path], "problem_id": tree.problem_id}
            for path in paths]


def _step_rewards(tree: Tree, fmt: StepFormat, report: LabelReport, *, rng: random.Random, max_responses: int = 8,
                  floor: float = 0.01, scorer: StepScorer | None = None, **_) -> list[dict]:
    paths, correct, verified = _paths(tree)
    if not paths:
        report.skip("no terminal leaf")
        return []
    rng.shuffle(paths)
    paths = paths[:max_responses]
    clip = lambda v: min(max(v, floor), 1.0 - floor)
    if scorer is None:
        rewards = [[correct[n.id] / verified[n.id] for n in p] for p in paths]
    else:  # a value head in [-1, 1] is mapped to [0, 1]
        scored = scorer.score([tree.question] * len(paths), [[n.step for n in p] for p in paths])
        to_unit = (lambda v: (v + 1.0) / 2.0) if scorer_head(scorer) == "tanh" else (lambda v: v)
        rewards = [[to_unit(v) for v in row] for row in scored]
    return [{"prompt": fmt.prompt(tree.question), "responses": [fmt.render_solution([n.step for n in p]) for p in paths],
             "rewards": [1.0 if p[-1].correct else 0.0 for p in paths],
             "step_rewards": [[clip(v) for v in row] for row in rewards],
             "problem_id": tree.problem_id}]


_RULES: dict[str, tuple[Callable[..., list[dict]], dict]] = {
    "step-dpo": (_step_dpo, {}),
    "svpo": (_sibling_pairs, {"source": "svpo"}),
    "step-apo": (_sibling_pairs, {"source": "step-apo", "solution_weight": 0.3}),
    "mcts-dpo": (_mcts_dpo, {}),
    "mc-labels": (_mc_labels, {}),
    "step-rewards": (_step_rewards, {}),
}


def label_trees(trees: Iterable[Tree], kind: str, fmt: StepFormat, seed: int = 42,
                scorer: StepScorer | None = None) -> tuple[list[dict], LabelReport]:
    """All records of one ``kind`` from ``trees`` and a report of counts and empty-problem reasons.

    ``scorer`` (a trained value model) replaces the MC estimates as the per-step rewards of ``step-rewards``.
    """
    if kind not in _RULES:
        raise ValueError(f"unknown label kind {kind!r}; known: {', '.join(KINDS)}")
    rule, options = _RULES[kind]
    rng = random.Random(seed)
    report = LabelReport(kind)
    records: list[dict] = []
    for tree in trees:
        report.problems += 1
        # Duplicate samples can give siblings with the same text: such a "pair" teaches nothing.
        records.extend(r for r in rule(tree, fmt, report, rng=rng, scorer=scorer, **options)
                       if "chosen" not in r or r["chosen"] != r["rejected"])
    report.records = len(records)
    return records, report
