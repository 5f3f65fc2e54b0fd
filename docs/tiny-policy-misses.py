"""Where a tiny policy's pass@16 misses are (issue 4; ad-hoc, kept so the README's figures can be rerun).

Run from the repo root: ``.venv/bin/python docs/tiny-policy-misses.py [POLICY ...]`` (``embedded`` for the shipped
policy, else a policy directory; default: embedded). For each policy: 16 samples per problem at T = 1.0
(HFStepGenerator seed 0) on the 500 synthetic:test problems, and the share of problems with a correct sample,
by number of computation lines (6 = 6 or more) and by whether the gold solution holds a computation line
found in no synthetic:train solution. Prints one JSON line per policy, after one line that counts the test
problems with such a line for synthetic:train alone and with ``extra_train_problems(100000)`` added (what
``build-tiny-policy --extra_train 100000`` trains on).
"""
import json
import sys
from collections import defaultdict

import torch

from data.answers import is_equivalent
from data.synthetic import load_split
from data.training_mixes import computation_lines, extra_train_problems
from reasoner.backends.hf import HFStepGenerator
from reasoner.models import load_policy
from search.decode import sample_solutions

test = load_split("test")


def unseen_in(problems):
    """Per test problem: does its gold solution hold a computation line that no solution of ``problems`` has?"""
    known = {line for p in problems for line in p.solution.split("\n")[:-1]}
    return [any(line not in known for line in p.solution.split("\n")[:-1]) for p in test]


unseen = unseen_in(load_split("train"))
print(json.dumps({"test_problems_with_a_line_unseen_in_training": {
    "synthetic:train": sum(unseen),
    "synthetic:train + extra_train_problems(100000)": sum(unseen_in(load_split("train") + extra_train_problems(100000)))}}),
    flush=True)


def share(hits):
    return {"pass@16": round(sum(hits) / max(len(hits), 1), 3), "problems": len(hits)}


for name in sys.argv[1:] or ["embedded"]:
    policy = load_policy(None if name == "embedded" else name)
    generator = HFStepGenerator(policy.model, policy.tokenizer, policy.step_format, seed=0, max_batch_rows=1024)
    with torch.no_grad():
        groups = sample_solutions(generator, [p.question for p in test], 16, temperature=1.0)
    hits = [any(is_equivalent(s.answer, p.answer) for s in group) for group, p in zip(groups, test)]
    by_lines = defaultdict(list)
    for problem, hit in zip(test, hits):
        by_lines[min(computation_lines(problem), 6)].append(hit)
    print(json.dumps({"policy": name, **share(hits),
                      "by_computation_lines": {k: share(v) for k, v in sorted(by_lines.items())},
                      "with_a_line_unseen_in_training": share([h for h, u in zip(hits, unseen) if u]),
                      "all_lines_seen": share([h for h, u in zip(hits, unseen) if not u])}), flush=True)
