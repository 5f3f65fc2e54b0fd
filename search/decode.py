"""Decoding through a `StepGenerator`: whole solutions step by step, greedy and sampled, batched over problems.

`rollout` advances many partial solutions in lockstep, one step per generator call, until each finishes
(a final answer or EOS) or hits ``max_steps``. Greedy decoding and k-sample majority vote are built on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from data.answers import extract_answer, is_equivalent
from search.protocols import State, StepGenerator

__all__ = ["Solution", "rollout", "greedy", "sample_solutions", "majority_answer", "accuracy_report"]


@dataclass
class Solution:
    """A finished (or cut-off) solution: its steps, answer, token count and summed log-prob."""

    question: str
    steps: list[str] = field(default_factory=list)
    tokens: int = 0
    logprob: float = 0.0
    finished: bool = False
    step_tokens: list[int] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        return extract_answer(self.steps[-1]) if self.steps and self.finished else None


def rollout(
    generator: StepGenerator,
    states: Sequence[State],
    *,
    temperature: float,
    max_steps: int = 12,
    max_step_tokens: int = 64,
    call: Callable | None = None,
) -> list[Solution]:
    """Continue every state to a final answer, one step per round, all states in one call per round.

    ``call(function, *args, **kwargs)`` wraps each generator call (e.g. to time it).
    """
    call = call or (lambda function, *args, **kwargs: function(*args, **kwargs))
    solutions = [Solution(state.question, list(state.steps), step_tokens=[0] * len(state.steps)) for state in states]
    active = list(range(len(states)))
    for _ in range(max_steps):
        if not active:
            break
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
            solution.logprob += sample.logprob
            if sample.finished:
                solution.finished = True
            elif sample.text:
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


def majority_answer(solutions: Sequence[Solution]) -> str | None:
    """The most common final answer (answers grouped by equivalence; ties go to the earliest)."""
    groups: list[tuple[str, int]] = []
    for answer in (s.answer for s in solutions):
        if answer is None:
            continue
        for position, (representative, count) in enumerate(groups):
            if representative == answer or is_equivalent(answer, representative):
                groups[position] = (representative, count + 1)
                break
        else:
            groups.append((answer, 1))
    if not groups:
        return None
    return max(groups, key=lambda group: group[1])[0]


def accuracy_report(generator: StepGenerator, questions: Sequence[str], golds: Sequence[str], *, k: int = 0,
                    temperature: float = 1.0) -> dict[str, float]:
    """Greedy accuracy and, with ``k``, pass@k / maj@k / mean single-sample accuracy at ``temperature``."""
    started = time.perf_counter()
    solutions = greedy(generator, questions)
    report = {"greedy": sum(is_equivalent(s.answer, g) for s, g in zip(solutions, golds)) / len(golds),
              "greedy_seconds": time.perf_counter() - started}
    if k:
        started = time.perf_counter()
        groups = sample_solutions(generator, questions, k, temperature=temperature)
        hits = [[is_equivalent(s.answer, g) for s in group] for group, g in zip(groups, golds)]
        report.update({
            f"pass@{k}": sum(any(h) for h in hits) / len(golds),
            f"maj@{k}": sum(is_equivalent(majority_answer(group), g) for group, g in zip(groups, golds)) / len(golds),
            "mean_sample_accuracy": sum(map(sum, hits)) / (len(golds) * k),
            "sampling_seconds": time.perf_counter() - started,
        })
    return report
