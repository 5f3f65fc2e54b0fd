"""Wrong solutions for the embedded task: one step's result changed, every later step recomputed from it.

`corrupt_solution` turns a gold `data.synthetic` solution into one whose first error is at a known step
(PRM training and evaluation data: ``reasoner eval-prm``, ``reasoner bench train``); `corrupted_split`
does it reproducibly for a whole split. Stdlib only: never torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from data.problems import Problem
from data.synthetic import (_OP_OF_SYMBOL, ParsedStep, SyntheticConfig, SyntheticProblem, _render, load_split,
                            parse_step)

__all__ = ["CorruptedSolution", "corrupt_solution", "corrupted_split"]


@dataclass
class CorruptedSolution:
    """A solution with exactly one wrong step result at ``first_error``; later steps are recomputed
    from the wrong value, so the final ``The answer is W`` line carries the error (W != gold)."""

    problem_id: str
    question: str
    answer: str  # the gold answer
    steps: list[str]
    first_error: int
    wrong_answer: str

    @property
    def solution(self) -> str:
        """The corrupted solution text, one step per line."""
        return "\n".join(self.steps)


def _ops_from_steps(steps: list[str]) -> tuple[int, list[tuple[str, int]]]:
    """Recover (start, [(op, arg)]) from a well-formed gold solution; ValueError otherwise."""
    parsed = [parse_step(line) for line in steps]
    if not parsed or any(step is None for step in parsed) or parsed[-1].kind != "answer":  # type: ignore[union-attr]
        raise ValueError(f"not a synthetic solution: {steps!r}")
    ops: list[tuple[str, int]] = []
    start = parsed[0].y if parsed[0].kind == "pct" else parsed[0].x  # type: ignore[union-attr]
    i = 0
    while i < len(parsed) - 1:
        step = parsed[i]
        assert step is not None
        if step.kind == "pct":
            ops.append(("pct", step.x))
            i += 2
        elif step.kind == "arith":
            ops.append((_OP_OF_SYMBOL[step.op], step.y))
            i += 1
        else:
            raise ValueError(f"answer line before the end: {steps!r}")
    rendered = _render(start, ops)
    if rendered is None or rendered[0] != [line.strip() for line in steps]:
        raise ValueError(f"solution is not a consistent synthetic chain: {steps!r}")
    return start, ops


def _wrong_results(step: ParsedStep) -> list[int]:
    """Plausible wrong results for a computation line: small slips, a tens slip, reversed digits,
    add/sub confusion, and "P% of x = P"."""
    z = step.z
    candidates = {z + 1, z - 1, z + 2, z - 2, z + 10, z - 10, int(str(z)[::-1])}
    if step.op == "+":
        candidates.add(step.x - step.y)
    elif step.op == "-":
        candidates.add(step.x + step.y)
    elif step.op == "%":
        candidates.add(step.x)
    return sorted(c for c in candidates if c >= 0 and c != z)


def corrupt_solution(problem: Problem | SyntheticProblem, rng: random.Random) -> CorruptedSolution:
    """Change exactly one computation step's result and recompute every later step from it.

    The error line is the only arithmetically wrong line; lines before it equal the gold lines; the
    final answer differs from gold. Corruptions that would make a later division / percent non-integral
    or a value negative are skipped in favour of others (the last computation line always works).
    """
    steps = problem.solution.split("\n") if isinstance(problem, Problem) else list(problem.steps)  # type: ignore[union-attr]
    start, ops = _ops_from_steps(steps)
    gold = steps[-1]
    lines = list(range(len(steps) - 1))
    rng.shuffle(lines)
    for index in lines:
        candidates = _wrong_results(parse_step(steps[index]))  # type: ignore[arg-type]
        rng.shuffle(candidates)
        for wrong in candidates:
            rendered = _render(start, ops, {index: wrong})
            if rendered is None or rendered[0][-1] == gold:
                continue
            new_steps, values = rendered
            return CorruptedSolution(
                problem_id=getattr(problem, "id", ""), question=problem.question, answer=problem.answer,
                steps=new_steps, first_error=index, wrong_answer=str(values[-1]),
            )
    raise ValueError(f"no valid corruption for {steps!r}")


def corrupted_split(
    split: str, limit: int | None = None, seed: int = 0, config: SyntheticConfig | None = None
) -> list[CorruptedSolution]:
    """One corrupted solution per problem of ``load_split(split, limit, config)``, reproducible.

    Each problem gets its own rng derived from (seed, id), so a prefix (``limit``) is a prefix of the whole.
    """
    return [
        corrupt_solution(problem, random.Random(f"{seed}:{problem.id}"))
        for problem in load_split(split, limit, config)
    ]
