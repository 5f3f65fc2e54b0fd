"""`reasoner bench generation`: tree-shaped step generation, naive vs prefix KV reuse vs one prefix per call.

The workload is a tree: ``problems`` roots, each expanded into ``children`` steps, every unfinished child
expanded again, for ``levels`` levels. The tree's frontiers are recorded once, then replayed by three fresh
generators on the same prefixes:

* ``naive``: every row re-encodes its whole prefix (no KV reuse across rows or calls), all rows batched;
* ``reuse_batched``: prefix KV cache + one batched call per level (the default generator);
* ``reuse_one_prefix``: prefix KV cache, one call per prefix (its ``children`` rows batched).

``prefix_reuse_speedup`` = tokens/s of reuse_batched / naive; ``batching_speedup`` = reuse_batched /
reuse_one_prefix. All three run in one process, one after another, so the ratios are comparable.
"""

from __future__ import annotations

import time

from search.protocols import State

__all__ = ["run_bench", "tree_frontiers"]


def tree_frontiers(generator, roots: list[State], levels: int, children: int, temperature: float,
                   max_step_tokens: int) -> list[list[State]]:
    """The states expanded at each level of a sampled tree (level 0 = the roots)."""
    frontiers, frontier = [], roots
    for _ in range(levels):
        if not frontier:
            break
        frontiers.append(frontier)
        samples = generator.expand(frontier, children, temperature=temperature, max_step_tokens=max_step_tokens)
        frontier = [state.child(s.text) for state, group in zip(frontier, samples) for s in group
                    if not s.finished and s.text]
    return frontiers


def _replay(generator, frontiers, children, temperature, max_step_tokens, one_prefix: bool) -> dict:
    started = time.perf_counter()
    for frontier in frontiers:
        if one_prefix:
            for state in frontier:
                generator.expand([state], children, temperature=temperature, max_step_tokens=max_step_tokens)
        else:
            generator.expand(frontier, children, temperature=temperature, max_step_tokens=max_step_tokens)
    seconds = time.perf_counter() - started
    stats = generator.stats
    return {
        "seconds": round(seconds, 3),
        "generated_tokens": stats.generated_tokens,
        "prefill_tokens": stats.prefill_tokens,
        "forward_passes": stats.forward_passes,
        "tokens_per_s": round(stats.generated_tokens / seconds, 1),
    }


def run_bench(policy: str | None = None, problems: int = 32, levels: int = 3, children: int = 4, seed: int = 0,
              temperature: float = 1.0, max_step_tokens: int = 32) -> dict:
    """Run the three modes on one recorded tree workload and return their figures and the speedups."""
    import torch

    from data.problems import load_problems
    from reasoner.backends.hf import HFStepGenerator
    from reasoner.models import load_policy

    torch.manual_seed(seed)
    loaded = load_policy(policy)
    make = lambda **kw: HFStepGenerator(loaded.model, loaded.tokenizer, loaded.step_format, seed=seed, **kw)
    roots = [State(p.question) for p in load_problems("synthetic:test", limit=problems)]
    frontiers = tree_frontiers(make(), roots, levels, children, temperature, max_step_tokens)
    _replay(make(), frontiers[:1], children, temperature, max_step_tokens, one_prefix=False)  # warm-up
    modes = {
        "naive": _replay(make(reuse_prefix=False), frontiers, children, temperature, max_step_tokens, False),
        "reuse_batched": _replay(make(), frontiers, children, temperature, max_step_tokens, False),
        "reuse_one_prefix": _replay(make(), frontiers, children, temperature, max_step_tokens, True),
    }
    best = modes["reuse_batched"]["tokens_per_s"]
    return {
        "policy": policy or "embedded",
        "workload": {"problems": problems, "levels": len(frontiers), "children": children,
                     "prefixes_per_level": [len(f) for f in frontiers], "temperature": temperature},
        **modes,
        "prefix_reuse_speedup": round(best / modes["naive"]["tokens_per_s"], 2),
        "batching_speedup": round(best / modes["reuse_one_prefix"]["tokens_per_s"], 2),
        "torch_threads": torch.get_num_threads(),
    }
