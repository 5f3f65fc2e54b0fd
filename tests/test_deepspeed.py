"""`reasoner train` commands under torchrun with 2 CPU processes and DeepSpeed ZeRO-2 / ZeRO-3 (gloo).

Slow (the first DeepSpeed run on a machine JIT-compiles a communication op for 30–60 s); `make test-slow` installs
DeepSpeed with ``DS_BUILD_OPS=0`` and runs it. Each run must write, from the main process alone, weights that
load: under ZeRO-3 every process holds only a partition of each parameter, and under ZeRO-1/2 the parameters
are views into one flat buffer.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data.records import write_jsonl
from data.synthetic import load_split
from eval.bench_train import synthetic_step_pairs
from prm.labels import label_trees
from prm.model import ValueModel
from reasoner.models import load_policy
from reasoner.steps import get_format
from reasoner.trainers.preference import VALUE_HEAD_WEIGHTS
from scripted import ScriptedGenerator
from search.mcts import MCTSConfig, run_mcts

REPO = Path(__file__).resolve().parents[1]
FMT = get_format("tiny")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")]
STAGES = ["zero2", "zero3"]


def run_on_two_processes(stage: str, *command: str) -> str:
    """``torchrun --standalone --nproc_per_node 2 -m reasoner.cli --quiet COMMAND --deepspeed STAGE``; returns stdout."""
    torchrun = Path(sys.executable).with_name("torchrun")
    # --standalone: a fresh rendezvous on a free port, not the fixed 29500 the previous run may still hold
    full = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "reasoner.cli", "--quiet", *command,
            "--deepspeed", str(REPO / "configs" / "deepspeed" / f"{stage}.json")]
    done = subprocess.run(full, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def changed_weights(trained) -> list[str]:
    start = load_policy().model.state_dict()
    return [name for name, p in trained.model.state_dict().items() if not p.equal(start[name])]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    write_jsonl(path, synthetic_step_pairs(16, 2, FMT))
    return path


@pytest.fixture(scope="module")
def mc_labels(tmp_path_factory):
    problems = load_split("train", limit=16)
    trees = run_mcts(problems, ScriptedGenerator(problems, p_correct=0.6, seed=1),
                     MCTSConfig(simulations=8, children=3, seed=1))
    path = tmp_path_factory.mktemp("labels") / "mc-labels.jsonl"
    write_jsonl(path, label_trees(trees, "mc-labels", FMT)[0])
    return path


TRAIN = ["--max_steps", "3", "--batch_size", "2", "--learning_rate", "1e-3", "--warmup_steps", "0"]


@pytest.mark.parametrize("stage", STAGES)
def test_step_dpo_on_two_cpu_processes(stage, pairs, tmp_path):
    out = tmp_path / stage
    stdout = run_on_two_processes(stage, "train", "step-dpo", "--data", str(pairs), "--output", str(out), *TRAIN)
    assert stdout.count("saved the step-dpo policy") == 1  # the main process alone writes the result
    assert changed_weights(load_policy(str(out))), "the gathered weights equal the starting policy"


@pytest.mark.parametrize("stage", STAGES)
def test_svpo_policy_and_value_head_on_two_cpu_processes(stage, pairs, tmp_path):
    out = tmp_path / stage
    stdout = run_on_two_processes(stage, "train", "svpo", "--data", str(pairs), "--output", str(out), *TRAIN)
    assert stdout.count("saved the svpo policy") == 1
    trained = load_policy(str(out))
    assert changed_weights(trained), "the gathered weights equal the starting policy"
    value = ValueModel.from_pretrained(out / "value-model")
    assert all(torch.equal(a, b) for a, b in zip(value.lm.state_dict().values(), trained.model.state_dict().values()))
    assert torch.equal(value.value_head.weight, load_file(out / VALUE_HEAD_WEIGHTS)["weight"])
    problem = load_split("test", limit=1)[0]
    values = value.score([problem.question], [problem.solution.split("\n")])[0]
    assert len(values) == len(problem.solution.split("\n")) and all(-1 <= v <= 1 for v in values)


@pytest.mark.parametrize("stage", STAGES)
def test_train_prm_on_two_cpu_processes(stage, mc_labels, tmp_path):
    out = tmp_path / stage
    stdout = run_on_two_processes(stage, "train-prm", "--data", str(mc_labels), "--output", str(out), *TRAIN,
                                  "--eval_steps", "2", "--eval_fraction", "0.3")
    assert stdout.count("saved the value model") == 1
    final, checkpoint = ValueModel.from_pretrained(out), ValueModel.from_pretrained(out / "checkpoint-3")
    assert final.threshold is not None  # calibrated on the held-out paths gathered from both processes
    problem = load_split("test", limit=1)[0]
    steps = [problem.solution.split("\n")]
    assert final.score([problem.question], steps) == checkpoint.score([problem.question], steps)
    start = ValueModel.from_policy(load_policy()).lm.state_dict()
    assert any(not p.equal(start[name]) for name, p in final.lm.state_dict().items()), "the backbone was not trained"


@pytest.mark.parametrize("stage", STAGES)
def test_tree_grpo_on_two_cpu_processes(stage, tmp_path):
    """Online sampling under DeepSpeed: the processes sample trees of different sizes (ZeRO-3 must not gather
    weights per forward), and half the prompts have an unreachable answer, so some steps give one process no
    trajectory with an advantage while the other has some (ZeRO-1/2 then needs the same backward on both)."""
    problems = half_unreachable(tmp_path)
    out = tmp_path / stage
    stdout = run_on_two_processes(stage, "train", "tree-grpo", "--problems", str(problems), "--output", str(out),
                                  "--max_steps", "3", "--batch_size", "1", "--learning_rate", "1e-4")
    assert stdout.count("saved the tree-grpo policy") == 1
    assert changed_weights(load_policy(str(out))), "the gathered weights equal the starting policy"


@pytest.mark.parametrize("stage", STAGES)
def test_online_mcts_dpo_on_two_cpu_processes(stage, tmp_path):
    """The same for online MCTS-DPO: a tree of an unreachable answer yields no pair (all its leaves are wrong),
    so that a process whose batch holds none that does takes a zero step while the other trains on its pairs.
    About 4 in 10 of the tiny policy's 16-simulation trees of a reachable problem give a committed-path pair: two
    problems a process and four steps at full rate (no warm-up) make a run without any pair unlikely (~2 %), where
    three steps of one problem each, the first at rate 0, gave none with some sampling seeds."""
    problems = half_unreachable(tmp_path)
    out = tmp_path / stage
    stdout = run_on_two_processes(stage, "train", "mcts-dpo-online", "--problems", str(problems), "--output", str(out),
                                  "--max_steps", "4", "--batch_size", "2", "--learning_rate", "1e-4",
                                  "--warmup_steps", "0", "--simulations", "16")
    assert stdout.count("saved the mcts-dpo-online policy") == 1
    assert changed_weights(load_policy(str(out))), "the gathered weights equal the starting policy"


def half_unreachable(tmp_path):
    """8 synthetic:train problems, every second one with an answer the policy cannot reach."""
    problems = tmp_path / "mixed.jsonl"
    problems.write_text("".join(json.dumps({"id": p.id, "question": p.question,
                                            "answer": p.answer if i % 2 == 0 else "987654321"}) + "\n"
                                for i, p in enumerate(load_split("train", 8))))
    return problems


def test_pipeline_style_stages_in_one_process_without_a_launcher(pairs, mc_labels, tmp_path):
    """`reasoner pipeline` runs train-prm and Step-DPO in its own process, with no torchrun: a ``deepspeed``
    config must still work there (one process, no MPI), stage after stage."""
    zero2 = str(REPO / "configs" / "deepspeed" / "zero2.json")
    script = f"""
import sys
from reasoner.cli import main
train = {TRAIN!r} + ["--deepspeed", {zero2!r}]
assert main(["--quiet", "train-prm", "--data", sys.argv[1], "--output", sys.argv[3] + "/prm", *train]) == 0
assert main(["--quiet", "train", "step-dpo", "--data", sys.argv[2], "--output", sys.argv[3] + "/dpo", *train]) == 0
"""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    done = subprocess.run([sys.executable, "-c", script, str(mc_labels), str(pairs), str(tmp_path)], cwd=REPO,
                          env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ValueModel.from_pretrained(tmp_path / "prm").head == "tanh"
    assert changed_weights(load_policy(str(tmp_path / "dpo")))
