"""Tests for data.synthetic and data.corruption: pinned formats, gold arithmetic, splits, knobs and corrupted
solutions."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data.corruption import corrupt_solution, corrupted_split
from data.problems import Problem
from data.synthetic import (
    TEST_SIZE,
    TRAIN_SIZE,
    SyntheticConfig,
    generate_problem,
    holds_a_wrong_step,
    load_split,
    parse_step,
    split_of,
    step_is_correct,
)
from data.training_mixes import (
    DRILL_QUESTION,
    arithmetic_drill,
    commute_operands,
    computation_lines,
    decompose_steps,
    decomposed_lines,
    extra_train_problems,
    oversample_long,
)

ROOT = Path(__file__).resolve().parents[1]

ARITH = re.compile(r"^\d+ [-+*/] \d+ = \d+$")
PCT = re.compile(r"^(10|20|25|50|75)% of \d+ = \d+$")
ANSWER = re.compile(r"^The answer is (\d+)$")
NAME = r"(Mia|Sara|Lily|Emma|Anna|Tom|Ben|Sam|Leo|Max)"
ITEMS = r"(apples|pens|books|coins|cards|eggs|stickers|marbles|cookies)"
OPENING = re.compile(rf"^{NAME} has \d+ {ITEMS}\.$")
CLOSING = re.compile(rf"^How many {ITEMS} does {NAME} have now\?$")
OP_SENTENCES = [
    re.compile(rf"^(She|He) (buys|finds|gets) \d+ more {ITEMS}\.$"),
    re.compile(rf"^(She|He) (gives away|loses|sells|eats) \d+ {ITEMS}\.$"),
    re.compile(rf"^Then (she|he) has [2-5] times as many {ITEMS}\.$"),
    re.compile(r"^(She|He) shares them equally into [2-5] boxes and keeps one box\.$"),
    re.compile(r"^(She|He) (gives away|sells) (10|20|25|50|75)% of them\.$"),
]
DISTRACTORS = [
    re.compile(rf"^{NAME} has \d+ {ITEMS}\.$"),
    re.compile(r"^The shop opens at \d+\.$"),
    re.compile(rf"^{NAME} is \d+ years old\.$"),
]


def _sentences(question: str) -> list[str]:
    return re.split(r"(?<=[.?]) ", question)


def _count_ops(steps: list[str]) -> int:
    """Operations in a solution: percent lines count once (their `x - d` line is part of the same op)."""
    computation = steps[:-1]
    return len(computation) - sum(1 for line in computation if PCT.match(line))


def _chain_values(steps: list[str]) -> list[int]:
    """Every number on every computation line."""
    return [int(n) for line in steps[:-1] for n in re.findall(r"\d+", line.replace("%", " "))]


def _check_gold(problem: Problem, config: SyntheticConfig) -> None:
    steps = problem.solution.split("\n")
    assert steps[-1] == f"The answer is {problem.answer}"
    for line in steps[:-1]:
        assert ARITH.match(line) or PCT.match(line), line
        assert step_is_correct(line), line
    for i, line in enumerate(steps[:-1]):
        if PCT.match(line):
            p, x, d = (int(n) for n in re.findall(r"\d+", line))
            assert steps[i + 1] == f"{x} - {d} = {x - d}"
    assert all(0 <= v <= config.max_value for v in _chain_values(steps))
    sentences = _sentences(problem.question)
    assert OPENING.match(sentences[0]) and CLOSING.match(sentences[-1]), problem.question
    body = sentences[1:-1]
    ops = [s for s in body if any(p.match(s) for p in OP_SENTENCES)]
    assert len(ops) == _count_ops(steps)
    assert all(any(p.match(s) for p in OP_SENTENCES + DISTRACTORS) for s in body), problem.question
    # first step's left operand is the start value from the opening sentence
    start = int(re.search(r"\d+", sentences[0]).group())
    first = parse_step(steps[0])
    assert (first.y if first.kind == "pct" else first.x) == start


def test_test_split_gold_is_correct_and_well_formed():
    config = SyntheticConfig()
    problems = load_split("test")
    assert len(problems) == TEST_SIZE
    for problem in problems:
        _check_gold(problem, config)
        assert problem.source == "synthetic"
    assert problems[0].id == "synthetic-test-000" and problems[-1].id == "synthetic-test-499"


def test_train_split_sample_is_correct():
    config = SyntheticConfig()
    problems = load_split("train")
    assert len(problems) == TRAIN_SIZE
    assert problems[0].id == "synthetic-train-00000" and problems[-1].id == "synthetic-train-19999"
    for problem in random.Random(1).sample(problems, 1000):
        _check_gold(problem, config)


def test_splits_reproducible_disjoint_and_bucketed():
    train, test = load_split("train"), load_split("test")
    assert load_split("test") == test and load_split("train", 50) == train[:50]
    assert len({p.question for p in train}) == len(train)
    assert len({p.question for p in test}) == len(test)
    assert not {p.question for p in train} & {p.question for p in test}
    assert all(split_of(p.question) == "test" for p in test)
    assert all(split_of(p.question) == "train" for p in train[:2000])
    # the lru cache must not leak mutations of the returned list
    test.clear()
    assert len(load_split("test")) == TEST_SIZE
    with pytest.raises(ValueError):
        load_split("validation")


def test_load_problems_dispatch():
    from data.problems import load_problems

    assert load_problems("synthetic:test", 3) == load_split("test", 3)


def test_generation_deterministic():
    config = SyntheticConfig()
    a = [generate_problem(random.Random(7), config) for _ in range(3)]
    b = [generate_problem(random.Random(7), config) for _ in range(3)]
    assert a == b
    rng1, rng2 = random.Random(3), random.Random(3)
    assert [generate_problem(rng1, config) for _ in range(20)] == [generate_problem(rng2, config) for _ in range(20)]


@pytest.mark.parametrize("low,high", [(2, 2), (3, 6), (8, 8)])
def test_step_count_knob(low, high):
    config = SyntheticConfig(min_steps=low, max_steps=high)
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        problem = generate_problem(rng, config)
        n = _count_ops(problem.steps)
        assert n == len(problem.ops) == len(problem.values) - 1
        assert low <= n <= high
        seen.add(n)
        _check_gold(problem.to_problem("x"), config)
    assert seen == set(range(low, high + 1))


def test_ops_knob_and_percent_takes_two_lines():
    rng = random.Random(0)
    config = SyntheticConfig(ops=("pct", "add"), min_steps=3, max_steps=3)
    n_pct = 0
    for _ in range(200):
        problem = generate_problem(rng, config)
        assert set(problem.ops) <= {"pct", "add"}
        n_pct += problem.ops.count("pct")
        assert len(problem.steps) == 3 + problem.ops.count("pct") + 1
    assert n_pct > 50
    only_div = SyntheticConfig(ops=("div", "mul"), number_range=(2, 20))
    for _ in range(100):
        assert set(generate_problem(rng, only_div).ops) <= {"div", "mul"}


def test_max_value_and_number_range():
    config = SyntheticConfig(max_value=120, number_range=(5, 9), min_steps=4, max_steps=8)
    rng = random.Random(0)
    for _ in range(300):
        problem = generate_problem(rng, config)
        assert 5 <= problem.values[0] <= 9
        assert all(0 <= v <= 120 for v in problem.values)
        assert all(0 <= v <= 120 for v in _chain_values(problem.steps))
        for op, arg in zip(problem.ops, problem.args):
            if op in ("add", "sub"):
                assert 5 <= arg <= 9


def test_invalid_config_rejected():
    for kwargs in ({"min_steps": 0}, {"min_steps": 5, "max_steps": 4}, {"max_steps": 9}, {"ops": ("pow",)},
                   {"distractor_prob": 1.5}, {"number_range": (10, 5)}):
        with pytest.raises(ValueError):
            SyntheticConfig(**kwargs)


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_distractor_rate(prob):
    config = SyntheticConfig(distractor_prob=prob)
    rng = random.Random(0)
    problems = [generate_problem(rng, config) for _ in range(2000)]
    assert all(len(p.distractors) <= 2 for p in problems)
    for p in problems[:200]:
        for sentence in p.distractors:
            assert sentence in p.question and any(d.match(sentence) for d in DISTRACTORS)
    rate = sum(bool(p.distractors) for p in problems) / len(problems)
    assert abs(rate - prob) < 0.04
    if prob == 1.0:
        assert all(len(p.distractors) == 2 for p in problems)


def test_parse_step_and_step_is_correct():
    assert parse_step("12 + 5 = 17").x == 12 and parse_step("12 + 5 = 17").z == 17
    pct = parse_step("25% of 80 = 20")
    assert (pct.kind, pct.x, pct.y, pct.z) == ("pct", 25, 80, 20)
    assert parse_step("The answer is 14").kind == "answer"
    assert parse_step("twelve plus five") is None
    for good in ("12 + 5 = 17", "17 - 3 = 14", "6 * 4 = 24", "20 / 4 = 5", "25% of 80 = 20", "The answer is 3"):
        assert step_is_correct(good), good
    for bad in ("12 + 5 = 18", "17 - 3 = 15", "6 * 4 = 20", "21 / 4 = 5", "7 / 0 = 0", "25% of 80 = 25", "junk"):
        assert not step_is_correct(bad), bad
    # the false positive the search summary counts: the right answer through a wrong intermediate result
    lucky = ["45 * 4 = 180", "75% of 180 = 130", "180 - 130 = 45", "The answer is 45"]
    assert holds_a_wrong_step(lucky) is True
    assert holds_a_wrong_step(["45 * 4 = 180", "75% of 180 = 135", "180 - 135 = 45", "The answer is 45"]) is False
    assert holds_a_wrong_step(["Natalia sold 48 clips.", "The answer is 48"]) is None  # another task: unchecked
    assert holds_a_wrong_step([]) is None


def _check_corruption(problem: Problem, corrupted) -> None:
    gold = problem.solution.split("\n")
    steps = corrupted.steps
    k = corrupted.first_error
    assert len(steps) == len(gold) and 0 <= k < len(steps) - 1
    assert steps[:k] == gold[:k]
    # the first_error line is the only arithmetically wrong line; it keeps the gold operands
    assert [i for i, line in enumerate(steps) if not step_is_correct(line)] == [k]
    wrong, right = parse_step(steps[k]), parse_step(gold[k])
    assert (wrong.kind, wrong.x, wrong.op, wrong.y) == (right.kind, right.x, right.op, right.y)
    assert wrong.z != right.z and wrong.z >= 0
    # later lines are well formed and the answer line carries the error
    for line in steps[:-1]:
        assert ARITH.match(line) or PCT.match(line), line
    assert steps[-1] == f"The answer is {corrupted.wrong_answer}"
    assert corrupted.wrong_answer != problem.answer == corrupted.answer
    assert corrupted.problem_id == problem.id and corrupted.question == problem.question
    # chain consistency: each non-percent-tail line starts from the previous value
    value = None
    for i, line in enumerate(steps[:-1]):
        step = parse_step(line)
        if i > 0 and PCT.match(steps[i - 1]):
            prev = parse_step(steps[i - 1])
            assert (step.x, step.y) == (prev.y, prev.z)
        elif value is not None:
            assert (step.y if step.kind == "pct" else step.x) == value
        if step.kind == "arith":
            value = step.z
    assert str(value) == corrupted.wrong_answer


def test_corrupted_solutions_on_test_split():
    problems = load_split("test")
    corrupted = corrupted_split("test", seed=0)
    assert len(corrupted) == len(problems)
    for problem, c in zip(problems, corrupted):
        _check_corruption(problem, c)
    positions = {c.first_error for c in corrupted}
    assert len(positions) >= 5  # errors are spread over the chain, not always last
    assert corrupted_split("test", seed=0) == corrupted
    assert corrupted_split("test", limit=20, seed=0) == corrupted[:20]
    assert corrupted_split("test", seed=1) != corrupted


def test_arithmetic_drill_lines_are_correct_facts_from_the_splits_values():
    train = load_split("train", limit=300)
    inputs = {parse_step(line).x if ARITH.match(line) else parse_step(line).y
              for p in train for line in p.solution.split("\n") if ARITH.match(line) or PCT.match(line)}
    drills = arithmetic_drill(train, 200, facts=6, seed=3)
    assert len(drills) == 200 and len({d.id for d in drills}) == 200
    symbols = set()
    for drill in drills:
        lines = drill.solution.split("\n")
        assert drill.question == DRILL_QUESTION and drill.source == "synthetic"
        assert 6 <= len(lines) - 1 <= 7  # a percent fact as the sixth writes two lines
        assert lines[-1] == f"The answer is {drill.answer}" == f"The answer is {parse_step(lines[-2]).z}"
        for line in lines[:-1]:
            assert step_is_correct(line) and (ARITH.match(line) or PCT.match(line)), line
            step = parse_step(line)
            symbols.add(step.op)
            assert (step.y if step.op == "%" else step.x) in inputs  # a percent's 2nd line starts from its input
    assert symbols == {"+", "-", "*", "/", "%"}
    assert arithmetic_drill(train, 200, facts=6, seed=3) == drills
    assert arithmetic_drill(train, 200, facts=6, seed=4) != drills
    with pytest.raises(ValueError, match="computation lines"):
        arithmetic_drill([Problem(id="x", question="q", answer="1", solution="The answer is 1")], 1)


def test_commute_operands_swaps_only_sums_and_products_and_keeps_solutions_correct():
    train = load_split("train", limit=400)
    swapped = commute_operands(train, 0.5, seed=0)
    changed = total = 0
    for before, after in zip(train, swapped):
        assert (after.id, after.question, after.answer) == (before.id, before.question, before.answer)
        for old, new in zip(before.solution.split("\n"), after.solution.split("\n"), strict=True):
            assert step_is_correct(new)
            if old != new:
                x, op, y, _, z = old.split()
                assert op in "+*" and new == f"{y} {op} {x} = {z}"
            total += parse_step(old).op in "+*" and parse_step(old).kind == "arith"
            changed += old != new
    assert 0.4 < changed / total < 0.6
    assert commute_operands(train, 0.0) == train and commute_operands(train, 0.5, seed=0) == swapped


def test_decomposed_lines_work_a_step_out_through_tens_and_units():
    assert decomposed_lines(427, "+", 35) == ["427 + 30 = 457", "457 + 5 = 462"]
    assert decomposed_lines(31, "-", 17) == ["31 - 10 = 21", "21 - 7 = 14"]
    assert decomposed_lines(27, "*", 4) == ["20 * 4 = 80", "7 * 4 = 28", "80 + 28 = 108"]
    assert decomposed_lines(127, "*", 3) == ["120 * 3 = 360", "7 * 3 = 21", "360 + 21 = 381"]
    for x, op, y in [(427, "+", 5), (427, "+", 30), (30, "*", 4), (7, "*", 4), (40, "/", 4)]:
        assert decomposed_lines(x, op, y) is None  # nothing to split


def test_decompose_steps_rewrites_some_lines_and_keeps_every_solution_correct():
    train = load_split("train", limit=400)
    rewritten = decompose_steps(train, 0.5, seed=0)
    changed = splittable = 0
    for before, after in zip(train, rewritten):
        assert (after.id, after.question, after.answer) == (before.id, before.question, before.answer)
        old_lines, new_lines = before.solution.split("\n"), after.solution.split("\n")
        assert all(step_is_correct(line) for line in new_lines) and new_lines[-1] == old_lines[-1]
        position = 0
        for line in old_lines:
            step = parse_step(line)
            working = decomposed_lines(step.x, step.op, step.y) if step.kind == "arith" else None
            if working is not None and new_lines[position:position + len(working)] == working:
                changed += 1
                position += len(working)
            else:
                assert new_lines[position] == line
                position += 1
            splittable += working is not None
        assert position == len(new_lines)
    assert 0.4 < changed / splittable < 0.6
    assert decompose_steps(train, 0.0) == train and decompose_steps(train, 0.5, seed=0) == rewritten


def test_oversample_long_repeats_only_problems_with_enough_computation_lines():
    train = load_split("train", limit=300)
    counts = [computation_lines(p) for p in train]
    assert counts[0] == len([line for line in train[0].solution.split("\n") if ARITH.match(line) or PCT.match(line)])
    mixed = oversample_long(train, 4, 3)
    long = sum(c >= 4 for c in counts)
    assert 0 < long < len(train) and len(mixed) == len(train) + 2 * long
    assert len({p.id for p in mixed}) == len(mixed)
    assert [p for p in mixed if "-copy" not in p.id] == train
    for problem in mixed:
        original = problem.id.split("-copy")[0]
        assert (problem.question, problem.solution) == next((p.question, p.solution) for p in train if p.id == original)
    assert oversample_long(train, 4, 1) == train
    with pytest.raises(ValueError, match="copies"):
        oversample_long(train, 4, 0)


def test_extra_train_problems_are_new_correct_and_never_on_the_test_side():
    extra = extra_train_problems(60, seed=0)
    train = {p.question for p in load_split("train")}
    assert len(extra) == len({p.question for p in extra}) == 60
    assert not train & {p.question for p in extra}
    for problem in extra:
        assert split_of(problem.question) == "train" and problem.id.startswith("synthetic-extra-")
        lines = problem.solution.split("\n")
        assert all(step_is_correct(line) for line in lines) and lines[-1] == f"The answer is {problem.answer}"
    assert extra_train_problems(60, seed=0) == extra and extra_train_problems(60, seed=1) != extra


def test_corrupt_synthetic_problem_and_percent_step():
    rng = random.Random(5)
    config = SyntheticConfig(ops=("pct", "mul"), min_steps=3, max_steps=3)
    hit_pct = False
    for i in range(300):
        problem = generate_problem(rng, config)
        corrupted = corrupt_solution(problem, random.Random(i))
        _check_corruption(problem.to_problem(""), corrupted)  # a SyntheticProblem has no id
        hit_pct |= bool(PCT.match(corrupted.steps[corrupted.first_error]))
    assert hit_pct


def test_corrupt_rejects_malformed_solution():
    bad = Problem(id="b", question="q", answer="3", solution="1 + 1 = 2\n5 + 1 = 6\nThe answer is 6")
    with pytest.raises(ValueError):
        corrupt_solution(bad, random.Random(0))


def test_data_synthetic_does_not_import_torch():
    code = "import sys, data.synthetic; data.synthetic.load_split('test', 3); assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr
