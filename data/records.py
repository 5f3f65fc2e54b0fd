"""JSONL records on disk: whole-line appends, readers that name file and line, and resume helpers.

Every stage of the pipeline writes one JSON object per line. Writers append complete lines and flush, so a
process killed at any moment leaves at most one incomplete last line; `append_jsonl` cuts such a tail off
before it writes, and `read_jsonl` can skip it, so a resumed run loses nothing and duplicates nothing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "RecordError", "append_jsonl", "write_jsonl", "read_jsonl", "done_ids", "repair_tail", "require_fields", "json_safe",
]


class RecordError(ValueError):
    """A malformed record: the message is ``file:line: what is wrong`` so that a user can fix it."""

    def __init__(self, path: str | os.PathLike, line: int, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{path}:{line}: {problem}")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) inside dicts, lists and tuples replaced by None.

    ``json.dumps`` writes NaN as a bare ``NaN``, which is not JSON: jq, JavaScript and strict parsers reject
    the whole file. An undefined metric (an AUC with one class empty) is written as ``null`` instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def repair_tail(path: str | os.PathLike) -> int:
    """Cut an incomplete last line (no trailing newline, left by a killed writer); return bytes removed."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        # Walk back to the last newline in chunks.
        position = size
        while position > 0:
            step = min(65536, position)
            handle.seek(position - step)
            chunk = handle.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = position - step + cut + 1
                handle.truncate(keep)
                return size - keep
            position -= step
        handle.truncate(0)
        return size


def append_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]], fsync: bool = False) -> int:
    """Append records as whole JSON lines and flush after each; returns how many were written.

    An incomplete last line left by a killed writer is removed first, so the file stays readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(path)
    count = 0
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            # One write call per line: the line is either wholly in the file or (after a kill) a cut tail.
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
            count += 1
    return count


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records to a fresh file atomically (temp file + rename); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def read_jsonl(
    path: str | os.PathLike,
    *,
    skip_incomplete_tail: bool = False,
    with_line_numbers: bool = False,
    required: Sequence[str] = (),
    kinds: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """Yield the objects of a JSONL file (or ``(line_number, object)`` pairs).

    A malformed line raises `RecordError` naming file and line; so does an object missing a field in
    ``required``, or holding a field of ``kinds`` (field → a key of `FIELD_KINDS`) of another type. With
    ``skip_incomplete_tail`` a last line without a newline (a killed writer's) is skipped. Blank lines are ignored.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            incomplete = not raw.endswith(b"\n")
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if incomplete and skip_incomplete_tail:
                    return
                reason = "truncated line (no closing brace)" if incomplete else "invalid JSON"
                raise RecordError(path, number, f"{reason}: {getattr(exc, 'msg', exc)}") from None
            if incomplete and skip_incomplete_tail:
                return
            if required:
                require_fields(record, required, path, number)
            if kinds and isinstance(record, dict):
                check_kinds(record, kinds, path, number)
            yield (number, record) if with_line_numbers else record


def require_fields(record: Any, fields: Sequence[str], path: str | os.PathLike, line: int) -> None:
    """Raise `RecordError` unless ``record`` is an object holding every field in ``fields``."""
    if not isinstance(record, dict):
        raise RecordError(path, line, f"expected a JSON object, got {type(record).__name__}")
    missing = [field for field in fields if field not in record]
    if missing:
        raise RecordError(path, line, f"missing field {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def _all(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


# What a record field may hold: a name (used in the error) and its check.
FIELD_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("a string", lambda value: isinstance(value, str)),
    "number": ("a number", _is_number),
    "integer": ("an integer", lambda value: isinstance(value, int)),
    "texts": ("a list of strings", _all(lambda value: isinstance(value, str))),
    "numbers": ("a list of numbers (or true/false)", _all(_is_number)),
    "number lists": ("a list of lists of numbers", _all(_all(_is_number))),
}


# The record schemas of prm/labels.py's outputs, as the trainers read them: required fields, and field kinds.
PAIR_FIELDS = ("prompt", "chosen", "rejected")
PAIR_KINDS = {"prompt": "text", "chosen": "text", "rejected": "text", "q_chosen": "number", "q_rejected": "number",
              "n_chosen": "integer", "n_rejected": "integer", "depth": "integer"}
MC_LABEL_FIELDS = ("prompt", "completions", "labels")
MC_LABEL_KINDS = {"prompt": "text", "completions": "texts", "labels": "numbers", "values": "numbers"}
STEP_REWARD_FIELDS = ("prompt", "responses", "rewards", "step_rewards")
STEP_REWARD_KINDS = {"prompt": "text", "responses": "texts", "rewards": "numbers", "step_rewards": "number lists"}


def check_kinds(record: dict[str, Any], kinds: Mapping[str, str], path: str | os.PathLike, line: int) -> None:
    """Raise `RecordError` naming file, line and field when a field of ``kinds`` that ``record`` holds is not
    of its kind (a string where a number belongs fails here, not as a bare ``float()`` error mid-training)."""
    for field, kind in kinds.items():
        name, check = FIELD_KINDS[kind]
        if field in record and not check(record[field]):
            shown = json.dumps(record[field], ensure_ascii=False)
            raise RecordError(path, line, f"field {field!r} must be {name}, got {shown[:60]}")


def done_ids(path: str | os.PathLike, key: str = "id") -> set[str]:
    """Ids (field ``key``) of the complete records already in ``path``: what a resumed run must skip."""
    if not Path(path).exists():
        return set()
    return {str(record[key]) for record in read_jsonl(path, skip_incomplete_tail=True) if isinstance(record, dict) and key in record}


def read_json_file(path: str | os.PathLike) -> Any:
    """The JSON value of a whole-file JSON document (a model's value_head.json, step_format.json, a .json
    problem file); a broken one raises an error naming the file (and line)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_yaml_mapping(path: str | os.PathLike, what: str = "settings") -> dict[str, Any]:
    """The mapping in a YAML file (a recipe, a run's config.yaml); broken YAML or another value raises
    `RecordError` naming the file and line."""
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RecordError(path, mark.line + 1 if mark else 1, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(loaded, dict):
        raise RecordError(path, 1, f"expected a mapping of {what}")
    return loaded


def check_resumable(saved_path: str | os.PathLike, current: dict[str, Any], resumable_keys: Iterable[str],
                    what: str = "run", fillable_keys: Iterable[str] = (),
                    added_keys: dict[str, Any] | None = None) -> None:
    """Refuse to resume when ``saved_path`` (a YAML config written by the first run) differs from ``current``
    in a key outside ``resumable_keys``; the error names the file, the key and both values. A folder holding
    nothing but that config (a run that failed before its first record, say on a mistyped ``--policy``) has
    nothing to protect, so it may start over with other settings. A key in ``fillable_keys`` may go from unset
    (None) to a value. Paths compare as the files they name (``runs/prm/`` is ``runs/prm``). A key the saved
    config lacks (a setting added by a later version) is not compared: it cannot say what that run used, unless
    ``added_keys`` gives the value every run before the setting existed behaved as (a search's ``offset``: 0)."""
    saved_path = Path(saved_path)
    if not saved_path.exists() or not _holds_records(saved_path.parent, besides=saved_path):
        return
    saved = {**(added_keys or {}), **read_yaml_mapping(saved_path)}
    free, fillable = set(resumable_keys), set(fillable_keys)
    changed = sorted(k for k in current if k in saved and k not in free and not _same_setting(saved[k], current[k], k)
                     and not (k in fillable and saved.get(k) is None))
    if changed:
        key = changed[0]
        raise ValueError(f"{saved_path}: this {what} was started with {key}={saved.get(key)!r}, not {current[key]!r}; "
                         "use another --output or the same settings to resume")


# Settings whose unset value (None) means a named default: the policy to load is the embedded one
# (reasoner.models.EMBEDDED_MODELS), so `--policy embedded` resumes a run started without --policy.
_NAMED_DEFAULTS = {"policy": "embedded", "model": "embedded"}


def _same_setting(saved: Any, current: Any, key: str = "") -> bool:
    """Equal values, a named default and None, or two spellings of one path (``./a`` and ``a/``, relative and
    absolute)."""
    if saved == current:
        return True
    named = _NAMED_DEFAULTS.get(key)
    if named is not None and (saved, current) in ((None, named), (named, None)):
        return True
    if not (isinstance(saved, str) and isinstance(current, str)):
        return False
    try:
        return os.path.samefile(saved, current)
    except OSError:
        return os.path.normpath(saved) == os.path.normpath(current)


def _holds_records(folder: Path, besides: Path) -> bool:
    """Whether ``folder`` holds any non-empty file other than ``besides`` and temp files (at any depth)."""
    for path in folder.rglob("*"):
        if path == besides or path.suffix == ".tmp":
            continue
        try:
            if path.is_file() and path.stat().st_size:
                return True
        except FileNotFoundError:  # renamed or removed meanwhile by another process
            continue
    return False


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a uniquely named temp file and a rename, so that a reader (another
    shard or rank) sees the old file or the new one, never half of one."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp makes it private)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_config(config: Any, directory: str | os.PathLike, name: str = "config.yaml") -> Path:
    """Write a run's resolved settings (a dataclass or mapping) as YAML to ``directory/name``, atomically:
    shards and torchrun ranks all write it, and `check_resumable` reads it back on a rerun."""
    import dataclasses

    import yaml

    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return write_text_atomic(Path(directory) / name, yaml.safe_dump(values, sort_keys=False))
