"""`reasoner eval-prm`: how well a `StepScorer` finds wrong steps in synthetic solutions.

The set is, per problem of a synthetic split, its gold solution (every step correct) and one corrupted
solution (`data.corruption.corrupt_solution`: exactly one wrong result at a known step, later steps
recomputed from it). A step is positive when no step up to and including it is wrong. Reported:

* ``step_auc``: ROC AUC of the step values against those labels;
* ``first_error_f1`` (ProcessBench): the predicted first error is the first step valued below ``threshold``
  (default: the model's calibrated threshold, else 0 for a tanh head and 0.5 otherwise); F1 of the accuracy on corrupted solutions (prediction = true
  first error) and on correct ones (no step below the threshold);
* ``solution_auc_min``: AUC of the min step value, correct vs corrupted solutions (best-of-N's view);
* ``best_threshold`` / ``first_error_f1_at_best``: the same F1 with the threshold chosen on this very set,
  an oracle figure reported only to show calibration, never the headline.

``calibrate_on`` (e.g. ``synthetic:train``) picks the threshold that maximises F1 on *that* split's gold +
corrupted solutions first and then scores ``problems`` with it, so a test figure never sees a test label.
"""

from __future__ import annotations

import time
from typing import Any

from search.protocols import scorer_head
from prm.metrics import best_threshold, first_error_scores, roc_auc

__all__ = ["evaluate_prm", "default_threshold"]


def default_threshold(scorer: Any) -> float:
    """The scorer's own calibrated ``threshold`` when it has one (`reasoner train-prm` sets it from held-out
    label paths), else 0 for value heads in [-1, 1] (tanh) and 0.5 for probabilities."""
    calibrated = getattr(scorer, "threshold", None)
    if calibrated is not None:
        return float(calibrated)
    return 0.0 if scorer_head(scorer) == "tanh" else 0.5


def evaluate_prm(scorer: Any, problems: str = "synthetic:test", limit: int | None = None, seed: int = 0,
                 threshold: float | None = None, batch_size: int = 256, progress: bool = True,
                 calibrate_on: str | None = None, calibrate_limit: int | None = 500) -> dict:
    """Step AUC, first-error accuracies and F1 of ``scorer`` on gold + corrupted solutions of a synthetic split."""
    source = "given" if threshold is not None else _threshold_source(scorer)
    if calibrate_on is not None:
        if calibrate_on == problems:
            raise ValueError("calibrate the threshold on another split than the one evaluated")
        calibration = evaluate_prm(scorer, calibrate_on, calibrate_limit, seed, batch_size=batch_size, progress=progress)
        threshold, source = calibration["best_threshold"], f"best F1 on {calibrate_on} (first {calibrate_limit})"
        if threshold is None:  # no defined F1 there (no wrong or no correct solution): the scorer's own threshold
            source = f"{source[:-1]}; undefined there, so {_threshold_source(scorer)})"
    result = _evaluate(scorer, problems, limit, seed, threshold, batch_size, progress)
    result["threshold_source"] = source
    return result


def _threshold_source(scorer: Any) -> str:
    """Where the threshold of a scorer used without ``--threshold`` comes from: its calibrated one, or the head's."""
    return "model" if getattr(scorer, "threshold", None) is not None else "default"


def _evaluate(scorer: Any, problems: str, limit: int | None, seed: int, threshold: float | None, batch_size: int,
              progress: bool) -> dict:
    from tqdm.auto import tqdm

    from data.corruption import corrupted_split
    from data.synthetic import load_split

    if not problems.startswith("synthetic:"):
        raise ValueError(f"eval-prm needs solutions with a known first error: use synthetic:test or synthetic:train, "
                         f"not {problems!r}")
    split = problems.split(":", 1)[1]
    gold = load_split(split, limit)
    corrupted = corrupted_split(split, limit, seed=seed)
    questions = [p.question for p in gold] + [c.question for c in corrupted]
    step_lists = [p.solution.split("\n") for p in gold] + [c.steps for c in corrupted]
    first_errors = [-1] * len(gold) + [c.first_error for c in corrupted]
    started = time.perf_counter()
    values: list[list[float]] = []
    for start in tqdm(range(0, len(questions), batch_size), desc="eval-prm", unit="batch",
                       disable=not progress):
        values.extend(scorer.score(questions[start:start + batch_size], step_lists[start:start + batch_size]))
    seconds = time.perf_counter() - started
    flat_values, flat_labels = [], []
    for row, truth in zip(values, first_errors):
        flat_values.extend(row)
        flat_labels.extend(truth < 0 or i < truth for i in range(len(row)))
    tau = default_threshold(scorer) if threshold is None else threshold
    scores = first_error_scores(values, first_errors, tau)
    best_tau, best = best_threshold(values, first_errors)
    return {
        "problems": problems, "solutions": len(values), "steps": len(flat_values),
        "step_auc": round(roc_auc(flat_values, flat_labels), 4),
        "first_error_f1": round(scores["f1"], 4),
        "error_accuracy": round(scores["error_accuracy"], 4),
        "correct_accuracy": round(scores["correct_accuracy"], 4),
        "threshold": tau,
        "solution_auc_min": round(roc_auc([min(v) if v else 0.0 for v in values], [t < 0 for t in first_errors]), 4),
        "best_threshold": None if best_tau is None else round(best_tau, 4), "first_error_f1_at_best": round(best, 4),
        "seconds": round(seconds, 2),
    }
