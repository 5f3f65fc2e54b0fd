"""`reasoner data`, `reasoner check`, `reasoner label`, `reasoner bench` and `reasoner tree`: the CLI commands that
look at problem sets, predictions, benchmarks and search trees, or turn trees into records (the parser is
`reasoner.cli.build_parser`). Each imports what it
needs when it runs, so ``reasoner data show`` starts without loading torch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["cmd_bench", "cmd_check", "cmd_data_export", "cmd_data_show", "cmd_label", "cmd_tree_show"]


def cmd_data_show(args: argparse.Namespace) -> int:
    from data.problems import load_problems

    problems = load_problems(args.spec, limit=args.limit)
    for problem in problems:
        print(f"── {problem.id}  (gold: {problem.answer})")
        print(problem.question)
        if args.solutions and problem.solution:
            print("·· solution:\n" + problem.solution)
        print()
    print(f"{len(problems)} problem(s) from {args.spec}")
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from data.problems import load_problems
    from data.records import write_jsonl

    problems = load_problems(args.spec, limit=args.limit, offset=args.offset)
    left_out = ""
    if args.missed_by:
        from data.problems import missed_problems

        missed = missed_problems(problems, args.missed_by)
        left_out = f" (the {len(missed)} of {len(problems)} that {args.missed_by} scores wrong)"
        problems = missed
    count = write_jsonl(args.out, (p.to_dict() for p in problems))
    print(f"wrote {count} problems to {args.out}{left_out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from eval.check import check_predictions

    summary = check_predictions(args.predictions, problems_spec=args.problems, output=args.output,
                                timeout=args.timeout)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "answers":
        from eval.bench_answers import run_bench

        data_dir = args.data_dir or os.environ.get("REASONER_DATA_DIR")
        if not data_dir:
            raise FileNotFoundError("bench answers needs the GSM8K/MATH-500 files: pass --data-dir or set REASONER_DATA_DIR")
        result = run_bench(data_dir)
    elif args.what == "generation":
        from eval.bench_generation import run_bench

        result = run_bench(policy=args.policy, problems=args.problems or 32, levels=args.levels,
                           children=args.children, seed=args.seed)
    elif args.what == "search":
        from eval.bench_search import run_bench

        result = run_bench(policy=args.policy, problems=args.problems or 64, seed=args.seed,
                           sequential_problems=args.sequential_problems, simulations=args.simulations,
                           children=args.children)
    elif args.what == "train":
        from eval.bench_train import run_bench

        result = run_bench(policy=args.policy, pairs_file=args.pairs, prompts=args.problems or 128,
                           steps=args.steps, seed=args.seed)
    else:  # pragma: no cover - argparse restricts choices
        raise ValueError(args.what)
    print(json.dumps(result, indent=2))
    return 0


def cmd_tree_show(args: argparse.Namespace) -> int:
    from search.render import render_tree
    from search.runner import run_files
    from search.tree import read_trees

    for path in run_files(args.run_dir):
        for tree in read_trees(path):
            if args.problem is None or tree.problem_id == args.problem:
                written = render_tree(tree, args.out)
                print(f"wrote {written} ({len(tree.nodes)} nodes, problem {tree.problem_id})")
                return 0
    raise ValueError(f"{args.run_dir}: no tree for problem {args.problem!r}")


def _label_format(args: argparse.Namespace):
    """``--step-format``, else the one the search recorded in RUN_DIR (its policy's), else ``tiny``."""
    from data.records import read_json_file
    from reasoner.steps import get_format
    from search.runner import STEP_FORMAT_FILE

    recorded = Path(args.run_dir) / STEP_FORMAT_FILE
    if args.step_format:
        return get_format(args.step_format)
    if recorded.exists():
        return get_format(read_json_file(recorded))
    print(f"note: {recorded} is missing (a search from before it was recorded): prompts are rendered in the "
          "tiny format; pass --step-format if the policy wrote another", file=sys.stderr)
    return get_format("tiny")


def cmd_label(args: argparse.Namespace) -> int:
    from data.records import write_jsonl
    from prm.labels import PER_PROBLEM_CAPS, label_trees
    from search.runner import run_files
    from search.tree import read_trees

    files = run_files(args.run_dir)
    output = Path(args.output).resolve()
    if output in {path.resolve() for path in files} or (output.parent == Path(args.run_dir).resolve()
                                                        and output.match("trees*.jsonl")):
        raise ValueError(f"{args.output}: labels there would overwrite or join the run's trees; write them elsewhere")
    trees = (tree for path in files for tree in read_trees(path))
    scorer = None
    if args.value_model:
        if args.kind != "step-rewards":
            raise ValueError("--value-model only applies to --kind step-rewards")
        from prm.model import load_value_model

        scorer = load_value_model(args.value_model)
    options = {}
    for option, kinds in PER_PROBLEM_CAPS.items():  # a per-problem cap, for the kinds that have it
        value = getattr(args, option)
        if value is None:
            continue
        flag = "--" + option.replace("_", "-")
        if args.kind not in kinds:
            raise ValueError(f"{flag} only applies to --kind {' and '.join(kinds)}")
        if value < 1:
            raise ValueError(f"{flag} must be 1 or more, not {value}")
        options[option] = value
    records, report = label_trees(trees, args.kind, _label_format(args), seed=args.seed, scorer=scorer, **options)
    write_jsonl(args.output, records)
    reasons = ", ".join(f"{count} × {reason}" for reason, count in report.empty.items()) or "none"
    print(f"{args.kind}: {report.records} records from {report.problems} problems → {args.output}")
    print(f"problems that yielded nothing: {reasons}")
    return 0
