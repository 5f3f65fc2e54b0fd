"""`reasoner bench answers`: speed and agreement of the answer checker on GSM8K / MATH-500, and its
latency on hostile input.

GSM8K: every gold answer against re-formatted versions of itself (``1,234``, ``1234.0``, ``$1,234``,
``\\boxed{1,234}`` passed through ``extract_answer``) and against a wrong neighbour, repeated to at
least 50,000 checks; the warm rate is measured on one core (CPU affinity pinned where the OS allows).
MATH-500: every answer against re-formatted versions (``\\boxed{}`` then extracted, ``$...$``,
``\\left(``/``\\right)`` added or removed, ``\\dfrac``/``\\frac`` swapped, spaces added) and against the
next problem's answer (should be False). Hostile: pathological inputs, each checked with timeout=2.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from data import answers
from data.answers import extract_answer, is_equivalent, warm_up, worker_stats

MIN_GSM8K_CHECKS = 50_000
HOSTILE_TIMEOUT_S = 2.0


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextmanager
def _one_core() -> Iterator[None]:
    """Pin this process to one CPU while timing (no-op where affinity is not supported)."""
    if not hasattr(os, "sched_getaffinity"):
        yield
        return
    original = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(original)})
        yield
    finally:
        os.sched_setaffinity(0, original)


def _clear_caches() -> None:
    answers._analyze_cached.cache_clear()
    answers._VERDICTS.clear()


def _gsm8k_pairs(path: Path) -> list[tuple[str, str, bool]]:
    pairs = []
    for row in _rows(path):
        gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        value = int(gold)
        boxed = extract_answer(f"so she earns \\boxed{{{value:,}}} dollars") or ""
        pairs += [(f"{value:,}", gold, True), (f"{value}.0", gold, True), (f"${value:,}", gold, True),
                  (boxed, gold, True), (str(value + 1), gold, False)]
    return pairs


def bench_gsm8k(path: Path) -> dict:
    """Checks per second and agreement on re-formatted GSM8K gold answers (never needs sympy)."""
    pairs = _gsm8k_pairs(path)
    requests_before = worker_stats()["requests"]
    repeats = max(1, -(-MIN_GSM8K_CHECKS // len(pairs)))
    with _one_core():
        _clear_caches()
        start = time.perf_counter()
        verdicts = [is_equivalent(pred, gold) for pred, gold, _ in pairs]
        cold_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(repeats):
            for pred, gold, _ in pairs:
                is_equivalent(pred, gold)
        warm_seconds = time.perf_counter() - start
    agree = sum(verdict == expected for verdict, (_, _, expected) in zip(verdicts, pairs)) / len(pairs)
    return {
        "pairs": len(pairs),
        "checks": len(pairs) * repeats,
        "checks_per_s": round(len(pairs) * repeats / warm_seconds),
        "cold_checks_per_s": round(len(pairs) / cold_seconds),
        "agree": agree,
        "sympy_requests": worker_stats()["requests"] - requests_before,
    }


def _math500_variants(answer: str) -> list[str]:
    variants = [extract_answer(f"Therefore the answer is $\\boxed{{{answer}}}$.") or "", f"${answer}$"]
    if "(" in answer and "\\left(" not in answer:
        variants.append(answer.replace("(", "\\left(").replace(")", "\\right)"))
    if "\\left" in answer:
        variants.append(answer.replace("\\left", "").replace("\\right", ""))
    if "\\dfrac" in answer:
        variants.append(answer.replace("\\dfrac", "\\frac"))
    elif "\\frac" in answer:
        variants.append(answer.replace("\\frac", "\\dfrac"))
    variants.append(" " + re.sub(r"\s*([+=]|\\cup|\\pm)\s*", r" \1 ", answer) + " ")
    return variants


def bench_math500(path: Path) -> dict:
    """Agreement of MATH-500 answers with re-formatted versions, and with their neighbours (should be False)."""
    answers_ = [row["answer"] for row in _rows(path)]
    reference = [(extract_answer(row["solution"]), row["answer"]) for row in _rows(path)]
    pairs = [(variant, answer) for answer in answers_ for variant in _math500_variants(answer)]
    negatives = [(a, b) for a, b in zip(answers_, answers_[1:]) if a != b and {a, b} != {"x=5", "5"}]
    requests_before = worker_stats()["requests"]
    _clear_caches()
    start = time.perf_counter()
    misses = [pair for pair in pairs if not is_equivalent(*pair)]
    false_positives = [pair for pair in negatives if is_equivalent(*pair)]
    reference_misses = [pair for pair in reference if not is_equivalent(*pair)]
    seconds = time.perf_counter() - start
    checks = len(pairs) + len(negatives) + len(reference)
    return {
        "pairs": len(pairs),
        "agree": 1 - len(misses) / len(pairs),
        "solution_vs_answer_agree": 1 - len(reference_misses) / len(reference),
        "neighbour_false_positive_rate": len(false_positives) / len(negatives),
        "checks_per_s": round(checks / seconds),
        "sympy_requests": worker_stats()["requests"] - requests_before,
        "misses": misses[:10] + reference_misses[:10],
        "false_positives": false_positives[:10],
    }


def hostile_inputs(directory: Path) -> list[str]:
    """Inputs that must come back False quickly (and never run anything)."""
    return [
        "9^{9^{9^{9}}}", "10^{10^{10}}", "2^{2^{2^{2^{2^{2}}}}}", "(1+x)^{100000}", "x^{x^{x^{x^{x}}}}",
        "(" * 10_000 + "1" + ")" * 10_000, "1" * 1_000_000, "\\sqrt{" * 60 + "2" + "}" * 60, "100000!", "(10!)!",
        "1e999999999", "\\frac{1}{0}", "a" * 1999, "\\left(" * 600 + "x",
        "__import__('os').system('touch pwned')", f"__import__('os').system('touch {directory / 'pwned'}')",
    ]


def bench_hostile() -> dict:
    """Worst latency of ``is_equivalent(hostile, "1", timeout=2)`` once two workers are running."""
    start = time.perf_counter()
    warm_up(2)  # a second worker serves while a killed one is being replaced
    warm_up_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as directory:
        cases = hostile_inputs(Path(directory))
        latencies, verdicts = [], []
        for case in cases:
            start = time.perf_counter()
            verdicts.append(is_equivalent(case, "1", timeout=HOSTILE_TIMEOUT_S))
            latencies.append(time.perf_counter() - start)
        executed = (Path(directory) / "pwned").exists() or Path("pwned").exists()
    return {
        "cases": len(cases),
        "timeout_s": HOSTILE_TIMEOUT_S,
        "max_latency_s": round(max(latencies), 3),
        "mean_latency_s": round(sum(latencies) / len(latencies), 3),
        "all_false": not any(verdicts),
        "payload_executed": executed,
        "warm_up_s": round(warm_up_s, 3),
    }


def run_bench(data_dir: str) -> dict:
    """Run all answer-checker benchmarks on the GSM8K / MATH-500 files under ``data_dir``."""
    root = Path(data_dir)
    gsm8k, math500 = root / "gsm8k" / "test.jsonl", root / "math500" / "test.jsonl"
    if not gsm8k.exists() and not math500.exists():
        raise FileNotFoundError(f"neither {gsm8k} nor {math500} exists")
    result: dict = {}
    if gsm8k.exists():
        result["gsm8k"] = bench_gsm8k(gsm8k)
    if math500.exists():
        result["math500"] = bench_math500(math500)
    result["hostile"] = bench_hostile()
    result["sympy_worker"] = worker_stats()
    return result


if __name__ == "__main__":
    default_dir = os.environ.get("REASONER_DATA_DIR", "../shared/data")
    print(json.dumps(run_bench(sys.argv[1] if len(sys.argv) > 1 else default_dir), indent=2))
