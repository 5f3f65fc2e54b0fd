"""The symbolic side of answer checking, run in its own process: ``python -m data._sympy_worker``.

``data.answers`` starts this worker lazily and talks to it in JSON lines over stdin/stdout:
``{"id": 7, "pred": "...", "gold": "..."}`` (two canonical answer strings) is answered by
``{"id": 7, "equal": true}``; ``{"id": 8, "ping": true}`` by ``{"id": 8, "pong": true}``. The parent
kills the worker when an answer is late, so a pathological expression costs one restart, never a hang.
The comparison itself is ``data._sympy_compare.compare_canonical`` (how leaves are parsed and compared).
The process caps its own address space (2 GiB) and CPU time, and exits when its parent goes away.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from data._sympy_compare import compare_canonical

MEMORY_LIMIT_BYTES = 2 * 1024**3
CPU_LIMIT_SECONDS = 900  # cumulative; the parent restarts a worker that hits it


def _limit_resources() -> None:
    try:
        import resource

        for limit, value in ((resource.RLIMIT_AS, MEMORY_LIMIT_BYTES), (resource.RLIMIT_CPU, CPU_LIMIT_SECONDS)):
            soft, hard = resource.getrlimit(limit)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            if soft == resource.RLIM_INFINITY or soft > value:
                resource.setrlimit(limit, (value, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: the parent's timeout still holds
        pass


def _exit_with_parent(parent_pid: int) -> None:
    """Exit as soon as the parent process is gone (even in the middle of a long computation)."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    """Serve comparison requests on stdin until EOF."""
    _limit_resources()
    _exit_with_parent(os.getppid())
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries go to stderr, never into the protocol
    sys.stdout = sys.stderr
    compare_canonical("x^2 - 1", "(x - 1)(x + 1)")  # load the ANTLR tables before reporting ready
    protocol.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if request.get("ping"):
            reply = {"id": request.get("id"), "pong": True}
        else:
            equal = compare_canonical(str(request.get("pred", "")), str(request.get("gold", "")))
            reply = {"id": request.get("id"), "equal": equal}
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
