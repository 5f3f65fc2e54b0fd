"""Training-data variants of the synthetic task, tried as build recipes for the embedded policy (issue 4).

`arithmetic_drill` adds story-free arithmetic practice problems; `commute_operands` rewrites gold solutions
with sums and products in either operand order; `oversample_long` repeats the problems with many computation
lines; `extra_train_problems` draws more problems from the train side of the split; `decompose_steps` writes
some sums, differences and products through tens and units. All keep every line correct under
`data.synthetic.step_is_correct`; none touches the fixed train / test splits themselves. Measured (README,
"The embedded tiny policy"): none of the first four raised pass@16 at a given greedy accuracy; `decompose_steps`
gave one checkpoint that meets issue 4's target (seed 0: 81.4 % at greedy 49.4 %) but not a reliably better
frontier (seed 1: 75.0 %). The embedded policy is built with ``decompose_steps`` alone (``reasoner
build-tiny-policy --decompose_prob 0.4``); ``--drill_problems / --commute_prob / --long_copies`` stay off, and
every mix is off by default.
Stdlib only: never torch.
"""

from __future__ import annotations

import dataclasses
import random

from data.problems import Problem
from data.synthetic import SOURCE, SyntheticConfig, _arg_options, _render, draw_problems, load_split, parse_step

__all__ = ["DRILL_QUESTION", "arithmetic_drill", "commute_operands", "computation_lines", "decompose_steps",
           "decomposed_lines", "extra_train_problems", "oversample_long"]

DRILL_QUESTION = "Practice: work out each line."


def arithmetic_drill(problems: list[Problem], count: int, *, facts: int = 6, seed: int = 0,
                     config: SyntheticConfig | None = None) -> list[Problem]:
    """``count`` arithmetic practice problems: ``facts`` independent computation lines each, no story.

    Each fact applies a random operation, with an argument the generator could draw (``_arg_options``), to an
    input value sampled from the computation lines of ``problems`` (so facts follow the word problems' value
    distribution); a percent fact writes its two lines. The last line is ``The answer is {z}`` of the last
    fact, so a drill solution has the same shape as a word problem's. Mixed into the training set by
    ``reasoner build-tiny-policy --drill_problems N``, an experiment for issue 4: a policy that learns
    arithmetic facts more uniformly, so that what is still unlearned at its weak point is reading and
    chaining rather than specific results it gets confidently wrong.
    """
    config = config or SyntheticConfig()
    values = [step.x if step.kind == "arith" else step.y
              for problem in problems for line in (problem.solution or "").split("\n")
              if (step := parse_step(line)) is not None and step.kind in ("arith", "pct")]
    if not values:
        raise ValueError("arithmetic_drill needs problems with computation lines to draw input values from")
    rng = random.Random(seed)
    drills: list[Problem] = []
    width = len(str(max(count - 1, 0)))
    while len(drills) < count:
        lines: list[str] = []
        while len(lines) < facts:
            x, op = rng.choice(values), rng.choice(config.ops)
            options = _arg_options(op, x, config)
            rendered = _render(x, [(op, rng.choice(options))]) if options else None
            if rendered is not None:
                fact_lines, values_after = rendered
                lines.extend(fact_lines[:-1])  # without its "The answer is" line
                z = values_after[-1]
        drills.append(Problem(id=f"{SOURCE}-drill-{len(drills):0{width}d}", question=DRILL_QUESTION, answer=str(z),
                              solution="\n".join([*lines, f"The answer is {z}"]), source=SOURCE))
    return drills


def commute_operands(problems: list[Problem], prob: float, *, seed: int = 0) -> list[Problem]:
    """``problems`` with each ``x + y = z`` / ``x * y = z`` solution line written ``y + x = z`` / ``y * x = z``
    with probability ``prob`` (seeded; other lines, questions and answers unchanged).

    Still correct solutions, with two ways to write each sum and product: trained on them, a policy that
    samples a step can take either order, so a fact it has wrong one way may still come out right the other
    way (``reasoner build-tiny-policy --commute_prob``, an experiment for issue 4's pass@16).
    """
    rng = random.Random(seed)
    rewritten: list[Problem] = []
    for problem in problems:
        lines = (problem.solution or "").split("\n")
        for index, line in enumerate(lines):
            step = parse_step(line)
            if step is not None and step.kind == "arith" and step.op in "+*" and rng.random() < prob:
                lines[index] = f"{step.y} {step.op} {step.x} = {step.z}"
        rewritten.append(dataclasses.replace(problem, solution="\n".join(lines)))
    return rewritten


def decomposed_lines(x: int, op: str, y: int) -> list[str] | None:
    """``x op y`` worked out through tens and units, or None when there is nothing to split.

    A sum or difference with a two-digit ``y`` that is not a multiple of 10 adds / takes the tens first, then
    the units (``427 + 35``: ``427 + 30 = 457``, ``457 + 5 = 462``); a product with ``x >= 10`` not a multiple of
    10 multiplies both parts and adds them (``27 * 4``: ``20 * 4 = 80``, ``7 * 4 = 28``, ``80 + 28 = 108``).
    Every line is a correct ``a op b = c`` line and the last one ends at the direct line's result.
    """
    if op in "+-" and y >= 10 and y % 10:
        tens, units = y - y % 10, y % 10
        middle = x + tens if op == "+" else x - tens
        end = middle + units if op == "+" else middle - units
        if middle < 0 or end < 0:
            return None
        return [f"{x} {op} {tens} = {middle}", f"{middle} {op} {units} = {end}"]
    if op == "*" and x >= 10 and x % 10:
        tens, units = x - x % 10, x % 10
        return [f"{tens} * {y} = {tens * y}", f"{units} * {y} = {units * y}",
                f"{tens * y} + {units * y} = {x * y}"]
    return None


def decompose_steps(problems: list[Problem], prob: float, *, seed: int = 0) -> list[Problem]:
    """``problems`` with each splittable sum, difference and product line replaced by its tens-and-units
    working (`decomposed_lines`) with probability ``prob`` (seeded; other lines, questions and answers unchanged).

    The embedded policy's mix (``reasoner build-tiny-policy --decompose_prob 0.4``): the weak policy is confidently
    wrong about whole facts (``27 * 4 = 188`` in all 16 samples), so sampling cannot find the right digit. Trained
    on both ways of writing a step, a policy whose greedy line takes the direct route (``prob`` < 0.5) still
    samples the working a share ``prob`` of the time, and the working's smaller facts (one digit changes, a
    one-digit product) are ones it has met far more often. Measured with ``prob=0.4``: seed 0's step 1,275 gives
    pass@16 81.4 % ± 1.4 (64 draws) at greedy 49.4 %; seed 1's best 75.0 % at 47.6 % (the plain recipe: 76.8 %), so it is not a reliable
    gain over the plain recipe's 78.0 % at 44.4 %, but the seed-0 build meets the target the plain one missed.
    """
    rng = random.Random(seed)
    rewritten: list[Problem] = []
    for problem in problems:
        lines: list[str] = []
        for line in (problem.solution or "").split("\n"):
            step = parse_step(line)
            working = decomposed_lines(step.x, step.op, step.y) if step is not None and step.kind == "arith" else None
            lines.extend(working if working is not None and rng.random() < prob else [line])
        rewritten.append(dataclasses.replace(problem, solution="\n".join(lines)))
    return rewritten


def computation_lines(problem: Problem) -> int:
    """How many arithmetic / percent lines the gold solution of ``problem`` has (its number of operations)."""
    return sum(1 for line in (problem.solution or "").split("\n")
               if (step := parse_step(line)) is not None and step.kind in ("arith", "pct"))


def oversample_long(problems: list[Problem], min_lines: int, copies: int) -> list[Problem]:
    """``problems`` with every one of at least ``min_lines`` computation lines repeated ``copies`` times in all
    (the copies get ids ``{id}-copy{j}``; order otherwise kept, the trainer shuffles).

    An experiment for issue 4 (``reasoner build-tiny-policy --long_copies``): the weak policy's pass@16 falls
    with the number of operations (2: 89 %, 5: 69 %), and pass@16 is concave in a problem's success rate, so
    moving training mass toward long problems at the same greedy accuracy could raise it. Measured with
    ``copies=2``: the per-length curve flattened (2 operations 90 → 81 %, 4 operations 75 → 80 %) and the
    total stayed put (76.6 % at greedy 49.4 %, the plain recipe's policy 78.0 % at 44.4 %).
    """
    if copies < 1:
        raise ValueError(f"oversample_long: copies (build-tiny-policy --long_copies) must be >= 1, got {copies}")
    mixed: list[Problem] = []
    for problem in problems:
        mixed.append(problem)
        if computation_lines(problem) >= min_lines:
            mixed.extend(dataclasses.replace(problem, id=f"{problem.id}-copy{j}") for j in range(1, copies))
    return mixed


def extra_train_problems(count: int, *, seed: int = 0, config: SyntheticConfig | None = None) -> list[Problem]:
    """``count`` more train-side synthetic problems: drawn like ``synthetic:train`` but from their own seeded
    stream, each distinct and none in ``synthetic:train`` or on the test side of the split (``split_of``), so
    ``synthetic:test`` stays unseen. Ids ``synthetic-extra-{i}``.

    An experiment for issue 4 (``reasoner build-tiny-policy --extra_train``): 99 of the 500 test problems hold
    a computation line (an arithmetic fact such as ``27 * 4 = 108``) that appears nowhere in the 20,000
    training problems; with the 100,000 this draws (seed 0), 35 do. A policy that has met more facts may be
    less confidently wrong at its weak point. Measured with 100,000: it learned more slowly per step and landed
    on the same frontier (77.8 % at greedy 45.8 %; the plain recipe's policy 78.0 % at 44.4 %).
    """
    config = config or SyntheticConfig()
    train = {problem.question for problem in load_split("train", config=config)}
    return draw_problems("train", count, random.Random(f"extra-train-{seed}"), config, exclude=train,
                         id_prefix=f"{SOURCE}-extra")
