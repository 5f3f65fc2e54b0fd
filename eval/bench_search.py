"""`reasoner bench search`: MCTS over many problems in lockstep vs one problem after another.

Both modes run the same MCTS settings on the same problems with the embedded (or given) policy. Lockstep
sends every tree's expansions and rollouts to the generator as one batch per round; sequential searches
one tree at a time. ``batched_speedup`` is the ratio of problems per second. ``model_time_fraction`` is the
share of the lockstep run's wall time spent inside generator/scorer calls: the rest is search bookkeeping.
"""

from __future__ import annotations

import time

__all__ = ["run_bench"]


def run_bench(policy: str | None = None, problems: int = 64, sequential_problems: int | None = 16,
              simulations: int = 16, children: int = 4, seed: int = 0) -> dict:
    """Time lockstep vs sequential MCTS; the sequential rate is measured on ``sequential_problems`` of them."""
    from data.problems import load_problems
    from reasoner.backends.hf import HFStepGenerator
    from reasoner.models import load_policy
    from search.mcts import MCTSConfig, SearchTimer, run_mcts

    loaded = load_policy(policy)
    config = MCTSConfig(simulations=simulations, children=children, seed=seed)
    items = load_problems("synthetic:test", limit=problems)
    make = lambda: HFStepGenerator(loaded.model, loaded.tokenizer, loaded.step_format, seed=seed)

    run_mcts(items[:2], make(), MCTSConfig(simulations=2, children=2))  # warm-up
    timer = SearchTimer()
    started = time.perf_counter()
    trees = run_mcts(items, make(), config, timer=timer)
    lockstep_seconds = time.perf_counter() - started

    subset = items[: sequential_problems or problems]
    generator = make()
    started = time.perf_counter()
    for problem in subset:
        run_mcts([problem], generator, config)
    sequential_seconds = time.perf_counter() - started

    lockstep_rate = len(items) / lockstep_seconds
    sequential_rate = len(subset) / sequential_seconds
    return {
        "policy": policy or "embedded",
        "problems": len(items),
        "simulations": simulations,
        "children": children,
        "lockstep": {"seconds": round(lockstep_seconds, 2), "problems_per_s": round(lockstep_rate, 3),
                     "nodes": sum(len(t.nodes) for t in trees),
                     "pass_at_tree": round(sum(t.is_solved() for t in trees) / len(trees), 4)},
        "sequential": {"problems_timed": len(subset), "seconds": round(sequential_seconds, 2),
                       "problems_per_s": round(sequential_rate, 3)},
        "batched_speedup": round(lockstep_rate / sequential_rate, 2),
        "model_time_fraction": round(timer.model_seconds / lockstep_seconds, 3),
        "generator_calls": timer.calls,
    }
