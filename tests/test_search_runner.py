"""`reasoner search`: resumable after SIGKILL, shards disjoint and covering, summary, config checks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.records import read_jsonl
from scripted import ScriptedGenerator
from search.runner import SearchConfig, run_search, shard_problems, summarize_run
from search.tree import read_trees

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path, **overrides):
    values = dict(problems="synthetic:test", limit=10, output=str(tmp_path / "run"), simulations=3, children=2,
                  batch_problems=3, quiet=True)
    values.update(overrides)
    return SearchConfig(**values)


def test_run_writes_one_tree_per_problem_and_resumes(tmp_path):
    config = _config(tmp_path)
    summary = run_search(config, make_generator=lambda c: ScriptedGenerator(seed=1))
    assert summary["problems"] == 10
    ids = [r["problem_id"] for r in read_jsonl(Path(config.output) / "trees.jsonl")]
    assert len(ids) == len(set(ids)) == 10
    calls = []
    run_search(config, make_generator=lambda c: calls.append(1) or ScriptedGenerator())
    assert not calls  # nothing left to do: the generator is not even built
    assert (Path(config.output) / "config.yaml").exists()


def test_resume_refuses_a_changed_search_setting(tmp_path):
    run_search(_config(tmp_path, limit=2), make_generator=lambda c: ScriptedGenerator())
    with pytest.raises(ValueError, match="started with simulations=3"):
        run_search(_config(tmp_path, limit=2, simulations=9), make_generator=lambda c: ScriptedGenerator())


def test_a_run_that_failed_before_its_first_tree_starts_over_with_other_settings(tmp_path):
    def mistyped_policy(config):
        raise FileNotFoundError("no such model directory")

    with pytest.raises(FileNotFoundError):
        run_search(_config(tmp_path, limit=2), make_generator=mistyped_policy)
    assert (tmp_path / "run" / "config.yaml").exists()
    run_search(_config(tmp_path, limit=2, simulations=9), make_generator=lambda c: ScriptedGenerator())
    assert summarize_run(tmp_path / "run")["problems"] == 2


def test_shards_are_disjoint_and_cover(tmp_path):
    from data.problems import load_problems

    problems = load_problems("synthetic:test", limit=23)
    shards = [shard_problems(problems, f"{i}/4") for i in range(4)]
    ids = [p.id for shard in shards for p in shard]
    assert sorted(ids) == sorted(p.id for p in problems) and len(ids) == len(set(ids))
    for i in range(2):
        run_search(_config(tmp_path, limit=7, shard=f"{i}/2"), make_generator=lambda c: ScriptedGenerator())
    assert summarize_run(tmp_path / "run")["problems"] == 7
    with pytest.raises(ValueError, match="need 0 <= i < N"):
        shard_problems(problems, "4/4")
    with pytest.raises(ValueError, match="another --shard count than 3"):
        run_search(_config(tmp_path, limit=7, shard="0/3"), make_generator=lambda c: ScriptedGenerator())
    assert summarize_run(tmp_path / "run")["problems"] == 7


def test_offset_skips_the_first_problems(tmp_path):
    from data.problems import load_problems

    run_search(_config(tmp_path, offset=6, limit=3), make_generator=lambda c: ScriptedGenerator())
    ids = [r["problem_id"] for r in read_jsonl(tmp_path / "run" / "trees.jsonl")]
    assert sorted(ids) == sorted(p.id for p in load_problems("synthetic:test", limit=9)[6:])
    scripted = lambda c: ScriptedGenerator()  # noqa: E731
    with pytest.raises(ValueError, match=r"--offset must be 0 or more"):
        run_search(_config(tmp_path, output=str(tmp_path / "bad"), offset=-1), make_generator=scripted)
    with pytest.raises(ValueError, match=r"synthetic:test: no problems to search \(--offset 500, --limit 10\)"):
        run_search(_config(tmp_path, output=str(tmp_path / "past"), offset=500), make_generator=scripted)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "past").exists()
    with pytest.raises(ValueError, match="started with offset=6, not 3"):
        run_search(_config(tmp_path, offset=3, limit=3), make_generator=lambda c: ScriptedGenerator())
    # a run from before --offset existed searched from the first problem: it resumes at 0 only
    saved = tmp_path / "run" / "config.yaml"
    saved.write_text("".join(line for line in saved.read_text().splitlines(keepends=True)
                             if not line.startswith("offset:")))
    with pytest.raises(ValueError, match="started with offset=0, not 6"):
        run_search(_config(tmp_path, offset=6, limit=3), make_generator=lambda c: ScriptedGenerator())


@pytest.mark.parametrize("setting", [dict(simulations=0), dict(children=0), dict(batch_problems=0),
                                     dict(algo="tree-grpo", rounds=0)])
def test_search_settings_below_one_are_refused_before_anything_is_written(tmp_path, setting):
    with pytest.raises(ValueError, match="must be at least 1"):
        run_search(_config(tmp_path, **setting), make_generator=lambda c: ScriptedGenerator())
    assert not (tmp_path / "run").exists()


def test_leaf_valuation_without_a_value_model_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="--value_model"):
        run_search(_config(tmp_path, leaf_value="leaf"), make_generator=lambda c: ScriptedGenerator())
    assert not (tmp_path / "run").exists()


def test_sigkill_mid_run_then_resume_gives_exactly_one_tree_per_problem(tmp_path):
    """Kill a real `reasoner search` (embedded policy) with SIGKILL mid-way, re-run, check the trees file."""
    output = tmp_path / "killed"
    command = [sys.executable, "-m", "reasoner.cli", "--quiet", "search", "--problems", "synthetic:test",
               "--limit", "12", "--batch_problems", "2", "--simulations", "2", "--children", "2",
               "--output", str(output)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    trees_file = output / "trees.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if trees_file.exists() and trees_file.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"search ended before it could be killed: {process.stderr.read().decode()[-800:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = trees_file.read_text().count("\n")
    assert 2 <= before < 12
    # Simulate the worst case too: a kill in the middle of writing a line.
    with open(trees_file, "a") as handle:
        handle.write('{"problem_id": "synthetic-test-011", "nodes": [{"id": 0')
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    trees = list(read_trees(trees_file, skip_incomplete_tail=False))
    ids = [t.problem_id for t in trees]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert json.loads(result.stdout)["problems"] == 12


def test_a_resumed_run_draws_the_trees_an_uninterrupted_run_draws(tmp_path):
    """Each batch reseeds the generator from --seed and its first problem id, so a run stopped after its first
    batch and resumed writes the same trees as one that never stopped (the sampling stream does not restart at
    batch 1's draws)."""
    from reasoner.backends import make_generator
    from reasoner.models import load_policy

    policy = load_policy()
    seeds = []

    def make(config):
        generator = make_generator(policy, "hf", seed=config.seed)
        reseed = generator.reseed
        generator.reseed = lambda seed: seeds.append(seed) or reseed(seed)
        return generator

    settings = dict(limit=4, max_depth=6, batch_problems=2)
    run_search(_config(tmp_path / "whole", **settings), make)
    run_search(_config(tmp_path / "resumed", **{**settings, "limit": 2}), make)  # stopped after one batch
    run_search(_config(tmp_path / "resumed", **settings), make)
    whole, resumed = (list(read_jsonl(tmp_path / name / "run" / "trees.jsonl")) for name in ("whole", "resumed"))
    assert [r["problem_id"] for r in resumed] == [r["problem_id"] for r in whole]
    assert resumed == whole
    assert len(seeds) == 4 and seeds[0] != seeds[1] and seeds[:2] == seeds[2:]  # a stream per batch, redrawn
