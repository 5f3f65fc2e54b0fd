"""Seed sweep of the shipped tiny-policy recipe (issue 4; ad-hoc, kept here so it can be rerun).

Run from the repo root: ``.venv/bin/python docs/tiny-policy-seed-sweep.py SEED``. The training is exactly
``reasoner build-tiny-policy --seed SEED`` (the build's own ``tiny_policy_setup`` and
``tiny_policy_sft_args`` with the TinyBuildArgs defaults: 1.06 M Llama, batch 64, lr 3e-3 constant); only the
selection differs. The 128-problem slice's greedy accuracy is scored every 50 steps (every 25 once it reaches 0.20), every checkpoint with slice greedy >= 0.30 is kept, and training stops after
two slice scores above 0.50 (or one above 0.58). Then every kept checkpoint is scored greedily on all 500
synthetic:test problems, and the three with the highest test greedy in [0.40, 0.50] get pass@16 at T = 1.0
(16 draws). Results go to ``runs/sweep/seed{SEED}/sweep.json``; summary in docs/tiny-policy-seed-sweep.json.
"""
import json
import shutil
import sys
import time
from pathlib import Path
import torch
from transformers import TrainerCallback
from data.synthetic import load_split
from reasoner.models import save_policy, load_policy
from reasoner.tiny import TinyBuildArgs, policy_accuracy, tiny_policy_setup, tiny_policy_sft_args
from reasoner.trainers.sft import train_sft

seed = int(sys.argv[1])
root = Path(f"runs/sweep/seed{seed}"); root.mkdir(parents=True, exist_ok=True)
args = TinyBuildArgs(seed=seed)
fmt, tok, model, train = tiny_policy_setup(args)
test = load_split("test"); slice_ = test[:args.eval_problems]
log = {"seed": seed, "history": []}
started = time.time()
state_ = {"fine": False, "high": 0}

class KeepCheckpointsNearWeakPoint(TrainerCallback):
    def on_step_end(self, ta, state, control, model=None, **kw):
        every = 25 if state_["fine"] else 50
        if state.global_step % every:
            return
        g = policy_accuracy(model, tok, slice_, seed=seed)["greedy"]
        h = {"step": state.global_step, "slice_greedy": g, "seconds": round(time.time() - started)}
        log["history"].append(h); print(json.dumps(h), flush=True)
        if g >= 0.2: state_["fine"] = True
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
    pol = load_policy(str(d))
    r = policy_accuracy(pol.model, pol.tokenizer, test, seed=seed)
    r["step"] = int(d.name[5:]); scored.append(r); print(json.dumps(r), flush=True)
log["test_greedy"] = scored
window = sorted([r for r in scored if 0.40 <= r["greedy"] <= 0.50], key=lambda r: -r["greedy"])[:3]
for r in window:
    pol = load_policy(str(root / f"step-{r['step']}"))
    p = policy_accuracy(pol.model, pol.tokenizer, test, k=16, temperature=1.0, seed=seed)
    p["step"] = r["step"]; log.setdefault("test_pass16", []).append(p); print(json.dumps(p), flush=True)
log["seconds"] = round(time.time() - started)
(root / "sweep.json").write_text(json.dumps(log, indent=1))
