"""Sweeps of the tiny-policy recipe for issue 4 (ad-hoc, kept here so they can be rerun).

Run from the repo root: ``.venv/bin/python docs/tiny-policy-sweep.py SEED [NAME] [key=value ...] [lsb=1]``.
The training is exactly ``reasoner build-tiny-policy --seed SEED --key value ...`` (the build's own
``tiny_policy_setup`` and ``tiny_policy_sft_args``; with no ``key=value`` the TinyBuildArgs defaults: 1.06 M Llama,
batch 64, lr 3e-3 constant). The selection below has been the build's own since 6dcd1d6; the script adds pass@16 on
the slice every 100 steps to the history, keeps its checkpoints, and the ``lsb`` variant. ``lsb=1`` rewrites every
training problem with each number written least-significant digit first (``40 - 8 = 32`` becomes ``04 - 8 = 23``, in
the question too) and scores the policy through ``ReversedDigits``, which reverses what it reads and un-reverses the
steps it writes, so its answers are graded against the gold ones: the number-order experiment.

The 128-problem slice's greedy accuracy is scored every 50 steps (every 25 once it reaches 0.20; pass@16 on
the slice every 100 steps), every checkpoint with slice greedy >= 0.30 is kept, and training stops after two
slice scores above 0.50 (or one above 0.58). Then every kept checkpoint is scored greedily on all 500
synthetic:test problems, and the three with the highest test greedy in [0.40, 0.50] get pass@16 at T = 1.0
(16 draws). Results go to ``runs/sweep/seed{SEED}{NAME}/sweep.json``; summaries in
docs/tiny-policy-seed-sweep.json (seeds) and docs/tiny-policy-variants.json (the other variants).
"""
import json
import re
import shutil
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch
from transformers import TrainerCallback

from data.synthetic import load_split
from reasoner.backends.hf import HFStepGenerator
from reasoner.models import load_policy, save_policy
from reasoner.tiny import TinyBuildArgs, tiny_policy_setup, tiny_policy_sft_args
from reasoner.trainers.sft import train_sft
from search.decode import accuracy_report
from search.protocols import State

seed = int(sys.argv[1])
name = sys.argv[2] if len(sys.argv) > 2 and "=" not in sys.argv[2] else ""
overrides = dict(arg.split("=", 1) for arg in sys.argv[2:] if "=" in arg)
lsb = overrides.pop("lsb", "0") == "1"
types = {f.name: type(getattr(TinyBuildArgs, f.name)) for f in fields(TinyBuildArgs)}
args = TinyBuildArgs(seed=seed, **{key: types[key](value) for key, value in overrides.items()})
root = Path(f"runs/sweep/seed{seed}{name}")
root.mkdir(parents=True, exist_ok=True)


def model_text(text):
    """What the policy reads and writes: every digit run reversed with ``lsb=1`` (its own inverse), else as is."""
    return re.sub(r"\d+", lambda m: m.group()[::-1], text) if lsb and text else text


class ReversedDigits:
    """A StepGenerator seen from outside in ordinary digit order: states go in with their digits reversed,
    sampled steps come back un-reversed, so `accuracy_report` grades the lsb policy against the gold answers."""

    def __init__(self, generator):
        self.generator = generator

    def expand(self, states, n, **kwargs):
        inner = [State(model_text(s.question), tuple(map(model_text, s.steps))) for s in states]
        groups = self.generator.expand(inner, n, **kwargs)
        return [[replace(sample, text=model_text(sample.text)) for sample in group] for group in groups]


fmt, tok, model, train = tiny_policy_setup(args)
train = [replace(p, question=model_text(p.question), answer=model_text(p.answer), solution=model_text(p.solution))
         for p in train]
test = load_split("test")
slice_ = test[:args.eval_problems]
print(args, "lsb:", lsb, "parameters:", sum(p.numel() for p in model.parameters()), flush=True)


def score(model, tokenizer, problems, k=0):
    """Greedy accuracy and, with k, pass@k (k draws, T = 1.0) and mean sample accuracy on ``problems``."""
    was_training = model.training
    model.eval()
    generator = HFStepGenerator(model, tokenizer, fmt, seed=seed, max_batch_rows=1024)
    with torch.no_grad():
        report = accuracy_report(ReversedDigits(generator) if lsb else generator, [p.question for p in problems],
                                 [p.answer for p in problems], k=k, temperature=1.0)
    model.train(was_training)
    return {"greedy": report["greedy"], **({f"pass@{k}": report[f"pass@{k}"],
                                            "mean_sample": report["mean_sample_accuracy"]} if k else {})}


log = {"seed": seed, "args": overrides, "lsb": lsb, "history": []}
started = time.time()
state_ = {"fine": False, "high": 0}


class KeepCheckpointsNearWeakPoint(TrainerCallback):
    def on_step_end(self, ta, state, control, model=None, **kw):
        if state.global_step % (25 if state_["fine"] else 50):
            return
        r = score(model, tok, slice_, k=16 if state.global_step % 100 == 0 else 0)
        h = {"step": state.global_step, **{f"slice_{key}": value for key, value in r.items()},
             "seconds": round(time.time() - started)}
        log["history"].append(h)
        print(json.dumps(h), flush=True)
        g = r["greedy"]
        if g >= 0.2:
            state_["fine"] = True
        if g >= 0.30:
            save_policy(model, root / f"step-{state.global_step}", tokenizer=tok, step_format=fmt)
        state_["high"] = state_["high"] + 1 if g > 0.50 else 0
        if state_["high"] >= 2 or g > 0.58:
            control.should_training_stop = True


sft = tiny_policy_sft_args(args, root / "trainer")
train_sft(model, tok, fmt, train, sft, callbacks=[KeepCheckpointsNearWeakPoint()], max_steps=2000)
shutil.rmtree(sft.output, ignore_errors=True)
log["train_seconds"] = round(time.time() - started)
torch.set_num_threads(2)
scored = []
for d in sorted(root.glob("step-*"), key=lambda p: int(p.name[5:])):
    policy = load_policy(str(d))
    r = {**score(policy.model, policy.tokenizer, test), "step": int(d.name[5:])}
    scored.append(r)
    print(json.dumps(r), flush=True)
log["test_greedy"] = scored
window = sorted([r for r in scored if 0.40 <= r["greedy"] <= 0.50], key=lambda r: -r["greedy"])[:3]
for r in window:
    policy = load_policy(str(root / f"step-{r['step']}"))
    p = {**score(policy.model, policy.tokenizer, test, k=16), "step": r["step"]}
    log.setdefault("test_pass16", []).append(p)
    print(json.dumps(p), flush=True)
log["seconds"] = round(time.time() - started)
(root / "sweep.json").write_text(json.dumps(log, indent=1))
