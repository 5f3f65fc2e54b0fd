"""Sharded, resumable search runs over a dataset (`reasoner search`).

A run directory holds ``config.yaml`` (the resolved config) and ``trees.jsonl`` (one tree per line; with
``--shard i/N`` and N > 1, ``trees.shard-i-of-N.jsonl``). Problems are searched in batches that advance in
lockstep; each finished batch is appended as whole lines and flushed. Killing the process at any moment and
re-running the same command continues where it stopped: a cut last line is dropped, finished problems are
skipped, so no problem is lost or duplicated. Shard i of N takes the problems whose index (counted after
``--offset``) ``% N == i``: shards are disjoint and together cover the dataset.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

from data.problems import Problem, load_problems
from data.records import append_jsonl, check_resumable, done_ids, write_config, write_text_atomic
from search.mcts import MCTSConfig, SearchTimer, require_positive, run_mcts
from search.tree import Tree, read_trees, tree_summary
from search.omegaprm import OmegaPRMConfig, run_omegaprm
from search.protocols import reseed_generator
from search.shepherd import ShepherdConfig, run_shepherd
from search.tree_grpo import TreeGRPOConfig, run_tree_grpo

__all__ = ["SearchConfig", "run_search", "shard_problems", "parse_shard", "run_files", "summarize_run"]

log = logging.getLogger(__name__)

ALGOS = ("mcts", "tree-grpo", "shepherd", "omegaprm")

# Keys that may differ between a run and its resumption (they do not change what a tree is). Each batch reseeds the
# generator from --seed and its first problem id (HF and vLLM backends), so a run resumed with the same
# --batch_problems redraws the trees an uninterrupted run draws (on a GPU up to kernel nondeterminism); another
# --batch_problems groups the problems otherwise and draws other, equally likely, trees.
_RESUMABLE_KEYS = {"output", "quiet", "limit", "batch_problems", "device"}


@dataclass
class SearchConfig:
    """Settings of `reasoner search` (MCTS fields as in `search.mcts.MCTSConfig`)."""

    problems: str = field(default="synthetic:test", metadata={"help": "problem spec"})
    output: str = field(default="runs/search", metadata={"help": "run directory"})
    limit: int | None = field(default=None, metadata={"help": "first N problems of the spec (after --offset)"})
    offset: int = field(default=0, metadata={"help": "skip the spec's first N problems (fresh problems for a later round)"})
    algo: str = field(default="mcts", metadata={
        "help": "mcts, tree-grpo, shepherd (Math-Shepherd MC estimation) or omegaprm (MC + binary search for the first error)"})
    shard: str = field(default="0/1", metadata={"help": "i/N: this process takes the problems whose index mod N is i"})
    policy: str | None = field(default=None, metadata={"help": "policy dir or hub name (default: embedded)"})
    backend: str = "hf"
    device: str | None = None
    value_model: str | None = field(default=None, metadata={"help": "StepScorer for leaf values (else rollouts)"})
    batch_problems: int = field(default=64, metadata={"help": "trees searched in lockstep"})
    simulations: int = field(default=40, metadata={"help": "mcts: simulations per tree (per committed step with "
                                                            "--commit_simulations)"})
    children: int = field(default=5, metadata={"help": "mcts: sampled steps per expansion"})
    c_puct: float = field(default=1.5, metadata={"help": "mcts: exploration constant of PUCT"})
    max_depth: int = field(default=12, metadata={
        "help": "the most steps a solution may have: a step at this depth without an answer ends as wrong "
                "(Super_MARIO's max_depth N allows N + 1: its check is depth > N)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of expansions"})
    rollout_temperature: float = field(default=1.0, metadata={"help": "mcts: sampling temperature of rollouts"})
    max_step_tokens: int = field(default=48, metadata={"help": "token limit of one step"})
    parallel_leaves: int = field(default=1, metadata={"help": "mcts: leaves selected per tree per round (virtual loss)"})
    leaf_value: str = field(default="children", metadata={
        "help": "mcts: 'children' backs up a value for every new child (rollouts or --value_model); 'leaf' backs up "
                "the expanded leaf's own --value_model value plus its terminal children's rewards (Super_MARIO's default)"})
    commit_simulations: int = field(default=0, metadata={
        "help": "mcts: 0 grows one tree from the root; N > 0 searches step by step as MCTS-DPO does: --simulations from "
                "the root, then commit to the best-Q child and run N more below it, until a terminal step"})
    trees_per_prompt: int = field(default=2, metadata={"help": "tree-grpo: m trees per prompt"})
    expand_nodes: int = field(default=2, metadata={"help": "tree-grpo: n nodes expanded per tree per round"})
    rounds: int = field(default=1, metadata={"help": "tree-grpo: l expansion rounds"})
    solutions: int = field(default=4, metadata={"help": "shepherd: solutions sampled per problem"})
    completions: int = field(default=8, metadata={"help": "shepherd: N completions from every prefix of a solution"})
    rollouts: int = field(default=8, metadata={"help": "omegaprm: k rollouts per MC estimate"})
    root_rollouts: int = field(default=0, metadata={
        "help": "omegaprm: k of the question's own estimate (0: --rollouts); more finds a start on hard problems"})
    search_limit: int = field(default=100, metadata={"help": "omegaprm: binary searches per problem"})
    rollout_budget: int = field(default=200, metadata={"help": "omegaprm: rollouts per problem (checked before a search)"})
    alpha: float = field(default=0.5, metadata={"help": "omegaprm: Q(s, r) = alpha^(1 - MC(s)) * beta^(words(r) / L)"})
    beta: float = field(default=0.9, metadata={"help": "omegaprm: length discount of Q(s, r)"})
    length_scale: int = field(default=500, metadata={"help": "omegaprm: L, in words"})
    omega_c_puct: float = field(default=0.125, metadata={"help": "omegaprm: c_puct of U(s)"})
    seed: int = 0
    quiet: bool = False

    def mcts(self) -> MCTSConfig:
        return _subset(MCTSConfig, self)

    def tree_grpo(self) -> TreeGRPOConfig:
        return _subset(TreeGRPOConfig, self)

    def shepherd(self) -> ShepherdConfig:
        return _subset(ShepherdConfig, self)

    def omegaprm(self) -> OmegaPRMConfig:
        # MCTS's c_puct (1.5) is another constant: OmegaPRM's is --omega_c_puct, checked as its own.
        return _subset(OmegaPRMConfig, self, c_puct=self.omega_c_puct)


def _subset(cls, config: SearchConfig, **values):
    """``cls`` built from the fields of ``config`` it shares (``values`` given in place of some)."""
    names = {f.name for f in fields(cls)}
    return cls(**{**{k: v for k, v in asdict(config).items() if k in names}, **values})


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i/N"`` → (i, N), checked."""
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {shard}: need 0 <= i < N")
    return index, count


def shard_problems(problems: Sequence[Problem], shard: str) -> list[Problem]:
    """The problems of shard ``i/N``: every N-th problem starting at i."""
    index, count = parse_shard(shard)
    return [p for position, p in enumerate(problems) if position % count == index]


def trees_path(output: str | Path, shard: str) -> Path:
    index, count = parse_shard(shard)
    name = "trees.jsonl" if count == 1 else f"trees.shard-{index}-of-{count}.jsonl"
    return Path(output) / name


def run_files(output: str | Path) -> list[Path]:
    """Every trees file of a run directory (all shards); FileNotFoundError, naming the folder, if it has none."""
    files = sorted(Path(output).glob("trees*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{output}: no trees*.jsonl in this run directory")
    return files


def _refuse_other_shard_counts(run_dir: Path, shard: str) -> None:
    """ValueError when ``run_dir`` already holds trees sharded another way: their problem sets overlap, so the
    run would count (and label) some problems twice."""
    count = parse_shard(shard)[1]
    for path in sorted(run_dir.glob("trees*.jsonl")):
        theirs = re.fullmatch(r"trees\.shard-\d+-of-(\d+)\.jsonl", path.name)
        if (int(theirs.group(1)) if theirs else 1) != count and path.stat().st_size:
            raise ValueError(f"{path}: this run directory holds trees of another --shard count than {count}; "
                             "use another --output")


def run_search(config: SearchConfig, make_generator: Callable[[SearchConfig], object],
               make_scorer: Callable[[SearchConfig], object] | None = None) -> dict:
    """Search every not-yet-done problem of this shard, appending trees; returns the run summary."""
    from tqdm.auto import tqdm

    if config.algo not in ALGOS:
        raise ValueError(f"unknown search algorithm {config.algo!r}: use {', '.join(ALGOS)}")
    if config.algo == "tree-grpo":  # their settings are checked before anything is written
        config.tree_grpo()
    elif config.algo == "shepherd":
        config.shepherd()
    elif config.algo == "omegaprm":
        config.omegaprm()
    else:
        config.mcts()
        if config.leaf_value == "leaf" and not config.value_model:
            raise ValueError("--leaf_value leaf backs up the expanded leaf's value model estimate: pass --value_model DIR, "
                             "or use --leaf_value children (rollouts)")
    require_positive(config, "batch_problems")
    if config.offset < 0:  # before the resume check, which would otherwise report the offset as changed
        raise ValueError(f"--offset must be 0 or more, got {config.offset}")
    run_dir = Path(config.output)
    check_resumable(run_dir / "config.yaml", asdict(config), _RESUMABLE_KEYS | {"shard"}, added_keys={"offset": 0})
    _refuse_other_shard_counts(run_dir, config.shard)
    problems = load_problems(config.problems, limit=config.limit, offset=config.offset, needed_for="search")
    problems = shard_problems(problems, config.shard)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(config, run_dir)
    out = trees_path(run_dir, config.shard)
    finished = done_ids(out, key="problem_id")
    todo = [p for p in problems if p.id not in finished]
    log.info("%d problems in shard %s, %d already done, %d to search", len(problems), config.shard,
             len(problems) - len(todo), len(todo))
    if todo:
        generator = make_generator(config)
        scorer = make_scorer(config) if (make_scorer and config.value_model) else None
        timer = SearchTimer()
        started, nodes, solved = time.perf_counter(), 0, 0
        bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc="search", unit="problem",
                   disable=config.quiet)
        for start in range(0, len(todo), config.batch_problems):
            batch = todo[start : start + config.batch_problems]
            reseed_generator(generator, config.seed, batch[0].id)
            trees = _search_batch(batch, generator, scorer, config, timer)
            append_jsonl(out, (tree.to_record() for tree in trees))
            if start == 0:  # once, after the first trees: a run that failed before them may start over
                _record_step_format(run_dir, generator)
            nodes += sum(len(tree.nodes) for tree in trees)
            solved += sum(tree.is_solved() for tree in trees)
            bar.update(len(batch))
            elapsed = time.perf_counter() - started
            bar.set_postfix(nodes_per_s=f"{nodes / elapsed:.0f}", solved=f"{solved / bar.n:.0%}" if bar.n else "-")
        bar.close()
    return summarize_run(run_dir)


STEP_FORMAT_FILE = "step_format.json"


def _record_step_format(run_dir: Path, generator: object) -> None:
    """Write the generator's step format (prompt template, delimiter, headers) beside the trees, so that
    `reasoner label` renders the prompts of its records in the format the policy wrote the steps in."""
    step_format = getattr(generator, "step_format", None)
    if step_format is not None and hasattr(step_format, "to_dict"):
        write_text_atomic(run_dir / STEP_FORMAT_FILE, json.dumps(step_format.to_dict(), indent=2) + "\n")


def _search_batch(batch: list[Problem], generator, scorer, config: SearchConfig, timer: SearchTimer) -> list[Tree]:
    if config.algo == "mcts":
        return run_mcts(batch, generator, config.mcts(), scorer=scorer, timer=timer)
    if config.algo == "tree-grpo":
        return run_tree_grpo(batch, generator, config.tree_grpo(), timer=timer)
    if config.algo == "shepherd":
        return run_shepherd(batch, generator, config.shepherd(), timer=timer)
    if config.algo == "omegaprm":
        return run_omegaprm(batch, generator, config.omegaprm(), timer=timer)
    raise ValueError(f"unknown search algorithm {config.algo!r}: use {', '.join(ALGOS)}")


def summarize_run(output: str | Path) -> dict:
    """Summary over every tree file of a run: problems, nodes, tokens, pass@tree, greedy-path accuracy, ..."""
    trees: Iterable[Tree] = (tree for path in run_files(output) for tree in read_trees(path))
    summary = tree_summary(trees)
    summary["run"] = str(output)
    return summary
