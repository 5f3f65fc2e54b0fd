"""The `reasoner` command line: commands that work now, and errors a user can act on."""

import json
import subprocess
import sys

import pytest

from conftest import needs_shared_data
from data.problems import load_problems
from reasoner.cli import main


def test_data_show_synthetic(capsys):
    assert main(["data", "show", "synthetic:test", "--limit", "2", "--solutions"]) == 0
    out = capsys.readouterr().out
    assert "synthetic-test-000" in out and "The answer is" in out and "2 problem(s)" in out


@needs_shared_data
def test_data_export_gsm8k(tmp_path, capsys):
    out = tmp_path / "gsm8k.jsonl"
    assert main(["data", "export", "gsm8k:test", str(out), "--limit", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["answer"] for r in rows] == ["18", "3", "70000"]


def test_data_export_keeps_the_problems_a_predictions_file_scores_wrong(tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    assert main(["data", "export", "synthetic:train", str(pool), "--offset", "10", "--limit", "4"]) == 0
    ids = [json.loads(line)["id"] for line in pool.read_text().splitlines()]
    assert ids == [f"synthetic-train-{i:05d}" for i in range(10, 14)]
    predictions = tmp_path / "greedy.jsonl"  # as `reasoner eval` writes them, in another order
    predictions.write_text("".join(json.dumps({"id": i, "prediction": "1", "gold": "2", "correct": i in ids[1::2]}) + "\n"
                                   for i in reversed(ids)))
    missed = tmp_path / "missed.jsonl"
    assert main(["data", "export", str(pool), str(missed), "--missed-by", str(predictions)]) == 0
    assert "the 2 of 4 that" in capsys.readouterr().out
    rows = [json.loads(line) for line in missed.read_text().splitlines()]
    assert [r["id"] for r in rows] == ids[0::2] and all(r["question"] and r["solution"] for r in rows)
    assert [p.id for p in load_problems(str(missed))] == ids[0::2]  # a problem set again, for `reasoner search`

    # problems the file does not score, and a 'correct' that is not a verdict: errors naming the file
    assert main(["data", "export", "synthetic:train", str(tmp_path / "x.jsonl"), "--limit", "3",
                 "--missed-by", str(predictions)]) == 2
    assert "no verdict for problem 'synthetic-train-00000' (and 2 more)" in capsys.readouterr().err
    predictions.write_text("".join(json.dumps({"id": ids[0], "correct": c}) + "\n" for c in (True, False)))
    assert main(["data", "export", str(pool), str(tmp_path / "x.jsonl"), "--missed-by", str(predictions)]) == 2
    assert f"{predictions}:2: problem '{ids[0]}' is scored right and wrong (line 1" in capsys.readouterr().err
    predictions.write_text(json.dumps({"id": ids[0], "correct": "no"}) + "\n")
    assert main(["data", "export", str(pool), str(tmp_path / "x.jsonl"), "--missed-by", str(predictions)]) == 2
    assert f"{predictions}:1: field 'correct' must be true or false" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_check_predictions_and_verdict_file(tmp_path, capsys):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "prediction": "1,000", "answer": "1000"},
        {"id": "b", "completion": "so it is \\boxed{\\frac{1}{2}}", "answer": "0.5"},
        {"id": "c", "prediction": "7", "answer": "8"},
    ]) + "\n")
    assert main(["check", str(predictions)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["correct"] == 2 and summary["problems"] == 3
    verdicts = [json.loads(line) for line in (tmp_path / "preds.verdicts.jsonl").read_text().splitlines()]
    assert [v["correct"] for v in verdicts] == [True, True, False]


def test_check_gold_from_problem_spec(tmp_path, capsys):
    predictions = tmp_path / "p.jsonl"
    from data.problems import load_problems

    gold = load_problems("synthetic:test", limit=2)
    predictions.write_text(json.dumps({"id": gold[0].id, "prediction": gold[0].answer}) + "\n"
                           + json.dumps({"id": gold[1].id, "completion": "The answer is -1"}) + "\n")
    assert main(["check", str(predictions), "--problems", "synthetic:test"]) == 0
    assert json.loads(capsys.readouterr().out)["correct"] == 1


def test_malformed_jsonl_is_one_line_error_with_file_and_line(tmp_path):
    predictions = tmp_path / "bad.jsonl"
    predictions.write_text('{"id": "a", "prediction": "1", "answer": "1"}\n{"id": "b", "prediction": \n')
    result = subprocess.run([sys.executable, "-m", "reasoner.cli", "check", str(predictions)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"reasoner: error: {predictions}:2: invalid JSON: Expecting value"]


def test_missing_field_error(tmp_path, capsys):
    predictions = tmp_path / "m.jsonl"
    predictions.write_text(json.dumps({"id": "a", "answer": "1"}) + "\n")
    assert main(["check", str(predictions)]) == 2
    assert f"{predictions}:1: missing field 'prediction'" in capsys.readouterr().err
    predictions.write_text(json.dumps({"id": "a", "prediction": "1", "answer": "1"}) + "\n")
    assert main(["check", str(predictions), "--output", str(predictions)]) == 2
    assert "would overwrite the predictions" in capsys.readouterr().err
    assert "prediction" in predictions.read_text()


def test_unknown_spec_is_a_clean_error(capsys):
    assert main(["data", "show", "nope:test"]) == 2
    assert "unknown problem spec" in capsys.readouterr().err


def test_a_folder_given_for_a_file_is_a_clean_error_and_leaves_no_temp_file(tmp_path, capsys):
    folder = tmp_path / "adir.jsonl"
    folder.mkdir()
    assert main(["data", "show", str(folder)]) == 2
    assert "Is a directory" in capsys.readouterr().err
    assert main(["data", "export", "synthetic:test", str(folder), "--limit", "2"]) == 2
    assert str(folder) in capsys.readouterr().err
    assert not (tmp_path / "adir.jsonl.tmp").exists()


def test_tree_show_draws_the_asked_tree_and_names_a_missing_one(tmp_path, capsys):
    from scripted import ScriptedGenerator
    from search.runner import SearchConfig, run_search

    run = tmp_path / "run"
    config = SearchConfig(problems="synthetic:test", limit=2, output=str(run), simulations=2, children=2, quiet=True)
    run_search(config, make_generator=lambda c: ScriptedGenerator(seed=1))
    problem = json.loads((run / "trees.jsonl").read_text().splitlines()[1])["problem_id"]
    assert main(["tree", "show", str(run), "--problem", problem, "--out", str(tmp_path / "t.html")]) == 0
    assert f"problem {problem})" in capsys.readouterr().out and (tmp_path / "t.html").stat().st_size > 0
    assert main(["tree", "show", str(run), "--problem", "nope"]) == 2
    assert "no tree for problem 'nope'" in capsys.readouterr().err
    assert main(["tree", "show", str(tmp_path / "nodir")]) == 2
    assert f"{tmp_path / 'nodir'}: no trees*.jsonl in this run directory" in capsys.readouterr().err


def test_bench_generation_replays_one_workload_in_all_three_modes(capsys):
    assert main(["--quiet", "bench", "generation", "--problems", "2", "--levels", "2", "--children", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["workload"]["prefixes_per_level"][0] == 2
    modes = [report[m] for m in ("naive", "reuse_batched", "reuse_one_prefix")]
    assert all(m["generated_tokens"] > 0 for m in modes)
    assert modes[0]["prefill_tokens"] > modes[1]["prefill_tokens"] == modes[2]["prefill_tokens"]  # naive re-encodes
    assert report["prefix_reuse_speedup"] > 0 and report["batching_speedup"] > 0


def _help_commands():
    import argparse

    from reasoner.cli import build_parser

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for name, child in (subs[0].choices.items() if subs else []):
            yield from walk(child, [*prefix, name])
            yield [*prefix, name]
        for action in parser._actions:
            if action.dest == "algo":
                yield from ([*prefix, algo] for algo in action.choices)

    return [c for c in walk(build_parser(), []) if c != ["train"]]


@pytest.mark.parametrize("command", _help_commands(), ids=" ".join)
def test_every_command_has_working_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "error" not in out.split("\n", 1)[0]


def test_train_choices_are_every_trainer():
    from reasoner.cli import TRAIN_ALGOS
    from reasoner.trainers.preference import ALGOS

    assert set(TRAIN_ALGOS) == {*ALGOS, "sft", "tree-grpo", "mcts-dpo-online"}


def test_bench_search_uses_the_asked_tree_shape(capsys):
    argv = ["--quiet", "bench", "search", "--problems", "2", "--sequential-problems", "1", "--simulations", "2"]
    assert main([*argv, "--children", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["problems"], report["simulations"], report["children"]) == (2, 2, 2)
    assert report["lockstep"]["nodes"] > 2 and report["sequential"]["problems_timed"] == 1


def test_a_policy_that_is_not_there_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.safetensors").write_bytes(b"")
    cases = {tmp_path / "nodir": "no such model directory", tmp_path / "empty": "not a model directory (no config.json)",
             tmp_path / "weights.safetensors": "a file, not a model directory"}
    for policy, message in cases.items():
        assert main(["solve", "--policy", str(policy), "What is 1 + 1?"]) == 2
        assert f"reasoner: error: {policy}: {message}" in capsys.readouterr().err


def test_a_policy_whose_save_was_cut_short_is_a_clean_error(tmp_path, capsys):
    import shutil

    from reasoner.models import EMBEDDED_POLICY

    policy = tmp_path / "cut"
    shutil.copytree(EMBEDDED_POLICY, policy)
    weights = policy / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[:100])
    assert main(["solve", "--policy", str(policy), "What is 1 + 1?"]) == 2
    assert "unreadable weights" in capsys.readouterr().err
    weights.write_bytes(intact)
    (policy / "step_format.json").write_text("{broken")
    assert main(["solve", "--policy", str(policy), "What is 1 + 1?"]) == 2
    assert "step_format.json:1: invalid JSON" in capsys.readouterr().err


def test_empty_questions_and_problem_sets_are_clean_errors(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["solve", ""]) == 2
    assert "the question is empty" in capsys.readouterr().err
    for command in (["eval-policy", "--problems", str(empty)], ["search", "--problems", str(empty), "--output",
                                                                 str(tmp_path / "run")]):
        assert main(["--quiet", *command]) == 2
        assert "no problems to" in capsys.readouterr().err


def test_train_sft_saves_a_loadable_policy(tmp_path):
    from reasoner.models import load_policy

    out = tmp_path / "sft"
    assert main(["--quiet", "train", "sft", "--limit", "16", "--batch_size", "8", "--output", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "config.yaml").exists()
    assert not list(out.glob("*.bin"))
    policy = load_policy(str(out))
    assert policy.step_format.name == "tiny"


def test_a_reader_that_goes_away_stops_the_command_quietly():
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "reasoner.cli", "data", "show", "synthetic:test"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `reasoner data show ... | head` does once it has its lines
    err = process.stderr.read().decode()
    assert process.wait() == 141 and err == ""


def test_a_broken_pipe_of_the_commands_own_is_an_error(monkeypatch, capsys):
    import reasoner.cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(reasoner.cli, "cmd_data_show", broken)  # stdout itself is fine
    assert main(["data", "show", "synthetic:test"]) == 2
    assert "reasoner: error: [Errno 32] Broken pipe" in capsys.readouterr().err
