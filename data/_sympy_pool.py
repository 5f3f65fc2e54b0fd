"""The pool of sympy worker processes behind ``data.answers.is_equivalent``.

Each worker is one ``python -m data._sympy_worker`` process (2 GiB memory cap) speaking JSON lines over
its pipes. A request that is not answered within its timeout kills the worker (the verdict is then
None, which the caller reads as "not equivalent") and a replacement starts in the background. The pool
serves threads (one request per worker at a time) and forked / daemonic processes (a forked child
drops its parent's workers and starts its own; no signals are used).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["POOL", "WORKER_STARTUP_TIMEOUT_S", "warm_up", "worker_stats"]

WORKER_STARTUP_TIMEOUT_S = 60.0
_LOG = logging.getLogger(__name__)
_REPO_ROOT = Path(__file__).resolve().parents[1]
_STATS = {"requests": 0, "timeouts": 0, "failures": 0, "starts": 0}


class _WorkerError(RuntimeError):
    pass


class _Worker:
    """One ``data._sympy_worker`` process and its JSON-lines pipe."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable or "python3", "-m", "data._sympy_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=str(_REPO_ROOT),  # so that a `data/` folder in the caller's directory cannot shadow ours
            env=env,
        )
        self._buffer = b""
        self._next_id = 0
        line = self._read_line(time.monotonic() + WORKER_STARTUP_TIMEOUT_S)
        try:
            ready = line is not None and bool(json.loads(line).get("ready"))
        except (ValueError, AttributeError):
            ready = False
        if not ready:
            self.kill()
            raise _WorkerError("the sympy worker did not start")
        _STATS["starts"] += 1

    def _read_line(self, deadline: float) -> str | None:
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([descriptor], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(descriptor, 65536)
            if not chunk:  # the worker died
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def ask(self, request: dict, deadline: float) -> dict | None:
        """Send one request and wait for its reply until ``deadline``; None when late or dead."""
        self._next_id += 1
        request = {**request, "id": self._next_id}
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return None
        while True:
            line = self._read_line(deadline)
            if line is None:
                return None
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if reply.get("id") == self._next_id:
                return reply

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.forget()

    def forget(self) -> None:
        """Close this process's ends of the pipes (used in a forked child, where the worker is not ours)."""
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


class _WorkerPool:
    """Up to ``size`` workers shared by all threads; each request holds one worker exclusively."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._reset()

    def _reset(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._starting = 0  # starts claimed by a caller
        self._spares_starting = 0  # replacements started in the background, for whoever comes next
        self._failed_at = float("-inf")
        self._pid = os.getpid()

    def after_fork_in_child(self) -> None:
        for worker in self._all:  # the parent's workers: close our copies of the pipes, never kill them
            worker.forget()
        self._reset()

    def _acquire(self) -> tuple[_Worker | None, float]:
        """An idle worker, else a new one (up to ``size``), else the next one to become free. Also returns
        the seconds spent waiting (start-up or busy workers), which are not charged to the caller's
        timeout: the timeout bounds the work on the caller's own input, so a verdict never depends on
        load. None when no worker can be had within ``WORKER_STARTUP_TIMEOUT_S``."""
        if os.getpid() != self._pid:  # forked without the at-fork hook: the workers are the parent's
            self.after_fork_in_child()
        begin = time.monotonic()
        with self._condition:
            while not self._idle:
                if len(self._all) + self._starting + self._spares_starting < self.size:
                    if time.monotonic() - self._failed_at < 30:
                        return None, 0.0
                    self._starting += 1
                    break
                remaining = begin + WORKER_STARTUP_TIMEOUT_S - time.monotonic()
                if remaining <= 0:
                    return None, 0.0
                self._condition.wait(remaining)
            else:
                return self._idle.pop(), time.monotonic() - begin
        worker = self._start_worker(spare=False)
        return worker, time.monotonic() - begin

    def _start_worker(self, spare: bool) -> _Worker | None:
        """Start a worker already counted in ``_starting`` / ``_spares_starting`` (a spare goes idle)."""
        try:
            worker: _Worker | None = _Worker()
        except (OSError, _WorkerError, ValueError):
            worker = None
        with self._condition:
            if spare:
                self._spares_starting -= 1
            else:
                self._starting -= 1
            if worker is None:
                self._failed_at = time.monotonic()
                _LOG.warning("could not start the sympy worker (python -m data._sympy_worker); "
                             "symbolic answers count as wrong for the next 30 s")
            else:
                self._all.append(worker)
                if spare:
                    self._idle.append(worker)
            self._condition.notify_all()
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._condition:
            if healthy:
                self._idle.append(worker)
            else:
                if worker in self._all:
                    self._all.remove(worker)
                self._spares_starting += 1
            self._condition.notify_all()
        if not healthy:
            worker.kill()
            # start the replacement now, so that the next caller does not wait for it
            threading.Thread(target=self._start_worker, args=(True,), name="sympy-restart", daemon=True).start()

    def request(self, payload: dict, timeout: float) -> dict | None:
        """Run one request on some worker within ``timeout`` (waiting for a worker excluded); None if late."""
        deadline = time.monotonic() + timeout
        for _attempt in range(2):  # a worker that died (not one that was late) gets one retry
            worker, waited = self._acquire()
            if worker is None:
                return None
            deadline += waited
            reply = worker.ask(payload, deadline)
            self._release(worker, healthy=reply is not None)
            if reply is not None:
                return reply
            if time.monotonic() >= deadline:
                _STATS["timeouts"] += 1
                return None
        _STATS["failures"] += 1
        return None

    def compare(self, pred: str, gold: str, timeout: float) -> bool | None:
        _STATS["requests"] += 1
        reply = self.request({"pred": pred, "gold": gold}, timeout)
        return None if reply is None else bool(reply.get("equal"))

    def shutdown(self) -> None:
        with self._condition:
            workers, self._all, self._idle = list(self._all), [], []
        for worker in workers:
            worker.kill()


def _default_pool_size() -> int:
    configured = os.environ.get("REASONER_SYMPY_WORKERS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return min(8, max(4, os.cpu_count() or 1))


POOL = _WorkerPool(_default_pool_size())
atexit.register(POOL.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=POOL.after_fork_in_child)


def warm_up(workers: int = 1, timeout: float = WORKER_STARTUP_TIMEOUT_S) -> int:
    """Start up to ``workers`` sympy worker processes now (in parallel) so that later checks do not
    pay the ~2 s start-up; returns how many answered. Optional: workers also start on demand."""
    workers = max(1, min(workers, POOL.size))
    results: list[bool] = []
    barrier = threading.Barrier(workers)

    def start() -> None:
        worker, _ = POOL._acquire()
        try:
            barrier.wait(timeout)  # hold every worker until all have started, so that each start is new
        except threading.BrokenBarrierError:
            pass
        if worker is not None:
            reply = worker.ask({"ping": True}, time.monotonic() + timeout)
            POOL._release(worker, healthy=reply is not None)
            results.append(reply is not None)

    threads = [threading.Thread(target=start, name=f"sympy-warm-up-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(results)


def worker_stats() -> dict[str, int]:
    """Counters of the sympy worker traffic in this process (requests, timeouts, failures, starts)."""
    return dict(_STATS)
