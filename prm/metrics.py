"""PRM metrics as pure functions: ROC AUC, first-error prediction, ProcessBench-style F1."""

from __future__ import annotations

from typing import Sequence

__all__ = ["roc_auc", "predicted_first_error", "first_error_scores", "best_threshold"]


def roc_auc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties count ½.

    Computed from ranks (Mann-Whitney U) with average ranks for ties; NaN when one class is empty.
    """
    n_pos = sum(1 for p in positives if p)
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        average = (start + end) / 2 + 1  # ranks are 1-based
        for k in range(start, end + 1):
            ranks[order[k]] = average
        start = end + 1
    rank_sum = sum(r for r, p in zip(ranks, positives) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def predicted_first_error(values: Sequence[float], threshold: float) -> int:
    """Index of the first step whose value is below ``threshold``; -1 when every step passes."""
    return next((i for i, v in enumerate(values) if v < threshold), -1)


def first_error_scores(step_values: Sequence[Sequence[float]], first_errors: Sequence[int], threshold: float) -> dict:
    """ProcessBench-style first-error metrics over solutions (``first_error`` -1 = a correct solution).

    ``error_accuracy``: share of erroneous solutions whose predicted first error is the true one;
    ``correct_accuracy``: share of correct solutions with no step below the threshold;
    ``f1`` = 2·a_err·a_cor / (a_err + a_cor).
    """
    hits = {True: [0, 0], False: [0, 0]}  # erroneous? -> [hits, total]
    for values, truth in zip(step_values, first_errors):
        bucket = hits[truth >= 0]
        bucket[0] += predicted_first_error(values, threshold) == truth
        bucket[1] += 1
    error_accuracy = hits[True][0] / hits[True][1] if hits[True][1] else float("nan")
    correct_accuracy = hits[False][0] / hits[False][1] if hits[False][1] else float("nan")
    total = error_accuracy + correct_accuracy
    f1 = 2 * error_accuracy * correct_accuracy / total if total else 0.0
    return {"error_accuracy": error_accuracy, "correct_accuracy": correct_accuracy, "f1": f1}


def best_threshold(step_values: Sequence[Sequence[float]], first_errors: Sequence[int],
                   grid: int = 200) -> tuple[float | None, float]:
    """The threshold (among ~``grid`` quantiles of the values) with the highest first-error F1, and that F1;
    ``(None, nan)`` when no threshold has a defined F1 (every path correct, or every path wrong: F1 needs
    both), so that callers keep the head's default threshold instead of an arbitrary one."""
    candidates = sorted({round(v, 3) for row in step_values for v in row})
    best: tuple[float | None, float] = (None, float("nan"))
    for tau in candidates[:: max(1, len(candidates) // grid)]:
        f1 = first_error_scores(step_values, first_errors, tau + 1e-9)["f1"]
        if f1 == f1 and (best[0] is None or f1 > best[1]):  # f1 != f1: undefined (nan)
            best = (tau + 1e-9, f1)
    return best
