"""`reasoner pipeline --config RECIPE.yaml`: rounds of search → label → train-prm → train policy → eval.

Each stage is the CLI command of the same name, run with the recipe's section for it as ``--key value``
flags plus the paths the pipeline decides, so a stage can be re-run by hand with the command printed in its
log line. Layout under ``output``::

    round-0/eval/                      the starting policy, evaluated with round 1's value model
    round-R/search/  labels/  prm/  policy/  eval/
    report.json  report.md  report.png

A stage that finished leaves ``.done`` (JSON: the command, its seconds and the digest of every ``--config`` file
it read) in its folder and is skipped on re-run, provided the recipe still gives it the same commands and those
files are unchanged (else the re-run is refused: its results came from other settings); a stage cut short resumes where its command resumes (search and eval append per batch, training
resumes from its checkpoints only with ``resume: true`` in its section). Round R's search and training start
from round R-1's policy; the value model's backbone is ``prm.policy`` when the recipe names one (the demo's
``embedded-verifier``), else the round's policy. Every round searches the same problems, unless ``fresh_problems``:
then round R takes the ``search.limit`` problems after those of the rounds before it (``--offset``). Recipe keys:
``output``, ``rounds``, ``policy``, ``eval_initial``, ``fresh_problems`` and the sections
``search``, ``labels`` (list of kinds), ``label`` (optional: per kind, that kind's ``reasoner label`` flags,
e.g. ``{dpo: {max-pairs: 30}, rft: {max-solutions: 8}}``), ``prm``, ``prm_eval`` (optional: eval-prm flags), ``train`` (with
``algo``: a step-preference algorithm, or ``sft`` on the ``rft`` labels, i.e. expert iteration) and ``eval``
(``value: prm`` uses the round's value model, ``likelihood`` the policy's own).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["PipelineConfig", "StageFailed", "before_after_table", "load_pipeline_config", "metric_text", "run_pipeline"]


class StageFailed(RuntimeError):
    """A stage's command exited non-zero (its own error message is already printed)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code

_SECTIONS = ("search", "prm", "prm_eval", "train", "eval")


@dataclass
class PipelineConfig:
    """A pipeline recipe (see the module docstring for what each key does)."""

    output: str = "runs/pipeline"
    rounds: int = 1
    policy: str | None = None
    eval_initial: bool = True
    fresh_problems: bool = False  # round R searches search.limit problems past those of rounds 1..R-1
    step_format: str | None = None  # label prompts' format; default: the one the search recorded (its policy's)
    labels: list[str] = field(default_factory=lambda: ["step-dpo", "mc-labels", "svpo"])
    label: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> its `reasoner label` flags
    search: dict[str, Any] = field(default_factory=dict)
    prm: dict[str, Any] = field(default_factory=dict)
    prm_eval: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=lambda: {"algo": "step-dpo"})
    eval: dict[str, Any] = field(default_factory=dict)


def load_pipeline_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a recipe; unknown keys or a section that is not a mapping name the file and the key."""
    from reasoner.config import load_yaml

    values = {**load_yaml(path), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    known = set(PipelineConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown pipeline key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for name in _SECTIONS:
        if values.get(name) is not None and not isinstance(values[name], dict):
            raise ValueError(f"{path}: section {name!r} must be a mapping of that command's flags")
    if "train" in values and "algo" not in (values["train"] or {}):
        raise ValueError(f"{path}: section 'train' needs an 'algo' (e.g. step-dpo)")
    _check_whole(path, "rounds", values.get("rounds", 1), least=1)
    labels = values.get("labels", PipelineConfig().labels)
    if not isinstance(labels, list) or not all(isinstance(kind, str) for kind in labels):
        raise ValueError(f"{path}: labels must be a list of label kinds (e.g. [step-dpo, mc-labels, svpo])")
    from reasoner.trainers.preference import ALGOS

    algo = (values.get("train") or PipelineConfig().train)["algo"]
    trainable = (*ALGOS, "sft")  # a round trains on its own labels: a step-preference algorithm, or SFT on rft
    if algo not in trainable:
        raise ValueError(f"{path}: train algo {algo!r} is not one the pipeline runs; use one of {', '.join(trainable)}")
    for kind, reader in (("mc-labels", "train-prm"), (_train_data_kind(algo), f"train {algo}")):
        if kind not in labels:
            raise ValueError(f"{path}: labels must include {kind} ({reader} reads it), got {labels}")
    for key in ("eval_initial", "fresh_problems"):
        if not isinstance(values.get(key, False), bool):
            raise ValueError(f"{path}: {key} must be true or false, got {values[key]!r}")
    search = values.get("search") or {}
    _check_whole(path, "search.offset", search.get("offset", 0), least=0)
    if values.get("fresh_problems") and not isinstance(search.get("limit"), int):
        raise ValueError(f"{path}: fresh_problems needs search.limit in the recipe itself (the problems each "
                         "round takes; not from search.config)")
    if values.get("fresh_problems") and search.get("config") and not search.get("offset"):
        from reasoner.config import load_yaml

        file_offset = load_yaml(search["config"]).get("offset")
        if file_offset:  # round 1 (no --offset flag) would start there, later rounds past 0: overlapping rounds
            raise ValueError(f"{path}: fresh_problems counts each round's --offset from search.offset in the recipe, "
                             f"but {search['config']} sets offset: {file_offset}; move it into the recipe's search section")
    prm = values.get("prm") or {}
    if prm.get("rank_weight") and not (prm.get("pairs", True) and {"svpo", "step-apo"} & set(labels)):
        raise ValueError(f"{path}: prm.rank_weight needs sibling pairs: svpo or step-apo in labels, "
                         "and no prm.pairs: false")
    _check_section_keys(values, path)
    _check_label_options(values.get("label"), labels, path)
    return PipelineConfig(**values)


def _check_whole(path: str | Path, name: str, value: Any, least: int | None = None) -> None:
    """A recipe value that must be a whole number (not a bool, not 2.5), at least ``least`` when given."""
    if not isinstance(value, int) or isinstance(value, bool) or (least is not None and value < least):
        bound = "" if least is None else f" of at least {least}"
        raise ValueError(f"{path}: {name} must be a whole number{bound}, got {value!r}")


def _check_label_options(options: Any, labels: list[str], path: str | Path) -> None:
    """The ``label`` section: per label kind of ``labels``, the ``reasoner label`` flags that kind takes
    (``seed``, and the per-problem caps of prm.labels.PER_PROBLEM_CAPS as whole numbers of at least 1)."""
    from prm.labels import PER_PROBLEM_CAPS

    if options is None:
        return
    if not isinstance(options, dict):
        raise ValueError(f"{path}: section 'label' must map a label kind to its flags, e.g. {{dpo: {{max-pairs: 30}}}}")
    for kind, kind_flags in options.items():
        if kind not in labels:
            raise ValueError(f"{path}: section 'label' sets flags for {kind!r}, which is not in labels {labels}")
        if not isinstance(kind_flags, dict):
            raise ValueError(f"{path}: label.{kind} must be a mapping of `reasoner label` flags")
        caps = [name for name, kinds in PER_PROBLEM_CAPS.items() if kind in kinds]
        for key, value in kind_flags.items():
            option = key.replace("-", "_")
            if option != "seed" and option not in caps:
                raise ValueError(f"{path}: label.{kind} has unknown key {key!r} (known: "
                                 f"{', '.join(['seed', *(name.replace('_', '-') for name in caps)])})")
            _check_whole(path, f"label.{kind}.{key}", value, least=None if option == "seed" else 1)


def _train_data_kind(algo: str) -> str:
    """The label kind a round's policy training reads (step-apo's own pairs scale final-step Q by CPL's 0.3;
    SFT reads the search's correct solutions: rejection-sampling fine-tuning, i.e. expert iteration)."""
    return {"full-step-dpo": "step-rewards", "sft": "rft"}.get(algo, algo)


def _check_section_keys(values: dict[str, Any], path: str | Path) -> None:
    """Unknown keys of the search / prm / train / eval sections, found now rather than when their stage runs
    (after the stages before it)."""
    import dataclasses

    from eval.evaluate import EvalConfig
    from prm.trainer import PRMArgs
    from reasoner.trainers.preference import PreferenceArgs
    from reasoner.trainers.sft import SFTArgs
    from search.runner import SearchConfig

    trainer = SFTArgs if (values.get("train") or {}).get("algo") == "sft" else PreferenceArgs
    for name, cls in (("search", SearchConfig), ("prm", PRMArgs), ("train", trainer), ("eval", EvalConfig)):
        known = {f.name for f in dataclasses.fields(cls)} | {"config"} | ({"algo"} if name == "train" else set())
        unknown = sorted(key for key in values.get(name) or {} if key.replace("-", "_") not in known)
        if unknown:
            raise ValueError(f"{path}: section {name!r} has unknown key {unknown[0]!r} "
                             f"(known: {', '.join(sorted(known))})")


def flags(section: dict[str, Any] | None, drop: Sequence[str] = ()) -> list[str]:
    """``{"limit": 64, "quiet": true}`` → ``["--limit", "64", "--quiet", "true"]`` (None values left out)."""
    argv = []
    for key, value in (section or {}).items():
        if key in drop or value is None:
            continue
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


class _Stages:
    """Runs CLI commands as pipeline stages, skipping finished ones and timing the rest."""

    def __init__(self, run_command: Callable[[list[str]], int], log: Callable[[str], None], output: Path):
        self.run_command, self.log = run_command, log
        self.seconds: dict[str, float] = {}
        self.output = str(output)

    def portable(self, commands: list[list[str]]) -> list[list[str]]:
        """``commands`` with the run folder written as ``{output}``, so that a marker still matches after the
        folder is moved or spelled otherwise (relative vs absolute)."""
        inside = self.output.rstrip("/") + "/"
        return [[OUTPUT + "/" + arg[len(inside):] if arg.startswith(inside) else arg for arg in argv]
                for argv in commands]

    def run(self, name: str, folder: Path, commands: list[list[str]]) -> None:
        marker = folder / ".done"
        if marker.exists():
            done = _read_marker(marker)
            ran, wanted = self.portable(done.get("commands", commands)), self.portable(commands)
            if ran != wanted:
                changed = [" ".join(argv) for argv, now in zip(ran, wanted) if argv != now]
                what = f"reasoner {changed[0]}" if changed else f"{len(ran)} commands, not {len(wanted)}"
                raise ValueError(f"{marker}: stage {name} finished with other settings than this recipe gives it "
                                 f"(it ran: {what}); use another output or the recipe it ran with, or delete this "
                                 ".done to run the stage again (its command then resumes or refuses by its own "
                                 "rules; later stages are redone only if their .done is deleted too)")
            edited = [path for path, digest in _config_digests(commands).items()
                      if path in done.get("config_files", {}) and done["config_files"][path] != digest]
            if edited:
                raise ValueError(f"{marker}: stage {name} finished with {edited[0]} as it was then; the file has "
                                 "changed since, so its results no longer follow from this recipe; restore the file, "
                                 "use another output, or delete this .done to run the stage again")
            self.seconds[name] = done.get("seconds", 0.0)
            self.log(f"── {name}: done already ({folder}), skipped")
            return
        digests = _config_digests(commands)  # as the stage reads them, before it runs
        started = time.perf_counter()
        for argv in commands:
            self.log(f"── {name}: reasoner {' '.join(argv)}")
            code = self.run_command(argv)
            if code != 0:
                raise StageFailed(f"stage {name} failed (exit {code}): reasoner {' '.join(argv)}", code)
        self.seconds[name] = round(time.perf_counter() - started, 1)
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"commands": self.portable(commands), "seconds": self.seconds[name],
                                      "config_files": digests}) + "\n")
        self.log(f"── {name}: finished in {self.seconds[name]:.0f} s")


OUTPUT = "{output}"


def _config_digests(commands: list[list[str]]) -> dict[str, str]:
    """SHA-256 of every ``--config FILE`` the commands read (say ``search.config``), by the path as written: a
    stage's marker keeps them, so that a finished stage is not skipped once the file it ran with has changed."""
    import hashlib

    paths = [argv[i + 1] for argv in commands for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    return {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in paths if Path(path).is_file()}


def _read_marker(marker: Path) -> dict:
    """A stage's ``.done``: {} when empty (``touch``ed by hand after running the stage by hand)."""
    text = marker.read_text().strip()
    try:
        done = json.loads(text) if text else {}
    except json.JSONDecodeError:
        done = None
    if not isinstance(done, dict):
        raise ValueError(f"{marker}: not a stage marker (empty, or the JSON the pipeline writes); "
                         "delete it to run the stage again")
    return done


def run_pipeline(config: PipelineConfig, run_command: Callable[[list[str]], int],
                 log: Callable[[str], None] = print) -> dict:
    """Run every round (skipping finished stages), then write and return ``report.json``."""
    out = Path(config.output)
    stages = _Stages(run_command, log, out)
    policy = config.policy
    policy_flags = ["--policy", policy] if policy else []
    for number in range(1, config.rounds + 1):
        here = out / f"round-{number}"
        log(f"━━ round {number}/{config.rounds} (policy: {policy or 'embedded'})")
        stages.run(f"round {number} search", here / "search",
                   [["search", *flags(config.search, drop=("output", "policy", "offset")), *_offset_flag(config, number),
                     "--output", str(here / "search"), *policy_flags]])
        stages.run(f"round {number} label", here / "labels",
                   [["label", str(here / "search"), "--kind", kind, *_label_flags(config, kind),
                     *(["--step-format", config.step_format] if config.step_format else []),
                     "--output", str(here / "labels" / f"{kind}.jsonl")] for kind in config.labels])
        backbone = ["--policy", config.prm["policy"]] if (config.prm or {}).get("policy") else policy_flags
        prm_commands = [["train-prm", *flags(config.prm, drop=("output", "data", "pairs", "policy")),
                         "--data", str(here / "labels" / "mc-labels.jsonl"), *_pairs_flag(config, here),
                         "--output", str(here / "prm"), *backbone]]
        if config.prm_eval is not None:
            prm_commands.append(["eval-prm", str(here / "prm"), *flags(config.prm_eval, drop=("output",)),
                                 "--output", str(here / "prm" / "eval-prm.json")])
        stages.run(f"round {number} train-prm", here / "prm", prm_commands)
        value = _value_flag(config, here)
        if number == 1 and config.eval_initial:
            stages.run("round 0 eval", out / "round-0" / "eval", [_eval_command(config, out / "round-0", policy, value)])
        train = dict(config.train)
        algo = train.pop("algo")
        data_kind = _train_data_kind(algo)
        stages.run(f"round {number} train {algo}", here / "policy",
                   [["train", algo, *flags(train, drop=("output", "data", "model")),
                     "--data", str(here / "labels" / f"{data_kind}.jsonl"), "--output", str(here / "policy"),
                     *(["--model", policy] if policy else [])]])
        policy = str(here / "policy")
        policy_flags = ["--policy", policy]
        stages.run(f"round {number} eval", here / "eval", [_eval_command(config, here, policy, value)])
    report = pipeline_report(config, stages.seconds)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_summary(report, out)
    return report


def _offset_flag(config: PipelineConfig, number: int) -> list[str]:
    """Round ``number``'s ``--offset``: the recipe's, moved past the earlier rounds' problems if they are to be fresh."""
    offset = int(config.search.get("offset", 0))
    if config.fresh_problems:
        offset += (number - 1) * int(config.search["limit"])
    return ["--offset", str(offset)] if offset else []


def _label_flags(config: PipelineConfig, kind: str) -> list[str]:
    """The recipe's ``label.KIND`` flags, spelled as `reasoner label` spells them (``--max-pairs``)."""
    return flags({key.replace("_", "-"): value for key, value in ((config.label or {}).get(kind) or {}).items()})


def _pairs_flag(config: PipelineConfig, here: Path) -> list[str]:
    if "pairs" in config.prm and not config.prm["pairs"]:
        return []
    kind = "svpo" if "svpo" in config.labels else ("step-apo" if "step-apo" in config.labels else None)
    return ["--pairs", str(here / "labels" / f"{kind}.jsonl")] if kind else []


def _value_flag(config: PipelineConfig, here: Path) -> str:
    value = config.eval.get("value", "prm")
    return str(here / "prm") if value == "prm" else str(value)


def _eval_command(config: PipelineConfig, here: Path, policy: str | None, value: str) -> list[str]:
    return ["eval", *flags(config.eval, drop=("output", "policy", "value")), "--output", str(here / "eval"),
            "--value", value, *(["--policy", policy] if policy else [])]


def pipeline_report(config: PipelineConfig, seconds: dict[str, float]) -> dict:
    """``rounds`` (each: round, policy, eval = method → row), ``prm`` (the last round's eval-prm figures),
    ``prm_rounds``, ``stage_seconds`` and ``wall_seconds`` (the sum of stage times, over resumed runs too)."""
    out = Path(config.output)
    rounds, prm_rounds = [], []
    for number in range(0, config.rounds + 1):
        report_path = out / f"round-{number}" / "eval" / "report.json"
        if report_path.exists():
            found = json.loads(report_path.read_text())
            rounds.append({"round": number, "policy": found["policy"], "value": found["value"],
                           "eval": found["methods"], "compute_matched": found["compute_matched"]})
        prm_path = out / f"round-{number}" / "prm" / "eval-prm.json"
        if prm_path.exists():
            found = json.loads(prm_path.read_text())
            prm_rounds.append({"round": number, "step_auc": found.get("step_auc"),
                               "first_error_f1": found.get("first_error_f1"), "threshold": found.get("threshold"),
                               "problems": found.get("problems")})
    return {"rounds": rounds, "prm": prm_rounds[-1] if prm_rounds else None, "prm_rounds": prm_rounds,
            "stage_seconds": seconds, "wall_seconds": round(sum(seconds.values()), 1)}


def before_after_table(report: dict) -> str:
    """Markdown: one row per method, one accuracy (and tokens) column per evaluated round."""
    rounds = report["rounds"]
    methods = list(dict.fromkeys(name for entry in rounds for name in entry["eval"]))
    header = "| method | " + " | ".join(f"round {e['round']} accuracy | tokens" for e in rounds) + " |"
    lines = [header, "|---|" + "---:|---:|" * len(rounds)]
    for name in methods:
        cells = []
        for entry in rounds:
            row = entry["eval"].get(name)
            cells += [f"{row['accuracy']:.1%}", f"{row['tokens_per_problem']:.0f}"] if row else ["", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_text(value: float | None) -> str:
    """A metric with 3 decimals; ``n/a`` when it is undefined (eval-prm writes null, e.g. an AUC with one class)."""
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _write_summary(report: dict, out: Path) -> None:
    from eval.report import plot_accuracy_vs_tokens

    lines = ["# reasoner pipeline", "", before_after_table(report), ""]
    prm_rounds = report.get("prm_rounds") or []
    where = " on " + prm_rounds[-1]["problems"] if prm_rounds and prm_rounds[-1].get("problems") else ""
    if len(prm_rounds) == 1:
        lines += [f"Value model{where}: step AUC {metric_text(prm_rounds[0]['step_auc'])}, "
                  f"first-error F1 {metric_text(prm_rounds[0]['first_error_f1'])}.", ""]
    elif prm_rounds:  # each round's eval used that round's value model (round 0: round 1's)
        lines += [f"Value model of each round (`eval-prm`{where}):", "", "| round | step AUC | first-error F1 |",
                  "|---|---:|---:|"]
        lines += [f"| {entry['round']} | {metric_text(entry['step_auc'])} | {metric_text(entry['first_error_f1'])} |"
                  for entry in prm_rounds] + [""]
    lines += [f"Wall time of all stages: {report['wall_seconds']:.0f} s.", "", "![accuracy vs tokens](report.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    series = {f"{name} (round {entry['round']})": row for entry in report["rounds"] for name, row in entry["eval"].items()}
    if series:
        plot_accuracy_vs_tokens(series, out / "report.png", "accuracy vs tokens, every round")
