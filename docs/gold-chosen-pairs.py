"""Step-DPO pairs with the gold step as the chosen one (ad-hoc, kept so the README's figures can be rerun).

Run from the repo root: ``.venv/bin/python docs/gold-chosen-pairs.py PAIRS.jsonl PROBLEMS OUT.jsonl``.
Keeps the pairs of a ``reasoner label --kind step-dpo`` file (tiny step format) whose prompt follows the problem's
gold solution step for step, and puts the gold solution's next step in place of the chosen one (one pair per
prompt and rejected step; none where the rejected step is the gold one). PROBLEMS is the problem spec the search
read (its gold solutions, one step per line). This removes every label error on the chosen side: whatever
Step-DPO does with these pairs is the objective's doing, not the labels'.
"""
import sys

from data.problems import load_problems
from data.records import read_jsonl, write_jsonl
from reasoner.steps import get_format

pairs_path, problems_spec, out_path = sys.argv[1:4]
step_format = get_format("tiny")
gold = {problem.id: problem.solution.split("\n") for problem in load_problems(problems_spec)}
kept, seen = [], set()
for pair in read_jsonl(pairs_path, required=("prompt", "rejected", "problem_id")):
    _, steps = step_format.parse(pair["prompt"])
    solution = gold[pair["problem_id"]]
    depth = len(steps)
    if steps != solution[:depth] or depth >= len(solution) or solution[depth] == pair["rejected"]:
        continue
    if (pair["prompt"], pair["rejected"]) not in seen:
        seen.add((pair["prompt"], pair["rejected"]))
        kept.append({**pair, "chosen": solution[depth]})
count = write_jsonl(out_path, kept)
print(f"wrote {count} pairs with the gold step as chosen ({len({p['problem_id'] for p in kept})} problems) to {out_path}")
