"""`reasoner check`: accuracy of a predictions file against gold answers, with a per-problem verdict file."""

from __future__ import annotations

from pathlib import Path

from data.answers import extract_answer, is_equivalent
from data.records import RecordError, read_jsonl, write_jsonl

__all__ = ["check_predictions"]

_TEXT_FIELDS = ("completion", "output", "response", "solution_text", "generated")


def check_predictions(path: str, *, problems_spec: str | None = None, output: str | None = None,
                      timeout: float = 5.0) -> dict:
    """Score every line of ``path`` and write ``{id, prediction, gold, correct}`` verdicts.

    A line holds an ``id`` (or ``problem_id``), and either ``prediction`` (a final answer) or a text field
    (``completion``, ``output``, ``response``) to extract it from. The gold answer is the line's ``gold`` or
    ``answer`` field, or comes from ``problems_spec`` by id. `reasoner eval`'s ``predictions/METHOD.jsonl``
    files hold ``prediction`` and ``gold``, so they can be re-scored (with another ``--timeout``, say) alone.
    """
    out = Path(output) if output else Path(path).with_suffix(".verdicts.jsonl")
    if out.resolve() == Path(path).resolve():
        raise ValueError(f"{output}: the verdicts would overwrite the predictions they score; give another --output")
    gold_by_id: dict[str, str] = {}
    if problems_spec:
        from data.problems import load_problems

        gold_by_id = {p.id: p.answer for p in load_problems(problems_spec)}
    verdicts = []
    for line, record in read_jsonl(path, with_line_numbers=True):
        if not isinstance(record, dict):
            raise RecordError(path, line, "expected a JSON object")
        problem_id = record.get("id", record.get("problem_id"))
        if problem_id is None:
            raise RecordError(path, line, "missing field 'id' (or 'problem_id')")
        gold = record.get("gold", record.get("answer", gold_by_id.get(str(problem_id))))
        if gold is None:
            where = f"in {problems_spec}" if problems_spec else "(pass --problems SPEC to look it up)"
            raise RecordError(path, line, f"missing field 'gold' (or 'answer') and id {problem_id!r} not found {where}")
        if "prediction" in record:
            prediction = record["prediction"]
        else:
            text = next((record[f] for f in _TEXT_FIELDS if isinstance(record.get(f), str)), None)
            if text is None:
                raise RecordError(path, line, "missing field 'prediction' (or a text field: " + ", ".join(_TEXT_FIELDS) + ")")
            prediction = extract_answer(text)
        prediction = None if prediction is None else str(prediction)
        correct = prediction is not None and is_equivalent(prediction, str(gold), timeout=timeout)
        verdicts.append({"id": str(problem_id), "prediction": prediction, "gold": str(gold), "correct": correct})
    write_jsonl(out, verdicts)
    correct = sum(v["correct"] for v in verdicts)
    return {"problems": len(verdicts), "correct": correct,
            "accuracy": round(correct / len(verdicts), 4) if verdicts else 0.0, "verdicts": str(out)}
