"""Eval reports: per-method summaries, compute-matched comparisons, ``report.json`` / ``report.md`` / ``report.png``.

A method's row: ``accuracy``, ``tokens_per_problem`` (tokens the policy generated; value-model forward passes
are not counted), ``seconds`` (wall time of the whole method over all problems, summed over resumed parts)
and ``n``. Value-ranked sample methods (bon / wmaj) also carry ``ranking_auc``: how often the value model
scores a correct sample above a wrong sample *of the same problem* (the ranking best-of-N depends on; ties
½). Sample-based methods also carry ``curve``: the same numbers for the first k samples, k = 1, 2,
4, ... K. ``compute_matched`` sets each method against majority vote with the largest k whose tokens per
problem do not exceed the method's: "at equal or fewer tokens, does this method beat voting?".
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

__all__ = ["summarize", "within_problem_auc", "write_report", "markdown_table", "plot_accuracy_vs_tokens"]


def summarize(config: Any, methods: Sequence[Any], records: dict[str, list[dict]]) -> dict:
    """The report dict of one eval: config, per-method rows (with curves) and compute-matched comparisons."""
    rows: dict[str, dict] = {}
    for method in methods:
        found = records[method.name]
        n = max(len(found), 1)
        row = {"accuracy": round(sum(r["correct"] for r in found) / n, 4),
               "tokens_per_problem": round(sum(r["tokens"] for r in found) / n, 1),
               "seconds": round(sum(r["seconds"] for r in found), 2), "n": len(found)}
        if found and "curve" in found[0]:
            row["curve"] = [{"k": int(k), "accuracy": round(sum(r["curve"][k]["correct"] for r in found) / n, 4),
                             "tokens_per_problem": round(sum(r["curve"][k]["tokens"] for r in found) / n, 1)}
                            for k in found[0]["curve"]]
        if found and "sample_correct" in found[0]:
            row["ranking_auc"] = within_problem_auc(found)
        rows[method.name] = row
    settings = asdict(config)
    return {"problems": settings["problems"], "offset": settings["offset"],
            "n": max((row["n"] for row in rows.values()), default=0),
            "policy": settings["policy"] or "embedded", "value": settings["value"],
            "temperature": settings["temperature"], "aggregate": settings["aggregate"],
            "methods": rows, "compute_matched": compute_matched(rows)}


def within_problem_auc(records: Sequence[dict]) -> float | None:
    """P(score of a correct sample > score of a wrong sample of the same problem), pooled over every such pair
    (ties ½): each problem's ROC AUC weighted by its n_correct x n_wrong pairs. None when no problem has both."""
    from prm.metrics import roc_auc

    total = pairs = 0.0
    for record in records:
        correct = record.get("sample_correct")
        if not correct or "scores" not in record:
            continue
        mixed = sum(correct) * (len(correct) - sum(correct))
        if mixed:
            total += roc_auc(record["scores"], correct) * mixed
            pairs += mixed
    return round(total / pairs, 4) if pairs else None


def compute_matched(rows: dict[str, dict]) -> dict[str, dict]:
    """For every method, the majority-vote point (any ``maj@K`` curve) with the most tokens ≤ the method's."""
    voting = [point for name, row in rows.items() if name.startswith("maj@") for point in row.get("curve", [])]
    matched = {}
    for name, row in rows.items():
        if name.startswith("maj@"):
            continue
        affordable = [p for p in voting if p["tokens_per_problem"] <= row["tokens_per_problem"]]
        best = max(affordable, key=lambda p: (p["tokens_per_problem"], p["accuracy"]), default=None)
        matched[name] = {"accuracy": row["accuracy"], "tokens_per_problem": row["tokens_per_problem"],
                         "majority": best,
                         "beats_majority": None if best is None else row["accuracy"] >= best["accuracy"]}
    return matched


def markdown_table(methods: dict[str, dict]) -> str:
    """A Markdown table: method, accuracy, tokens per problem, seconds."""
    lines = ["| method | accuracy | tokens / problem | seconds |", "|---|---:|---:|---:|"]
    for name, row in methods.items():
        lines.append(f"| {name} | {row['accuracy']:.1%} | {row['tokens_per_problem']:.0f} | {row['seconds']:.1f} |")
    return "\n".join(lines)


def _matched_lines(matched: dict[str, dict]) -> list[str]:
    lines = ["| method | accuracy | tokens / problem | majority vote at ≤ tokens |", "|---|---:|---:|---|"]
    for name, row in matched.items():
        best = row["majority"]
        versus = "no majority point that cheap" if best is None else \
            f"maj@{best['k']}: {best['accuracy']:.1%} at {best['tokens_per_problem']:.0f} tokens"
        lines.append(f"| {name} | {row['accuracy']:.1%} | {row['tokens_per_problem']:.0f} | {versus} |")
    return lines


def _ranking_lines(methods: dict[str, dict]) -> list[str]:
    ranked = {name: row["ranking_auc"] for name, row in methods.items() if row.get("ranking_auc") is not None}
    if not ranked:
        return []
    return ["Value model's within-problem ranking AUC (a correct sample above a wrong one of the same problem): "
            + ", ".join(f"{name} {auc:.3f}" for name, auc in ranked.items()) + ".", ""]


def plot_accuracy_vs_tokens(series: dict[str, dict], path: str | Path, title: str) -> Path:
    """PNG of accuracy vs generated tokens per problem (log x): curves for sample-based methods, points else.

    Names ending in ``(round R)`` (the pipeline's) get one colour per method and one marker per round, later
    rounds drawn darker; with more than 8 series the legend goes beside the plot instead of over the curves.
    """
    from matplotlib.colors import to_rgb
    from matplotlib.figure import Figure

    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    parsed = {}  # name -> (method with @k, round number or None)
    for name in series:
        match = re.fullmatch(r"(.*) \(round (\d+)\)", name)
        method = re.sub(r"@\d+", "@k", match.group(1) if match else name)
        parsed[name] = (method, int(match.group(2)) if match else None)
    methods = list(dict.fromkeys(method for method, _ in parsed.values()))
    rounds = sorted({number for _, number in parsed.values() if number is not None})
    crowded = len(series) > 8
    figure = Figure(figsize=(9.6 if crowded else 7.0, 4.6), dpi=120)
    ax = figure.add_subplot()
    for name, row in series.items():
        method, number = parsed[name]
        label = re.sub(r"@\d+", "@k", name) if row.get("curve") else name
        colour = to_rgb(palette[methods.index(method) % len(palette)])
        step = 0 if number is None else rounds.index(number)
        if len(rounds) > 1:  # fade the earlier rounds towards white
            fade = 0.6 * (1 - step / (len(rounds) - 1))
            colour = tuple(c + (1 - c) * fade for c in colour)
        marker = "osv^PX*"[step % 7]
        if row.get("curve"):
            xs = [p["tokens_per_problem"] for p in row["curve"]]
            ys = [100 * p["accuracy"] for p in row["curve"]]
            ax.plot(xs, ys, marker=marker, color=colour, linestyle="--" if "(round 0)" in name else "-", label=label)
        else:
            ax.scatter([row["tokens_per_problem"]], [100 * row["accuracy"]], s=60, marker="D" if step == 0 else marker,
                       color=colour, edgecolors="black", linewidths=0.4, label=label, zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("tokens generated per problem (log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if crowded else {}))
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)


def write_report(report: dict, output: str | Path) -> None:
    """``report.json``, ``report.md`` and ``report.png`` under ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    title = f"{report['problems']} ({report['n']} problems), policy {report['policy']}"
    text = [f"# reasoner eval\n\n{title}; value model: {report['value']}; sampling temperature "
            f"{report['temperature']}; bon/wmaj aggregation: {report['aggregate']}.\n",
            markdown_table(report["methods"]), "",
            "## Compute-matched: each method against majority vote at equal or fewer generated tokens\n",
            *_matched_lines(report["compute_matched"]), "", *_ranking_lines(report["methods"]),
            "![accuracy vs tokens](report.png)", ""]
    (out / "report.md").write_text("\n".join(text))
    plot_accuracy_vs_tokens(report["methods"], out / "report.png", title)
