"""How much can a sampling rule lift the tiny policy's pass@16? (issue 4; ad-hoc, kept so it can be rerun)

Run from the repo root: ``.venv/bin/python docs/tiny-policy-gold-path.py [POLICY_DIR]`` (default: the embedded
policy). For each of the 500 synthetic:test problems it teacher-forces the gold solution and reads the policy's
next-token distribution at every solution token, then computes, for each sampling rule (temperature T, and
min-p truncation: tokens below ``min_p * max_prob`` dropped before renormalising), the probability P that one
sample writes exactly the gold solution. ``mean(1 - (1 - P)^16)`` is a lower bound on pass@16 under that rule
(a sample can also reach the gold answer another way). Also prints how many problems have a gold token the
policy gives less than 2 % / 5 % / 10 %. Prints one JSON object; the figures are in the README.
"""
import json
import sys

import torch

from data.synthetic import load_split
from reasoner.models import load_policy
from reasoner.trainers.sft import sft_example, solution_steps

policy = load_policy(sys.argv[1] if len(sys.argv) > 1 else None)
model, tokenizer, fmt = policy.model.eval(), policy.tokenizer, policy.step_format
logits, golds = [], []  # per problem: the next-token logits at every gold solution token, and those tokens
with torch.no_grad():
    for problem in load_split("test"):
        example = sft_example(tokenizer, fmt, problem.question, solution_steps(problem, fmt))
        ids, labels = torch.tensor(example["input_ids"]), torch.tensor(example["labels"])
        predicted = labels[1:] != -100  # position j predicts token j + 1: the solution tokens and EOS
        logits.append(model(ids[None]).logits[0, :-1][predicted].float())
        golds.append(ids[1:][predicted])


def gold_path_probabilities(temperature, min_p):
    out = []
    for lg, gold in zip(logits, golds):
        probs = torch.softmax(lg / temperature, -1)
        if min_p:
            probs = torch.where(probs >= min_p * probs.max(-1, keepdim=True).values, probs, 0.0)
            probs = probs / probs.sum(-1, keepdim=True)
        out.append(probs[torch.arange(len(gold)), gold].log().sum().exp().item())
    return torch.tensor(out)


lowest = torch.tensor([torch.softmax(lg, -1)[torch.arange(len(g)), g].min().item() for lg, g in zip(logits, golds)])
report = {"policy": policy.name, "problems": len(golds),
          "share_with_a_gold_token_below": {str(t): round((lowest < t).float().mean().item(), 3) for t in (0.02, 0.05, 0.1)},
          "rules": []}
for temperature in (1.0, 1.15, 1.3, 1.6, 2.0):
    for min_p in (0.0, 0.01, 0.03, 0.1, 0.2):
        p = gold_path_probabilities(temperature, min_p)
        report["rules"].append({"temperature": temperature, "min_p": min_p, "gold_path_pass@1": round(p.mean().item(), 3),
                                "gold_path_pass@16": round((1 - (1 - p) ** 16).mean().item(), 3)})
print(json.dumps(report, indent=1))
