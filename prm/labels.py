"""Trees → training records: step preference pairs, per-step rewards and Math-Shepherd MC labels.

Every rule reads the verified outcomes stored in a search tree (``correct`` on terminal nodes) and the
backed-up ``Q``. A node is *alive* when its subtree holds a correct terminal leaf. Kinds:

* ``step-dpo`` (algorithms.md 2.4): first-error pairs. For an alive node, chosen = an alive child (best Q),
  rejected = a child whose subtree was evaluated and holds no correct leaf (the step after which the answer
  is lost); the prompt is the question + the correct earlier steps.
* ``svpo`` / ``step-apo`` (1.10, 4.2, CPL's verified rule): siblings with ``max Q > 0 > min Q``; every
  (Q > 0, Q < 0) pair among intermediate steps, only (argmax, argmin) among final-answer steps. Step-APO
  scales the Q of final-step pairs by ``solution_weight`` = 0.3 as CPL does. [UNVERIFIED] for SVPO: its
  paper's own selection rule and thresholds are not published (1.10); CPL's rule, on the same AlphaMath
  MCTS, stands in for it with τ+ = τ- = 0.
* ``mcts-dpo`` (5.3): along the committed path (from the root, the best-Q visited child at every level), at
  each node with differently valued children: best-Q child vs. a random lower-Q sibling, each extended
  through its unbranched descendants; at most 8 pairs per problem; ``n_chosen`` / ``n_rejected`` carry
  their visit counts for MCTS-DPO's conservative label smoothing. A tree grown by committing step by step, as
  MCTS-DPO's search does (``commit_simulations > 0`` in `search.mcts`), stores its committed path, and the
  pairs are taken at its nodes (chosen = the best-Q child by the finished tree's Q, which may be a sibling of the
  step committed to earlier in the search, as in MCTS-DPO, whose better candidate is the highest Q); on any
  other tree the path is read from the finished tree.
* ``mc-labels`` (7.1, 7.4): one record per root-to-leaf path in TRL's stepwise format (``prompt``,
  ``completions``, ``labels``) plus ``values``: the soft label of a step is the fraction of correct leaves
  among the verified leaves below it (Math-Shepherd SE over the tree's rollouts), the hard label is
  "some correct leaf below". On a Math-Shepherd run (``reasoner search --algo shepherd``) one record per
  sampled solution instead, each step valued by its own N completions (7.1 exactly); on an OmegaPRM run
  (``--algo omegaprm``, 7.2) one record per correct or binary-searched wrong rollout.
* ``rft`` (rejection-sampling fine-tuning, Yuan et al. 2023; the policy-training half of ReST-MCTS* and
  AlphaMath): per problem, up to ``max_solutions`` = 4 distinct correct root-to-leaf solutions of the tree (copies
  of one step path count once; a seeded random pick when there are more), as SFT rows: ``id`` (``PROBLEM#k``) /
  ``question`` / ``answer`` / ``solution`` (the steps as the policy writes them), so `reasoner train sft --data
  FILE` reads the file as a problem set, and TRL's ``prompt`` / ``completion`` (the same text) for its SFTTrainer.
* ``dpo``: solution-level pairs, the outcome-only baseline the step-level methods claim to beat (Step-DPO's and
  SVPO's "solution-level DPO"; with ``reasoner train dpo --sft_weight 1`` it is Iterative RPO, Pang et al. 2024).
  Per problem, up to ``max_pairs`` = 10 (chosen, rejected) pairs drawn without replacement (seeded) from the
  distinct correct solutions × the distinct solutions with a wrong final answer (a solution cut off without an
  answer is never the rejected one, as a failure sentinel is never a rejected step); the prompt is the question,
  chosen and rejected are whole solutions (the trainer adds no EOS, as after any final step: the search and the
  step generators end a solution at its final-answer step). ``q_chosen`` = 1, ``q_rejected`` = −1 (the verdicts).
  [UNVERIFIED] K = 10 pairs per problem and the NLL weight 1 are Iterative RPO's GSM8K settings as we recall
  them from the paper; its pairs come from N independent samples per problem, ours from a tree's leaves, which
  share prefixes.
* ``step-rewards`` (3.2): per problem, up to 8 full solutions with outcome ``rewards`` (1/0) and per-step
  ``step_rewards`` = the MC values (or a trained value model's, mapped to [0, 1]) clipped to [0.01, 0.99], never
  exactly 0 (Full-Step-DPO treats 0 as padding). [UNVERIFIED] (3.1, 13.2): Full-Step-DPO's self-supervised
  PRM is not released; the MC values here count the tree's leaves below a step (a Math-Shepherd run's: N fresh
  completions per step).

MC values of MCTS and Tree-GRPO trees are tree-based: the leaves below a step are the search's rollouts from it
(PUCT picks where to go, so they are not independent policy samples, and a step with one verified leaf below
has soft label = hard label), not Math-Shepherd's N = 8 completions per prefix (7.1); `search.shepherd` samples
those.

Sampled siblings can repeat a step text. The rules read each node's statistics merged over all copies of its
step path (`_Prefix`: visits, values and verified leaves summed), so Q is the mean over the copies and two copies
of one step never get opposite labels; but they still emit one record per copy, so a path the policy sampled k
times weighs k times (the policy's own distribution; labelling each distinct prefix once lowered the demo value
model's step AUC from 0.95 to 0.82 and its first-error F1 from 0.86 to 0.39). Failure sentinels (a terminal step without an answer: depth limit, empty
step, EOS) are never the rejected step of a sibling pair (1.10), and an empty step is never paired at all. A
path's last label is its leaf's own verdict.

Pairs follow TRL's preference columns (``prompt``/``chosen``/``rejected``) plus ``q_chosen``, ``q_rejected``,
``problem_id``, ``depth``, ``source``, so ``datasets.load_dataset("json", ...)`` reads every output as is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from reasoner.steps import StepFormat
from search.protocols import StepScorer, scorer_head
from search.omegaprm import omega_labelled_leaves
from search.shepherd import own_mc
from search.tree import Node, Tree

__all__ = ["KINDS", "PER_PROBLEM_CAPS", "LabelReport", "label_trees", "subtree_outcomes"]

KINDS = ("step-dpo", "svpo", "step-apo", "mcts-dpo", "dpo", "mc-labels", "step-rewards", "rft")
# the per-problem caps a caller may set (`reasoner label --max-pairs`, a recipe's `label` section), and the kinds
# whose rule takes each
PER_PROBLEM_CAPS = {"max_solutions": ("rft",), "max_pairs": ("dpo", "mcts-dpo")}


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


@dataclass
class _Prefix:
    """The statistics of one distinct partial solution of a tree, shared by every node whose step path has the
    same texts (`_merged`): visits, value sums and verified leaves summed over the copies, so Q = W / N is the
    mean over all of them and two copies of a step can never get opposite labels."""

    steps: tuple[str, ...]
    visits: int = 0
    value_sum: float = 0.0
    correct: int = 0  # correct terminal leaves below (rollouts that reached the gold answer)
    verified: int = 0  # terminal leaves below
    final: bool = False  # a copy holds a final answer
    failed: bool = True  # every copy is terminal without an answer: depth limit, empty step, EOS (1.10's sentinels)

    @property
    def step(self) -> str:
        return self.steps[-1] if self.steps else ""

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


def _merged(tree: Tree) -> list[_Prefix]:
    """Per node id, the `_Prefix` of its step path (copies share one object)."""
    correct, verified = subtree_outcomes(tree)
    by_steps: dict[tuple[str, ...], _Prefix] = {}
    of_node: list[_Prefix] = []
    for node in tree.nodes:  # parents come before their children
        steps = () if node.parent is None else of_node[node.parent].steps + (node.step,)
        prefix = by_steps.setdefault(steps, _Prefix(steps))
        of_node.append(prefix)
        prefix.visits += node.visits
        prefix.value_sum += node.value_sum
        prefix.correct += correct[node.id]
        prefix.verified += verified[node.id]
        prefix.final |= node.terminal and node.answer is not None
        prefix.failed &= node.terminal and node.answer is None
    return of_node


def _pair(tree: Tree, fmt: StepFormat, parent: _Prefix, chosen: str, rejected: str, q_chosen: float,
          q_rejected: float, source: str) -> dict:
    prompt = fmt.render(tree.question, parent.steps)
    gap = fmt.gap_after(prompt)  # so that prompt + chosen is the text the policy wrote ("Step 2:" + " Tom ...")
    return {"prompt": prompt, "chosen": gap + chosen, "rejected": gap + rejected,
            "q_chosen": q_chosen, "q_rejected": q_rejected, "problem_id": tree.problem_id,
            "depth": len(parent.steps), "source": source}


def _step_dpo(tree: Tree, fmt: StepFormat, report: LabelReport, **_) -> list[dict]:
    stats = _merged(tree)
    if not stats[0].correct:
        report.skip("no correct leaf in the tree")
        return []
    records = []
    for node in tree.nodes:
        children = [stats[c] for c in node.children if stats[c].step.strip()]
        if not stats[node.id].correct or len(children) < 2:
            continue
        alive = [c for c in children if c.correct]
        lost = [c for c in children if c.verified and not c.correct]
        if not alive or not lost:
            continue
        best = max(alive, key=lambda c: (c.q, c.visits))
        records.extend(_pair(tree, fmt, stats[node.id], best.step, bad.step, best.q, bad.q, "step-dpo")
                       for bad in lost)
    if not records:
        report.skip("no step after which the answer is lost")
    return records


def _sibling_pairs(tree: Tree, fmt: StepFormat, report: LabelReport, *, source: str,
                   solution_weight: float = 1.0, **_) -> list[dict]:
    """CPL's rule (1.10, 4.2) over visited siblings that are not failure sentinels: every (Q > 0, Q < 0) pair
    with an intermediate step in it; among final-answer siblings only (argmax Q, argmin Q), both Q scaled by
    ``solution_weight``. (CPL never meets final and intermediate siblings together; pairing across the two
    kinds, unscaled, is ours: a wrong early answer against a step that goes on.)"""
    stats = _merged(tree)
    records = []
    for node in tree.nodes:
        children = [stats[c] for c in node.children
                    if stats[c].visits > 0 and not stats[c].failed and stats[c].step.strip()]
        if len(children) < 2 or not (max(c.q for c in children) > 0 > min(c.q for c in children)):
            continue
        finals = [c for c in children if c.final]
        if len(finals) >= 2 and max(c.q for c in finals) > 0 > min(c.q for c in finals):
            best, worst = max(finals, key=lambda c: c.q), min(finals, key=lambda c: c.q)
            records.append(_pair(tree, fmt, stats[node.id], best.step, worst.step, best.q * solution_weight,
                                 worst.q * solution_weight, source))
        for winner in (c for c in children if c.q > 0):
            records.extend(_pair(tree, fmt, stats[node.id], winner.step, loser.step, winner.q, loser.q, source)
                           for loser in children if loser.q < 0 and not (winner.final and loser.final))
    if not records:
        report.skip("no sibling pair with Q > 0 and Q < 0")
    return records


def _joined(fmt: StepFormat, steps: list[str], first: int) -> str:
    """Steps ``first``, ``first + 1``, ... as the policy wrote them after a pair's prompt (which ends with the
    first step's open header; the record adds its `header_gap`): joined with the step delimiter, every step after
    the first with its header."""
    return fmt.delimiter.join([steps[0]] + [fmt.header(first + k) + step for k, step in enumerate(steps[1:], 1)])


def _continuation(tree: Tree, node: Node, fmt: StepFormat) -> str:
    """The node's step plus its unbranched descendants: the completion of a pair whose prompt ends before it."""
    steps = [node.step]
    while len(node.children) == 1:
        node = tree.nodes[node.children[0]]
        steps.append(node.step)
    return _joined(fmt, steps, node.depth - len(steps))


def _mcts_dpo(tree: Tree, fmt: StepFormat, report: LabelReport, *, rng: random.Random, max_pairs: int = 8, **_) -> list[dict]:
    stats = _merged(tree)
    records = []
    committed = tree.config.get("committed")
    node, depth = tree.root, 0
    while True:  # the stored committed path, else the best-Q visited child at every level
        children = [tree.nodes[c] for c in node.children if stats[c].visits > 0 and stats[c].step.strip()]
        if not children:
            break
        best = max(children, key=lambda c: (stats[c.id].q, stats[c.id].visits))
        worse = [c for c in children if stats[c.id].q < stats[best.id].q]
        if worse:
            other = rng.choice(worse)
            record = _pair(tree, fmt, stats[node.id], _continuation(tree, best, fmt), _continuation(tree, other, fmt),
                           stats[best.id].q, stats[other.id].q, "mcts-dpo")
            record.update(n_chosen=stats[best.id].visits, n_rejected=stats[other.id].visits)
            records.append(record)
        depth += 1
        if committed is None:
            node = best
        elif depth < len(committed):
            node = tree.nodes[committed[depth]]
        else:
            break
    if not records:
        report.skip("no node on the committed path with two differently valued children")
    return records[:max_pairs]


def _solutions(tree: Tree, correct: bool) -> tuple[list[tuple[str, ...]], list[Node]]:
    """The distinct step paths (steps stripped; copies of one path count once, in tree order) of the tree's
    terminal leaves that are correct, or that state a wrong answer, with no empty step; and every such leaf."""
    leaves = [leaf for leaf in tree.nodes if leaf.terminal and not leaf.children
              and (bool(leaf.correct) if correct else leaf.correct is False and leaf.answer is not None)]
    solutions: dict[tuple[str, ...], None] = {}
    for leaf in leaves:
        steps = tuple(node.step.strip() for node in tree.path(leaf.id)[1:])
        if all(steps):
            solutions.setdefault(steps)
    return list(solutions), leaves


def _dpo(tree: Tree, fmt: StepFormat, report: LabelReport, *, rng: random.Random, max_pairs: int = 10,
         **_) -> list[dict]:
    right, _ = _solutions(tree, correct=True)
    wrong, _ = _solutions(tree, correct=False)
    if not right or not wrong:
        report.skip("no correct solution" if not right else "no solution with a wrong answer")
        return []
    picks = [(i, j) for i in range(len(right)) for j in range(len(wrong))]
    if len(picks) > max_pairs:
        picks = rng.sample(picks, max_pairs)
    prompt = fmt.render(tree.question, ())
    gap = fmt.gap_after(prompt)
    return [{"prompt": prompt, "chosen": gap + _joined(fmt, list(right[i]), 0), "rejected": gap + _joined(fmt, list(wrong[j]), 0),
             "q_chosen": 1.0, "q_rejected": -1.0, "problem_id": tree.problem_id, "depth": 0, "source": "dpo"}
            for i, j in picks]


def _mc_paths(tree: Tree) -> list[tuple[list[str], list[float], Node]]:
    """The labelled solutions of a tree as (steps, MC value per step, last node).

    A Math-Shepherd tree (`search.shepherd`): its sampled solutions, each step valued by its own N completions.
    An OmegaPRM tree (`search.omegaprm`): its correct and its binary-searched wrong rollouts, each estimated
    prefix valued by its own k rollouts, every other step as below, and every step of a searched rollout from
    its pinned first wrong step on valued 0 (the steps before it are > 0: a good estimated prefix lies below).
    Any other tree: every terminal leaf (one per rollout, copies included), each step valued by the share of
    correct leaves among the verified ones below it (merged over copies). Either way the last step's value is
    its leaf's own verdict (a copy cut off without an answer is not correct because another was).
    """
    shepherd = own_mc(tree)
    if shepherd is not None:
        return [([tree.nodes[i].step for i in ids], values, tree.nodes[ids[-1]]) for ids, values in shepherd]
    stats = _merged(tree)
    omega = omega_labelled_leaves(tree)
    own = (tree.config.get("mc") or {}) if omega is not None else {}
    leaves = [tree.nodes[i] for i in omega] if omega is not None else \
        [leaf for leaf in tree.nodes if leaf.terminal and not leaf.children]

    def value(node: Node) -> float:
        correct, total = own.get(str(node.id)) or (stats[node.id].correct, stats[node.id].verified)
        return correct / total

    paths = []
    for leaf in leaves:
        nodes = tree.path(leaf.id)[1:]
        values = [value(n) for n in nodes[:-1]] + [float(bool(leaf.correct))]
        first_error = omega.get(leaf.id) if omega is not None else None
        if first_error is not None:  # wrong from the pinned step on, even where a copy of a later step did better
            cut = [n.id for n in nodes].index(first_error)
            values = values[:cut] + [0.0] * (len(values) - cut)
        paths.append(([n.step for n in nodes], values, leaf))
    return paths


def _no_paths(tree: Tree) -> str:
    """Why `_mc_paths` found nothing in ``tree`` (for the label report)."""
    if omega_labelled_leaves(tree) is not None:
        return "no correct or binary-searched rollout (OmegaPRM: MC of the question was 0)"
    return "no terminal leaf"


def _mc_labels(tree: Tree, fmt: StepFormat, report: LabelReport, **_) -> list[dict]:
    paths = _mc_paths(tree)
    if not paths:
        report.skip(_no_paths(tree))
    return [{"prompt": fmt.prompt(tree.question), "completions": steps, "labels": [v > 0 for v in values],
             "values": values, "problem_id": tree.problem_id}
            for steps, values, _ in paths]


def _step_rewards(tree: Tree, fmt: StepFormat, report: LabelReport, *, rng: random.Random, max_responses: int = 8,
                  floor: float = 0.01, scorer: StepScorer | None = None, **_) -> list[dict]:
    paths = _mc_paths(tree)
    if not paths:
        report.skip(_no_paths(tree))
        return []
    rng.shuffle(paths)
    paths = paths[:max_responses]
    clip = lambda v: min(max(v, floor), 1.0 - floor)
    if scorer is None:
        rewards = [values for _, values, _ in paths]
    else:  # a value head in [-1, 1] is mapped to [0, 1]
        scored = scorer.score([tree.question] * len(paths), [steps for steps, _, _ in paths])
        to_unit = (lambda v: (v + 1.0) / 2.0) if scorer_head(scorer) == "tanh" else (lambda v: v)
        rewards = [[to_unit(v) for v in row] for row in scored]
    return [{"prompt": fmt.prompt(tree.question), "responses": [fmt.render_solution(steps) for steps, _, _ in paths],
             "rewards": [1.0 if leaf.correct else 0.0 for _, _, leaf in paths],
             "step_rewards": [[clip(v) for v in row] for row in rewards],
             "problem_id": tree.problem_id}]


def _rft(tree: Tree, fmt: StepFormat, report: LabelReport, *, rng: random.Random, max_solutions: int = 4,
         **_) -> list[dict]:
    picked, correct_leaves = _solutions(tree, correct=True)
    if not picked:
        report.skip("every correct solution holds an empty step" if correct_leaves else "no correct leaf in the tree")
        return []
    if len(picked) > max_solutions:
        picked = rng.sample(picked, max_solutions)
    records = []
    for index, steps in enumerate(picked):  # ids stay unique, as a problem set needs
        text = fmt.render_solution(steps)
        records.append({"id": f"{tree.problem_id}#{index}", "question": tree.question, "answer": tree.answer,
                        "solution": text, "prompt": fmt.prompt(tree.question), "completion": text,
                        "problem_id": tree.problem_id, "source": "rft"})
    return records


_RULES: dict[str, tuple[Callable[..., list[dict]], dict]] = {
    "step-dpo": (_step_dpo, {}),
    "svpo": (_sibling_pairs, {"source": "svpo"}),
    "step-apo": (_sibling_pairs, {"source": "step-apo", "solution_weight": 0.3}),
    "mcts-dpo": (_mcts_dpo, {}),
    "dpo": (_dpo, {}),
    "mc-labels": (_mc_labels, {}),
    "step-rewards": (_step_rewards, {}),
    "rft": (_rft, {}),
}


def label_trees(trees: Iterable[Tree], kind: str, fmt: StepFormat, seed: int = 42,
                scorer: StepScorer | None = None, **options) -> tuple[list[dict], LabelReport]:
    """All records of one ``kind`` from ``trees`` and a report of counts and empty-problem reasons.

    ``scorer`` (a trained value model) replaces the MC estimates as the per-step rewards of ``step-rewards``.
    ``options`` override the rule's own (``max_pairs`` of ``mcts-dpo`` and ``dpo``, ``max_responses`` of ``step-rewards``,
    ``max_solutions`` of ``rft``).
    """
    if kind not in _RULES:
        raise ValueError(f"unknown label kind {kind!r}; known: {', '.join(KINDS)}")
    rule, defaults = _RULES[kind]
    options = {**defaults, **options}
    rng = random.Random(seed)
    report = LabelReport(kind)
    records: list[dict] = []
    for tree in trees:
        report.problems += 1
        records.extend(rule(tree, fmt, report, rng=rng, scorer=scorer, **options))
    report.records = len(records)
    return records, report
