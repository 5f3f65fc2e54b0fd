"""Prefix-shared pair batches equal the unshared computation; the preference trainers run and save."""

import json

import pytest
import torch

from data.records import RecordError, write_jsonl
from data.synthetic import load_split
from eval.bench_train import synthetic_step_pairs
from prm.labels import label_trees
from prm.model import ValueModel
from reasoner.cli import main
from reasoner.models import load_policy
from reasoner.steps import get_format
from reasoner.trainers.pairs import collate_shared, collate_unshared, group_pairs, pair_logps, tokenize_pair
from reasoner.trainers.preference import PreferenceArgs, load_pairs, train_preference
from scripted import ScriptedGenerator
from search.mcts import MCTSConfig, run_mcts

FMT = get_format("tiny")


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    problems = load_split("train", limit=12)
    trees = run_mcts(problems, ScriptedGenerator(problems, p_correct=0.6, seed=4), MCTSConfig(simulations=8, children=3, seed=4))
    out = tmp_path_factory.mktemp("pairs")
    for kind in ("step-dpo", "svpo", "step-apo", "mcts-dpo"):
        records, _ = label_trees(trees, kind, FMT)
        assert records, kind
        write_jsonl(out / f"{kind}.jsonl", records)
    return out


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_shared_layouts_equal_unshared_logps_and_gradients():
    policy = load_policy()
    model = policy.model.float().train()
    records = synthetic_step_pairs(5, 3, FMT) + synthetic_step_pairs(3, 1, FMT)  # groups of 3 and single pairs
    tokenized = [tokenize_pair(policy.tokenizer, FMT, r["prompt"], r["chosen"], r["rejected"]) for r in records]
    groups = group_pairs(tokenized)
    assert sorted(len(g["pairs"]) for g in groups) == [1, 1, 1, 3, 3, 3, 3, 3]
    singles = group_pairs(tokenized, by_prompt=False)
    assert len(singles) == len(records)
    results = []
    for layout, chosen_groups in ((collate_unshared, groups), (collate_shared, groups), (collate_shared, singles)):
        model.zero_grad()
        batch = layout(chosen_groups, policy.tokenizer.pad_token_id)
        chosen, rejected = pair_logps(model, batch)
        order = [m for g in chosen_groups for m in g["members"]]
        chosen, rejected = chosen[torch.argsort(torch.tensor(order))], rejected[torch.argsort(torch.tensor(order))]
        (chosen.sum() - 0.7 * rejected.sum()).backward()
        results.append((chosen.detach(), rejected.detach(), _grads(model)))
    reference = results[0]
    for chosen, rejected, grads in results[1:]:
        assert torch.allclose(chosen, reference[0], atol=1e-5) and torch.allclose(rejected, reference[1], atol=1e-5)
        assert (grads - reference[2]).abs().max() <= 1e-5 * reference[2].abs().max()
    shared_tokens = collate_shared(groups, 0).input_ids.numel()
    assert shared_tokens < collate_unshared(groups, 0).input_ids.numel() / 2


@pytest.mark.parametrize("algo", ["step-dpo", "step-apo", "svpo", "mcts-dpo"])
def test_each_algorithm_trains_and_logs(algo, pair_files, tmp_path):
    policy = load_policy()
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    args = PreferenceArgs(algo=algo, data=str(pair_files / f"{algo}.jsonl"), output=str(tmp_path / algo), max_steps=3,
                          batch_size=4, logging_steps=1, learning_rate=1e-3, warmup_steps=0, save_steps=100)
    model, trainer = train_preference(policy, load_pairs(args.data), args)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all("rewards_accuracy" in h and "rewards_margin" in h for h in logs)
    assert logs[0]["rewards_margin"] == pytest.approx(0.0, abs=1e-4)  # the reference is the starting policy
    if algo == "svpo":
        assert all("value_mse" in h for h in logs)
    if algo == "mcts-dpo":  # conservative ε from each pair's visit counts
        assert all(0.0 <= h["label_smoothing"] <= 0.5 for h in logs)
    after = policy.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("algo, reference", [("step-dpo", "precomputed"), ("step-dpo", "model"), ("svpo", "precomputed")])
def test_in_mixed_precision_the_reference_runs_in_the_policys_autocast(algo, reference, pair_files, tmp_path, monkeypatch):
    """On a GPU training runs fp32 weights under bf16 autocast (`mixed_precision`); the reference forwards, which
    the Trainer does not wrap, and SVPO's call of the inner policy must run in the same autocast, or the untrained
    policy's log-ratio to its own reference is not 0. Emulated here with CPU bf16 autocast (the Trainer's
    ``bf16=True`` on CPU)."""
    import reasoner.trainers.common as common

    monkeypatch.setattr(common, "mixed_precision", lambda device=None: True)
    # One batch of every group, as the reference pass batches them (32 groups a call): in bf16 a row's log-probs
    # move with the batch's padded length (up to 0.25 nats on these pairs), which would swamp what this checks.
    args = PreferenceArgs(algo=algo, data=str(pair_files / f"{algo}.jsonl"), output=str(tmp_path / algo), max_steps=1,
                          batch_size=32, logging_steps=1, learning_rate=1e-3, warmup_steps=0, save_steps=100,
                          reference=reference)
    _, trainer = train_preference(load_policy(), load_pairs(args.data), args)
    assert trainer.args.bf16
    first = next(h for h in trainer.state.log_history if "loss" in h)
    # bf16 leaves ~1e-4 between two code paths of one model (SVPO reads hidden states); the reference in fp32 against
    # the policy in bf16 gave 1.4e-3 here
    assert first["rewards_margin"] == pytest.approx(0.0, abs=3e-4)


@pytest.mark.parametrize("device, problem", [("cuda:1", "CUDA_VISIBLE_DEVICES=1 and --device cuda"),
                                             ("gpu", "not a torch device")])
def test_a_training_device_the_trainer_would_not_honour_is_refused_before_loading(device, problem, capsys):
    """A single Trainer process trains on cuda:0: ``--device cuda:1`` would load on GPU 1 and train on GPU 0."""
    from reasoner.cli import main

    with pytest.raises(ValueError, match=problem):
        PreferenceArgs(algo="step-dpo", data="pairs.jsonl", device=device)
    assert main(["train", "step-dpo", "--data", "missing.jsonl", "--device", device]) != 0
    error = capsys.readouterr().err
    assert problem in error and "no such file" not in error  # refused on the flag, before the data is read
    for fine in (None, "auto", "cpu", "cuda", "cuda:0"):
        PreferenceArgs(algo="step-dpo", data="pairs.jsonl", device=fine)


def test_precision_fp32_turns_the_gpus_bf16_autocast_off(tmp_path, monkeypatch):
    import reasoner.trainers.common as common

    monkeypatch.setattr(common, "mixed_precision", lambda device=None: True)  # a bf16 GPU
    make = lambda **kw: PreferenceArgs(algo="step-dpo", data="pairs.jsonl", output=str(tmp_path), **kw)  # noqa: E731
    assert common.training_arguments(make()).bf16 and not common.training_arguments(make(precision="fp32")).bf16
    with pytest.raises(ValueError, match="--precision fp16: use one of auto, fp32"):
        make(precision="fp16")


def test_several_visible_gpus_without_a_launcher_train_on_one(tmp_path, capsys):
    """No torch.nn.DataParallel: it would split only plain tensors of our packed batches. Simulated by the GPU count
    TrainingArguments found (the CPU here has none)."""
    from reasoner.trainers.common import one_gpu_per_process, training_arguments

    args = training_arguments(PreferenceArgs(algo="step-dpo", data="pairs.jsonl", output=str(tmp_path), batch_size=4))
    assert args.n_gpu == 0 and one_gpu_per_process(args).n_gpu == 0
    args._n_gpu = 4
    assert args.train_batch_size == 16
    one_gpu_per_process(args)
    assert args.n_gpu == 1 and args.train_batch_size == 4 and "torchrun" in capsys.readouterr().err


def test_frozen_reference_model_matches_precomputed(pair_files, tmp_path):
    losses = []
    for reference in ("precomputed", "model"):
        policy = load_policy()
        args = PreferenceArgs(data=str(pair_files / "step-dpo.jsonl"), output=str(tmp_path / reference), max_steps=2,
                              batch_size=4, logging_steps=1, learning_rate=1e-3, warmup_steps=0, reference=reference,
                              save_steps=100)
        _, trainer = train_preference(policy, load_pairs(args.data), args)
        losses.append([h["loss"] for h in trainer.state.log_history if "loss" in h])
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


def test_a_reference_policy_other_than_the_start_is_used_either_way(pair_files, tmp_path, capsys):
    """--ref_model: the reference log-probs come from that model, precomputed or as a frozen copy; at the first
    step the policy then differs from its reference, so the loss is not DPO's log 2."""
    first = {}
    for reference in ("precomputed", "model"):
        args = PreferenceArgs(data=str(pair_files / "step-dpo.jsonl"), output=str(tmp_path / reference), max_steps=1,
                              batch_size=4, logging_steps=1, learning_rate=0.0, warmup_steps=0, reference=reference,
                              save_steps=100)
        verifier = load_policy("embedded-verifier").model
        _, trainer = train_preference(load_policy(), load_pairs(args.data), args, reference=verifier)
        first[reference] = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    assert first["precomputed"] == pytest.approx(first["model"], abs=1e-4)
    assert abs(first["model"] - 0.6931) > 0.01
    out = tmp_path / "cli"
    assert main(["--quiet", "train", "step-dpo", "--data", str(pair_files / "step-dpo.jsonl"), "--max_steps", "1",
                 "--ref_model", "embedded-verifier", "--output", str(out)]) == 0
    assert "ref_model: embedded-verifier" in (out / "config.yaml").read_text()


def test_svpo_is_reproducible_from_its_seed(pair_files, tmp_path):
    """SVPO's value head is built before Trainer seeds; the run still gives the same weights twice."""
    weights = []
    for run in ("a", "b"):
        torch.manual_seed(ord(run))  # whatever ran before leaves the global RNG elsewhere
        args = PreferenceArgs(algo="svpo", data=str(pair_files / "svpo.jsonl"), output=str(tmp_path / run),
                              max_steps=2, batch_size=4, learning_rate=1e-3, warmup_steps=0, save_steps=100, seed=3)
        model, _ = train_preference(load_policy(), load_pairs(args.data), args)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_cli_trains_svpo_and_saves_policy_and_value_model(pair_files, tmp_path):
    out = tmp_path / "svpo"
    code = main(["train", "svpo", "--data", str(pair_files / "svpo.jsonl"), "--output", str(out), "--max_steps", "2",
                 "--batch_size", "4", "--save_steps", "1"])
    assert code == 0
    reloaded = load_policy(str(out))
    assert reloaded.step_format.name == "tiny"
    value = ValueModel.from_pretrained(out / "value-model")
    problem = load_split("test", limit=1)[0]
    assert len(value.score([problem.question], [problem.solution.split("\n")])[0]) == len(problem.solution.split("\n"))
    # resuming from the last checkpoint works for the policy + value head module
    assert main(["train", "svpo", "--data", str(pair_files / "svpo.jsonl"), "--output", str(out), "--max_steps", "3",
                 "--batch_size", "4", "--save_steps", "1", "--resume", "true"]) == 0
    # ... but not with other hyperparameters or data, and the refused run leaves the folder's config.yaml alone
    config = (out / "config.yaml").read_text()
    assert main(["train", "svpo", "--data", str(pair_files / "svpo.jsonl"), "--output", str(out), "--max_steps", "3",
                 "--batch_size", "4", "--save_steps", "1", "--resume", "true", "--beta", "0.9"]) == 2
    assert main(["train", "step-dpo", "--data", str(pair_files / "step-dpo.jsonl"), "--output", str(out)]) == 2
    assert (out / "config.yaml").read_text() == config


def test_bad_pairs_file_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(RecordError, match=r"pairs\.jsonl:2"):
        load_pairs(str(bad))
    assert main(["train", "step-dpo", "--data", str(bad), "--output", str(tmp_path / "o")]) == 2
    assert "pairs.jsonl:2" in capsys.readouterr().err
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "q_chosen": "high"}) + "\n")
    with pytest.raises(RecordError, match=r"pairs\.jsonl:1: field 'q_chosen' must be a number, got \"high\""):
        load_pairs(str(bad))
    # Step-APO and SVPO read Q values: pairs without them (Step-DPO's kind, say) are refused, not read as ±1
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    assert len(load_pairs(str(bad), algo="step-dpo")) == 1
    with pytest.raises(RecordError, match=r"pairs\.jsonl:1: missing field 'q_chosen'"):
        load_pairs(str(bad), algo="step-apo")
    with pytest.raises(ValueError, match="pair 1 has no q_chosen / q_rejected, which svpo reads"):
        train_preference(load_policy(), load_pairs(str(bad)), PreferenceArgs(algo="svpo", output=str(tmp_path / "s")))


def test_mcts_dpo_reads_visit_counts_unless_told_not_to(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "q_chosen": 1, "q_rejected": -1}) + "\n")
    with pytest.raises(RecordError, match=r"pairs\.jsonl:1: missing field 'n_chosen'"):
        load_pairs(str(bad), algo="mcts-dpo")
    assert len(load_pairs(str(bad), algo="mcts-dpo", visit_smoothing=False)) == 1
    with pytest.raises(ValueError, match="pair 1 has no n_chosen / n_rejected, which mcts-dpo reads"):
        train_preference(load_policy(), load_pairs(str(bad)), PreferenceArgs(algo="mcts-dpo", output=str(tmp_path / "m")))
    with pytest.raises(ValueError, match="--visit_smoothing false"):
        train_preference(load_policy(), load_pairs(str(bad)), PreferenceArgs(algo="mcts-dpo", label_smoothing=0.1,
                                                                              output=str(tmp_path / "m")))


def test_beta_defaults_to_each_methods_own():
    from reasoner.trainers.preference import DEFAULT_BETA, resolve_beta

    assert [resolve_beta(PreferenceArgs(algo=a)).beta for a in ("step-dpo", "step-apo", "full-step-dpo")] == [0.05, 0.3, 0.05]
    assert resolve_beta(PreferenceArgs(algo="step-apo", beta=0.7)).beta == 0.7 and set(DEFAULT_BETA) >= {"svpo", "mcts-dpo"}


def test_bench_train_reports_all_layouts_on_the_same_pairs():
    from eval.bench_train import run_bench

    report = run_bench(prompts=6, rejected_per_prompt=3, batch_size=3, steps=2)
    assert report["steps"] == 2 and report["pairs_per_step"] > 3
    for layout in ("unshared", "pair_packed", "shared"):
        assert report[layout]["steps_per_s"] > 0
    assert report["shared"]["tokens_per_step"] < report["pair_packed"]["tokens_per_step"] < report["unshared"]["tokens_per_step"]
    assert report["prefix_sharing_speedup"] > 0 and report["pair_packing_speedup"] > 0


def test_full_step_dpo_trains_on_step_rewards(tmp_path):
    from reasoner.trainers.full_step import load_step_rewards

    problems = load_split("train", limit=6)
    trees = run_mcts(problems, ScriptedGenerator(problems, p_correct=0.6, seed=5), MCTSConfig(simulations=8, children=3, seed=5))
    records, _ = label_trees(trees, "step-rewards", FMT)
    write_jsonl(tmp_path / "rewards.jsonl", records)
    policy = load_policy()
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    args = PreferenceArgs(algo="full-step-dpo", data=str(tmp_path / "rewards.jsonl"), output=str(tmp_path / "fsdpo"),
                          max_steps=2, batch_size=2, logging_steps=1, learning_rate=1e-3, warmup_steps=0, save_steps=100)
    _, trainer = train_preference(policy, load_step_rewards(args.data), args)
    assert len([h for h in trainer.state.log_history if "loss" in h]) == 2
    assert any(not torch.equal(before[k], v) for k, v in policy.model.state_dict().items())
    bad = dict(records[0], step_rewards=records[0]["step_rewards"][:-1])
    write_jsonl(tmp_path / "bad.jsonl", [records[0], bad])
    with pytest.raises(RecordError, match=r"bad\.jsonl:2"):
        train_preference(load_policy(), load_step_rewards(str(tmp_path / "bad.jsonl")),
                         PreferenceArgs(algo="full-step-dpo", data=str(tmp_path / "bad.jsonl"), output=str(tmp_path / "x")))


def test_tree_grpo_trains_online_with_a_sampler(tmp_path):
    from reasoner.trainers.tree_grpo import TreeGRPOArgs, train_tree_grpo
    from search.tree_grpo import TreeGRPOConfig, grpo_leaves, run_tree_grpo

    problems = load_split("train", limit=8)
    scripted = ScriptedGenerator(problems, p_correct=0.8, seed=6)
    calls = []

    def sample(batch, generator, step):  # the scripted generator stands in for the policy's samples
        calls.append(step)
        trees = run_tree_grpo(batch, scripted, TreeGRPOConfig(seed=step))
        return [dict(leaf, prompt=i) for i, tree in enumerate(trees) for leaf in grpo_leaves(tree)]

    policy = load_policy()
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    args = TreeGRPOArgs(output=str(tmp_path / "tg"), max_steps=2, batch_size=4, logging_steps=1, learning_rate=1e-3)
    trainer = train_tree_grpo(policy, problems, args, sample)
    assert calls == [0, 1]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all("reward" in h for h in logs) and any("kl" in h for h in logs)
    assert all(h["entropy"] > 0 for h in logs if "entropy" in h) and any("entropy" in h for h in logs)
    assert any(not torch.equal(before[k], v) for k, v in policy.model.state_dict().items())


def test_cli_tree_grpo_with_the_embedded_policy(tmp_path):
    out = tmp_path / "tg"
    assert main(["--quiet", "train", "tree-grpo", "--limit", "4", "--batch_size", "2", "--max_steps", "1",
                 "--output", str(out)]) == 0
    assert load_policy(str(out)).step_format.name == "tiny" and not list(out.glob("*.bin"))


def test_online_mcts_dpo_trains_on_pairs_from_fresh_trees(tmp_path):
    from prm.labels import label_trees
    from reasoner.trainers.online_dpo import OnlineDPOArgs, train_online_dpo
    from search.mcts import MCTSConfig, run_mcts

    problems = load_split("train", limit=8)
    scripted = ScriptedGenerator(problems, p_correct=0.6, seed=4)
    policy = load_policy()
    calls = []

    def sample(batch, generator, step):  # the scripted generator stands in for the policy's samples
        calls.append((step, len(batch)))
        trees = run_mcts(batch, scripted, MCTSConfig(simulations=6, children=2, seed=step))
        return label_trees(trees, "mcts-dpo", policy.step_format, seed=step, max_pairs=2)[0]

    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    args = OnlineDPOArgs(output=str(tmp_path / "od"), max_steps=2, batch_size=4, logging_steps=1, learning_rate=1e-3)
    trainer = train_online_dpo(policy, problems, args, sample)
    assert calls == [(0, 4), (1, 4)]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(0 < h["pairs"] <= 4 * 2 for h in logs)
    assert all(0 <= h["label_smoothing"] <= 0.5 for h in logs)  # MCTS-DPO's visit smoothing is on
    assert any(not torch.equal(before[k], v) for k, v in policy.model.state_dict().items())
    with pytest.raises(ValueError, match="--visit_smoothing false"):
        train_online_dpo(load_policy(), problems, OnlineDPOArgs(output=str(tmp_path / "x"), label_smoothing=0.1), sample)


def test_cli_mcts_dpo_online_with_the_embedded_policy(tmp_path, monkeypatch):
    import search.mcts

    searched = []
    run_mcts = search.mcts.run_mcts
    monkeypatch.setattr(search.mcts, "run_mcts", lambda *a, **k: searched.append(run_mcts(*a, **k)) or searched[-1])
    out = tmp_path / "od"
    assert main(["--quiet", "train", "mcts-dpo-online", "--limit", "2", "--batch_size", "2", "--max_steps", "1",
                 "--simulations", "3", "--commit_simulations", "2", "--output", str(out)]) == 0
    assert load_policy(str(out)).step_format.name == "tiny" and not list(out.glob("*.bin"))
    assert "commit_simulations: 2" in (out / "config.yaml").read_text()
    assert searched and all(tree.config["commit_simulations"] == 2 and "committed" in tree.config
                            for trees in searched for tree in trees)
