"""`reasoner eval`, `reasoner pipeline` and `reasoner demo`: the evaluation commands of the CLI (wired to the
policy, value model, search and reports here, as the rest of `reasoner.cli`), and the generator / scorer
factories that search and eval share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

__all__ = ["cmd_eval", "cmd_pipeline", "cmd_demo", "eval_scorer", "search_generator", "search_scorer"]


def _main():
    """`reasoner.cli.main`, imported late: pipeline stages are CLI commands run in this process."""
    from reasoner.cli import main

    return main


def _run_stage(argv: list[str], quiet: bool) -> int:
    """One pipeline stage: the CLI command ``argv`` in this process, then what it held is released, so that a
    stage's vLLM engine or models do not sit in GPU memory while the next stage trains."""
    try:
        return _main()((["--quiet"] if quiet else []) + argv)
    finally:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def search_generator(config):
    """The `StepGenerator` a search or eval config names (policy, backend, seed, device)."""
    from eval.solve import load_generator

    return load_generator(config.policy, config.backend, config.seed, config.device)


def search_scorer(config):
    """The value model a search config names (``value_model``) as a `StepScorer`."""
    from prm.model import load_value_model

    return load_value_model(config.value_model, device=config.device)


# ---------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from eval.evaluate import EvalConfig, run_eval
    from reasoner.config import parse_config

    config = parse_config(EvalConfig, rest, prog="reasoner eval",
                          description="compare decoding methods (greedy, maj@K, bon@K, wmaj@K, beam@B1xB2, mcts)")
    if args.quiet:
        config.quiet = True
    report = run_eval(config, make_generator=search_generator, make_scorer=eval_scorer)
    from eval.report import markdown_table

    print(markdown_table(report["methods"]))
    print(f"wrote {Path(config.output) / 'report.json'}, report.md and report.png")
    return 0


def eval_scorer(config):
    """The `StepScorer` named by ``config.value``: a value model directory, or ``likelihood`` (the policy's own
    running-min token probability, `prm.likelihood.PolicyLikelihoodScorer`)."""
    if config.value == "likelihood":
        from prm.likelihood import PolicyLikelihoodScorer
        from reasoner.models import load_policy

        return PolicyLikelihoodScorer(load_policy(config.policy, device=config.device))
    from prm.model import load_value_model

    return load_value_model(config.value, device=config.device)


# ------------------------------------------------------------------- pipeline, demo
def cmd_pipeline(args: argparse.Namespace) -> int:
    from reasoner.pipeline import before_after_table, load_pipeline_config, run_pipeline

    config = load_pipeline_config(args.config, {"output": args.output, "rounds": args.rounds,
                                                 "fresh_problems": args.fresh_problems})
    report = run_pipeline(config, run_command=lambda argv: _run_stage(argv, args.quiet))
    print(before_after_table(report))
    print(f"wrote {Path(config.output) / 'report.json'} ({report['wall_seconds']:.0f} s of stages)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from eval.demo import run_demo

    return run_demo(output=args.output, quick=args.quick,
                    run_command=lambda argv: _run_stage(argv, args.quiet))
