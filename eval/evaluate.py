"""`reasoner eval`: decoding methods compared on one problem set, resumable, with compute-matched reports.

Methods (``--methods`` is a comma-separated list):

- ``greedy``: one temperature-0 solution;
- ``maj@K``: K samples at ``temperature``, majority vote over equivalent answers;
- ``bon@K`` / ``wmaj@K``: the same K samples ranked by the value model (best-of-N, weighted majority; the
  step values aggregated by ``aggregate``: min, prod or last);
- ``beam@B1xB2``: value-guided step beam search (keep B1 of B1 x B2 candidates per step);
- ``mcts@SxC`` (or ``mcts`` = 16x4): MCTS with S simulations of C children (c_puct 1.25), valued by the value model, used
  as a decoder (the gold answer is never read).

Sample-based methods share one set of K samples per problem (``samples-K.jsonl``), and their accuracy is also
reported for every power-of-two prefix k ≤ K of the samples, so the report can compare every method with
majority vote at equal or fewer generated tokens. Each method appends one record per problem to
``predictions/METHOD.jsonl`` as batches finish; re-running the same command skips what is done.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from data.answers import is_equivalent
from data.problems import Problem, load_problems
from data.records import append_jsonl, check_resumable, done_ids, read_jsonl, write_config
from search.protocols import reseed_generator

__all__ = ["EvalConfig", "Method", "parse_methods", "run_eval"]

log = logging.getLogger(__name__)

_METHOD = re.compile(r"^(?:(greedy)|(maj|bon|wmaj)@(\d+)|beam@(\d+)x(\d+)|mcts(?:@(\d+)x(\d+))?)$")
# Super_MARIO's exploration constant for test-time MCTS (configs/mcts_sft.yaml; 1.5 builds training trees), 1.3.
TEST_TIME_C_PUCT = 1.25
# Keys that may change between an eval and its resumption (they do not change a prediction).
_RESUMABLE_KEYS = {"output", "methods", "limit", "batch_problems", "device", "quiet"}


@dataclass
class EvalConfig:
    """Settings of `reasoner eval` (YAML via ``--config`` and ``--key value`` flags)."""

    problems: str = field(default="synthetic:test", metadata={"help": "problem spec"})
    limit: int | None = field(default=None, metadata={"help": "first N problems (after --offset)"})
    offset: int = field(default=0, metadata={"help": "skip the spec's first N problems"})
    methods: str = field(default="greedy,maj@8,bon@8,wmaj@8,beam@1x5",
                         metadata={"help": "comma-separated: greedy, maj@K, bon@K, wmaj@K, beam@B1xB2, mcts[@SxC]"})
    policy: str | None = field(default=None, metadata={"help": "policy dir or hub name (default: embedded)"})
    value: str | None = field(default=None, metadata={
        "help": "value model dir for bon/wmaj/beam/mcts, or 'likelihood' for the policy's own step likelihood"})
    output: str = field(default="runs/eval", metadata={"help": "report directory (resumable)"})
    backend: str = "hf"
    device: str | None = None
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature of maj/bon/wmaj/beam/mcts"})
    aggregate: str = field(default="min", metadata={"help": "bon/wmaj step-value aggregation: min, prod or last"})
    max_steps: int = 12
    max_step_tokens: int = 64
    mcts_leaf_value: str = field(default="children", metadata={
        "help": "mcts: 'children' values every new child, 'leaf' the expanded leaf only (Super_MARIO's default)"})
    mcts_commit_simulations: int = field(default=0, metadata={
        "help": "mcts: 0 reads the answer out of one search of S simulations; N > 0 commits step by step, N more "
                "simulations below each committed step (search.mcts)"})
    batch_problems: int = field(default=100, metadata={"help": "problems decoded together (one append per batch)"})
    seed: int = 0
    quiet: bool = False


@dataclass(frozen=True)
class Method:
    """A parsed method name: ``kind`` in greedy / maj / bon / wmaj / beam / mcts and its sizes."""

    name: str
    kind: str
    k: int = 1
    width: int = 1
    samples: int = 1

    @property
    def needs_value(self) -> bool:
        return self.kind in ("bon", "wmaj", "beam", "mcts")


def parse_methods(text: str) -> list[Method]:
    """``"greedy,maj@8,beam@1x5"`` → `Method` objects; a clear error for an unknown name."""
    methods = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        match = _METHOD.match(name)
        if not match:
            raise ValueError(f"unknown decoding method {name!r}: use greedy, maj@K, bon@K, wmaj@K, beam@B1xB2, "
                             "mcts or mcts@SIMSxCHILDREN")
        greedy_, kind, k, width, samples, sims, children = match.groups()
        if greedy_:
            methods.append(Method(name, "greedy"))
        elif kind:
            methods.append(Method(name, kind, k=int(k)))
        elif width:
            methods.append(Method(name, "beam", width=int(width), samples=int(samples)))
        else:
            methods.append(Method(name, "mcts", width=int(sims or 16), samples=int(children or 4)))
    if not methods:
        raise ValueError("--methods is empty")
    if any(m.k < 1 or m.width < 1 or m.samples < 1 for m in methods):
        raise ValueError(f"{text}: method sizes must be >= 1")
    return methods


class _Models:
    """The generator and scorer, loaded once (a resumed eval with nothing left loads nothing)."""

    def __init__(self, config: EvalConfig, make_generator: Callable, make_scorer: Callable):
        self.config, self._make_generator, self._make_scorer = config, make_generator, make_scorer
        self._generator = self._scorer = None

    @property
    def generator(self):
        if self._generator is None:
            self._generator = self._make_generator(self.config)
        return self._generator

    @property
    def scorer(self):
        if self._scorer is None:
            if not self.config.value:
                raise ValueError("bon / wmaj / beam / mcts need a value model: pass --value DIR (or --value likelihood)")
            self._scorer = self._make_scorer(self.config)
        return self._scorer

    def load(self, scorer: bool) -> None:
        """Load the generator (and the scorer) now rather than on first use."""
        self.generator  # noqa: B018 (the property loads it)
        if scorer:
            self.scorer  # noqa: B018


def run_eval(config: EvalConfig, make_generator: Callable[[EvalConfig], Any],
             make_scorer: Callable[[EvalConfig], Any]) -> dict:
    """Run every method on every not-yet-done problem, then write and return the report (eval/report.py)."""
    from tqdm.auto import tqdm

    from eval.report import summarize, write_report

    methods = parse_methods(config.methods)
    _check_settings(config, methods)
    out = Path(config.output)
    check_resumable(out / "config.yaml", asdict(config), _RESUMABLE_KEYS, what="eval", fillable_keys=("value",),
                    added_keys={"offset": 0})
    problems = load_problems(config.problems, limit=config.limit, offset=config.offset, needed_for="evaluate")
    done_of = {m.name: done_ids(out / "predictions" / f"{m.name}.jsonl") for m in methods}  # each file read once
    todo_of = {m.name: [p for p in problems if p.id not in done_of[m.name]] for m in methods}
    models = _Models(config, make_generator, make_scorer)
    if any(todo_of.values()):  # load now, so that a mistyped --policy / --value fails before any record
        models.load(scorer=any(todo_of[m.name] for m in methods if m.needs_value))
    write_config(config, out)
    for method in methods:
        path, todo = out / "predictions" / f"{method.name}.jsonl", todo_of[method.name]
        bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc=method.name, unit="problem",
                   disable=config.quiet)
        for start in range(0, len(todo), config.batch_problems):
            batch = todo[start:start + config.batch_problems]
            append_jsonl(path, _decode(method, batch, models, config, out))
            bar.update(len(batch))
        bar.close()
    ids = {p.id for p in problems}
    records = {m.name: [r for r in read_jsonl(out / "predictions" / f"{m.name}.jsonl", skip_incomplete_tail=True,
                                              required=("id", "correct")) if r["id"] in ids]
               for m in methods}
    report = summarize(config, methods, records)
    write_report(report, out)
    return report


def _check_settings(config: EvalConfig, methods: Sequence[Method]) -> None:
    """The settings' own errors, raised before any model is loaded or record written."""
    from search.decode import AGGREGATIONS
    from search.mcts import LEAF_VALUES, require_positive

    require_positive(config, "batch_problems", "max_steps", "max_step_tokens")
    if config.aggregate not in AGGREGATIONS:
        raise ValueError(f"unknown --aggregate {config.aggregate!r}: use {', '.join(AGGREGATIONS)}")
    if config.mcts_leaf_value not in LEAF_VALUES:
        raise ValueError(f"unknown --mcts_leaf_value {config.mcts_leaf_value!r}: use {' or '.join(LEAF_VALUES)}")
    if config.mcts_commit_simulations < 0:
        raise ValueError(f"--mcts_commit_simulations must be 0 (one search) or positive, got {config.mcts_commit_simulations}")
    if not config.value and any(m.needs_value for m in methods):
        raise ValueError(f"{', '.join(m.name for m in methods if m.needs_value)} need a value model: "
                         "pass --value DIR (or --value likelihood)")


def _decode(method: Method, batch: Sequence[Problem], models: _Models, config: EvalConfig, out: Path) -> list[dict]:
    """One record per problem of ``batch``: id, prediction, gold, correct, tokens, seconds (+ curve for samples).

    ``prediction`` / ``gold`` are the fields `reasoner check` reads, so a predictions file can be re-scored alone.
    """
    from search.beam import beam_search, mcts_decode
    from search.decode import greedy
    from search.mcts import MCTSConfig

    questions = [p.question for p in batch]
    if method.kind in ("maj", "bon", "wmaj"):
        return _from_samples(method, batch, models, config, out)
    # A batch's draws depend on the batch alone, not on the methods or batches run before it in this process.
    reseed_generator(models.generator, config.seed, method.name, batch[0].id)
    started = time.perf_counter()
    steps = dict(max_steps=config.max_steps, max_step_tokens=config.max_step_tokens)
    if method.kind == "greedy":
        found = [(s.answer, s.tokens) for s in greedy(models.generator, questions, **steps)]
    elif method.kind == "beam":
        results = beam_search(models.generator, models.scorer, questions, width=method.width,
                              samples=method.samples, temperature=config.temperature, **steps)
        found = [(r.answer, r.tokens) for r in results]
    else:
        mcts = MCTSConfig(simulations=method.width, children=method.samples, c_puct=TEST_TIME_C_PUCT,
                          temperature=config.temperature,
                          rollout_temperature=config.temperature, max_depth=config.max_steps,
                          max_step_tokens=config.max_step_tokens, leaf_value=config.mcts_leaf_value,
                          commit_simulations=config.mcts_commit_simulations, seed=config.seed)
        found = [(r.answer, r.tokens) for r in mcts_decode(models.generator, models.scorer, questions, mcts)]
    per_problem = (time.perf_counter() - started) / len(batch)
    return [{"id": p.id, "prediction": answer, "gold": p.answer, "correct": is_equivalent(answer, p.answer),
             "tokens": tokens, "seconds": per_problem} for p, (answer, tokens) in zip(batch, found)]


def _from_samples(method: Method, batch: Sequence[Problem], models: _Models, config: EvalConfig,
                  out: Path) -> list[dict]:
    """maj / bon / wmaj records from the shared K samples (drawn now if not cached), scored when needed."""
    from search.decode import Solution, score_groups

    samples = _samples(method.k, batch, models, config, out)
    record_of = {p.id: samples[p.id] for p in batch}
    scores: dict[str, list[float]] = {}
    seconds = 0.0
    if method.needs_value:
        started = time.perf_counter()
        groups = [[Solution(p.question, s["steps"], finished=s["finished"]) for s in record_of[p.id]["samples"]]
                  for p in batch]
        scores = dict(zip([p.id for p in batch], score_groups(models.scorer, groups, config.aggregate)))
        seconds = (time.perf_counter() - started) / len(batch)
    records = []
    for problem in batch:
        drawn = record_of[problem.id]
        answers = [s["answer"] for s in drawn["samples"]]
        tokens = [s["tokens"] for s in drawn["samples"]]
        weights = scores.get(problem.id)
        curve = {}
        for k in _prefix_sizes(method.k):
            answer = _choose(method.kind, answers[:k], weights[:k] if weights else None)
            curve[str(k)] = {"prediction": answer, "correct": is_equivalent(answer, problem.answer),
                             "tokens": sum(tokens[:k])}
        final = curve[str(method.k)]
        records.append({"id": problem.id, "prediction": final["prediction"], "gold": problem.answer,
                        "correct": final["correct"],
                        "tokens": final["tokens"], "seconds": drawn["seconds"] + seconds, "curve": curve,
                        **({"scores": weights, "sample_correct": [is_equivalent(a, problem.answer) for a in answers]}
                           if weights else {})})
    return records


def _samples(k: int, batch: Sequence[Problem], models: _Models, config: EvalConfig, out: Path) -> dict[str, dict]:
    """The K shared samples of each problem of ``batch``, from ``samples-K.jsonl`` or drawn and appended."""
    from search.decode import sample_solutions

    path = out / f"samples-{k}.jsonl"
    cached = {r["id"]: r for r in read_jsonl(path, skip_incomplete_tail=True, required=("id", "samples"))} \
        if path.exists() else {}
    missing = [p for p in batch if p.id not in cached]
    if missing:
        reseed_generator(models.generator, config.seed, f"samples-{k}", missing[0].id)
        started = time.perf_counter()
        groups = sample_solutions(models.generator, [p.question for p in missing], k, temperature=config.temperature,
                                  max_steps=config.max_steps, max_step_tokens=config.max_step_tokens)
        per_problem = (time.perf_counter() - started) / len(missing)
        fresh = [{"id": p.id, "seconds": per_problem,
                  "samples": [{"steps": s.steps, "answer": s.answer, "tokens": s.tokens, "finished": s.finished}
                              for s in group]} for p, group in zip(missing, groups)]
        append_jsonl(path, fresh)
        cached.update((r["id"], r) for r in fresh)
    return cached


def _prefix_sizes(k: int) -> list[int]:
    """1, 2, 4, ... up to and including ``k``: the sample-prefix sizes of a compute curve."""
    sizes, size = [], 1
    while size < k:
        sizes.append(size)
        size *= 2
    return sizes + [k]


def _choose(kind: str, answers: Sequence[str | None], weights: Sequence[float] | None) -> str | None:
    from search.decode import best_of_n, majority_vote, weighted_majority

    if kind == "bon":
        return best_of_n(answers, weights)
    return weighted_majority(answers, weights) if kind == "wmaj" else majority_vote(answers)
