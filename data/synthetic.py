"""A seeded generator of short GSM-style word problems with step-level solutions (the embedded task).

Question: a named person starts with some items, then one operation per sentence, with optional
distractor sentences (another person's items, a shop time, an age), then the question::

    Mia has 12 apples. She buys 5 more apples. Tom has 7 pens. She gives away 3 apples.
    How many apples does Mia have now?

Solution: one step per line. A computation step is exactly ``{x} {op} {y} = {z}`` with op in
``+ - * /``; a percent operation takes two steps, ``{P}% of {x} = {d}`` then ``{x} - {d} = {z}``;
the last line is exactly ``The answer is {z}``::

    12 + 5 = 17
    17 - 3 = 14
    The answer is 14

Operations: add (buys/finds/gets N more), sub (gives away/loses/sells/eats N, result >= 1), mul
(``Then she has K times as many``, K in 2..5), div (``shares them equally into K boxes and keeps one
box``, only when integral), pct (gives away/sells P% of them, P in {10, 20, 25, 50, 75}, only when
integral). Every intermediate value lies in [0, max_value].

Splits are fixed and disjoint by construction: a question belongs to ``test`` iff
``int(sha1(question).hexdigest(), 16) % 10 == 0``; each split is drawn from its own seeded stream,
rejecting questions of the other split and duplicates. `parse_step` / `step_is_correct` read the solution
lines back; `data.corruption` builds wrong solutions from them (PRM data). Stdlib only: never torch.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from data.problems import Problem

__all__ = [
    "OPS", "PERCENTS", "TRAIN_SIZE", "TEST_SIZE", "TRAIN_SEED", "TEST_SEED", "SyntheticConfig",
    "SyntheticProblem", "ParsedStep", "generate_problem", "split_of", "draw_problems", "load_split",
    "parse_step", "step_is_correct", "holds_a_wrong_step",
]

OPS: tuple[str, ...] = ("add", "sub", "mul", "div", "pct")
PERCENTS: tuple[int, ...] = (10, 20, 25, 50, 75)
TRAIN_SIZE = 20_000
TEST_SIZE = 500
TRAIN_SEED = 20_240_601
TEST_SEED = 20_240_602
SOURCE = "synthetic"

_FEMALE = ("Mia", "Sara", "Lily", "Emma", "Anna")
_MALE = ("Tom", "Ben", "Sam", "Leo", "Max")
_ITEMS = ("apples", "pens", "books", "coins", "cards", "eggs", "stickers", "marbles", "cookies")
_EDIBLE = frozenset({"apples", "eggs", "cookies"})
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_OP_OF_SYMBOL = {symbol: op for op, symbol in _SYMBOL.items()}

_ARITH_RE = re.compile(r"^(-?\d+) ([-+*/]) (-?\d+) = (-?\d+)$")
_PCT_RE = re.compile(r"^(\d+)% of (-?\d+) = (-?\d+)$")
_ANSWER_RE = re.compile(r"^The answer is (-?\d+)$")


@dataclass(frozen=True)
class SyntheticConfig:
    """Difficulty knobs. Frozen and hashable so that generated splits can be cached per config."""

    min_steps: int = 2  # number of operations (a percent operation writes two solution lines)
    max_steps: int = 5
    ops: tuple[str, ...] = OPS
    distractor_prob: float = 0.3  # P(first distractor); a second one follows with the same probability
    number_range: tuple[int, int] = (2, 50)  # start value and add/sub amounts
    max_value: int = 999  # cap on every intermediate value

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "number_range", tuple(self.number_range))
        if not 1 <= self.min_steps <= self.max_steps <= 8:
            raise ValueError(f"need 1 <= min_steps <= max_steps <= 8, got {self.min_steps}..{self.max_steps}")
        if not self.ops or any(op not in OPS for op in self.ops):
            raise ValueError(f"ops must be a non-empty subset of {OPS}, got {self.ops}")
        if not 0.0 <= self.distractor_prob <= 1.0:
            raise ValueError(f"distractor_prob must be in [0, 1], got {self.distractor_prob}")
        low, high = self.number_range
        if not 1 <= low <= high <= self.max_value:
            raise ValueError(f"need 1 <= number_range[0] <= number_range[1] <= max_value, got {self.number_range}")


@dataclass
class SyntheticProblem:
    """A generated problem. ``values[0]`` is the start value, ``values[i + 1]`` the value after ``ops[i]``
    applied with argument ``args[i]`` (amount, factor, divisor or percent)."""

    question: str
    steps: list[str]
    answer: str
    ops: list[str]
    values: list[int]
    args: list[int] = field(default_factory=list)
    distractors: list[str] = field(default_factory=list)

    def to_problem(self, id: str, source: str = SOURCE) -> Problem:
        """The project-wide `Problem` record, with ``solution = "\\n".join(steps)``."""
        return Problem(id=id, question=self.question, answer=self.answer, solution="\n".join(self.steps), source=source)


@dataclass(frozen=True)
class ParsedStep:
    """One parsed solution line: ``kind`` is "arith" (x op y = z), "pct" (x% of y = z; op is "%") or
    "answer" (only ``z`` set)."""

    kind: str
    z: int
    x: int = 0
    op: str = ""
    y: int = 0


def _arg_options(op: str, x: int, config: SyntheticConfig) -> range | list[int]:
    """The arguments with which ``op`` may be applied to value ``x`` (empty when infeasible)."""
    low, high = config.number_range
    if op == "add":
        return range(low, min(high, config.max_value - x) + 1)
    if op == "sub":
        return range(low, min(high, x - 1) + 1)
    if op == "mul":
        return [k for k in range(2, 6) if x * k <= config.max_value]
    if op == "div":
        return [k for k in range(2, 6) if x % k == 0]
    return [p for p in PERCENTS if x * p % 100 == 0]


def _apply(op: str, x: int, arg: int) -> int:
    """The value after applying ``op`` with ``arg`` to ``x`` (callers check divisibility)."""
    if op == "pct":
        return x - x * arg // 100
    return {"add": x + arg, "sub": x - arg, "mul": x * arg, "div": x // arg}[op]


def _render(start: int, ops: list[tuple[str, int]], override: dict[int, int] | None = None) -> tuple[list[str], list[int]] | None:
    """Solution lines and per-operation values for ``ops`` applied from ``start``.

    ``override`` maps a line index to a forced result; later lines use it as their input. Returns None
    when a value would go negative or a division / percent would not be integral.
    """
    override = override or {}
    lines: list[str] = []
    values = [start]
    x = start
    for op, arg in ops:
        if op == "pct":
            if x * arg % 100:
                return None
            d = override.get(len(lines), x * arg // 100)
            lines.append(f"{arg}% of {x} = {d}")
            z = override.get(len(lines), x - d)
            lines.append(f"{x} - {d} = {z}")
        else:
            if op == "div" and x % arg:
                return None
            z = override.get(len(lines), _apply(op, x, arg))
            lines.append(f"{x} {_SYMBOL[op]} {arg} = {z}")
        if z < 0:
            return None
        values.append(z)
        x = z
    lines.append(f"The answer is {x}")
    return lines, values


def _sentence(op: str, arg: int, pronoun: str, items: str, rng: random.Random) -> str:
    """The question sentence for one operation."""
    if op == "add":
        return f"{pronoun} {rng.choice(('buys', 'finds', 'gets'))} {arg} more {items}."
    if op == "sub":
        verbs = ("gives away", "loses", "sells", "eats") if items in _EDIBLE else ("gives away", "loses", "sells")
        return f"{pronoun} {rng.choice(verbs)} {arg} {items}."
    if op == "mul":
        return f"Then {pronoun.lower()} has {arg} times as many {items}."
    if op == "div":
        return f"{pronoun} shares them equally into {arg} boxes and keeps one box."
    return f"{pronoun} {rng.choice(('gives away', 'sells'))} {arg}% of them."


def _distractor(rng: random.Random, other: str, items: str, config: SyntheticConfig) -> str:
    """A sentence with an unrelated number."""
    kind = rng.randrange(3)
    if kind == 0:
        other_items = rng.choice([item for item in _ITEMS if item != items])
        return f"{other} has {rng.randint(*config.number_range)} {other_items}."
    if kind == 1:
        return f"The shop opens at {rng.randint(7, 11)}."
    return f"{other} is {rng.randint(5, 60)} years old."


def generate_problem(rng: random.Random, config: SyntheticConfig | None = None) -> SyntheticProblem:
    """Draw one problem from ``rng`` under ``config``; deterministic for a given rng state."""
    config = config or SyntheticConfig()
    for _ in range(1000):
        n_ops = rng.randint(config.min_steps, config.max_steps)
        start = rng.randint(*config.number_range)
        ops: list[tuple[str, int]] = []
        x = start
        for _ in range(n_ops):
            feasible = [op for op in config.ops if len(_arg_options(op, x, config))]
            if not feasible:
                break
            op = rng.choice(feasible)
            arg = rng.choice(_arg_options(op, x, config))
            ops.append((op, arg))
            x = _apply(op, x, arg)
        if len(ops) == n_ops:
            break
    else:
        raise ValueError(f"cannot generate a problem under {config}")
    steps, values = _render(start, ops)  # type: ignore[misc]

    female = rng.random() < 0.5
    name = rng.choice(_FEMALE if female else _MALE)
    other = rng.choice(_MALE if female else _FEMALE)  # opposite gender keeps the pronoun unambiguous
    pronoun = "She" if female else "He"
    items = rng.choice(_ITEMS)
    body = [_sentence(op, arg, pronoun, items, rng) for op, arg in ops]
    distractors: list[str] = []
    while len(distractors) < 2 and rng.random() < config.distractor_prob:
        sentence = _distractor(rng, other, items, config)
        distractors.append(sentence)
        body.insert(rng.randint(0, len(body)), sentence)
    question = " ".join([f"{name} has {start} {items}.", *body, f"How many {items} does {name} have now?"])
    return SyntheticProblem(
        question=question, steps=steps, answer=str(values[-1]), ops=[op for op, _ in ops], values=values,
        args=[arg for _, arg in ops], distractors=distractors,
    )


def split_of(question: str) -> str:
    """The split a question belongs to: "test" iff its sha1 is 0 mod 10, else "train"."""
    return "test" if int(hashlib.sha1(question.encode("utf-8")).hexdigest(), 16) % 10 == 0 else "train"


def draw_problems(split: str, size: int, rng: random.Random, config: SyntheticConfig, *,
                  exclude: set[str] | None = None, id_prefix: str | None = None) -> list[Problem]:
    """``size`` distinct problems of ``split``'s side of the hash split, drawn from ``rng``, none of whose
    questions is in ``exclude``; ids ``{id_prefix}-{i}`` (default ``synthetic-{split}``). How both fixed
    splits are made, and what `data.training_mixes.extra_train_problems` draws more train problems with."""
    seen = set(exclude or ())
    prefix = id_prefix or f"{SOURCE}-{split}"
    problems: list[Problem] = []
    width = len(str(max(size - 1, 0)))
    for _ in range(50 * size):
        if len(problems) == size:
            break
        problem = generate_problem(rng, config)
        if problem.question in seen or split_of(problem.question) != split:
            continue
        seen.add(problem.question)
        problems.append(problem.to_problem(f"{prefix}-{len(problems):0{width}d}", SOURCE))
    else:
        raise ValueError(f"could not draw {size} distinct {split} problems under {config}")
    return problems


@functools.lru_cache(maxsize=8)
def _generate_split(split: str, config: SyntheticConfig) -> tuple[Problem, ...]:
    size, seed = (TRAIN_SIZE, TRAIN_SEED) if split == "train" else (TEST_SIZE, TEST_SEED)
    return tuple(draw_problems(split, size, random.Random(seed), config))


def load_split(split: str, limit: int | None = None, config: SyntheticConfig | None = None) -> list[Problem]:
    """The fixed ``train`` (20,000) or ``test`` (500) split as `Problem` records, first ``limit`` if given.

    Reproducible and disjoint by construction; cached in-process because callers load it often.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown synthetic split {split!r}: use 'train' or 'test'")
    problems = _generate_split(split, config or SyntheticConfig())
    return list(problems if limit is None else problems[:limit])


def parse_step(line: str) -> ParsedStep | None:
    """Parse one solution line (``x op y = z``, ``P% of x = d``, ``The answer is z``); None if none fits."""
    line = line.strip()
    if match := _ARITH_RE.match(line):
        x, op, y, z = match.groups()
        return ParsedStep("arith", int(z), int(x), op, int(y))
    if match := _PCT_RE.match(line):
        p, x, d = match.groups()
        return ParsedStep("pct", int(d), int(p), "%", int(x))
    if match := _ANSWER_RE.match(line):
        return ParsedStep("answer", int(match.group(1)))
    return None


def holds_a_wrong_step(steps: Sequence[str]) -> bool | None:
    """Whether a solution written in this task's format holds a step whose own arithmetic is wrong; None when
    a step does not parse (another task's text, which this cannot check). A correct final answer reached
    through a wrong step is a false positive of answer-only verification: the policy wrote a wrong
    intermediate result and went on from the right one."""
    if not steps or any(parse_step(step) is None for step in steps):
        return None
    return not all(step_is_correct(step) for step in steps)


def step_is_correct(line: str) -> bool:
    """True when the line parses and its own arithmetic holds (integer division must be exact).

    An answer line has no arithmetic and counts as correct; whether it matches the chain is for the caller.
    """
    step = parse_step(line)
    if step is None:
        return False
    if step.kind == "answer":
        return True
    if step.kind == "pct":
        return step.x * step.y == 100 * step.z
    if step.op == "/":
        return step.y != 0 and step.y * step.z == step.x
    return {"+": step.x + step.y, "-": step.x - step.y, "*": step.x * step.y}[step.op] == step.z
