"""`reasoner demo` (what `make demo` runs): the largest part of the loop that is real today.

On the embedded default (the synthetic task and the tiny policy) it decodes ``synthetic:test`` problems with
greedy decoding and with k samples + majority vote through the batched, prefix-caching HF step generator,
grows MCTS trees (16 simulations x 4 children) for the first 64 of them with answers verified against the
gold (pass@tree, an oracle figure: search for training data, not a decoder), checks every answer with the
sympy-backed checker, and writes ``report.json`` + ``report.md``. Search,
labelling, PRM and policy training join this loop as they land.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from data.answers import is_equivalent
from data.problems import load_problems
from search.decode import greedy, majority_answer, sample_solutions

__all__ = ["run_demo"]


def run_demo(output: str = "runs/demo", quick: bool = False, k: int = 8, temperature: float = 1.0) -> int:
    """Run the demo, print a table, write ``report.json`` and ``report.md`` under ``output``; returns 0."""
    from reasoner.backends.hf import HFStepGenerator
    from reasoner.models import load_policy

    started = time.perf_counter()
    problems = load_problems("synthetic:test", limit=24 if quick else 200)
    questions = [p.question for p in problems]
    policy = load_policy()
    generator = HFStepGenerator(policy.model, policy.tokenizer, policy.step_format, seed=0)
    print(f"reasoner demo: {len(problems)} synthetic:test problems, embedded policy "
          f"({sum(p.numel() for p in policy.model.parameters()) / 1e6:.2f} M parameters)")
    methods: dict[str, dict] = {}

    t0, tokens0 = time.perf_counter(), generator.stats.generated_tokens
    solutions = greedy(generator, questions)
    correct = [is_equivalent(s.answer, p.answer) for s, p in zip(solutions, problems)]
    methods["greedy"] = _row(correct, generator.stats.generated_tokens - tokens0, len(problems), t0)

    t0, tokens0 = time.perf_counter(), generator.stats.generated_tokens
    groups = sample_solutions(generator, questions, k, temperature=temperature)
    votes = [is_equivalent(majority_answer(g), p.answer) for g, p in zip(groups, problems)]
    any_hit = [any(is_equivalent(s.answer, p.answer) for s in g) for g, p in zip(groups, problems)]
    sampled_tokens = generator.stats.generated_tokens - tokens0
    methods[f"maj@{k}"] = _row(votes, sampled_tokens, len(problems), t0)
    methods[f"pass@{k} (oracle)"] = _row(any_hit, sampled_tokens, len(problems), t0)

    from search.mcts import MCTSConfig, run_mcts
    from search.tree import tree_summary

    searched = problems[: min(len(problems), 64)]
    t0, tokens0 = time.perf_counter(), generator.stats.generated_tokens
    trees = run_mcts(searched, generator, MCTSConfig(simulations=16, children=4))
    summary = tree_summary(trees)
    mcts_row = _row([t.is_solved() for t in trees], generator.stats.generated_tokens - tokens0, len(searched), t0)
    methods["mcts 16x4 pass@tree (oracle)"] = {**mcts_row, "n": len(searched),
                                               "greedy_path_accuracy": summary["greedy_path_accuracy"]}

    report = {
        "problems": "synthetic:test",
        "n": len(problems),
        "rounds": [{"round": 0, "policy": "embedded", "eval": methods}],
        "generator_cache": generator.cache.stats(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    table = _markdown(methods)
    (out / "report.md").write_text(f"# reasoner demo\n\n{len(problems)} problems of synthetic:test, embedded policy.\n\n{table}\n")
    print(table)
    print(f"prefix KV cache: {report['generator_cache']}")
    print(f"wrote {out / 'report.json'} and {out / 'report.md'} in {report['wall_seconds']} s")
    return 0


def _row(correct: list[bool], tokens: int, n: int, started: float) -> dict:
    return {"accuracy": round(sum(correct) / n, 4), "tokens_per_problem": round(tokens / n, 1),
            "seconds": round(time.perf_counter() - started, 2)}


def _markdown(methods: dict[str, dict]) -> str:
    lines = ["| method | accuracy | tokens / problem | seconds |", "|---|---:|---:|---:|"]
    for name, row in methods.items():
        lines.append(f"| {name} | {row['accuracy']:.1%} | {row['tokens_per_problem']:.0f} | {row['seconds']:.1f} |")
    return "\n".join(lines)
