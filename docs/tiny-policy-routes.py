"""Which route a policy trained with ``--decompose_prob`` takes (issue 4; ad-hoc, kept so the README's figures
can be rerun).

Run from the repo root: ``.venv/bin/python docs/tiny-policy-routes.py POLICY``. Greedy and 16 samples per problem
at T = 1.0 (HFStepGenerator seed 0) on the 500 synthetic:test problems. A solution "works a step out" when it
holds a line pair or triple shaped like what `data.training_mixes.decomposed_lines` writes (``427 + 30 = 457``
then ``457 + 5 = 462``). Prints one JSON line: how often greedy and the samples work a step
out, and, on the problems greedy gets wrong, how many correct samples did.
"""
import json
import sys

import torch

from data.answers import is_equivalent
from data.synthetic import load_split, parse_step
from reasoner.backends.hf import HFStepGenerator
from reasoner.models import load_policy
from search.decode import greedy, sample_solutions


def works_a_step_out(steps):
    """Whether ``steps`` hold a tens-and-units working: a sum / difference by a multiple of 10 followed by the
    same operation by one digit on its result, or a product of a multiple of 10 followed by the product of a
    digit by the same factor and a sum."""
    parsed = [parse_step(line) for line in steps]
    for step, after, last in zip(parsed, parsed[1:] + [None], parsed[2:] + [None, None]):
        if step is None or step.kind != "arith" or after is None or after.kind != "arith":
            continue
        if step.op in "+-" and step.y % 10 == 0 and after.op == step.op and 0 < after.y < 10 and after.x == step.z:
            return True
        if (step.op == "*" and step.x % 10 == 0 and after.op == "*" and after.x < 10 and after.y == step.y
                and last is not None and last.kind == "arith" and last.op == "+"):
            return True
    return False


policy = load_policy(sys.argv[1])
test = load_split("test")
generator = HFStepGenerator(policy.model, policy.tokenizer, policy.step_format, seed=0, max_batch_rows=1024)
questions, golds = [p.question for p in test], [p.answer for p in test]
with torch.no_grad():
    greedy_solutions = greedy(generator, questions)
    groups = sample_solutions(generator, questions, 16, temperature=1.0)
greedy_right = [is_equivalent(s.answer, g) for s, g in zip(greedy_solutions, golds)]
hits = [[is_equivalent(s.answer, g) for s in group] for group, g in zip(groups, golds)]
greedy_wrong = [i for i, right in enumerate(greedy_right) if not right]
rescued = [works_a_step_out(s.steps) for i in greedy_wrong for s, hit in zip(groups[i], hits[i]) if hit]
samples = [s for group in groups for s in group]
print(json.dumps({
    "policy": sys.argv[1],
    "greedy": sum(greedy_right) / len(test),
    "greedy_works_a_step_out": sum(works_a_step_out(s.steps) for s in greedy_solutions) / len(test),
    "samples_work_a_step_out": sum(works_a_step_out(s.steps) for s in samples) / len(samples),
    "pass@16": sum(map(any, hits)) / len(test),
    "greedy_wrong_problems_solved_by_a_sample": sum(any(hits[i]) for i in greedy_wrong),
    "greedy_wrong_problems": len(greedy_wrong),
    "correct_samples_on_greedy_wrong_problems": len(rescued),
    "of_which_work_a_step_out": sum(rescued),
}))
