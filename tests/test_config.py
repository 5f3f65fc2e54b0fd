import dataclasses
from pathlib import Path

import pytest

from reasoner.config import parse_config
from search.runner import SearchConfig


def test_yaml_recipe_then_flag_overrides(tmp_path):
    config = parse_config(SearchConfig, ["--config", str(Path(__file__).resolve().parents[1] / "configs" / "search_mcts.yaml"), "--simulations", "7"], prog="t")
    assert config.problems == "synthetic:train" and config.children == 5 and config.simulations == 7
    shepherd = parse_config(SearchConfig, ["--config", str(Path(__file__).resolve().parents[1] / "configs" / "search_shepherd.yaml")], prog="t")
    assert shepherd.algo == "shepherd" and shepherd.shepherd().completions == 8


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda path: path.stem)
def test_every_single_command_recipe_parses_with_its_commands_settings(recipe):
    """Each configs/ file names its command on its first line; pipeline recipes are test_pipeline's."""
    from prm.trainer import PRMArgs
    from reasoner.trainers.online_dpo import OnlineDPOArgs
    from reasoner.trainers.preference import PreferenceArgs
    from reasoner.trainers.tree_grpo import TreeGRPOArgs

    command = recipe.read_text().splitlines()[0].split()[2:4]  # "# reasoner train step-dpo --config ..."
    if command[0] == "pipeline":
        return
    settings = {"search": SearchConfig, "train-prm": PRMArgs}.get(command[0]) or {
        "tree-grpo": TreeGRPOArgs, "mcts-dpo-online": OnlineDPOArgs}.get(command[1], PreferenceArgs)
    parse_config(settings, ["--config", str(recipe)], prog="t")


def test_unknown_yaml_key_names_the_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("simulatons: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown key 'simulatons'"):
        parse_config(SearchConfig, ["--config", str(recipe)], prog="t")


def test_invalid_yaml_names_file_and_line(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(ValueError, match=r"broken.yaml:\d+: invalid YAML"):
        parse_config(SearchConfig, ["--config", str(recipe)], prog="t")


def test_yaml_values_are_typed_like_flags_and_a_wrong_one_names_file_and_key(tmp_path):
    from eval.evaluate import EvalConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("simulations: '7'\ntemperature: 1\nquiet: true\nlimit: null\n")
    config = parse_config(SearchConfig, ["--config", str(recipe)], prog="t")
    assert (config.simulations, config.temperature, config.quiet, config.limit) == (7, 1.0, True, None)
    assert isinstance(config.temperature, float)
    for text, error in (("simulations: 2.5", "simulations must be a whole number, got 2.5"),
                        ("limit: [1]", "limit must be a single value"),
                        ("quiet: maybe", "quiet must be true or false")):
        recipe.write_text(text + "\n")
        with pytest.raises(ValueError, match=f"r.yaml: {error}"):
            parse_config(SearchConfig, ["--config", str(recipe)], prog="t")
    recipe.write_text("batch_problems: 3\n")
    assert parse_config(EvalConfig, ["--config", str(recipe)], prog="t").batch_problems == 3

    from reasoner.trainers.sft import SFTArgs

    recipe.write_text("deepspeed: false\n")  # none, as before values were typed (not the text "False")
    assert parse_config(SFTArgs, ["--config", str(recipe)], prog="t").deepspeed is None


def test_a_training_run_from_before_ref_model_resumes_only_with_the_starting_policy_as_reference(tmp_path):
    import yaml

    from reasoner.config import save_training_config
    from reasoner.trainers.preference import PreferenceArgs

    old = dataclasses.asdict(PreferenceArgs(data="pairs.jsonl", output=str(tmp_path)))
    del old["ref_model"]  # written before the setting existed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    save_training_config(PreferenceArgs(data="pairs.jsonl", output=str(tmp_path)), tmp_path, "step-dpo training")
    with pytest.raises(ValueError, match="started with ref_model=None, not 'embedded'"):
        save_training_config(PreferenceArgs(data="pairs.jsonl", output=str(tmp_path), ref_model="embedded"), tmp_path,
                             "step-dpo training")
