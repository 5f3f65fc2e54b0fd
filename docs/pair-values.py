"""Step-DPO pairs whose chosen step a value model rates high (ad-hoc, kept so the README's figures can be rerun).

Run from the repo root: ``.venv/bin/python docs/pair-values.py VALUE_MODEL PAIRS.jsonl OUT.jsonl [MIN_VALUE]``.
Scores the chosen and the rejected step of every pair of a ``reasoner label --kind step-dpo`` file in its
prompt's context (prompts in the step format the value model was trained with), writes the pairs whose chosen
step scores above MIN_VALUE (default 0.5) to OUT.jsonl with ``v_chosen`` / ``v_rejected`` added, and prints, per
threshold, how many pairs pass and how often their chosen and rejected steps have right arithmetic
(`data.synthetic.step_is_correct`: synthetic-task pairs only). A value model can see a wrong step that answer-only
labels call "alive" (a correct answer reached through it); this tests whether removing those pairs helps.
"""
import json
import sys

import torch

from data.records import read_jsonl, write_jsonl
from data.synthetic import step_is_correct
from prm.model import load_value_model

model_dir, pairs_path, out_path = sys.argv[1:4]
min_value = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
value_model = load_value_model(model_dir)
pairs = list(read_jsonl(pairs_path, required=("prompt", "chosen", "rejected", "problem_id")))
questions, chosen, rejected = [], [], []
for pair in pairs:
    question, steps = value_model.step_format.parse(pair["prompt"])
    questions.append(question)
    chosen.append([*steps, pair["chosen"]])
    rejected.append([*steps, pair["rejected"]])
with torch.no_grad():
    for key, solutions in (("v_chosen", chosen), ("v_rejected", rejected)):
        for pair, values in zip(pairs, value_model.score(questions, solutions)):
            pair[key] = values[-1]


def share_right(rows, key):
    return round(sum(step_is_correct(row[key]) for row in rows) / max(1, len(rows)), 3)


for threshold in (None, -0.5, 0.0, 0.5):
    kept = [p for p in pairs if threshold is None or p["v_chosen"] > threshold]
    print(json.dumps({"v_chosen_above": threshold, "pairs": len(kept), "problems": len({p["problem_id"] for p in kept}),
                      "chosen_right": share_right(kept, "chosen"), "rejected_right": share_right(kept, "rejected")}))
count = write_jsonl(out_path, (p for p in pairs if p["v_chosen"] > min_value))
print(f"wrote {count} pairs with v_chosen > {min_value} to {out_path}")
