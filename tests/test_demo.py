import json

import pytest

from reasoner.cli import main


@pytest.mark.slow
def test_quick_demo_writes_the_report_the_issue_asks_for(tmp_path):
    assert main(["--quiet", "demo", "--quick", "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [entry["round"] for entry in report["rounds"]] == [0, 1]
    for entry in report["rounds"]:
        assert {"greedy", "maj@2", "beam@1x2", "mcts@3x2"} <= set(entry["eval"])
        for row in entry["eval"].values():
            assert 0.0 <= row["accuracy"] <= 1.0 and row["tokens_per_problem"] > 0 and row["seconds"] >= 0
    assert {"step_auc", "first_error_f1"} <= set(report["prm"]) and report["wall_seconds"] > 0
    assert "| greedy |" in (tmp_path / "report.md").read_text()
