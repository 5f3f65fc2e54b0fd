"""`reasoner pipeline`: recipe checks, flag rendering, a whole (tiny) round, skipping finished stages."""

import json

import pytest

from reasoner.cli import main
from reasoner.pipeline import PipelineConfig, StageFailed, _label_flags, flags, load_pipeline_config, run_pipeline

TINY = {
    "rounds": 1,
    "search": {"problems": "synthetic:train", "limit": 4, "simulations": 6, "children": 3, "max_step_tokens": 24},
    "prm": {"max_steps": 2, "batch_size": 4, "freeze_backbone": True, "eval_steps": 1000, "policy": "embedded-verifier"},
    "prm_eval": {"limit": 4},
    "train": {"algo": "step-dpo", "max_steps": 1, "batch_size": 2},
    "eval": {"limit": 3, "methods": "greedy,maj@2,beam@1x2"},
}
# A round that really runs needs step-dpo pairs (a tree with both a right and a wrong step): six problems give some;
# four, with the search's per-batch draws, gave none.
ROUND = {**TINY, "search": {**TINY["search"], "limit": 6}}


def test_flags_render_a_section_as_cli_options():
    assert flags({"limit": 3, "freeze_backbone": True, "pairs": None, "output": "x"}, drop=("output",)) == \
        ["--limit", "3", "--freeze_backbone", "true"]


def test_recipe_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    cases = {
        "rounds: 1\nsearh: {}": r"bad.yaml: unknown pipeline key 'searh'",
        "train: {beta: 0.5}": "needs an 'algo'",
        "eval: greedy": "section 'eval' must be a mapping",
        "eval: {methds: greedy}": "section 'eval' has unknown key 'methds'",
        "train: {algo: step-dpo, beta: 0.5}\nlabels: mc-labels": "labels must be a list",
        "labels: [step-dpo, svpo]": r"labels must include mc-labels \(train-prm reads it\)",
        "train: {algo: full-step-dpo}": r"labels must include step-rewards \(train full-step-dpo reads it\)",
        "train: {algo: stepdpo}": "train algo 'stepdpo' is not one the pipeline runs",
        "eval_initial: 'yes'": "eval_initial must be true or false",
        "fresh_problems: 1": "fresh_problems must be true or false",
        "fresh_problems: true": r"fresh_problems needs search.limit",
        "search: {offset: -2}": r"search.offset must be a whole number of at least 0, got -2",
        "labels: [step-dpo, mc-labels]\nprm: {rank_weight: 1.0}": "prm.rank_weight needs sibling pairs",
    }
    for recipe, error in cases.items():
        path.write_text(recipe + "\n")
        with pytest.raises(ValueError, match=error):
            load_pipeline_config(path)
    path.write_text("search: {batch-problems: 8, config: configs/search_mcts.yaml}\n")  # flags' other spellings
    assert load_pipeline_config(path).search["batch-problems"] == 8
    search_file = tmp_path / "search.yaml"  # fresh rounds count from the recipe's offset, not a search file's
    search_file.write_text("offset: 100\n")
    path.write_text(f"fresh_problems: true\nsearch: {{limit: 4, config: {search_file}}}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: fresh_problems counts .*search.yaml sets offset: 100"):
        load_pipeline_config(path)
    path.write_text(f"fresh_problems: true\nsearch: {{limit: 4, offset: 0, config: {search_file}}}\n")
    with pytest.raises(ValueError, match=r"search.yaml sets offset: 100"):  # offset 0 passes no flag: the file's wins
        load_pipeline_config(path)
    path.write_text(f"fresh_problems: true\nsearch: {{limit: 4, offset: 100, config: {search_file}}}\n")
    assert load_pipeline_config(path).search["offset"] == 100
    search_file.write_text("offset: 0\n")  # a harmless offset in the file
    path.write_text(f"fresh_problems: true\nsearch: {{limit: 4, config: {search_file}}}\n")
    assert load_pipeline_config(path).fresh_problems
    path.write_text("search: {limit: 4}\n")  # the CLI's --fresh_problems / --no-fresh_problems, or neither (None)
    assert load_pipeline_config(path, {"fresh_problems": True}).fresh_problems is True
    assert load_pipeline_config(path, {"fresh_problems": None}).fresh_problems is False
    path.write_text("rounds: 1\n")
    for rounds in (0, -1):
        with pytest.raises(ValueError, match="rounds must be a whole number of at least 1"):
            load_pipeline_config(path, {"rounds": rounds})


def test_a_tiny_round_runs_every_stage_and_a_rerun_skips_them(tmp_path):
    calls = []

    def run(argv):
        calls.append(argv[0])
        return main(["--quiet", *argv])

    config = PipelineConfig(output=str(tmp_path), **ROUND)
    report = run_pipeline(config, run_command=run, log=lambda _: None)
    assert calls == ["search", "label", "label", "label", "train-prm", "eval-prm", "eval", "train", "eval"]
    assert [entry["round"] for entry in report["rounds"]] == [0, 1]
    assert report["rounds"][1]["policy"] == str(tmp_path / "round-1" / "policy")
    value_head = json.loads((tmp_path / "round-1" / "prm" / "value_head.json").read_text())
    assert value_head["source"] == "embedded-verifier"  # the recipe's backbone, not the round's policy
    for entry in report["rounds"]:
        assert set(entry["eval"]) == {"greedy", "maj@2", "beam@1x2"}
        assert {"accuracy", "tokens_per_problem", "seconds"} <= set(entry["eval"]["greedy"])
    assert set(report["prm"]) >= {"step_auc", "first_error_f1"} and report["wall_seconds"] > 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["rounds"] == report["rounds"]
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.png").exists()

    calls.clear()
    again = run_pipeline(config, run_command=run, log=lambda _: None)
    assert calls == [] and again["rounds"] == report["rounds"]
    changed = PipelineConfig(output=str(tmp_path), **{**ROUND, "train": {**TINY["train"], "beta": 0.9}})
    with pytest.raises(ValueError, match="stage round 1 train .* finished with other settings"):
        run_pipeline(changed, run_command=run, log=lambda _: None)
    assert calls == []
    # a stage run by hand (say under torchrun) and marked with `touch .done` counts as done, whatever it ran
    (tmp_path / "round-1" / "policy" / ".done").write_text("")
    assert run_pipeline(changed, run_command=run, log=lambda _: None)["rounds"] == report["rounds"]
    assert calls == []
    # the markers hold the run folder as {output}: a moved run is still done
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    again = run_pipeline(PipelineConfig(output=str(moved), **ROUND), run_command=run, log=lambda _: None)
    assert calls == [] and [entry["eval"] for entry in again["rounds"]] == [entry["eval"] for entry in report["rounds"]]
    (moved / "round-1" / "eval" / ".done").write_text("done\n")
    with pytest.raises(ValueError, match=r"\.done: not a stage marker"):
        run_pipeline(PipelineConfig(output=str(moved), **ROUND), run_command=run, log=lambda _: None)


def test_each_round_starts_from_the_policy_the_round_before_trained(tmp_path):
    """Round R searches with, trains from (and so takes as its DPO reference) and is scored as round R-1's
    output; the value model keeps the recipe's backbone. The stages are recorded, not run."""
    commands = []
    config = PipelineConfig(output=str(tmp_path), **{**TINY, "rounds": 3})
    run_pipeline(config, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)

    def option(argv, name):
        return argv[argv.index(name) + 1] if name in argv else None

    by_round = {}
    for argv in commands:
        out = option(argv, "--output")
        by_round.setdefault(out.split("round-")[1][0], []).append(argv)
    assert sorted(by_round) == ["0", "1", "2", "3"]
    for number in (1, 2, 3):
        before = None if number == 1 else str(tmp_path / f"round-{number - 1}" / "policy")
        here = {argv[0]: argv for argv in by_round[str(number)]}  # one search, train-prm, train, eval each
        assert option(here["search"], "--policy") == before
        assert option(here["train"], "--model") == before
        assert option(here["train"], "--data") == str(tmp_path / f"round-{number}" / "labels" / "step-dpo.jsonl")
        assert option(here["train-prm"], "--policy") == "embedded-verifier"
        assert option(here["eval"], "--policy") == str(tmp_path / f"round-{number}" / "policy")
        assert option(here["eval"], "--value") == str(tmp_path / f"round-{number}" / "prm")
        assert option(here["search"], "--offset") is None  # every round searches the same problems
    assert option(by_round["0"][0], "--policy") is None  # round 0: the starting policy
    assert option(by_round["0"][0], "--value") == str(tmp_path / "round-1" / "prm")

    commands.clear()  # fresh_problems: each round takes the `limit` problems after the rounds before it
    fresh = PipelineConfig(output=str(tmp_path / "fresh"), fresh_problems=True,
                           **{**TINY, "rounds": 3, "search": {**TINY["search"], "offset": 1}})
    run_pipeline(fresh, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)
    assert [option(argv, "--offset") for argv in commands if argv[0] == "search"] == ["1", "5", "9"]
    commands.clear()  # without a recipe offset round 1's command is the one a same-problems run gives (its .done)
    fresh = PipelineConfig(output=str(tmp_path / "fresh0"), fresh_problems=True, **{**TINY, "rounds": 2})
    run_pipeline(fresh, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)
    assert [option(argv, "--offset") for argv in commands if argv[0] == "search"] == [None, "4"]


def test_expert_iteration_trains_sft_on_each_rounds_correct_solutions(tmp_path):
    commands = []
    path = tmp_path / "rft.yaml"
    path.write_text("labels: [rft, mc-labels]\ntrain: {algo: sft, learning_rate: 0.0003, epochs: 3}\n")
    config = load_pipeline_config(path, {"output": str(tmp_path / "run"), "rounds": 2})
    run_pipeline(config, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)
    trains = [argv for argv in commands if argv[0] == "train"]
    assert [argv[1] for argv in trains] == ["sft", "sft"]
    assert trains[1][trains[1].index("--data") + 1] == str(tmp_path / "run" / "round-2" / "labels" / "rft.jsonl")
    assert trains[1][trains[1].index("--model") + 1] == str(tmp_path / "run" / "round-1" / "policy")
    bad = {"labels: [step-dpo, mc-labels]\ntrain: {algo: sft}": r"labels must include rft",
           "labels: [rft, mc-labels]\ntrain: {algo: sft, beta: 0.1}": "section 'train' has unknown key 'beta'"}
    for recipe, error in bad.items():
        path.write_text(recipe + "\n")
        with pytest.raises(ValueError, match=error):
            load_pipeline_config(path)


def test_iterative_rpo_trains_dpo_on_each_rounds_solution_pairs(tmp_path):
    commands = []
    path = tmp_path / "rpo.yaml"
    path.write_text("labels: [dpo, mc-labels]\ntrain: {algo: dpo, sft_weight: 1}\n")
    config = load_pipeline_config(path, {"output": str(tmp_path / "run"), "rounds": 2})
    run_pipeline(config, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)
    labels = [argv[argv.index("--kind") + 1] for argv in commands if argv[0] == "label"]
    trains = [argv for argv in commands if argv[0] == "train"]
    assert labels == ["dpo", "mc-labels"] * 2 and [argv[1] for argv in trains] == ["dpo", "dpo"]
    assert trains[1][trains[1].index("--data") + 1] == str(tmp_path / "run" / "round-2" / "labels" / "dpo.jsonl")
    path.write_text("labels: [step-dpo, mc-labels]\ntrain: {algo: dpo}\n")
    with pytest.raises(ValueError, match="labels must include dpo"):
        load_pipeline_config(path)


def test_a_recipes_label_section_sets_each_kinds_own_flags(tmp_path):
    commands = []
    path = tmp_path / "caps.yaml"
    path.write_text("labels: [dpo, mc-labels, rft]\ntrain: {algo: dpo}\n"
                    "label: {dpo: {max-pairs: 30, seed: 7}, rft: {max_solutions: 8}}\n")
    config = load_pipeline_config(path, {"output": str(tmp_path / "run")})
    run_pipeline(config, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)
    labels = {argv[argv.index("--kind") + 1]: argv for argv in commands if argv[0] == "label"}
    assert labels["dpo"][4:8] == ["--max-pairs", "30", "--seed", "7"]
    assert labels["rft"][4:6] == ["--max-solutions", "8"] and "--max-pairs" not in labels["mc-labels"]
    bad = {"label: [dpo]": "section 'label' must map a label kind to its flags",
           "label: {svpo: {seed: 1}}": r"sets flags for 'svpo', which is not in labels",
           "label: {dpo: 30}": "label.dpo must be a mapping",
           "label: {mc-labels: {max-pairs: 3}}": r"label.mc-labels has unknown key 'max-pairs' \(known: seed\)",
           "label: {dpo: {max-solutions: 3}}": r"unknown key 'max-solutions' \(known: seed, max-pairs\)",
           "label: {dpo: {max-pairs: 0}}": "label.dpo.max-pairs must be a whole number of at least 1, got 0",
           "label: {dpo: {seed: 1.5}}": "label.dpo.seed must be a whole number, got 1.5"}
    for section, error in bad.items():
        path.write_text(f"labels: [dpo, mc-labels]\ntrain: {{algo: dpo}}\n{section}\n")
        with pytest.raises(ValueError, match=error):
            load_pipeline_config(path)
    path.write_text("labels: [dpo, mc-labels]\ntrain: {algo: dpo}\nlabel:\n")  # an empty section sets nothing
    assert _label_flags(load_pipeline_config(path), "dpo") == []
    from reasoner.cli import build_parser

    parsed = build_parser().parse_args(labels["dpo"])  # `reasoner label` itself takes the flags as written
    assert (parsed.max_pairs, parsed.seed, build_parser().parse_args(labels["rft"]).max_solutions) == (30, 7, 8)


def test_a_failing_stage_stops_the_pipeline(tmp_path):
    config = PipelineConfig(output=str(tmp_path), **{**TINY, "search": {"problems": "nowhere:test"}})
    with pytest.raises(StageFailed, match="stage round 1 search failed"):
        run_pipeline(config, run_command=lambda argv: main(["--quiet", *argv]), log=lambda _: None)
    assert not (tmp_path / "round-1" / "search" / ".done").exists()


def _shipped(command: str) -> list[str]:
    """The configs/ recipes whose first line names ``reasoner COMMAND``, so a new recipe is tested without a list."""
    from tests.conftest import REPO

    return sorted(path.stem for path in (REPO / "configs").glob("*.yaml")
                  if path.read_text().startswith(f"# reasoner {command} "))


def test_every_shipped_recipe_is_tested():
    assert {"demo", "iterate", "expert_iteration", "iterative_rpo", "gsm8k", "math"} <= set(_shipped("pipeline"))


@pytest.mark.parametrize("recipe", _shipped("pipeline"))
def test_shipped_recipes_parse_into_every_stage_config(recipe):
    from eval.evaluate import EvalConfig
    from prm.trainer import PRMArgs
    from reasoner.config import parse_config
    from reasoner.trainers.preference import PreferenceArgs
    from search.runner import SearchConfig
    from tests.conftest import REPO

    config = load_pipeline_config(REPO / "configs" / f"{recipe}.yaml")
    parse_config(SearchConfig, flags(config.search), prog="search")
    parse_config(PRMArgs, flags(config.prm), prog="train-prm")
    from reasoner.trainers.sft import SFTArgs

    train = {k: v for k, v in config.train.items() if k != "algo"}
    parse_config(SFTArgs if config.train["algo"] == "sft" else PreferenceArgs, flags(train), prog="train")
    parse_config(EvalConfig, flags(config.eval, drop=("value",)), prog="eval")


def test_report_md_names_every_rounds_value_model(tmp_path):
    from reasoner.pipeline import _write_summary

    row = {"accuracy": 0.5, "tokens_per_problem": 40.0, "seconds": 1.0}
    prm = [{"round": r, "step_auc": 0.9 + r / 100, "first_error_f1": 0.8, "threshold": 0.0,
            "problems": "synthetic:test"} for r in (1, 2)]
    report = {"rounds": [{"round": r, "eval": {"greedy": row}} for r in (0, 1, 2)], "prm": prm[-1],
              "prm_rounds": prm, "wall_seconds": 3.0}
    _write_summary(report, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| 1 | 0.910 | 0.800 |" in text and "| 2 | 0.920 | 0.800 |" in text and "eval-prm` on synthetic:test" in text
    _write_summary({**report, "prm_rounds": prm[:1], "prm": prm[0]}, tmp_path)
    assert "Value model on synthetic:test: step AUC 0.910" in (tmp_path / "report.md").read_text()
    undefined = {**prm[0], "first_error_f1": None}  # eval-prm writes null when F1 is undefined (one class empty)
    _write_summary({**report, "prm_rounds": [undefined], "prm": undefined}, tmp_path)
    assert "step AUC 0.910, first-error F1 n/a." in (tmp_path / "report.md").read_text()


def test_a_finished_stage_is_not_skipped_once_its_config_file_changed(tmp_path):
    """A stage's .done keeps the digest of every --config file it read: an edited search config is refused with
    the file's name rather than skipped (its trees came from the old settings); unchanged, the stage is skipped."""
    search_file = tmp_path / "search.yaml"
    search_file.write_text("simulations: 6\n")
    config = PipelineConfig(output=str(tmp_path / "run"), **{**TINY, "search": {**TINY["search"], "config": str(search_file)}})
    commands = []
    run_pipeline(config, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)
    assert any(argv[0] == "search" for argv in commands)
    commands.clear()
    run_pipeline(config, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)
    assert commands == []
    search_file.write_text("simulations: 60\n")
    with pytest.raises(ValueError, match=r"search/\.done: stage round 1 search finished with .*search\.yaml as it was then"):
        run_pipeline(config, run_command=lambda argv: commands.append(argv) or 0, log=lambda _: None)
    assert commands == []
