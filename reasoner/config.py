"""Command configs: one dataclass per command, a YAML recipe plus ``--key value`` overrides.

`parse_config` reads ``--config recipe.yaml`` first, uses its keys as defaults, then applies the command
line (``transformers.HfArgumentParser``), so ``reasoner train sft --config a.yaml --learning_rate 1e-4``
works as in search-and-learn and TRL. `save_config` writes the resolved config beside a run's outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Sequence, TypeVar

from data.records import read_yaml_mapping, write_config

__all__ = ["parse_config", "save_config", "save_training_config", "load_yaml"]

# What a training command may change when it reruns into a folder that already holds its results: resuming
# (or retraining) for longer, and how it logs and checkpoints.
TRAINING_RESUMABLE_KEYS = frozenset({"output", "resume", "max_steps", "epochs", "save_steps", "logging_steps",
                                     "eval_steps", "report_to", "device"})

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a clear error naming the file when it is not one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such config file")
    return read_yaml_mapping(path, what="config keys")


def parse_config(cls: type[T], argv: Sequence[str], prog: str, description: str | None = None) -> T:
    """Parse ``argv`` into ``cls``: defaults < YAML (``--config``) < command-line flags."""
    from transformers import HfArgumentParser

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(list(argv))
    parser = HfArgumentParser(cls, prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML recipe; flags given here override its keys")
    if known.config:
        values = load_yaml(known.config)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{known.config}: unknown key {unknown[0]!r} for {prog} (known: {', '.join(sorted(names))})")
        parser.set_defaults(**_typed(values, parser, known.config))
    (config,) = parser.parse_args_into_dataclasses(args=rest, look_for_args_file=False)[:1]
    return config


def _typed(values: dict[str, Any], parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """YAML values converted as their flags' values would be (argparse leaves non-string defaults alone, so
    ``simulations: 2.5`` would reach the search as a float); a value that does not convert names file and key."""
    types = {action.dest: action.type for action in parser._actions if action.type is not None}
    typed = {}
    for key, value in values.items():
        convert = types.get(key)
        if value is None or convert is None:
            typed[key] = value
            continue
        if isinstance(value, (dict, list)):
            raise ValueError(f"{path}: {key} must be a single value, got {value!r}")
        if convert is str and isinstance(value, bool):  # `deepspeed: false` means none, not the text "False"
            if value:
                raise ValueError(f"{path}: {key} must be a string (or null / false for none), got true")
            typed[key] = None
            continue
        try:
            typed[key] = convert(value if isinstance(value, str) else str(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            name = getattr(convert, "__name__", "")
            kind = {"int": "a whole number", "float": "a number", "string_to_bool": "true or false"}.get(name, name)
            raise ValueError(f"{path}: {key} must be {kind}, got {value!r}") from None
    return typed


def save_config(config: Any, directory: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config (a dataclass or mapping) to ``directory/name`` (``data.records.write_config``)."""
    return write_config(config, directory, name)


def save_training_config(config: Any, directory: str | Path, what: str) -> Path:
    """`save_config` for a training command, after refusing a folder that holds results of other settings
    (a trained model, checkpoints, a search run): ``data.records.check_resumable`` with
    `TRAINING_RESUMABLE_KEYS`, so neither a failed nor a finished run leaves a model described by the wrong
    config.yaml, and ``--resume`` cannot continue a checkpoint on other data or hyperparameters."""
    from data.records import check_resumable

    check_resumable(Path(directory) / "config.yaml", dataclasses.asdict(config), TRAINING_RESUMABLE_KEYS, what=what,
                    added_keys={"ref_model": None})  # runs from before --ref_model used the starting policy
    return save_config(config, directory)
