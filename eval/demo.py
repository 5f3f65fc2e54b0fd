"""`reasoner demo` (what `make demo` runs): `reasoner pipeline --config configs/demo.yaml` with a summary.

One round of the whole loop on the embedded default: MCTS over synthetic:train problems with verified
leaves, step-preference pairs + MC labels, a step value model, a Step-DPO policy, and a decoding eval of the
starting (round 0) and trained (round 1) policies on synthetic:test: greedy, majority vote, best-of-N and
weighted majority with the value model, value-guided step beam search and MCTS as a decoder. Prints the
before/after table; ``report.json`` holds ``rounds``, ``prm`` and ``wall_seconds``. ``quick`` shrinks every
stage (for tests); a re-run skips the stages already done.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

__all__ = ["run_demo", "DEMO_RECIPE"]

DEMO_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"

_QUICK = {
    "search": {"limit": 8, "simulations": 6, "children": 3},
    "prm": {"max_steps": 4, "batch_size": 8},
    "prm_eval": {"limit": 8, "calibrate-on": None},
    "train": {"max_steps": 2},
    "eval": {"limit": 6, "methods": "greedy,maj@2,bon@2,wmaj@2,beam@1x2,mcts@3x2"},
}


def run_demo(output: str = "runs/demo", quick: bool = False,
             run_command: Callable[[list[str]], int] | None = None) -> int:
    """Run the demo pipeline, print the before/after table and where the report is; returns 0."""
    import json

    from reasoner.pipeline import before_after_table, load_pipeline_config, metric_text, run_pipeline

    config = load_pipeline_config(DEMO_RECIPE, {"output": output})
    if quick:
        for section, values in _QUICK.items():
            merged = {**(getattr(config, section) or {}), **values}
            setattr(config, section, {k: v for k, v in merged.items() if v is not None})
    started = time.perf_counter()
    print(f"reasoner demo: {config.rounds} round(s) of search → label → train-prm → train {config.train['algo']} → "
          f"eval on the embedded tiny policy; output {output}")
    report = run_pipeline(config, run_command=run_command)
    report["demo_seconds_this_run"] = round(time.perf_counter() - started, 1)
    Path(output, "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(before_after_table(report))
    if report["prm"]:
        print(f"value model on synthetic:test: step AUC {metric_text(report['prm']['step_auc'])}, "
              f"first-error F1 {metric_text(report['prm']['first_error_f1'])}")
    print(f"stages: {report['wall_seconds']:.0f} s; this run: {report['demo_seconds_this_run']:.0f} s; "
          f"report: {output}/report.json, report.md, report.png")
    return 0
