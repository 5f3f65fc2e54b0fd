"""The same `reasoner train` command under torchrun with 2 CPU processes and DeepSpeed ZeRO-2 / ZeRO-3 (gloo).

Slow (the first DeepSpeed run on a machine JIT-compiles a communication op for 30–60 s); `make test-slow` installs
DeepSpeed with ``DS_BUILD_OPS=0`` and runs it.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data.records import write_jsonl
from eval.bench_train import synthetic_step_pairs
from reasoner.models import load_policy
from reasoner.steps import get_format

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")]


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_step_dpo_on_two_cpu_processes(stage, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, synthetic_step_pairs(16, 2, get_format("tiny")))
    out = tmp_path / stage
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "-m", "reasoner.cli", "--quiet", "train", "step-dpo",
               "--data", str(pairs), "--output", str(out), "--max_steps", "3", "--batch_size", "2",
               "--learning_rate", "1e-3", "--warmup_steps", "0", "--deepspeed", str(REPO / "configs" / "deepspeed" / f"{stage}.json")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved the step-dpo policy") == 1  # the main process alone writes the result
    trained = load_policy(str(out))
    start = load_policy()
    changed = [name for name, p in trained.model.state_dict().items() if not p.equal(start.model.state_dict()[name])]
    assert changed, "the gathered weights equal the starting policy: nothing was trained or saved"
