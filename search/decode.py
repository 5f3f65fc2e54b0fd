"""Decoding through a `StepGenerator`: whole solutions step by step, batched over problems.

`rollout` advances many partial solutions in lockstep, one step per generator call, until each finishes
(a final answer or EOS) or hits ``max_steps``. Greedy decoding and k-sample majority vote are built on it;
with a `StepScorer`, best-of-N and weighted majority (algorithms.md 8.1-8.2) pick among the k samples,
and `search.beam` holds value-guided step beam search and MCTS used as a decoder.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from data.answers import extract_answer, is_equivalent
from search.protocols import State, StepGenerator, StepScorer, scorer_head

__all__ = ["Solution", "rollout", "greedy", "sample_solutions", "majority_answer", "majority_vote", "pass_at_k",
           "accuracy_report",
           "aggregate", "as_probability", "answer_groups", "best_of_n", "weighted_majority", "score_groups"]


@dataclass
class Solution:
    """A finished (or cut-off) solution: its steps, answer, token count and summed log-prob; per step its
    token count and prior (geometric-mean token probability; 1.0 for steps it started with)."""

    question: str
    steps: list[str] = field(default_factory=list)
    tokens: int = 0
    logprob: float = 0.0
    finished: bool = False
    step_tokens: list[int] = field(default_factory=list)
    step_priors: list[float] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        return extract_answer(self.steps[-1]) if self.steps and self.finished else None


def rollout(
    generator: StepGenerator,
    states: Sequence[State],
    *,
    temperature: float,
    max_steps: int | Sequence[int] = 12,
    max_step_tokens: int = 64,
    call: Callable | None = None,
) -> list[Solution]:
    """Continue every state to a final answer, one step per round, all states in one call per round.

    ``max_steps`` caps the new steps of every state, or of each state when a sequence (a tree search gives
    each node the depth it has left). ``call(function, *args, **kwargs)`` wraps each generator call (e.g.
    to time it).
    """
    call = call or (lambda function, *args, **kwargs: function(*args, **kwargs))
    budgets = [max_steps] * len(states) if isinstance(max_steps, int) else list(max_steps)
    if len(budgets) != len(states):
        raise ValueError(f"max_steps has {len(budgets)} budgets for {len(states)} states")
    solutions = [Solution(state.question, list(state.steps), step_tokens=[0] * len(state.steps),
                          step_priors=[1.0] * len(state.steps)) for state in states]
    active = [i for i in range(len(states)) if budgets[i] > 0]
    while active:
        samples = call(
            generator.expand,
            [State(solutions[i].question, tuple(solutions[i].steps)) for i in active],
            1,
            temperature=temperature,
            max_step_tokens=max_step_tokens,
        )
        still = []
        for index, (sample,) in zip(active, samples):
            solution = solutions[index]
            solution.steps.append(sample.text)
            solution.tokens += sample.num_tokens
            solution.step_tokens.append(sample.num_tokens)
            solution.step_priors.append(sample.prior)
            solution.logprob += sample.logprob
            if sample.finished:
                solution.finished = True
            elif sample.text and len(solution.steps) - len(states[index].steps) < budgets[index]:
                still.append(index)
        active = still
    return solutions


def greedy(generator: StepGenerator, questions: Sequence[str], **kwargs) -> list[Solution]:
    """Greedy (temperature 0) solutions, one per question."""
    return rollout(generator, [State(q) for q in questions], temperature=0.0, **kwargs)


def sample_solutions(
    generator: StepGenerator, questions: Sequence[str], k: int, *, temperature: float = 1.0, **kwargs
) -> list[list[Solution]]:
    """``k`` sampled solutions per question (all ``len(questions) * k`` rolled out together)."""
    states = [State(q) for q in questions for _ in range(k)]
    flat = rollout(generator, states, temperature=temperature, **kwargs)
    return [flat[i * k : (i + 1) * k] for i in range(len(questions))]


def answer_groups(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Answers grouped by equivalence, in order of first appearance, each with its summed weight (1 each
    by default); ``None`` answers are left out."""
    groups: list[tuple[str, float]] = []
    for position, answer in enumerate(answers):
        if answer is None:
            continue
        weight = 1.0 if weights is None else float(weights[position])
        for index, (representative, total) in enumerate(groups):
            if representative == answer or is_equivalent(answer, representative):
                groups[index] = (representative, total + weight)
                break
        else:
            groups.append((answer, weight))
    return groups


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most common answer (grouped by equivalence; ties go to the earliest; ``None`` never wins)."""
    groups = answer_groups(answers)
    return max(groups, key=lambda group: group[1])[0] if groups else None


def majority_answer(solutions: Sequence[Solution]) -> str | None:
    """`majority_vote` over the final answers of ``solutions``."""
    return majority_vote([s.answer for s in solutions])


def as_probability(value: float, head: str) -> float:
    """A scorer's value on [0, 1]: ``(v + 1) / 2`` for a tanh value head (values in [-1, 1]), else ``v``."""
    return (value + 1.0) / 2.0 if head == "tanh" else value


AGGREGATIONS = ("min", "prod", "last")


def aggregate(step_values: Sequence[float], how: str, head: str = "sigmoid") -> float:
    """One score for a solution from its step values (algorithms.md 8.1), on [0, 1].

    ``min``: min_i r_i (Math-Shepherd); ``prod``: prod_i r_i (all steps right); ``last``: r_K (the value of the
    whole solution; search-and-learn's default). Values of a tanh head are mapped to [0, 1] first, so that
    ``prod`` is a product of probabilities and weighted majority sums non-negative weights. A solution with
    no steps scores 0.
    """
    if not step_values:
        return 0.0
    values = [min(1.0, max(0.0, as_probability(v, head))) for v in step_values]
    if how == "min":
        return min(values)
    if how == "prod":
        return math.prod(values)
    if how == "last":
        return values[-1]
    raise ValueError(f"unknown aggregation {how!r}: use {', '.join(AGGREGATIONS)}")


def score_groups(scorer: StepScorer, groups: Sequence[Sequence[Solution]], how: str) -> list[list[float]]:
    """Aggregated scorer value of every solution of every group, all scored in one `StepScorer` call."""
    flat = [solution for group in groups for solution in group]
    values = scorer.score([s.question for s in flat], [s.steps for s in flat]) if flat else []
    head = scorer_head(scorer)
    scores = iter([aggregate(row, how, head) for row in values])
    return [[next(scores) for _ in group] for group in groups]


def best_of_n(answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """Best-of-N (naive): the answer of the highest-scoring solution that has one (ties go to the earliest)."""
    ranked = [(score, -index) for index, (answer, score) in enumerate(zip(answers, scores)) if answer is not None]
    return answers[-max(ranked)[1]] if ranked else None


def weighted_majority(answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """Weighted majority: the answer whose equivalence group has the largest sum of scores (algorithms.md 8.2)."""
    groups = answer_groups(answers, scores)
    return max(groups, key=lambda group: group[1])[0] if groups else None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from ``n >= k`` samples of which ``c`` are correct (Chen et al., 2021).

    ``pass@k = 1 - C(n - c, k) / C(n, k)``: the probability that k samples drawn without replacement from the
    n contain a correct one, computed as ``1 - prod_{i = n - c + 1}^{n} (1 - k / i)`` (no huge binomials).
    With ``n == k`` it is 1 when any sample is correct, else 0; more samples give the same expected value
    with less variance.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def accuracy_report(generator: StepGenerator, questions: Sequence[str], golds: Sequence[str], *, k: int = 0,
                    temperature: float = 1.0, samples: int | None = None) -> dict[str, float]:
    """Greedy accuracy and, with ``k``, pass@k / maj@k / mean single-sample accuracy at ``temperature``.

    ``samples`` (n >= k, default k) solutions are drawn per question: pass@k is the unbiased estimator
    `pass_at_k` averaged over questions, with its standard error over questions (``pass@k_stderr``); maj@k
    votes over the first k samples; the mean single-sample accuracy uses all n.
    """
    n = samples or k
    if k and n < k:
        raise ValueError(f"samples ({n}) must be at least k ({k})")
    started = time.perf_counter()
    solutions = greedy(generator, questions)
    report = {"greedy": sum(is_equivalent(s.answer, g) for s, g in zip(solutions, golds)) / len(golds),
              "greedy_seconds": time.perf_counter() - started}
    if k:
        started = time.perf_counter()
        groups = sample_solutions(generator, questions, n, temperature=temperature)
        hits = [[is_equivalent(s.answer, g) for s in group] for group, g in zip(groups, golds)]
        estimates = [pass_at_k(n, sum(h), k) for h in hits]
        mean = sum(estimates) / len(golds)
        variance = sum((e - mean) ** 2 for e in estimates) / max(len(golds) - 1, 1)
        report.update({
            f"pass@{k}": mean,
            f"pass@{k}_stderr": math.sqrt(variance / len(golds)),
            f"maj@{k}": sum(is_equivalent(majority_answer(group[:k]), g) for group, g in zip(groups, golds)) / len(golds),
            "mean_sample_accuracy": sum(map(sum, hits)) / (len(golds) * n),
            "samples": n,
            "sampling_seconds": time.perf_counter() - started,
        })
    return report
