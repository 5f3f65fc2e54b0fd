"""Plain DistributedDataParallel (``torchrun`` without ``--deepspeed``): 2 CPU processes with gloo must end a few
training steps with the same weights. SVPO used to call its inner policy and value head past DDP's forward, so
DDP never synced their gradients and each process trained on its own half of the data (weights 4e-3 apart after
three steps)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.slow

SCRIPT = """
    import sys
    import torch
    import torch.distributed as dist
    from data.records import write_jsonl
    from eval.bench_train import synthetic_step_pairs
    from reasoner.models import load_policy
    from reasoner.steps import get_format
    from reasoner.trainers.common import TRAINING_DTYPE
    from reasoner.trainers.preference import PreferenceArgs, load_pairs, train_preference

    algo, out = sys.argv[1], sys.argv[2]
    path = f"{out}-pairs-{__import__('os').environ['RANK']}.jsonl"  # the same pairs, one file per process
    write_jsonl(path, synthetic_step_pairs(16, 2, get_format("tiny")))
    args = PreferenceArgs(algo=algo, data=path, output=out, max_steps=3, batch_size=2, learning_rate=1e-3,
                          warmup_steps=0, save_steps=100, logging_steps=1)
    _, trainer = train_preference(load_policy(dtype=TRAINING_DTYPE), load_pairs(path), args)
    weights = torch.cat([p.detach().flatten().float() for p in trainer.model.parameters()])
    gathered = [torch.zeros_like(weights) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, weights)
    if dist.get_rank() == 0:
        print("wrapper", type(trainer.model_wrapped).__name__)
        print("max difference between processes", (gathered[0] - gathered[1]).abs().max().item())
"""


@pytest.mark.parametrize("algo", ["svpo", "step-dpo"])
def test_two_ddp_processes_keep_the_same_weights(algo, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script), algo,
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrapper DistributedDataParallel" in done.stdout
    difference = re.search(r"max difference between processes (\S+)", done.stdout)
    assert difference and float(difference.group(1)) == 0.0, done.stdout
