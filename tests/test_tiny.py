"""The embedded models: the weak tiny policy and its better-trained sibling, the value model's backbone."""

import json
from pathlib import Path

import pytest

from data.synthetic import load_split
from reasoner.models import EMBEDDED_POLICY, EMBEDDED_VERIFIER, load_policy
from reasoner.tiny import TinyVerifierArgs, build_tiny_verifier, policy_accuracy

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
