"""A scripted `StepGenerator` for fast, exact search tests: it knows the synthetic gold solutions.

Given a state whose steps so far are a prefix of the gold solution, it writes the next gold step with
probability ``p_correct`` and otherwise a wrong variant (result off by one); after a wrong step it continues
with a wrong answer. It is a test double of the protocol, not a model.
"""

import random

from data.synthetic import load_split
from search.protocols import StepSample


class ScriptedGenerator:
    def __init__(self, problems=None, p_correct: float = 0.6, seed: int = 0):
        problems = problems or load_split("test")
        self.gold = {p.question: p.solution.split("\n") for p in problems}
        self.p_correct = p_correct
        self.rng = random.Random(seed)
        self.calls = 0

    def expand(self, states, n, *, temperature=1.0, max_step_tokens=64):
        self.calls += 1
        return [[self._sample(state) for _ in range(n)] for state in states]

    def _sample(self, state):
        gold = self.gold[state.question]
        depth = len(state.steps)
        on_track = list(state.steps) == gold[:depth]
        if on_track and depth < len(gold):
            if self.rng.random() < self.p_correct or gold[depth].startswith("The answer"):
                text = gold[depth] if self.rng.random() < self.p_correct or depth < len(gold) - 1 else "The answer is -1"
            else:
                head, _, value = gold[depth].rpartition(" ")
                text = f"{head} {int(value) + 1}"
        else:
            text = "The answer is -1" if self.rng.random() < 0.5 or depth >= len(gold) else f"1 + 1 = {depth}"
        final = text.startswith("The answer")
        return StepSample(text=text, num_tokens=len(text.split()), logprob=-0.5 * len(text.split()), finished=final)


class ConstantScorer:
    """The same value for every step (tanh head: values on [-1, 1])."""

    head = "tanh"

    def __init__(self, value: float):
        self.value = value
        self.calls = 0

    def score(self, questions, step_lists):
        self.calls += 1
        return [[self.value] * len(steps) for steps in step_lists]


class GoldTrackScorer:
    """Values a step +0.9 while the solution so far follows the gold solution, -0.9 once it left it (tanh head)."""

    head = "tanh"

    def __init__(self, problems=None):
        problems = problems or load_split("test")
        self.gold = {p.question: p.solution.split("\n") for p in problems}
        self.calls = 0

    def score(self, questions, step_lists):
        self.calls += 1
        rows = []
        for question, steps in zip(questions, step_lists):
            gold, row, on_track = self.gold[question], [], True
            for index, step in enumerate(steps):
                on_track = on_track and index < len(gold) and step == gold[index]
                row.append(0.9 if on_track else -0.9)
            rows.append(row)
        return rows
