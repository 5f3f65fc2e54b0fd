"""Plain DistributedDataParallel (``torchrun`` without ``--deepspeed``): every training command on 2 CPU processes
with gloo must end its steps with the same weights in both processes. SVPO used to call its inner policy and value
head past DDP's forward, so DDP never synced their gradients and each process trained on its own half of the data
(weights 4e-3 apart after three steps)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data.records import write_jsonl
from data.synthetic import load_split
from eval.bench_train import synthetic_step_pairs
from prm.labels import label_trees
from reasoner.steps import get_format
from scripted import ScriptedGenerator
from search.mcts import MCTSConfig, run_mcts

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
FMT = get_format("tiny")
pytestmark = pytest.mark.slow

# Runs `reasoner.cli.main` with Trainer.train wrapped: after training, every process's weights are gathered and the
# main process prints the largest difference between two processes.
WRAPPER = """
import torch
import torch.distributed as dist
from transformers import Trainer

train = Trainer.train

def train_and_compare(self, *args, **kwargs):
    result = train(self, *args, **kwargs)
    weights = torch.cat([p.detach().flatten().float() for p in self.model.parameters()])
    gathered = [torch.zeros_like(weights) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, weights)
    if dist.get_rank() == 0:
        print("wrapper", type(self.model_wrapped).__name__, flush=True)
        print("max difference between processes", (gathered[0] - gathered[1]).abs().max().item(), flush=True)
    return result

Trainer.train = train_and_compare
from reasoner.cli import run
run()  # ends through exit_process, as `python -m reasoner.cli` does (a gloo group alive at shutdown can abort a rank)
"""
STEPS = ["--max_steps", "3", "--batch_size", "2", "--learning_rate", "1e-3", "--warmup_steps", "0"]
ONLINE = ["--max_steps", "3", "--batch_size", "1", "--learning_rate", "1e-4"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Step pairs, labels of every kind a trainer reads and a problem file for the online trainers (half of them with an unreachable answer,
    so that some steps give one process nothing to train on)."""
    folder = tmp_path_factory.mktemp("ddp-inputs")
    write_jsonl(folder / "pairs.jsonl", synthetic_step_pairs(16, 2, FMT))
    problems = load_split("train", limit=16)
    trees = run_mcts(problems, ScriptedGenerator(problems, p_correct=0.6, seed=1), MCTSConfig(simulations=8, children=3, seed=1))
    for kind in ("mc-labels", "step-apo", "mcts-dpo", "step-rewards"):
        write_jsonl(folder / f"{kind}.jsonl", label_trees(trees, kind, FMT)[0])
    (folder / "problems.jsonl").write_text("".join(
        json.dumps({"id": p.id, "question": p.question, "answer": p.answer if i % 2 == 0 else "987654321"}) + "\n"
        for i, p in enumerate(load_split("train", 8))))
    return folder


COMMANDS = {
    "sft": ["train", "sft", "--data", "synthetic:train", "--limit", "16", *STEPS],
    "step-dpo": ["train", "step-dpo", "--data", "{in}/pairs.jsonl", *STEPS],
    "svpo": ["train", "svpo", "--data", "{in}/pairs.jsonl", *STEPS],
    "step-apo": ["train", "step-apo", "--data", "{in}/step-apo.jsonl", *STEPS],
    "mcts-dpo": ["train", "mcts-dpo", "--data", "{in}/mcts-dpo.jsonl", *STEPS],
    "full-step-dpo": ["train", "full-step-dpo", "--data", "{in}/step-rewards.jsonl", *STEPS],
    "train-prm": ["train-prm", "--data", "{in}/mc-labels.jsonl", *STEPS],
    "tree-grpo": ["train", "tree-grpo", "--problems", "{in}/problems.jsonl", *ONLINE],
    "mcts-dpo-online": ["train", "mcts-dpo-online", "--problems", "{in}/problems.jsonl", *ONLINE, "--simulations", "16"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_two_ddp_processes_keep_the_same_weights(name, inputs, tmp_path):
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    command = [part.replace("{in}", str(inputs)) for part in COMMANDS[name]]
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script), "--quiet", *command,
                           "--output", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrapper DistributedDataParallel" in done.stdout, done.stdout[-2000:]
    difference = re.search(r"max difference between processes (\S+)", done.stdout)
    assert difference and float(difference.group(1)) == 0.0, done.stdout[-2000:]
