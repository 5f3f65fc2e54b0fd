"""The step value model, its trainer, losses, metrics and `reasoner eval-prm`."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data.records import RecordError, write_jsonl
from data.synthetic import load_split, step_is_correct
from prm.evaluate import evaluate_prm
from prm.labels import label_trees
from prm.metrics import best_threshold, first_error_scores, predicted_first_error, roc_auc
from prm.model import ValueModel, encode_steps
from prm.trainer import PRMArgs, load_label_examples, point_loss, rank_loss, train_prm
from reasoner.cli import main
from reasoner.models import encode_prefix, load_policy
from reasoner.steps import get_format
from scripted import ConstantScorer, ScriptedGenerator
from search.mcts import MCTSConfig, run_mcts

FMT = get_format("tiny")
REPO = Path(__file__).resolve().parents[1]


class PrefixOracle:
    """Value 1 while every step so far is arithmetically right, 0 from the first wrong one on."""

    head = "sigmoid"

    def score(self, questions, step_lists):
        out = []
        for steps in step_lists:
            ok, row = True, []
            for step in steps:
                ok = ok and step_is_correct(step)
                row.append(1.0 if ok else 0.0)
            out.append(row)
        return out


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.fixture(scope="module")
def label_files(tmp_path_factory):
    trees = run_mcts(load_split("train", limit=16), ScriptedGenerator(load_split("train", limit=16), p_correct=0.6, seed=1),
                     MCTSConfig(simulations=8, children=3, seed=1))
    out = tmp_path_factory.mktemp("labels")
    for kind in ("mc-labels", "svpo"):
        records, _ = label_trees(trees, kind, FMT)
        write_jsonl(out / f"{kind}.jsonl", records)
    return out


# ------------------------------------------------------------------ metrics and losses, by hand
def test_roc_auc_by_hand_with_ties():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert roc_auc([0.9, 0.1, 0.5], [True, False, True]) == pytest.approx(1.0)
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))


def test_first_error_scores_by_hand():
    assert predicted_first_error([0.9, 0.2, 0.8], 0.5) == 1
    assert predicted_first_error([0.9, 0.8], 0.5) == -1
    values = [[0.9, 0.9], [0.9, 0.1], [0.2, 0.9], [0.9, 0.9, 0.1]]
    truth = [-1, 1, 0, 1]  # correct ok, error ok, error ok, error predicted at 2 (wrong)
    scores = first_error_scores(values, truth, 0.5)
    assert scores["correct_accuracy"] == 1.0 and scores["error_accuracy"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * (2 / 3) / (1 + 2 / 3))


def test_best_threshold_is_none_when_f1_is_undefined():
    """Held-out paths that are all correct (or all wrong) define no first-error F1: no threshold is chosen, so the
    model keeps its head's default (a stored 0.0 would make a sigmoid head flag nothing)."""
    threshold, f1 = best_threshold([[0.9, 0.8], [0.7, 0.95]], [-1, -1])
    assert threshold is None and math.isnan(f1)
    threshold, f1 = best_threshold([[0.9, 0.2], [0.9, 0.9]], [1, -1])
    assert 0.2 <= threshold < 0.9 and f1 == 1.0


def test_point_and_rank_losses_by_hand():
    logits = torch.tensor([0.0, math.atanh(0.5)])
    assert point_loss(logits, torch.tensor([1.0, 0.0]), "tanh").item() == pytest.approx((1.0 + 0.25) / 2)
    bce = -(math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-2.0)))) / 2
    assert point_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]), "sigmoid").item() == pytest.approx(bce)
    # margin 0.1: pairs with gaps 0.5 (no loss) and -0.2 (loss 0.3)
    assert rank_loss(torch.tensor([0.7, 0.1]), torch.tensor([0.2, 0.3]), 0.1).item() == pytest.approx(0.15)
    assert point_loss(torch.tensor([]), torch.tensor([]), "tanh").item() == 0.0
    per_step = point_loss(logits, torch.tensor([1.0, 0.0]), "tanh", reduction="none")  # held-out scoring's form
    assert per_step.tolist() == pytest.approx([1.0, 0.25])
    assert point_loss(torch.tensor([]), torch.tensor([]), "sigmoid", reduction="none").numel() == 0


# ------------------------------------------------------------------ the model
def test_encode_steps_reads_at_delimiters_and_pairs_parse_back(policy):
    tok = policy.tokenizer
    prompt = FMT.prompt("Tom has 3 apples.")
    ids, ends, prompt_length = encode_steps(tok, FMT, prompt, ["3 + 4 = 7", "The answer is 7"])
    newline = tok("\n", add_special_tokens=False)["input_ids"][-1]
    assert len(ends) == 2 and ends[-1] == len(ids) - 1 and all(ids[e] == newline for e in ends)
    assert ids[:prompt_length] == tok(prompt)["input_ids"]
    # a pair's rendered prompt parses back to the question and earlier steps, in every format
    for name in ("tiny", "newline2", "step-dpo"):
        fmt = get_format(name)
        assert fmt.parse(fmt.render("Tom has {3} apples.", ["3 + 4 = 7", "7 - 1 = 6"])) == ("Tom has {3} apples.", ["3 + 4 = 7", "7 - 1 = 6"])
    # after a prompt that ends with an open header ("Step 2:") the step is read as " Tom ...", the way it was written;
    # after the bare template, with its whole header
    fmt = get_format("step-dpo")
    prompt = fmt.render("Q?", ["3 + 4 = 7"])
    ids, ends, _ = encode_steps(tok, fmt, prompt, ["Tom has 7 - 1 = 6", "The answer is 6"], first_index=1)
    assert ids == encode_prefix(tok, prompt + " Tom has 7 - 1 = 6\nStep 3: The answer is 6\n") and len(ends) == 2
    ids, _, _ = encode_steps(tok, fmt, fmt.prompt("Q?"), ["3 + 4 = 7"])
    assert ids == encode_prefix(tok, fmt.prompt("Q?")) + tok("Step 1: 3 + 4 = 7\n", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("features", [False, True])
def test_likelihood_features_start_neutral_and_use_the_lm(policy, features):
    model = ValueModel.from_policy(policy, head="sigmoid", likelihood_features=features)
    plain = ValueModel.from_policy(policy, head="sigmoid")
    plain.value_head.load_state_dict(model.value_head.state_dict())
    problem = load_split("test", limit=1)[0]
    steps = [problem.solution.split("\n")]
    assert model.score([problem.question], steps)[0] == pytest.approx(plain.score([problem.question], steps)[0], abs=1e-6)
    if features:  # a weight on the running-min feature makes a surprising (wrong) step score lower
        with torch.no_grad():
            model.feature_head.weight[0, 1] = 5.0
        wrong = steps[0][:-2] + ["1 + 1 = 7"]
        good, bad = model.score([problem.question] * 2, [steps[0][:-1], wrong])
        assert bad[-1] < good[-1]


def test_scores_have_the_head_range_and_batching_changes_nothing(policy):
    problems = load_split("test", limit=6)
    questions = [p.question for p in problems]
    steps = [p.solution.split("\n")[: 1 + i % 4] for i, p in enumerate(problems)]
    for head, low in (("tanh", -1.0), ("sigmoid", 0.0)):
        model = ValueModel.from_policy(policy, head=head)
        batched = model.score(questions, steps)
        single = [model.score([q], [s])[0] for q, s in zip(questions, steps)]
        assert [len(row) for row in batched] == [len(s) for s in steps]
        assert all(low <= v <= 1.0 for row in batched for v in row)
        for a, b in zip(batched, single):
            assert a == pytest.approx(b, abs=1e-5)


def test_value_model_scores_on_a_bf16_backbone_and_loads_in_the_dtype_asked(tmp_path):
    """A GPU loads policies in bf16: the heads (fp32 when built) must take the backbone's hidden states, and a
    saved model must load back in one dtype throughout."""
    problem = load_split("test", limit=1)[0]
    steps = [problem.solution.split("\n")]
    model = ValueModel.from_policy(load_policy(dtype="bf16"), head="sigmoid", likelihood_features=True)
    assert len(model.score([problem.question], steps)[0]) == len(steps[0])
    model.save_pretrained(tmp_path / "bf16")
    for dtype, expected in ((None, torch.float32), ("bf16", torch.bfloat16)):
        loaded = ValueModel.from_pretrained(tmp_path / "bf16", dtype=dtype)
        assert {p.dtype for p in loaded.parameters()} == {expected}
        assert len(loaded.score([problem.question], steps)[0]) == len(steps[0])


def test_saved_model_loads_in_a_fresh_process_and_scores_identically(policy, tmp_path):
    model = ValueModel.from_policy(policy, head="tanh")
    with torch.no_grad():
        model.value_head.weight.normal_(std=0.05)  # not the init: the weights must really round-trip
    model.save_pretrained(tmp_path / "vm")
    problems = load_split("test", limit=3)
    questions = [p.question for p in problems]
    steps = [p.solution.split("\n") for p in problems]
    expected = model.score(questions, steps)
    script = ("import json, sys; from prm.model import ValueModel; "
              "m = ValueModel.from_pretrained(sys.argv[1]); a = json.loads(sys.argv[2]); "
              "print(json.dumps(m.score(a['q'], a['s'])))")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "vm"), json.dumps({"q": questions, "s": steps})],
                         capture_output=True, text=True, cwd=REPO, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    flat = lambda rows: [v for row in rows for v in row]
    assert [len(r) for r in loaded] == [len(r) for r in expected]
    assert flat(loaded) == pytest.approx(flat(expected), abs=1e-6)
    assert len(set(flat(expected))) > 3  # not saturated: the comparison means something


def test_weights_held_in_one_flat_buffer_save_and_load_back(policy, tmp_path):
    """DeepSpeed ZeRO-1/2 turns every parameter into a view of one flat buffer, which safetensors' own
    ``save_model`` refuses to write; `save_pretrained` stores standalone copies, tied embeddings once."""
    model = ValueModel.from_policy(policy, head="sigmoid")
    with torch.no_grad():
        model.value_head.weight.normal_(std=0.05)
    parameters = list(model.parameters())  # tied embeddings appear once here
    flat = torch.cat([p.detach().reshape(-1) for p in parameters])
    offset = 0
    for parameter in parameters:
        parameter.data = flat[offset:offset + parameter.numel()].view_as(parameter)
        offset += parameter.numel()
    assert model.lm.lm_head.weight.data_ptr() == model.lm.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path / "vm")
    reloaded = ValueModel.from_pretrained(tmp_path / "vm")
    problem = load_split("test", limit=1)[0]
    steps = [problem.solution.split("\n")]
    assert reloaded.score([problem.question], steps)[0] == pytest.approx(model.score([problem.question], steps)[0], abs=1e-6)
    assert reloaded.lm.lm_head.weight is reloaded.lm.model.embed_tokens.weight  # still tied after loading


def test_loading_a_non_value_model_dir_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a value model directory"):
        ValueModel.from_pretrained(tmp_path)


# ------------------------------------------------------------------ training
def test_label_loader_targets_and_errors(label_files, tmp_path):
    soft = load_label_examples(label_files / "mc-labels.jsonl", target="soft", head="tanh", max_paths_per_problem=4)
    hard = load_label_examples(label_files / "mc-labels.jsonl", target="hard", head="sigmoid", max_paths_per_problem=None)
    assert all(len(paths) <= 4 for paths in soft.values())
    assert all(-1.0 <= t <= 1.0 for paths in soft.values() for p in paths for t in p["targets"])
    assert {t for paths in hard.values() for p in paths for t in p["targets"]} <= {0.0, 1.0}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "completions": ["a"], "labels": [true]}\n{"prompt": "q", "completions": ["a"]}\n')
    with pytest.raises(RecordError, match=r"bad\.jsonl:2.*labels"):
        load_label_examples(bad, target="soft", head="tanh", max_paths_per_problem=None)
    bad.write_text('{"prompt": "q", "completions": ["a", "b"], "labels": [true]}\n')
    with pytest.raises(RecordError, match=r"bad\.jsonl:1"):
        load_label_examples(bad, target="soft", head="tanh", max_paths_per_problem=None)


def test_train_prm_lowers_the_loss_and_saves_loadable_checkpoints(label_files, tmp_path):
    args = PRMArgs(data=str(label_files / "mc-labels.jsonl"), pairs=str(label_files / "svpo.jsonl"), rank_weight=0.5,
                   output=str(tmp_path / "prm"), max_steps=12, batch_size=8, learning_rate=1e-3, warmup_steps=0,
                   logging_steps=4, save_steps=6, eval_steps=6, eval_fraction=0.25)
    model, trainer = train_prm(args)
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert history[-1]["loss"] < history[0]["loss"]
    assert any("rank_loss" in h for h in history)
    assert any("eval_step_auc" in h for h in trainer.state.log_history)
    assert any("calibrated_threshold" in h for h in trainer.state.log_history) and model.threshold is not None
    reloaded = ValueModel.from_pretrained(tmp_path / "prm")
    checkpoint = ValueModel.from_pretrained(tmp_path / "prm" / "checkpoint-12")
    problem = load_split("train", limit=1)[0]
    steps = [problem.solution.split("\n")]
    expected = model.score([problem.question], steps)[0]
    assert reloaded.score([problem.question], steps)[0] == pytest.approx(expected, abs=1e-6)
    assert checkpoint.score([problem.question], steps)[0] == pytest.approx(expected, abs=1e-6)
    assert reloaded.threshold == pytest.approx(model.threshold)
    # resuming from the last checkpoint continues the step count
    args.max_steps, args.resume = 14, True
    _, resumed = train_prm(args)
    assert resumed.state.global_step == 14


def test_train_prm_is_reproducible_from_its_seed(label_files, tmp_path):
    """Same data and seed give the same weights: the value head's random init is seeded too, not only training."""
    weights = []
    for run in ("a", "b"):
        torch.manual_seed(ord(run))  # whatever ran before leaves the global RNG elsewhere
        args = PRMArgs(data=str(label_files / "mc-labels.jsonl"), output=str(tmp_path / run), max_steps=2,
                       batch_size=8, warmup_steps=0, save_steps=100, eval_fraction=0.0, seed=3)
        model, _ = train_prm(args)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_train_prm_cli_reports_a_bad_label_file(tmp_path, capsys):
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"prompt": "q", "completions": ["a"], "labels": [true]}\n{"prompt": "q", "compl')
    code = main(["train-prm", "--data", str(bad), "--output", str(tmp_path / "out"), "--max_steps", "1"])
    assert code == 2
    assert "labels.jsonl:2" in capsys.readouterr().err


# ------------------------------------------------------------------ evaluation
def test_eval_prm_oracle_is_perfect_and_constant_is_chance():
    perfect = evaluate_prm(PrefixOracle(), "synthetic:test", limit=40)
    assert perfect["step_auc"] == 1.0 and perfect["first_error_f1"] == 1.0
    assert perfect["solutions"] == 80 and perfect["solution_auc_min"] == 1.0
    flat = evaluate_prm(ConstantScorer(0.7), "synthetic:test", limit=40)
    assert flat["step_auc"] == 0.5 and flat["correct_accuracy"] == 1.0 and flat["error_accuracy"] == 0.0
    with pytest.raises(ValueError, match="known first error"):
        evaluate_prm(PrefixOracle(), "gsm8k:test", limit=2)


def test_eval_prm_cli_on_a_saved_model(policy, tmp_path, capsys):
    ValueModel.from_policy(policy, head="sigmoid").save_pretrained(tmp_path / "vm")
    assert main(["eval-prm", str(tmp_path / "vm"), "--limit", "10", "--output", str(tmp_path / "m.json")]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["solutions"] == 20 and 0.0 <= result["step_auc"] <= 1.0 and result["threshold"] == 0.5


def test_step_rewards_from_a_value_model(policy, tmp_path, capsys):
    problems = load_split("test", limit=4)
    trees = run_mcts(problems, ScriptedGenerator(problems, p_correct=0.6, seed=3), MCTSConfig(simulations=6, children=3))
    model = ValueModel.from_policy(policy, head="tanh")
    records, _ = label_trees(trees, "step-rewards", FMT, scorer=model)
    record = records[0]
    steps = [FMT.split(response) for response in record["responses"]]
    expected = [[min(max((v + 1) / 2, 0.01), 0.99) for v in row] for row in model.score([problems[0].question] * len(steps), steps)]
    for got, want in zip(record["step_rewards"], expected):
        assert got == pytest.approx(want, abs=1e-6)


def test_policy_likelihood_scorer_is_a_strong_training_free_baseline(policy, capsys):
    from prm.likelihood import PolicyLikelihoodScorer

    scorer = PolicyLikelihoodScorer(policy)
    result = evaluate_prm(scorer, "synthetic:test", limit=40, progress=False)
    assert result["step_auc"] > 0.85  # the tiny policy knows its arithmetic better than it writes it
    values = scorer.score([load_split("test", limit=1)[0].question], [load_split("test", limit=1)[0].solution.split("\n")])[0]
    assert all(0.0 < v <= 1.0 for v in values) and values == sorted(values, reverse=True)  # a running minimum
    assert main(["eval-prm", "embedded", "--policy-likelihood", "--limit", "5"]) == 0
    assert '"scorer": "policy-likelihood"' in capsys.readouterr().out


def test_undefined_held_out_metrics_are_logged_as_null(label_files, tmp_path):
    """Held-out paths that are all correct leave the AUC, threshold and F1 undefined: the trainer logs them as
    None, so ``trainer_state.json`` stays strict JSON (a bare NaN is not), and the head keeps its threshold."""
    records = [json.loads(line) for line in (label_files / "mc-labels.jsonl").read_text().splitlines()]
    all_correct = tmp_path / "all-correct.jsonl"
    all_correct.write_text("".join(json.dumps({**r, "labels": [True] * len(r["labels"])}) + "\n" for r in records))
    args = PRMArgs(data=str(all_correct), output=str(tmp_path / "prm"), max_steps=2, batch_size=8, warmup_steps=0,
                   logging_steps=1, save_steps=2, eval_steps=2, eval_fraction=0.25)
    model, _ = train_prm(args)
    assert model.threshold is None  # nothing to calibrate on: the head keeps its default

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    state = json.loads((tmp_path / "prm" / "checkpoint-2" / "trainer_state.json").read_text(), parse_constant=refuse)
    evals = [h for h in state["log_history"] if "eval_step_auc" in h]
    assert evals and evals[-1]["eval_step_auc"] is None and evals[-1]["eval_threshold"] is None
    assert all(isinstance(h["loss"], float) for h in state["log_history"] if "loss" in h)
