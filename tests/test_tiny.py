"""The embedded models: the weak tiny policy and its better-trained sibling, the value model's backbone."""

import json
from pathlib import Path

import pytest

from data.synthetic import load_split
from reasoner.models import EMBEDDED_POLICY, EMBEDDED_VERIFIER, load_policy
from reasoner.tiny import TinyBuildArgs, TinyVerifierArgs, build_tiny_policy, build_tiny_verifier, policy_accuracy

ASSETS = EMBEDDED_POLICY.parent


def test_assets_stay_under_20_mb():
    total = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    assert total < 20e6


def test_embedded_verifier_loads_by_name_and_knows_the_task_better_than_the_policy():
    verifier, policy = load_policy("embedded-verifier"), load_policy()
    assert verifier.name == "embedded-verifier" and policy.name == "embedded"
    assert verifier.step_format == policy.step_format
    problems = load_split("test")[:64]
    strong = policy_accuracy(verifier.model, verifier.tokenizer, problems)["greedy"]
    weak = policy_accuracy(policy.model, policy.tokenizer, problems)["greedy"]
    assert strong >= weak + 0.25, (strong, weak)
    record = json.loads((EMBEDDED_VERIFIER / "build.json").read_text())
    assert record["command"].startswith("reasoner build-tiny-verifier") and record["greedy"] >= 0.8


def test_build_tiny_verifier_writes_a_loadable_model_and_its_record(tmp_path: Path):
    out = tmp_path / "verifier"
    record = build_tiny_verifier(TinyVerifierArgs(output=str(out), steps=2, batch_size=8, eval_problems=4))
    assert json.loads((out / "build.json").read_text()) == record
    assert record["started_from"] == "embedded" and len(record["started_from_sha256"]) == 64
    assert 0.0 <= record["greedy"] <= 1.0
    assert record["command"] == (f"reasoner build-tiny-verifier --output {out} --seed 0 --steps 2 --batch_size 8 "
                                 "--eval_problems 4")
    assert load_policy(str(out)).step_format.name == "tiny"
    assert not (tmp_path / "verifier-checkpoints").exists()


def test_a_missing_embedded_model_names_its_build_command(monkeypatch, tmp_path):
    import reasoner.models as models

    monkeypatch.setitem(models.EMBEDDED_MODELS, "embedded-verifier", (tmp_path / "absent", "build-tiny-verifier"))
    with pytest.raises(FileNotFoundError, match="reasoner build-tiny-verifier"):
        load_policy("embedded-verifier")


def test_weight_average_follows_the_warmed_up_ema_formula():
    import torch

    from reasoner.tiny import WeightAverage

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = WeightAverage(model, decay=0.99)
    expected = 1.0
    for step, value in enumerate([3.0, -2.0, 5.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model, step)
        decay = min(0.99, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * value
    assert torch.allclose(average.model.weight, torch.full((1, 2), expected))
    assert not average.model.weight.requires_grad and model.weight.requires_grad


def test_build_tiny_policy_keeps_checkpoints_then_ships_the_best_pass_at_k_in_the_window(tmp_path: Path):
    out = tmp_path / "policy"
    args = TinyBuildArgs(output=str(out), hidden_size=32, layers=1, heads=2, intermediate_size=64, batch_size=8,
                         max_steps=6, eval_every=2, fine_eval_every=2, eval_problems=4, test_problems=6,
                         keep_from_greedy=0.0, min_greedy=0.0, max_greedy=1.0, candidates=2, pass_k=2, min_pass=0.0,
                         ema_decay=0.9)
    record = build_tiny_policy(args)
    assert json.loads((out / "build.json").read_text()) == record
    assert [h["step"] for h in record["history"]] == [2, 4, 6]
    assert [r["step"] for r in record["test_greedy"]] == [2, 4, 6]
    assert len(record["test_pass"]) == 2 and all("pass@2" in r for r in record["test_pass"])
    best = max(r["pass@2"] for r in record["test_pass"])
    assert record["chosen"] in record["test_pass"] and record["chosen"]["pass@2"] == best and record["met_targets"]
    assert "--ema_decay 0.9" in record["command"] and record["command"].startswith("reasoner build-tiny-policy")
    assert load_policy(str(out)).step_format.name == "tiny"
    assert not (tmp_path / "tiny-policy-candidates").exists() and not (tmp_path / "tiny-policy-checkpoints").exists()


def test_build_tiny_policy_names_the_window_when_no_checkpoint_is_in_it(tmp_path: Path):
    args = TinyBuildArgs(output=str(tmp_path / "policy"), hidden_size=32, layers=1, heads=2, intermediate_size=64,
                         batch_size=8, max_steps=2, eval_every=2, eval_problems=4, test_problems=4,
                         keep_from_greedy=0.0, min_greedy=0.9, max_greedy=1.0)
    with pytest.raises(RuntimeError, match=r"\[0.9, 1.0\]"):
        build_tiny_policy(args)
    assert not (tmp_path / "policy").exists() and not (tmp_path / "tiny-policy-candidates").exists()
