"""Answer checking under hostile and random input: no exception, no hang past the timeout, nothing evaluated as
Python, in threads and process pools too; the checker's worker process starts only when sympy is needed. What
the checker decides is tested in `tests/test_answers.py`."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from data.answers import extract_answer, is_equivalent, warm_up, worker_stats

REPO = Path(__file__).resolve().parents[1]


def test_random_token_soup_never_raises():
    import random

    tokens = ["\\frac", "{", "}", "(", ")", "[", "]", "\\{", "\\}", ",", "1", "0", ".", "x", "=", "<", "\\le", "\\pm",
              "\\sqrt", "^", "_", "\\text{", "cm", " ", "\\%", "$", "\\cup", "\\infty", "-", "\\begin{pmatrix}",
              "\\end{pmatrix}", "&", "\\\\", "\\left(", "\\boxed{", " or ", "\\approx", "\\in", "!", "\\circ", "1,000",
              "\\overline{3}", "\\", "\\langle", "####", "answer is", ":"]
    rng = random.Random(1234)
    for _ in range(600):
        pred = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 10)))
        gold = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 10)))
        extract_answer(pred)
        assert is_equivalent(pred, gold, timeout=1.0) in (True, False)


def test_import_starts_no_process_and_no_torch():
    code = (
        "import sys, data, data.answers as a\n"
        "assert a.is_equivalent('1,000', '1000') and a.is_equivalent('\\\\frac12', '0.5')\n"
        "assert not a.POOL._all, 'worker started too early'\n"
        "assert 'torch' not in sys.modules and 'sympy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


# ----------------------------------------------------------------------------- hostile input
def _hostile_cases(directory: Path) -> list[str]:
    return [
        "9^{9^{9^{9}}}",
        "(" * 10_000 + "1" + ")" * 10_000,
        "1" * 1_000_000,
        "10^{10^{10}}",
        "(1+x)^{100000}",
        "__import__('os').system('touch pwned')",
        f"__import__('os').system('touch {directory / 'pwned'}')",
        "x^{x^{x^{x^{x}}}}",  # passes the lexical guards
        "\\sum_{k=1}^{n} k^{k}",  # passes the lexical guards; sympy needs minutes: the worker is killed at the timeout
        "2^{2^{2^{2^{2^{2}}}}}",
        "\\sqrt{" * 60 + "2" + "}" * 60,
        "100000!",
        "eval('1')",
        "(10!)!",
        "1e999999999",
        "\\left(" * 600 + "x",
        "a" * 1999,
        "\\frac{1}{0}",
    ]


HOSTILE_TIMEOUT = 2.0
HOSTILE_SLACK = 2.5  # replacing a killed worker takes ~1.5 s on a busy 2-core machine


def _timed_check(pred: str) -> tuple[bool, float]:
    start = time.perf_counter()
    verdict = is_equivalent(pred, "1", timeout=HOSTILE_TIMEOUT)
    return verdict, time.perf_counter() - start


def _assert_all_false_and_quick(results: list[tuple[bool, float]], cases: list[str]) -> None:
    for (verdict, elapsed), case in zip(results, cases):
        assert verdict is False, case[:60]
        assert elapsed < HOSTILE_TIMEOUT + HOSTILE_SLACK, (case[:60], elapsed)


def _no_pwned(directory: Path) -> None:
    assert not (directory / "pwned").exists()
    assert not (REPO / "pwned").exists()


def test_hostile_inputs_main_thread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert warm_up(2) == 2
    cases = _hostile_cases(tmp_path)
    _assert_all_false_and_quick([_timed_check(case) for case in cases], cases)
    _no_pwned(tmp_path)
    assert is_equivalent("2\\sqrt{2}", "\\sqrt{8}")  # the worker was replaced after the timeout


def test_hostile_inputs_in_threads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    warm_up(4)
    cases = _hostile_cases(tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_timed_check, cases))
    _assert_all_false_and_quick(results, cases)
    _no_pwned(tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent symbolic checks stay correct
        pairs = [("2\\sqrt{2}", "\\sqrt{8}", True), ("x^2-1", "(x-1)(x+1)", True), ("\\pi", "3", False),
                 ("(1,2)", "(2,1)", False)] * 3
        assert list(pool.map(lambda p: is_equivalent(p[0], p[1]), pairs)) == [p[2] for p in pairs]


def _pool_initializer() -> None:
    warm_up(1)


def test_hostile_inputs_in_process_pool(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    cases = _hostile_cases(tmp_path)
    with multiprocessing.get_context(method).Pool(2, initializer=_pool_initializer) as pool:
        results = pool.map(_timed_check, cases, chunksize=1)
        symbolic = pool.starmap(is_equivalent, [("2\\sqrt{2}", "\\sqrt{8}"), ("\\pi", "3")])
    _assert_all_false_and_quick(results, cases)
    assert symbolic == [True, False]
    _no_pwned(tmp_path)


def test_worker_timeout_is_reported_as_false_and_recovers():
    warm_up(1)
    before = worker_stats()["timeouts"]
    start = time.perf_counter()
    assert is_equivalent("\\sum_{k=1}^{n} k^{k}", "2", timeout=0.5) is False  # > 40 s in sympy
    assert time.perf_counter() - start < 0.5 + 2.0
    assert worker_stats()["timeouts"] == before + 1
    assert is_equivalent("\\frac{\\pi}{2}", "\\pi/2")
