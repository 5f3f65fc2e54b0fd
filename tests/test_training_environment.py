"""DeepSpeed set-up checks in `training_arguments`: the one-process environment when no launcher did, and the
ZeRO-3 config check."""
import json
import os
from pathlib import Path

import pytest

from reasoner.trainers.common import LAUNCHER_VARIABLES, check_deepspeed_config, single_process_environment

SET = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def bare_environment(monkeypatch):
    for name in (*LAUNCHER_VARIABLES, *SET, "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_launcher_gives_a_one_process_group_on_a_free_port(bare_environment):
    single_process_environment()
    assert (os.environ["RANK"], os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"]) == ("0", "0", "1")
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and int(os.environ["MASTER_PORT"]) > 0


def test_a_users_rendezvous_address_is_kept(bare_environment):
    bare_environment.setenv("MASTER_ADDR", "10.0.0.7")
    bare_environment.setenv("MASTER_PORT", "29555")
    single_process_environment()
    assert (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"], os.environ["WORLD_SIZE"]) == ("10.0.0.7", "29555", "1")


@pytest.mark.parametrize("launcher", [{"LOCAL_RANK": "1"}, {"OMPI_COMM_WORLD_SIZE": "4"}, {"PMI_SIZE": "2"},
                                      {"SLURM_NTASKS": "8"}])
def test_a_launchers_processes_are_not_each_made_rank_0_of_1(bare_environment, launcher):
    for name, value in launcher.items():
        bare_environment.setenv(name, value)
    single_process_environment()
    assert not any(name in os.environ for name in SET if name not in launcher)


def test_a_zero3_config_that_would_save_no_weights_is_refused_before_training(tmp_path):
    shipped = Path(__file__).resolve().parents[1] / "configs" / "deepspeed"
    for name in ("zero2.json", "zero3.json"):
        check_deepspeed_config(str(shipped / name))
    config = json.loads((shipped / "zero3.json").read_text())
    del config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    path = tmp_path / "zero3-no-gather.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"zero3-no-gather\.json: .*stage3_gather_16bit_weights_on_model_save"):
        check_deepspeed_config(str(path))
    path.write_text('{"zero_optimization": {\n  "stage": 3,,\n}}')
    with pytest.raises(ValueError, match=r"zero3-no-gather\.json:2: invalid JSON"):
        check_deepspeed_config(str(path))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        check_deepspeed_config(str(tmp_path / "missing.json"))
