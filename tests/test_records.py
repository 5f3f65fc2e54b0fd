import json

import pytest

from data.records import RecordError, append_jsonl, done_ids, json_safe, read_jsonl, repair_tail, write_jsonl


def test_append_and_read_round_trip(tmp_path):
    path = tmp_path / "out.jsonl"
    append_jsonl(path, [{"id": "a", "x": 1}])
    append_jsonl(path, [{"id": "b", "x": 2}, {"id": "c", "x": "é"}])
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b", "c"]
    assert done_ids(path) == {"a", "b", "c"}


def test_truncated_tail_is_repaired_before_append(tmp_path):
    path = tmp_path / "out.jsonl"
    append_jsonl(path, [{"id": "a"}])
    with open(path, "a") as handle:  # what a killed writer leaves behind
        handle.write('{"id": "b", "nodes": [1, 2')
    assert done_ids(path) == {"a"}
    assert list(read_jsonl(path, skip_incomplete_tail=True)) == [{"id": "a"}]
    with pytest.raises(RecordError, match=r"out.jsonl:2: truncated line"):
        list(read_jsonl(path))
    append_jsonl(path, [{"id": "b"}])
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]


def test_repair_tail_on_file_without_any_newline(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "half')
    assert repair_tail(path) == len('{"id": "half')
    assert path.read_text() == ""


def test_malformed_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1}\n{"id": 2,,}\n{"id": 3}\n')
    with pytest.raises(RecordError) as info:
        list(read_jsonl(path, skip_incomplete_tail=True))
    assert str(info.value).startswith(f"{path}:2: invalid JSON")


def test_required_fields(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"id": 1}) + "\n" + json.dumps({"name": 2}) + "\n")
    with pytest.raises(RecordError, match=r"x.jsonl:2: missing field 'id'"):
        list(read_jsonl(path, required=["id"]))


def test_write_jsonl_is_atomic_replace(tmp_path):
    path = tmp_path / "w.jsonl"
    write_jsonl(path, [{"a": 1}])
    write_jsonl(path, [{"a": 2}])
    assert list(read_jsonl(path)) == [{"a": 2}]
    assert not (tmp_path / "w.jsonl.tmp").exists()


def test_check_resumable_protects_only_folders_that_hold_results(tmp_path):
    from data.records import check_resumable, write_text_atomic

    config = tmp_path / "run" / "config.yaml"
    write_text_atomic(config, "simulations: 3\npolicy: null\nvalue_model: null\n")
    (tmp_path / "run" / ".config.yaml.x.tmp").write_text("half")  # another writer's temp file is not a result
    check_resumable(config, {"simulations": 9}, ())  # nothing but the config: it may start over
    (tmp_path / "run" / "trees.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="started with simulations=3, not 9"):
        check_resumable(config, {"simulations": 9}, ())
    check_resumable(config, {"simulations": 9}, ("simulations",))
    check_resumable(config, {"simulations": 3, "policy": "p"}, (), fillable_keys=("policy",))  # unset, now set
    with pytest.raises(ValueError, match="started with policy=None"):
        check_resumable(config, {"simulations": 3, "policy": "p"}, ())
    check_resumable(config, {"simulations": 3, "policy": "embedded"}, ())  # the default, by its name
    check_resumable(config, {"simulations": 3, "entropy_coef": 0.001}, ())  # a setting newer than the saved run
    with pytest.raises(ValueError, match="started with value_model=None"):
        check_resumable(config, {"simulations": 3, "value_model": "embedded"}, ())  # no named default there
    write_text_atomic(config, f"simulations: 3\npolicy: {tmp_path / 'run'}\n")
    check_resumable(config, {"simulations": 3, "policy": str(tmp_path / "run") + "/"}, ())  # one path, two spellings
    with pytest.raises(ValueError, match="started with policy="):
        check_resumable(config, {"simulations": 3, "policy": str(tmp_path)}, ())
    assert config.stat().st_mode & 0o044  # readable like any other file, not mkstemp's 0600
    config.write_text("simulations: [3\n")
    with pytest.raises(RecordError, match=r"config.yaml:\d+: invalid YAML"):
        check_resumable(config, {"simulations": 3}, ())


def test_json_safe_writes_undefined_metrics_as_null():
    value = {"auc": float("nan"), "rows": [1.5, float("inf"), (float("-inf"), "x")], "n": 3, "ok": True}
    text = json.dumps(json_safe(value), allow_nan=False)
    assert json.loads(text) == {"auc": None, "rows": [1.5, None, [None, "x"]], "n": 3, "ok": True}
