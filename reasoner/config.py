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

import yaml

__all__ = ["parse_config", "save_config", "load_yaml"]

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a clear error naming the file when it is not one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ValueError(f"{path}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}:1: expected a mapping of config keys")
    return loaded


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
        parser.set_defaults(**values)
    (config,) = parser.parse_args_into_dataclasses(args=rest, look_for_args_file=False)[:1]
    return config


def save_config(config: Any, directory: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config (a dataclass or mapping) to ``directory/name``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    path = directory / name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path
