"""Learning-rate cool-down of tiny-policy checkpoints for issue 4 (ad-hoc, kept here so it can be rerun).

Run from the repo root: ``.venv/bin/python docs/tiny-policy-cooldown.py CHECKPOINT DECAY_STEPS [key=value ...]``.
The build trains at a constant learning rate, and its weak-point checkpoints swing by up to 10 greedy points
25 steps apart: the weights bounce around the valley. This continues SFT from a kept sweep checkpoint
(``runs/sweep/.../step-N``, weights only, so AdamW's moments restart with 10 warm-up steps) on the same
training mix (``key=value`` as in docs/tiny-policy-sweep.py, TinyBuildArgs fields) with the learning rate
falling linearly from ``learning_rate`` to 0 over DECAY_STEPS steps, then scores greedy accuracy and pass@16
(T = 1.0, 16 draws) on all 500 synthetic:test problems. The question is whether a cooled-down model sits on
a different greedy / pass@16 frontier than the constant-rate snapshots. Results: ``CHECKPOINT-cool{D}/cool.json``.
"""
import json
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

from data.synthetic import load_split
from reasoner.backends.hf import HFStepGenerator
from reasoner.models import load_policy, save_policy
from reasoner.tiny import TinyBuildArgs, tiny_policy_setup, tiny_policy_sft_args
from reasoner.trainers.sft import train_sft
from search.decode import accuracy_report

checkpoint, decay_steps = Path(sys.argv[1]), int(sys.argv[2])
overrides = dict(arg.split("=", 1) for arg in sys.argv[3:])
types = {f.name: type(getattr(TinyBuildArgs, f.name)) for f in fields(TinyBuildArgs)}
args = TinyBuildArgs(seed=0, **{key: types[key](value) for key, value in overrides.items()})
out = checkpoint.with_name(f"{checkpoint.name}-cool{decay_steps}" + "".join(f"-{k}{v}" for k, v in overrides.items()))
started = time.time()

fmt, tok, _, train = tiny_policy_setup(args)
policy = load_policy(str(checkpoint))
model, tok = policy.model, policy.tokenizer
sft = tiny_policy_sft_args(args, out / "trainer")
sft.lr_scheduler, sft.warmup_steps = "linear", 10
train_sft(model, tok, fmt, train, sft, max_steps=decay_steps)
shutil.rmtree(sft.output, ignore_errors=True)
save_policy(model, out, tokenizer=tok, step_format=fmt)
train_seconds = round(time.time() - started)

torch.set_num_threads(2)
model.eval()
test = load_split("test")
generator = HFStepGenerator(model, tok, fmt, seed=0, max_batch_rows=1024)
with torch.no_grad():
    report = accuracy_report(generator, [p.question for p in test], [p.answer for p in test], k=16, temperature=1.0)
record = {"checkpoint": str(checkpoint), "decay_steps": decay_steps, "overrides": overrides,
          "learning_rate": args.learning_rate, "train_seconds": train_seconds,
          "greedy": report["greedy"], "pass@16": report["pass@16"], "mean_sample": report["mean_sample_accuracy"],
          "seconds": round(time.time() - started)}
(out / "cool.json").write_text(json.dumps(record, indent=1))
print(json.dumps(record), flush=True)
