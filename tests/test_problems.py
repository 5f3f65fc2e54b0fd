import json

import pytest

from conftest import needs_shared_data
from data import extract_answer, is_equivalent, load_problems
from data.problems import gsm8k_gold
from data.records import RecordError


@needs_shared_data
def test_gsm8k_test_offline():
    problems = load_problems("gsm8k:test")
    assert len(problems) == 1319
    assert problems[0].answer == "18"
    assert problems[0].id == "gsm8k-test-00000"
    assert len({p.id for p in problems}) == 1319
    assert all("####" not in p.answer and "," not in p.answer for p in problems)


@needs_shared_data
def test_gsm8k_train_falls_back_to_sample_and_limit():
    assert len(load_problems("gsm8k:train")) == 200
    assert len(load_problems("gsm8k:train", limit=7)) == 7


@needs_shared_data
def test_math500_gold_answers():
    problems = load_problems("math500:test")
    assert len(problems) == 500
    assert problems[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert problems[0].id == "test/precalculus/807.json"
    assert all(p.solution for p in problems)


def test_gsm8k_gold_removes_thousands_separators():
    assert gsm8k_gold("so 1,000 + 234\n#### 1,234") == "1234"
    with pytest.raises(ValueError):
        gsm8k_gold("no answer line")


def test_synthetic_specs():
    train = load_problems("synthetic:train", limit=10)
    test = load_problems("synthetic:test")
    assert len(train) == 10 and len(test) == 500
    assert {p.question for p in train}.isdisjoint({p.question for p in test})


def test_local_file_formats(tmp_path):
    rows = [{"problem": "1+1?", "answer": "2"}, {"question": "2+2?", "solution": "so \\boxed{4}"},
            {"id": "x", "question": "q", "answer": 5}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = load_problems(str(jsonl))
    assert [p.answer for p in problems] == ["2", "4", "5"]
    assert problems[2].id == "x" and problems[0].id == "p-00000"
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps(rows))
    assert [p.answer for p in load_problems(str(as_json))] == ["2", "4", "5"]
    import datasets

    parquet = tmp_path / "p.parquet"
    datasets.Dataset.from_list([{"question": "q1", "answer": "1"}, {"question": "q2", "answer": "2"}]).to_parquet(str(parquet))
    assert [p.answer for p in load_problems(str(parquet))] == ["1", "2"]


def test_bad_rows_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "ok", "answer": "1"}) + "\n" + json.dumps({"answer": "1"}) + "\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:2: missing field 'question'"):
        load_problems(str(path))


def test_duplicate_ids_and_negative_limits_are_refused(tmp_path):
    path = tmp_path / "dup.jsonl"
    rows = [{"id": "a", "question": "q1", "answer": "1"}, {"id": "b", "question": "q2", "answer": "2"},
            {"id": "a", "question": "q3", "answer": "3"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(RecordError, match=r"dup.jsonl:3: duplicate id 'a' \(first on line 1\)"):
        load_problems(str(path))
    assert [p.id for p in load_problems(str(path), limit=2)] == ["a", "b"]
    for spec in ("synthetic:test", str(path)):
        with pytest.raises(ValueError, match="limit must be 0 or more"):
            load_problems(spec, limit=-1)


def test_unknown_spec():
    with pytest.raises(ValueError, match="unknown problem spec"):
        load_problems("gsm9k:test")


def test_package_exports_answer_tools():
    assert extract_answer("so the total is \\boxed{42}") == "42"
    assert is_equivalent("42", "42.0")
