"""Value-guided decoders: step-level beam search (SBS) and MCTS used as a decoder, batched over problems.

**Step beam search** (Super_MARIO's SBS, algorithms.md 1.12; search-and-learn's beam search, 8.3, is the
PRM analogue). Parameters B1 (beams kept) and B2 (samples per beam):

1. start from the bare question; the first round samples B1 x B2 first steps, later rounds B2 per kept beam;
   identical partial solutions are merged;
2. the `StepScorer` values every new candidate by its own prefix (the value of its last step);
3. all candidates of a problem are sorted by value and the top ``budget`` (starting at B1) are kept: a kept
   candidate with a final answer moves to the answer list and a kept dead end (empty step, no answer,
   depth limit) is dropped, each lowering the budget by one;
4. repeat until no beam is left or ``max_steps`` rounds pass; the answer with the highest value wins.

Every round is one generator call and one scorer call for all problems together.

**MCTS as a decoder** (AlphaMath's test-time MCTS, algorithms.md 1.7-1.8): `search.mcts.run_mcts` with
``reward="value"`` (the scorer values leaves and answers; the gold answer is never read), then the answer is
read out of the tree (`tree_answer`): follow the highest-Q child from the root (or from the last step committed
to, with ``commit_simulations``, AlphaZero's way of playing a search) to an answer node; a path that
search has not finished yet (few simulations, long solutions) is completed by a greedy rollout from its end,
and those tokens count too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from data.answers import extract_answer
from data.problems import Problem
from search.decode import aggregate, rollout
from search.mcts import MCTSConfig, run_mcts
from search.protocols import State, StepGenerator, StepScorer, scorer_head
from search.tree import Node, Tree, child_rank

__all__ = ["BeamResult", "beam_search", "mcts_decode", "tree_answer"]


@dataclass
class BeamResult:
    """What a value-guided decoder returns for one problem: the chosen solution, its value, and the cost."""

    question: str
    answer: str | None = None
    steps: list[str] = field(default_factory=list)
    value: float | None = None
    tokens: int = 0
    answers: list[tuple[str, float]] = field(default_factory=list)  # every (answer, value) found, best first


@dataclass
class _Beam:
    steps: tuple[str, ...]
    finished: bool = False
    text: str = ""


def beam_search(
    generator: StepGenerator,
    scorer: StepScorer,
    questions: Sequence[str],
    *,
    width: int = 1,
    samples: int = 5,
    temperature: float = 1.0,
    max_steps: int = 12,
    max_step_tokens: int = 64,
) -> list[BeamResult]:
    """Step beam search with B1 = ``width`` and B2 = ``samples`` for every question (module docstring)."""
    if width < 1 or samples < 1:
        raise ValueError(f"beam search needs width >= 1 and samples >= 1, got {width}x{samples}")
    head = scorer_head(scorer)
    results = [BeamResult(q) for q in questions]
    beams: list[list[_Beam]] = [[_Beam(())] * width for _ in questions]
    budget = [width] * len(questions)
    for depth in range(1, max_steps + 1):
        parents = [(p, beam) for p, group in enumerate(beams) for beam in group]
        if not parents:
            break
        states = [State(questions[p], beam.steps) for p, beam in parents]
        sampled = generator.expand(states, samples, temperature=temperature, max_step_tokens=max_step_tokens)
        candidates: list[dict[tuple[str, ...], _Beam]] = [{} for _ in questions]
        for (p, beam), group in zip(parents, sampled):
            for sample in group:
                results[p].tokens += sample.num_tokens
                text = sample.text.strip()
                child = _Beam((*beam.steps, sample.text), finished=sample.finished, text=text)
                candidates[p].setdefault(child.steps, child)
        flat = [(p, child) for p, group in enumerate(candidates) for child in group.values()]
        values = scorer.score([questions[p] for p, _ in flat], [list(child.steps) for _, child in flat]) if flat else []
        ranked: list[list[tuple[float, _Beam]]] = [[] for _ in questions]
        for (p, child), row in zip(flat, values):
            ranked[p].append((aggregate(row, "last", head) if row else 0.0, child))
        for p, group in enumerate(ranked):
            group.sort(key=lambda item: -item[0])  # stable: ties keep sampling order
            kept: list[_Beam] = []
            for value, child in group[: budget[p]]:
                answer = extract_answer(child.text) if child.finished else None
                if answer is not None:
                    results[p].answers.append((answer, value))
                    if results[p].value is None or value > results[p].value:
                        results[p].answer, results[p].steps, results[p].value = answer, list(child.steps), value
                    budget[p] -= 1
                elif child.finished or not child.text or depth == max_steps:
                    budget[p] -= 1
                else:
                    kept.append(child)
            beams[p] = kept
    for result in results:
        result.answers.sort(key=lambda item: -item[1])
    return results


def tree_answer(tree: Tree, key: str = "q") -> Node:
    """The node MCTS commits to: from the root, follow the child with the highest ``key`` (ties: more visits),
    skipping dead ends (terminal steps without an answer), down to an answer node or an unfinished leaf.

    Unlike Super_MARIO's read-out (algorithms.md 1.8), subtrees without an answer are not pruned first: with
    a value model and a small simulation budget the best-valued path has often not reached its answer yet,
    and pruning it would hand the win to an early, low-valued answer. The caller finishes such a path.
    A tree searched step by step (``commit_simulations > 0``) is read from its last committed node on (from its
    parent when that node is a dead end). Children are ranked by `search.tree.child_rank`: with
    ``leaf_value="leaf"`` an open child stays unvisited (its Q the default 0, no value at all) until selection
    reaches it, and ranks below every visited sibling, even one whose value is below 0.
    """
    node = tree.root
    committed = tree.config.get("committed")
    if committed:
        node = tree.nodes[committed[-1]]
        if node.terminal and node.answer is None:
            node = tree.nodes[node.parent]
    while not node.terminal:
        children = [tree.nodes[c] for c in node.children
                    if not (tree.nodes[c].terminal and tree.nodes[c].answer is None)]
        if not children:
            break
        node = max(children, key=lambda child: child_rank(child, key))
    return node


def mcts_decode(
    generator: StepGenerator,
    scorer: StepScorer,
    questions: Sequence[str],
    config: MCTSConfig,
) -> list[BeamResult]:
    """MCTS with scorer-valued leaves and answers (no gold answer), one tree per question, then `tree_answer`."""
    config = replace(config, reward="value")
    problems = [Problem(f"q{index}", question, "") for index, question in enumerate(questions)]
    trees = run_mcts(problems, generator, config, scorer=scorer)
    results = [BeamResult(question, tokens=tree.num_tokens()) for question, tree in zip(questions, trees)]
    unfinished = []
    for result, tree in zip(results, trees):
        node = tree_answer(tree)
        if node.terminal:
            result.answer, result.steps, result.value = node.answer, tree.steps(node.id), node.q
        else:
            unfinished.append((result, State(tree.question, tuple(tree.steps(node.id)))))
    if unfinished:
        remaining = [max(1, config.max_depth - len(state.steps)) for _, state in unfinished]
        finished = rollout(generator, [state for _, state in unfinished], temperature=0.0, max_steps=remaining,
                           max_step_tokens=config.max_step_tokens)
        for (result, state), solution in zip(unfinished, finished):
            result.answer, result.steps = solution.answer, solution.steps
            result.tokens += solution.tokens
    return results


