"""`reasoner eval`: method names, the report (JSON/Markdown/PNG, curves, compute-matched rows), resuming, and
the same command on the shared GSM8K / MATH-500 files."""

import json

import pytest

from eval.check import check_predictions
from eval.evaluate import EvalConfig, parse_methods, run_eval
from reasoner.cli import main
from reasoner.cli_eval import eval_scorer, search_generator
from tests.conftest import needs_shared_data


def test_method_names_parse_and_bad_ones_are_named():
    methods = {m.name: m for m in parse_methods("greedy, maj@8,bon@4,wmaj@2,beam@2x5,mcts,mcts@8x3")}
    assert methods["maj@8"].k == 8 and methods["beam@2x5"].width == 2 and methods["beam@2x5"].samples == 5
    assert (methods["mcts"].width, methods["mcts"].samples) == (16, 4)
    assert not methods["maj@8"].needs_value and methods["bon@4"].needs_value
    with pytest.raises(ValueError, match="'beam@5'"):
        parse_methods("greedy,beam@5")


def test_eval_writes_reports_shares_samples_and_resumes(tmp_path):
    config = EvalConfig(limit=4, methods="greedy,maj@2,bon@2,wmaj@2,beam@1x2,mcts@2x2", value="likelihood",
                        output=str(tmp_path), quiet=True, batch_problems=3)
    report = run_eval(config, search_generator, eval_scorer)
    assert set(report["methods"]) == {"greedy", "maj@2", "bon@2", "wmaj@2", "beam@1x2", "mcts@2x2"}
    for row in report["methods"].values():
        assert row["n"] == 4 and 0 <= row["accuracy"] <= 1 and row["tokens_per_problem"] > 0
    # one set of samples: every sample-based method spends the same tokens, and k=1 of the curve is half of k=2
    tokens = {report["methods"][m]["tokens_per_problem"] for m in ("maj@2", "bon@2", "wmaj@2")}
    assert len(tokens) == 1
    curve = report["methods"]["maj@2"]["curve"]
    assert [p["k"] for p in curve] == [1, 2] and curve[0]["tokens_per_problem"] < curve[1]["tokens_per_problem"]
    assert report["compute_matched"]["beam@1x2"]["majority"]["tokens_per_problem"] <= \
        report["methods"]["beam@1x2"]["tokens_per_problem"]
    for name in ("report.json", "report.md", "report.png", "samples-2.jsonl", "predictions/beam@1x2.jsonl"):
        assert (tmp_path / name).exists(), name
    assert "| beam@1x2 |" in (tmp_path / "report.md").read_text()
    assert "ranking_auc" in report["methods"]["bon@2"] and "ranking_auc" not in report["methods"]["maj@2"]
    # every predictions file re-scores alone with `reasoner check` to the report's accuracy
    for name in ("greedy", "wmaj@2", "mcts@2x2"):
        checked = check_predictions(str(tmp_path / "predictions" / f"{name}.jsonl"), output=str(tmp_path / f"{name}.v"))
        assert checked["accuracy"] == pytest.approx(report["methods"][name]["accuracy"], abs=1e-4), name

    def no_models(_):
        raise AssertionError("a finished eval must not load a model again")

    again = run_eval(config, no_models, no_models)
    assert again["methods"] == report["methods"]
    with pytest.raises(ValueError, match="temperature"):
        run_eval(EvalConfig(**{**config.__dict__, "temperature": 1.3}), no_models, no_models)


def test_an_eval_that_failed_before_its_first_record_reruns_with_a_corrected_policy(tmp_path, capsys):
    out = str(tmp_path / "ev")
    assert main(["--quiet", "eval", "--policy", str(tmp_path / "typo"), "--output", out, "--limit", "1",
                 "--methods", "greedy"]) != 0
    assert "no such model directory" in capsys.readouterr().err
    assert main(["--quiet", "eval", "--output", out, "--limit", "1", "--methods", "greedy"]) == 0
    assert (tmp_path / "ev" / "report.json").exists()
    # an eval started without a value model may add value-guided methods later
    assert main(["--quiet", "eval", "--output", out, "--limit", "1", "--methods", "greedy,bon@2", "--value",
                 "likelihood"]) == 0


def test_eval_past_an_offset_then_export_what_it_missed(tmp_path, capsys):
    out, missed = tmp_path / "pool", tmp_path / "missed.jsonl"
    window = ["--problems", "synthetic:train", "--offset", "100", "--limit", "6"]
    assert main(["--quiet", "eval", *window, "--methods", "greedy", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "predictions" / "greedy.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"synthetic-train-{i:05d}" for i in range(100, 106)]
    capsys.readouterr()
    assert main(["data", "export", *window[1:], str(missed), "--missed-by", str(out / "predictions" / "greedy.jsonl")]) == 0
    wrong = [r["id"] for r in rows if not r["correct"]]
    assert [json.loads(line)["id"] for line in missed.read_text().splitlines()] == wrong
    assert f"the {len(wrong)} of 6 that" in capsys.readouterr().out
    # other problems are other predictions: the same output folder refuses them
    assert main(["--quiet", "eval", *window[:3], "200", *window[4:], "--methods", "greedy", "--output", str(out)]) == 2
    assert "offset=100, not 200" in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["offset"] == 100
    # a folder written before --offset existed resumes as offset 0, and only so
    saved = out / "config.yaml"
    saved.write_text("".join(line for line in saved.read_text().splitlines(keepends=True)
                             if not line.startswith("offset:")).replace("limit: 6", "limit: 3"))
    assert main(["--quiet", "eval", *window[:3], "100", "--methods", "greedy", "--output", str(out)]) == 2
    assert "offset=0, not 100" in capsys.readouterr().err


@pytest.mark.parametrize("settings, error", [
    (dict(value=None), "need a value model"),
    (dict(value="likelihood", aggregate="mni"), "unknown --aggregate 'mni'"),
    (dict(value="no-such-value-model"), "no-such-value-model"),
    (dict(value="likelihood", batch_problems=0), "batch_problems must be at least 1"),
])
def test_bad_value_settings_fail_before_any_prediction_is_written(tmp_path, settings, error):
    config = EvalConfig(limit=2, methods="greedy,bon@2", output=str(tmp_path / "ev"), quiet=True, max_steps=4,
                        **settings)
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        run_eval(config, search_generator, eval_scorer)
    assert not (tmp_path / "ev" / "predictions").exists()


def test_within_problem_auc_pools_pairs_of_the_same_problem_only():
    from eval.report import within_problem_auc

    records = [
        {"scores": [0.9, 0.1, 0.5], "sample_correct": [True, False, False]},  # 2 pairs, both ranked right
        {"scores": [0.2, 0.8], "sample_correct": [True, False]},  # 1 pair, ranked wrong
        {"scores": [0.99, 0.01], "sample_correct": [True, True]},  # no mixed pair: ignored
        {"scores": [0.3, 0.3], "sample_correct": [False, True]},  # 1 tie: ½
    ]
    # a pooled AUC over all samples would compare 0.99 with 0.8 across problems; within problems: (2 + 0 + ½) / 4
    assert within_problem_auc(records) == 0.625
    assert within_problem_auc([{"scores": [0.5], "sample_correct": [True]}]) is None


def test_value_methods_need_a_value_model(tmp_path):
    with pytest.raises(ValueError, match="--value"):
        run_eval(EvalConfig(limit=2, methods="bon@2", output=str(tmp_path), quiet=True), search_generator, eval_scorer)


@needs_shared_data
@pytest.mark.parametrize("spec", ["gsm8k:test", "math500:test"])
def test_eval_runs_unchanged_on_the_benchmarks(tmp_path, spec):
    code = main(["--quiet", "eval", "--problems", spec, "--limit", "2", "--methods", "greedy,maj@2,beam@1x2",
                 "--value", "likelihood", "--max_steps", "3", "--max_step_tokens", "16", "--output", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["problems"] == spec and report["methods"]["beam@1x2"]["n"] == 2
