"""Problems with gold answers: the `Problem` record and `load_problems(spec)`.

Specs:
  * ``gsm8k:test`` / ``gsm8k:train``: GSM8K (hub ``openai/gsm8k``, config ``main``). The gold answer is the
    text after the last ``####`` with thousands separators removed.
  * ``math500:test``: MATH-500 (hub ``HuggingFaceH4/MATH-500``). Gold from ``answer``, or the last
    ``\\boxed{}`` of ``solution`` when ``answer`` is missing.
  * ``synthetic:train`` / ``synthetic:test``: the embedded GSM-style task (``data.synthetic``).
  * a path to a ``.jsonl`` / ``.json`` / ``.parquet`` file with ``question`` or ``problem`` and ``answer``
    columns (``solution``, ``id`` optional).

Hub names are read from a local directory first, so that everything works offline: ``data_dir``, else the
``REASONER_DATA_DIR`` environment variable. That directory holds ``gsm8k/test.jsonl``,
``gsm8k/train.jsonl`` (or ``train_sample.jsonl``) and ``math500/test.jsonl``. Without one, the hub is
asked through ``datasets``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from data.records import RecordError, read_json_file, read_jsonl

__all__ = ["Problem", "load_problems", "missed_problems", "gsm8k_gold", "resolve_data_dir", "HUB_SPECS"]


@dataclass(frozen=True)
class Problem:
    """One math problem: an id, the question text, the gold final answer and (optionally) a solution."""

    id: str
    question: str
    answer: str
    solution: str | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# spec -> (hub dataset, hub config, hub split, local files tried in order)
HUB_SPECS: dict[str, tuple[str, str | None, str, tuple[str, ...]]] = {
    "gsm8k:test": ("openai/gsm8k", "main", "test", ("gsm8k/test.jsonl",)),
    "gsm8k:train": ("openai/gsm8k", "main", "train", ("gsm8k/train.jsonl", "gsm8k/train_sample.jsonl")),
    "math500:test": ("HuggingFaceH4/MATH-500", None, "test", ("math500/test.jsonl",)),
}

def gsm8k_gold(answer_field: str) -> str:
    """The GSM8K gold answer: text after the last ``####``, thousands separators removed."""
    if "####" not in answer_field:
        raise ValueError("no '#### N' line in GSM8K answer")
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local data directory: the argument, else ``$REASONER_DATA_DIR``, else None (use the hub)."""
    chosen = data_dir or os.environ.get("REASONER_DATA_DIR")
    return Path(chosen) if chosen else None


def load_problems(spec: str, limit: int | None = None, data_dir: str | os.PathLike | None = None, *,
                  offset: int = 0, needed_for: str | None = None) -> list[Problem]:
    """Load problems named by ``spec`` (see the module docstring): past the first ``offset``, at most ``limit``
    of them if given. With ``needed_for`` (say "search"), none at all is an error naming the spec, the offset
    and the limit."""
    for name, value in (("limit", limit), ("offset", offset)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be 0 or more, got {value}")
    problems = _load_problems(spec, None if limit is None else offset + limit, data_dir)[offset:]
    if needed_for and not problems:
        given = [f"--offset {offset}"] * bool(offset) + [f"--limit {limit}"] * (limit is not None)
        raise ValueError(f"{spec}: no problems to {needed_for}" + (f" ({', '.join(given)})" if given else ""))
    return problems


def missed_problems(problems: list[Problem], verdicts: str | os.PathLike) -> list[Problem]:
    """The problems that a policy got wrong, in their order: those whose line in ``verdicts`` (``id`` +
    ``correct``: `reasoner eval`'s ``predictions/METHOD.jsonl`` or `reasoner check`'s verdict file) says
    ``"correct": false``. Searching only these aims the next round at what the policy still misses. A problem
    the file does not score is an error naming it (the file scored other problems), not a silent drop; so is a
    problem scored both right and wrong (several samples per problem: give one verdict each)."""
    verdict_of: dict[str, tuple[bool, int]] = {}  # problem id -> (correct, the line that first said so)
    records = read_jsonl(verdicts, with_line_numbers=True, required=("id", "correct"), skip_incomplete_tail=True)
    for line, record in records:
        problem_id, correct = str(record["id"]), record["correct"]
        if not isinstance(correct, bool):
            raise RecordError(verdicts, line, f"field 'correct' must be true or false, got {correct!r}")
        first, first_line = verdict_of.setdefault(problem_id, (correct, line))
        if first != correct:
            raise RecordError(verdicts, line, f"problem {problem_id!r} is scored right and wrong (line "
                              f"{first_line} says otherwise); give one verdict per problem")
    unscored = [p.id for p in problems if p.id not in verdict_of]
    if unscored:
        more = f" (and {len(unscored) - 1} more)" if len(unscored) > 1 else ""
        raise ValueError(f"{verdicts}: no verdict for problem {unscored[0]!r}{more}; score the same problems "
                         "(the same spec, --offset and --limit) with `reasoner eval --methods greedy` first")
    return [p for p in problems if not verdict_of[p.id][0]]


def _load_problems(spec: str, limit: int | None, data_dir: str | os.PathLike | None) -> list[Problem]:
    if spec.startswith("synthetic:"):
        from data.synthetic import load_split

        return load_split(spec.split(":", 1)[1], limit)
    if spec in HUB_SPECS:
        rows, where = _hub_rows(spec, data_dir)
        return _rows_to_problems(rows, spec.replace(":", "-"), where, limit)
    path = Path(spec)
    if path.suffix in {".jsonl", ".json", ".parquet"} or path.exists():
        return _rows_to_problems(_file_rows(path), path.stem, str(path), limit)
    known = ", ".join([*HUB_SPECS, "synthetic:train", "synthetic:test"])
    raise ValueError(f"unknown problem spec {spec!r}: use one of {known} or a path to a .jsonl/.json/.parquet file")


def _hub_rows(spec: str, data_dir: str | os.PathLike | None) -> tuple[Iterable[tuple[int, dict]], str]:
    hub_name, hub_config, split, local_names = HUB_SPECS[spec]
    local_dir = resolve_data_dir(data_dir)
    if local_dir is not None:
        for name in local_names:
            candidate = local_dir / name
            if candidate.exists():
                return _file_rows(candidate), str(candidate)
        tried = ", ".join(str(local_dir / n) for n in local_names)
        raise FileNotFoundError(f"{spec}: none of {tried} exists (data dir from --data-dir / REASONER_DATA_DIR)")
    try:
        import datasets

        table = datasets.load_dataset(hub_name, hub_config, split=split)
    except Exception as exc:  # offline, no such dataset, ...
        raise FileNotFoundError(
            f"{spec}: could not load {hub_name} from the hub ({type(exc).__name__}: {exc}); "
            "set REASONER_DATA_DIR or --data-dir to a local copy"
        ) from exc
    return enumerate(table, start=1), hub_name


def _file_rows(path: Path) -> Iterable[tuple[int, dict]]:
    """(line number or row number, row dict) pairs from a JSONL, JSON (list or {"data": [...]}) or Parquet file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".parquet":
        import datasets

        try:
            return enumerate(datasets.Dataset.from_parquet(str(path)), start=1)
        except Exception as exc:  # pyarrow's ArrowInvalid and kin, which do not name the file
            raise ValueError(f"{path}: not a readable Parquet file ({str(exc).strip().splitlines()[-1]})") from None
    if path.suffix == ".json":
        loaded = read_json_file(path)
        rows = loaded.get("data", loaded) if isinstance(loaded, dict) else loaded
        if not isinstance(rows, list):
            raise RecordError(path, 1, "expected a list of objects (or {'data': [...]})")
        return enumerate(rows, start=1)
    return read_jsonl(path, with_line_numbers=True)


def _rows_to_problems(rows: Iterable[tuple[int, dict]], source: str, where: str, limit: int | None) -> list[Problem]:
    problems: list[Problem] = []
    line_of: dict[str, int] = {}
    for number, row in rows:
        if limit is not None and len(problems) >= limit:
            break
        problem = _row_to_problem(row, number, source, where)
        if problem.id in line_of:  # runs key records, samples and resumes by id
            raise RecordError(where, number, f"duplicate id {problem.id!r} (first on line {line_of[problem.id]})")
        line_of[problem.id] = number
        problems.append(problem)
    return problems


def _row_to_problem(row: dict, number: int, source: str, where: str) -> Problem:
    if not isinstance(row, dict):
        raise RecordError(where, number, "expected a JSON object")
    question = row.get("question", row.get("problem"))
    if question is None:
        raise RecordError(where, number, "missing field 'question' (or 'problem')")
    if not isinstance(question, str) or not question.strip():
        raise RecordError(where, number, f"field 'question' must be a non-empty string, got {json.dumps(question)[:60]}")
    solution = row.get("solution")
    answer = row.get("answer", row.get("final_answer"))
    if isinstance(answer, list) and answer:
        answer = answer[0]
    if isinstance(answer, (int, float)):
        answer = str(answer)
    if isinstance(answer, str) and "####" in answer:  # GSM8K: worked solution + '#### N'
        solution, answer = answer, gsm8k_gold(answer)
    if not answer and isinstance(solution, str):
        from data.answers import extract_answer

        answer = extract_answer(solution)
    if not isinstance(answer, str) or not answer.strip():
        raise RecordError(where, number, "missing field 'answer' (and no \\boxed{} answer in 'solution')")
    problem_id = row.get("id", row.get("unique_id", row.get("problem_id")))
    return Problem(
        id=str(problem_id) if problem_id is not None else f"{source}-{number - 1:05d}",
        question=question.strip(),
        answer=answer.strip(),
        solution=solution if isinstance(solution, str) else None,
        source=str(row.get("source", source.split("-")[0])),
    )
