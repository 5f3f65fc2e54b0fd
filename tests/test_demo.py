import json

from reasoner.cli import main


def test_quick_demo_writes_a_report(tmp_path, capsys):
    assert main(["--quiet", "demo", "--quick", "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    methods = report["rounds"][0]["eval"]
    assert {"greedy", "maj@8"} <= set(methods)
    for row in methods.values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["tokens_per_problem"] > 0 and row["seconds"] >= 0
    assert report["wall_seconds"] > 0
    assert "| greedy |" in (tmp_path / "report.md").read_text()
