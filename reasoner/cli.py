"""`reasoner <command>`: wires data, policy, search and evaluation together (with `reasoner.cli_train` for the
training commands, `reasoner.cli_eval` for eval / pipeline / demo and `reasoner.cli_data` for data / check /
bench / tree).

Commands that exist work for real; each imports what it needs when it runs, so ``reasoner data show``
starts without loading torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from data.records import RecordError, json_safe
from prm.labels import KINDS as LABEL_KINDS  # light: no torch
from reasoner.cli_data import cmd_bench, cmd_check, cmd_data_export, cmd_data_show, cmd_label, cmd_tree_show
from reasoner.cli_eval import cmd_demo, cmd_eval, cmd_pipeline, search_generator, search_scorer
from reasoner.cli_train import cmd_train, cmd_train_prm
from reasoner.pipeline import StageFailed

__all__ = ["main"]

# `reasoner.trainers.preference.ALGOS` plus SFT and the online trainers (listed here: importing it loads torch)
TRAIN_ALGOS = ("sft", "step-dpo", "step-apo", "svpo", "mcts-dpo", "dpo", "full-step-dpo", "tree-grpo", "mcts-dpo-online")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="local copies of hub datasets (else $REASONER_DATA_DIR)")


def _apply_data_dir(args: argparse.Namespace) -> None:
    if getattr(args, "data_dir", None):
        os.environ["REASONER_DATA_DIR"] = str(Path(args.data_dir).resolve())


# ----------------------------------------------------------------------- policy side
def cmd_solve(args: argparse.Namespace) -> int:
    from eval.solve import solve

    return solve(question=args.question, problems=args.problems, limit=args.limit, policy=args.policy,
                 samples=args.samples, temperature=args.temperature, backend=args.backend, seed=args.seed,
                 device=args.device)


def cmd_eval_policy(args: argparse.Namespace) -> int:
    from eval.solve import evaluate_policy

    result = evaluate_policy(problems=args.problems, limit=args.limit, policy=args.policy, k=args.k,
                             temperature=args.temperature, seed=args.seed, backend=args.backend,
                             device=args.device, samples=args.samples)
    print(json.dumps(result, indent=2))
    return 0


def cmd_build_tiny(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from reasoner.config import parse_config
    from reasoner.tiny import TinyBuildArgs, build_tiny_policy

    config = parse_config(TinyBuildArgs, rest, prog="reasoner build-tiny-policy",
                          description="train the embedded tiny policy from scratch")
    record = build_tiny_policy(config)
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=2))
    return 0


def cmd_build_tiny_verifier(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from reasoner.config import parse_config
    from reasoner.tiny import TinyVerifierArgs, build_tiny_verifier

    config = parse_config(TinyVerifierArgs, rest, prog="reasoner build-tiny-verifier",
                          description="continue the embedded policy's SFT into the value model's backbone")
    print(json.dumps(build_tiny_verifier(config), indent=2))
    return 0


# -------------------------------------------------------------------------- search
def cmd_search(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from search.runner import summarize_run

    if "--summary" in rest:
        position = rest.index("--summary")
        if position + 1 >= len(rest):
            raise ValueError("--summary needs a run directory")
        print(json.dumps(summarize_run(rest[position + 1]), indent=2))
        return 0
    from reasoner.config import parse_config
    from search.runner import SearchConfig, run_search

    config = parse_config(SearchConfig, rest, prog="reasoner search",
                          description="grow step-level search trees; `reasoner search --summary RUN_DIR` prints "
                                      "a run's counts instead (nodes, tokens, pass@tree, leaves) and searches nothing")
    if args.quiet:
        config.quiet = True
    summary = run_search(config, make_generator=search_generator, make_scorer=search_scorer)
    print(json.dumps(summary, indent=2))
    return 0


# ----------------------------------------------------------------------------- prm
def cmd_eval_prm(args: argparse.Namespace) -> int:
    from prm.evaluate import evaluate_prm
    from prm.model import load_value_model

    if args.policy_likelihood:
        from prm.likelihood import PolicyLikelihoodScorer
        from reasoner.models import load_policy

        scorer = PolicyLikelihoodScorer(load_policy(args.prm, device=args.device))
    else:
        scorer = load_value_model(args.prm, device=args.device)
    found = evaluate_prm(scorer, args.problems, args.limit, seed=args.seed, threshold=args.threshold,
                         calibrate_on=args.calibrate_on, progress=not args.quiet)
    result = {"prm": args.prm, "scorer": "policy-likelihood" if args.policy_likelihood else "value-model", **found}
    result = json_safe(result)  # an undefined metric (one class empty) is null, not a bare NaN
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasoner", description="Step-level reasoning trainer for math.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="look at and export problem sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    show = data_sub.add_parser("show", help="preview problems of a spec (gsm8k:test, math500:test, synthetic:train, FILE)")
    show.add_argument("spec")
    show.add_argument("--limit", type=int, default=5)
    show.add_argument("--solutions", action="store_true", help="also print gold solutions")
    _add_data_dir(show)
    show.set_defaults(func=cmd_data_show)
    export = data_sub.add_parser("export", help="write a spec's problems to a JSONL file")
    export.add_argument("spec")
    export.add_argument("out")
    export.add_argument("--limit", type=int, default=None)
    export.add_argument("--offset", type=int, default=0, help="skip the spec's first N problems")
    export.add_argument("--missed-by", "--missed_by", dest="missed_by", default=None, metavar="PREDICTIONS.jsonl",
                        help="keep only the problems this file scores wrong (`reasoner eval`'s predictions/METHOD.jsonl "
                        "or `reasoner check`'s verdicts): a round aimed at what the policy still misses")
    _add_data_dir(export)
    export.set_defaults(func=cmd_data_export)

    check = sub.add_parser("check", help="score predictions against gold answers")
    check.add_argument("predictions", help="JSONL: id + prediction (or completion text) [+ gold or answer]; "
                       "`reasoner eval`'s predictions/METHOD.jsonl as they are")
    check.add_argument("--problems", default=None, help="spec giving the gold answers by id")
    check.add_argument("--output", default=None, help="per-problem verdicts (default: PREDICTIONS.verdicts.jsonl)")
    check.add_argument("--timeout", type=float, default=5.0)
    _add_data_dir(check)
    check.set_defaults(func=cmd_check)

    bench = sub.add_parser("bench", help="benchmarks that print JSON")
    bench.add_argument("what", choices=["answers", "generation", "search", "train"])
    bench.add_argument("--pairs", default=None, help="train: a pairs JSONL (default: synthetic first-error pairs)")
    bench.add_argument("--steps", type=int, default=12, help="train: timed steps per layout")
    bench.add_argument("--policy", default=None)
    bench.add_argument("--problems", type=int, default=None, help="problems (generation: 32, search: 64, train: 128 prompts)")
    bench.add_argument("--sequential-problems", type=int, default=16,
                       help="search: problems timed one after another (the rate is per problem)")
    bench.add_argument("--simulations", type=int, default=16, help="search: MCTS simulations per problem")
    bench.add_argument("--levels", type=int, default=3, help="generation: levels of the tree workload")
    bench.add_argument("--children", type=int, default=4, help="generation, search: children per expansion")
    bench.add_argument("--seed", type=int, default=0)
    _add_data_dir(bench)
    bench.set_defaults(func=cmd_bench)

    solve = sub.add_parser("solve", help="solve a question (or a problem spec) with a policy")
    solve.add_argument("question", nargs="?", default=None)
    solve.add_argument("--problems", default=None, help="a problem spec instead of one question")
    solve.add_argument("--limit", type=int, default=5)
    _add_policy_args(solve)
    solve.add_argument("--samples", type=int, default=0, help="print k sampled solutions and their majority answer")
    solve.add_argument("--temperature", type=float, default=1.0)
    _add_data_dir(solve)
    solve.set_defaults(func=cmd_solve)

    ev = sub.add_parser("eval-policy", help="greedy accuracy, pass@k and maj@k of a policy on a problem spec")
    ev.add_argument("--problems", default="synthetic:test")
    ev.add_argument("--limit", type=int, default=None)
    _add_policy_args(ev)
    ev.add_argument("--k", type=int, default=16)
    ev.add_argument("--samples", type=int, default=None,
                    help="draws per problem (>= k, default k); pass@k is then the unbiased estimator over them")
    ev.add_argument("--temperature", type=float, default=1.0)
    _add_data_dir(ev)
    ev.set_defaults(func=cmd_eval_policy)

    train = sub.add_parser("train", help="train a policy (`reasoner train sft --help`)", add_help=False)
    train.add_argument("algo", choices=TRAIN_ALGOS,
                       help="sft on gold solutions, a step-preference algorithm on pairs (dpo: on whole-solution "
                            "pairs), or an online one that samples trees with the policy at every step (tree-grpo, "
                            "mcts-dpo-online)")
    train.set_defaults(func=cmd_train, wants_rest=True)

    build = sub.add_parser("build-tiny-policy", help="rebuild the embedded tiny policy from scratch", add_help=False)
    build.set_defaults(func=cmd_build_tiny, wants_rest=True)
    verifier = sub.add_parser("build-tiny-verifier", help="rebuild the embedded value-model backbone (SFT past the "
                              "policy's weak point)", add_help=False)
    verifier.set_defaults(func=cmd_build_tiny_verifier, wants_rest=True)

    search = sub.add_parser("search", help="grow MCTS trees over a problem spec (`reasoner search --help`)",
                            add_help=False)
    search.set_defaults(func=cmd_search, wants_rest=True)

    label = sub.add_parser("label", help="turn search trees into pairs / step rewards / MC labels (JSONL)")
    label.add_argument("run_dir")
    label.add_argument("--kind", required=True, choices=LABEL_KINDS)
    label.add_argument("--output", required=True)
    label.add_argument("--step-format", help="template the prompts are rendered with (default: the one the search "
                       "recorded in RUN_DIR/step_format.json, its policy's; else tiny)")
    label.add_argument("--seed", type=int, default=42)
    label.add_argument("--max-solutions", type=int, default=None,
                       help="rft: distinct correct solutions kept per problem (a seeded random pick; default 4)")
    label.add_argument("--max-pairs", type=int, default=None,
                       help="dpo: solution pairs per problem (a seeded random pick; default 10); mcts-dpo: pairs per "
                            "problem along the committed path (default 8)")
    label.add_argument("--value-model", default=None, help="step-rewards: per-step rewards from this value model "
                                                           "instead of MC estimates")
    label.set_defaults(func=cmd_label)

    train_prm = sub.add_parser("train-prm", help="train a step value model (`reasoner train-prm --help`)",
                               add_help=False)
    train_prm.set_defaults(func=cmd_train_prm, wants_rest=True)

    eval_prm = sub.add_parser("eval-prm", help="step AUC and first-error F1 of a value model on synthetic solutions")
    eval_prm.add_argument("prm", help="value model directory (from `reasoner train-prm`), or a policy with "
                                      "--policy-likelihood (`embedded` for the default)")
    eval_prm.add_argument("--policy-likelihood", action="store_true",
                          help="score with the policy's own running-min token probability (training-free baseline)")
    eval_prm.add_argument("--problems", default="synthetic:test")
    eval_prm.add_argument("--limit", type=int, default=None)
    eval_prm.add_argument("--threshold", type=float, default=None,
                          help="default: the model's calibrated threshold, else 0 (tanh head) / 0.5 (sigmoid)")
    eval_prm.add_argument("--calibrate-on", default=None,
                          help="choose the threshold on this other split first (e.g. synthetic:train, 500 problems)")
    eval_prm.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    eval_prm.add_argument("--device", default=None)
    eval_prm.add_argument("--output", default=None, help="also write the JSON here")
    eval_prm.set_defaults(func=cmd_eval_prm)

    tree = sub.add_parser("tree", help="look at search trees")
    tree_sub = tree.add_subparsers(dest="tree_command", required=True)
    show_tree = tree_sub.add_parser("show", help="draw one tree of a run as .png or .html")
    show_tree.add_argument("run_dir")
    show_tree.add_argument("--problem", default=None, help="problem id (default: the first tree)")
    show_tree.add_argument("--out", default="tree.png", help="output .png or .html")
    show_tree.set_defaults(func=cmd_tree_show)

    evaluate = sub.add_parser("eval", help="compare decoding methods with a report (`reasoner eval --help`)",
                              add_help=False)
    evaluate.set_defaults(func=cmd_eval, wants_rest=True)

    pipeline = sub.add_parser("pipeline", help="rounds of search → label → train-prm → train → eval from a recipe")
    pipeline.add_argument("--config", required=True, help="recipe YAML (configs/demo.yaml, gsm8k.yaml, math.yaml)")
    pipeline.add_argument("--output", default=None, help="override the recipe's output directory")
    pipeline.add_argument("--rounds", type=int, default=None, help="override the recipe's number of rounds")
    pipeline.add_argument("--fresh_problems", action=argparse.BooleanOptionalAction, default=None,
                          help="each round searches search.limit problems no earlier round searched (--offset); "
                               "default: the recipe's fresh_problems")
    pipeline.set_defaults(func=cmd_pipeline)

    demo = sub.add_parser("demo", help="the pipeline on the embedded default, ≤ 15 min on a laptop CPU (`make demo`)")
    demo.add_argument("--output", default="runs/demo")
    demo.add_argument("--quick", action="store_true", help="a smaller run, for tests")
    demo.set_defaults(func=cmd_demo)
    return parser


def _add_policy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", default=None, help="model dir or hub name (default: the embedded tiny policy)")
    parser.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)


def _stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has closed it (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() here, or a stdout with no file behind it
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reasoner`` console script; returns the exit code."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    if rest and not getattr(args, "wants_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _apply_data_dir(args)
    try:
        code = args.func(args, rest) if getattr(args, "wants_rest", False) else args.func(args)
        sys.stdout.flush()  # a reader gone away (`reasoner ... | head`) shows here, not at interpreter exit
        return code
    except BrokenPipeError as exc:
        if not _stdout_gone():  # a pipe of the command's own (a worker, a subprocess): a real error
            print(f"reasoner: error: {exc}", file=sys.stderr)
            return 2
        # the reader of our output went away: stop quietly, as the shell's tools do; files written stay
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    except (RecordError, OSError, ValueError, ImportError) as exc:  # OSError: a folder given for a file, ...;
        # ImportError: an optional dependency missing (vLLM, DeepSpeed), with its install hint
        print(f"reasoner: error: {exc}", file=sys.stderr)
        return 2
    except StageFailed as exc:  # the stage printed its own error; say which stage, no traceback
        print(f"reasoner: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("reasoner: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``reasoner`` console script: :func:`main`, then an exit that cannot abort a torchrun worker at
    interpreter shutdown (:func:`reasoner.trainers.common.exit_process`), also after an uncaught error
    (traceback, exit code 1, as Python's own)."""
    try:
        code = main()
    except Exception:
        if "torch.distributed" not in sys.modules:
            raise
        traceback.print_exc()
        code = 1
    if "torch.distributed" in sys.modules:  # else no group can be open, and torch need not be imported
        from reasoner.trainers.common import exit_process

        exit_process(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
