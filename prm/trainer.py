"""Training the step value model (`reasoner train-prm`) on `transformers.Trainer`.

Inputs are the files `reasoner label` writes: ``mc-labels`` (TRL's stepwise format, ``prompt`` /
``completions`` / ``labels`` plus soft ``values``) and, for the optional ranking term, sibling pairs
(``svpo`` / ``step-apo``: ``prompt`` / ``chosen`` / ``rejected``). Each step is read at its last token
(`prm.model.encode_steps`). Losses, per read position i with head logit z_i:

* ``tanh`` head, MSE to a target t_i in [-1, 1] (AlphaMath 1.9):  L = mean_i (tanh z_i - t_i)^2,
  with t_i = 2·value_i - 1 (``target: soft``; the MC value on [-1, 1], close to but not the MCTS Q = W/N)
  or ±1 (``target: hard``);
* ``sigmoid`` head, BCE (7.3):  L = -mean_i [y_i log σ(z_i) + (1 - y_i) log(1 - σ(z_i))], with y_i the soft
  value or the hard label;
* ranking (SVPO's margin idea, 1.11, reconstructed): L_rank = mean_pairs max(0, γ - (V_w - V_l)) over sibling
  pairs, added with weight λ (``rank_weight``).

Held-out problems (``eval_fraction`` of problem ids) give ``eval_loss``, ``eval_step_auc`` (values vs hard
labels) and the first-error threshold with the best F1 on those paths (``eval_threshold``, stored in the model
as its default decision threshold) every ``eval_steps``. Checkpoints and the final model are loadable
value-model directories.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import Trainer, set_seed

from data.records import MC_LABEL_FIELDS, MC_LABEL_KINDS, PAIR_FIELDS, PAIR_KINDS, RecordError, read_jsonl
from prm.metrics import best_threshold, roc_auc
from prm.model import WEIGHTS_FILE, ValueModel, encode_steps
from reasoner.models import pad_right
from reasoner.trainers.common import AveragedMetrics, TrainingKnobs

__all__ = ["PRMArgs", "PRMDataset", "PRMCollator", "PRMTrainer", "point_loss", "rank_loss", "train_prm",
           "load_label_examples", "load_pair_examples"]


@dataclass
class PRMArgs(TrainingKnobs):
    """Settings of `reasoner train-prm` (the Trainer's own knobs that matter here are mirrored)."""

    data: str = field(default="", metadata={"help": "mc-labels JSONL from `reasoner label --kind mc-labels`"})
    pairs: str | None = field(default=None, metadata={"help": "svpo/step-apo pairs JSONL for the ranking term"})
    policy: str | None = field(default=None, metadata={
        "help": "model whose backbone starts the value model: embedded (default), embedded-verifier, a dir or hub name"})
    init: str | None = field(default=None, metadata={"help": "continue from this value model instead"})
    output: str = field(default="runs/prm", metadata={"help": "output directory"})
    head: str = field(default="tanh", metadata={"help": "tanh ([-1,1], MSE) or sigmoid ([0,1], BCE)"})
    likelihood_features: bool = field(default=True, metadata={
        "help": "the head also sees the backbone LM's token log-probs per step (see prm.model)"})
    freeze_backbone: bool = field(default=False, metadata={
        "help": "train only the heads (a probe on the policy's states and likelihoods)"})
    target: str = field(default="soft", metadata={"help": "soft (MC value) or hard (some correct leaf below)"})
    rank_weight: float = field(default=0.0, metadata={"help": "λ of the pairwise margin term (needs --pairs)"})
    margin: float = 0.1
    max_paths_per_problem: int = field(default=32, metadata={"help": "cap on root-to-leaf paths per problem"})
    eval_fraction: float = field(default=0.05, metadata={"help": "share of problems held out for eval"})
    eval_problems: str | None = field(default=None, metadata={
        "help": "also run eval-prm on this synthetic spec at each eval (e.g. synthetic:train; keep test for the end)"})
    eval_limit: int = 200
    max_length: int = 512
    epochs: float = 1.0
    learning_rate: float = 3e-4
    batch_size: int = 32
    warmup_steps: int = 20
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    eval_steps: int = 200
    logging_steps: int = 20


def _held_out(problem_id: str, fraction: float) -> bool:
    digest = hashlib.sha1(problem_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def load_label_examples(path: str | Path, *, target: str, head: str, max_paths_per_problem: int | None,
                        seed: int = 0) -> dict[str, list[dict]]:
    """mc-labels records → {problem_id: [{"prompt", "steps", "targets", "labels"}]} (targets in the head's range).

    Errors name the file and line of a record with a missing field or mismatched list lengths.
    """
    if target not in ("soft", "hard"):
        raise ValueError(f"unknown PRM target {target!r}: use soft or hard")
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for line, record in read_jsonl(path, with_line_numbers=True, required=MC_LABEL_FIELDS, kinds=MC_LABEL_KINDS):
        steps, labels = record["completions"], record["labels"]
        values = record.get("values", [float(v) for v in labels])
        if not isinstance(steps, list) or len(labels) != len(steps) or len(values) != len(steps):
            raise RecordError(path, line, "'completions', 'labels' and 'values' must be lists of one length")
        soft = [float(v) for v in values] if target == "soft" else [float(bool(v)) for v in labels]
        targets = [2.0 * v - 1.0 for v in soft] if head == "tanh" else soft
        by_problem[str(record.get("problem_id", line))].append(
            {"prompt": record["prompt"], "steps": steps, "targets": targets, "labels": [bool(v) for v in labels]})
    if not by_problem:
        raise ValueError(f"{path}: no mc-labels records to train on")
    rng = random.Random(seed)
    if max_paths_per_problem:
        for problem_id, paths in by_problem.items():
            if len(paths) > max_paths_per_problem:
                by_problem[problem_id] = rng.sample(paths, max_paths_per_problem)
    return by_problem


def load_pair_examples(path: str | Path) -> dict[str, list[dict]]:
    """Sibling pairs (``prompt`` = question + earlier steps, ``chosen``/``rejected`` = one step) by problem."""
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for line, record in read_jsonl(path, with_line_numbers=True, required=PAIR_FIELDS, kinds=PAIR_KINDS):
        by_problem[str(record.get("problem_id", line))].append(
            {"prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"],
             "depth": int(record.get("depth", 0)), "where": f"{path}:{line}"})
    return by_problem


class PRMDataset(Dataset):
    """Tokenised label paths (``kind`` "labels") and sibling pairs (``kind`` "pair") for one split.

    A pair's ``prompt`` (question + earlier steps, rendered) is parsed back with `StepFormat.parse`, so each
    side is scored exactly like a path: the earlier steps and the candidate step, read at every step end.
    """

    def __init__(self, model: ValueModel, labels: Sequence[dict], pairs: Sequence[dict] = (), max_length: int = 512):
        tokenizer, fmt = model.tokenizer, model.step_format
        self.examples: list[dict[str, Any]] = []
        for example in labels:
            ids, ends, prompt_length = encode_steps(tokenizer, fmt, example["prompt"], example["steps"], max_length=max_length)
            if ends:
                self.examples.append({"kind": "labels", "rows": [(ids, ends, prompt_length)],
                                      "targets": example["targets"][: len(ends)], "labels": example["labels"][: len(ends)]})
        for pair in pairs:
            try:
                question, earlier = fmt.parse(pair["prompt"])
            except ValueError as exc:  # a pair labelled with another step format
                raise ValueError(f"{pair.get('where', 'a pair')}: {exc}") from None
            sides = []
            for side in ("chosen", "rejected"):
                steps = earlier + (fmt.split(pair[side]) or [pair[side]])
                ids, ends, prompt_length = encode_steps(tokenizer, fmt, fmt.prompt(question), steps, max_length=max_length)
                if len(ends) == len(steps):
                    sides.append((ids, ends, prompt_length))
            if len(sides) == 2:
                self.examples.append({"kind": "pair", "rows": sides})
        if not self.examples:
            raise ValueError("no PRM training example: the label file yielded no step that fits in max_length")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.examples[index]


@dataclass
class PRMCollator:
    """Flattens a mixed batch into one right-padded tensor; reads are flat in row order (see `ValueModel.forward`)."""

    pad_token_id: int

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        sequences, ends, prompt_lengths = [], [], []
        label_reads: list[int] = []
        targets: list[float] = []
        labels: list[bool] = []
        pairs: list[list[int]] = []  # flat indices of the chosen / rejected step's read
        count = 0
        for example in batch:
            last_reads = []
            for ids, row_ends, prompt_length in example["rows"]:
                sequences.append(ids)
                ends.append(row_ends)
                prompt_lengths.append(prompt_length)
                if example["kind"] == "labels":
                    label_reads.extend(range(count, count + len(row_ends)))
                count += len(row_ends)
                last_reads.append(count - 1)
            if example["kind"] == "labels":
                targets.extend(example["targets"])
                labels.extend(example["labels"])
            else:
                pairs.append(last_reads)
        input_ids, attention = pad_right(sequences, self.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention, "ends": ends, "prompt_lengths": prompt_lengths,
                "label_reads": torch.tensor(label_reads, dtype=torch.long),
                "targets": torch.tensor(targets, dtype=torch.float32), "hard": torch.tensor(labels, dtype=torch.bool),
                "pairs": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)}


def point_loss(logits: torch.Tensor, targets: torch.Tensor, head: str, reduction: str = "mean") -> torch.Tensor:
    """Per-step loss at read positions: MSE(tanh z, t) for the tanh head, BCE(σ(z), y) for sigmoid; averaged
    over the steps, or one value per step with ``reduction="none"``."""
    if logits.numel() == 0:
        return logits.sum() if reduction == "mean" else logits
    if head == "tanh":
        return F.mse_loss(torch.tanh(logits), targets, reduction=reduction)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)


def rank_loss(chosen_values: torch.Tensor, rejected_values: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge ranking term: mean max(0, γ - (V_w - V_l)) over sibling pairs (SVPO 1.11, reconstructed)."""
    if chosen_values.numel() == 0:
        return chosen_values.sum()
    return torch.clamp(margin - (chosen_values - rejected_values), min=0).mean()


class PRMTrainer(AveragedMetrics, Trainer):
    """`Trainer` with the value-model loss, held-out metrics, and checkpoints loadable by path."""

    def __init__(self, *args, rank_weight: float = 0.0, margin: float = 0.1, eval_problems: str | None = None,
                 eval_limit: int = 200, **kwargs):
        super().__init__(*args, **kwargs)
        self.rank_weight, self.margin = rank_weight, margin
        self.eval_problems, self.eval_limit = eval_problems, eval_limit
        self.last_eval: dict[str, float] = {}
        self.last_eval_step = -1

    @staticmethod
    def _logits(model, inputs) -> torch.Tensor:
        """Value logits at every read position of the batch (label reads and pair reads)."""
        return model(inputs["input_ids"], inputs["attention_mask"], inputs["ends"], inputs["prompt_lengths"])

    def _losses(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self._logits(model, inputs)
        pairs = inputs["pairs"]
        read_logits = logits[inputs["label_reads"]]
        point = point_loss(read_logits, inputs["targets"], self._head(model))
        pair_values = self._activate(model, logits[pairs.flatten()]).reshape(-1, 2)
        rank = rank_loss(pair_values[:, 0], pair_values[:, 1], self.margin)
        return point, rank

    @staticmethod
    def _unwrap(model) -> ValueModel:
        return getattr(model, "module", model)

    def _head(self, model) -> str:
        return self._unwrap(model).head

    def _activate(self, model, logits: torch.Tensor) -> torch.Tensor:
        return self._unwrap(model).activate(logits)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        point, rank = self._losses(model, inputs)
        loss = point + self.rank_weight * rank
        self._record(point_loss=point)
        if inputs["pairs"].numel():
            self._record(rank_loss=rank)
        return (loss, {}) if return_outputs else loss

    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float | None]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            return {}
        model = self.model
        was_training = model.training
        model.eval()
        rows = []
        for inputs in self.get_eval_dataloader(dataset):
            inputs = self._prepare_inputs(inputs)
            read_logits = self._logits(model, inputs)[inputs["label_reads"]]
            losses = point_loss(read_logits, inputs["targets"], self._head(model), reduction="none").tolist()
            values, hard = self._activate(model, read_logits).tolist(), inputs["hard"].tolist()
            offset, batch_rows = 0, []
            for row_ends in inputs["ends"]:  # eval examples are label paths, one row each
                part = slice(offset, offset + len(row_ends))
                batch_rows.append((sum(losses[part]), values[part], hard[part]))
                offset += len(row_ends)
            # Every process scored its shard; gather_for_metrics drops the rows the sampler repeated to even out
            # the last round, so each held-out path counts once.
            rows += [row for row in self.accelerator.gather_for_metrics(batch_rows, use_gather_object=True) if row[1]]
        model.train(was_training)
        path_values, path_labels = [values for _, values, _ in rows], [labels for _, _, labels in rows]
        total = sum(len(values) for values in path_values) or 1
        # First-error threshold from the held-out label paths alone (a path's first error = its first step whose
        # hard label is False, -1 when none): the same ProcessBench rule as eval-prm, no gold solution used.
        first_errors = [next((i for i, ok in enumerate(labels) if not ok), -1) for labels in path_labels]
        threshold, f1 = best_threshold(path_values, first_errors)
        if threshold is not None:  # else (held-out paths all correct or all wrong) keep the head's default
            self._unwrap(model).threshold = threshold
        metrics = {f"{metric_key_prefix}_loss": sum(loss for loss, _, _ in rows) / total,
                   f"{metric_key_prefix}_step_auc": roc_auc([v for row in path_values for v in row],
                                                            [ok for row in path_labels for ok in row]),
                   f"{metric_key_prefix}_threshold": threshold,
                   f"{metric_key_prefix}_first_error_f1": f1}
        if self.eval_problems:
            from prm.evaluate import evaluate_prm

            found = evaluate_prm(self._unwrap(model), self.eval_problems, self.eval_limit, progress=False)
            metrics.update({f"{metric_key_prefix}_synthetic_{key}": found[key]
                            for key in ("step_auc", "first_error_f1", "solution_auc_min")})
        self.log(metrics)
        self.last_eval, self.last_eval_step = metrics, self.state.global_step
        return metrics

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Checkpoints are value-model directories (loadable by path); tied LM weights are stored once."""
        if self.args.should_save:
            output_dir = output_dir or self.args.output_dir
            self._unwrap(self.model).save_pretrained(output_dir, state_dict=state_dict)
            torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from safetensors.torch import load_model

        load_model(self._unwrap(model or self.model), os.path.join(resume_from_checkpoint, WEIGHTS_FILE), strict=True)



def train_prm(args: PRMArgs, callbacks: Sequence[Any] = ()) -> tuple[ValueModel, Any]:
    """Build (or continue) a value model, train it on ``args.data`` (+ pairs), save it to ``args.output``."""
    from reasoner.models import load_policy
    from reasoner.trainers.common import TRAINING_DTYPE, resume_checkpoint, training_arguments

    if args.head not in ("tanh", "sigmoid"):
        raise ValueError(f"unknown value head {args.head!r}: use tanh or sigmoid")
    if args.rank_weight and not args.pairs:
        raise ValueError("--rank_weight needs --pairs (svpo or step-apo pairs from `reasoner label`)")
    set_seed(args.seed)  # before the value head's random init: Trainer seeds only once the model exists
    if args.init:
        model = ValueModel.from_pretrained(args.init, device=args.device, dtype=TRAINING_DTYPE)
        if model.head != args.head:
            raise ValueError(f"{args.init}: its head is {model.head!r}, not --head {args.head!r}")
    else:
        model = ValueModel.from_policy(load_policy(args.policy, device=args.device, dtype=TRAINING_DTYPE), head=args.head,
                                       likelihood_features=args.likelihood_features)
    model.train()
    if args.freeze_backbone:
        model.lm.requires_grad_(False)
    by_problem = load_label_examples(args.data, target=args.target, head=args.head,
                                     max_paths_per_problem=args.max_paths_per_problem, seed=args.seed)
    pairs = load_pair_examples(args.pairs) if args.pairs else {}
    split = {"train": ([], []), "eval": ([], [])}
    for problem_id in sorted(set(by_problem) | set(pairs)):
        labels, pair_list = split["eval" if _held_out(problem_id, args.eval_fraction) else "train"]
        labels.extend(by_problem.get(problem_id, []))
        pair_list.extend(pairs.get(problem_id, []))
    train_set = PRMDataset(model, *split["train"], max_length=args.max_length)
    eval_set = PRMDataset(model, split["eval"][0], max_length=args.max_length) if split["eval"][0] else None
    training_args = training_arguments(args, eval_strategy="steps" if eval_set is not None else "no",
                                       eval_steps=args.eval_steps)
    trainer = PRMTrainer(
        model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=PRMCollator(model.tokenizer.pad_token_id or 0), callbacks=list(callbacks),
        rank_weight=args.rank_weight, margin=args.margin, eval_problems=args.eval_problems, eval_limit=args.eval_limit,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(args))
    if eval_set is not None:
        if trainer.last_eval_step != trainer.state.global_step:
            trainer.evaluate()
        trainer.log({"calibrated_threshold": None if model.threshold is None else round(model.threshold, 4),
                     "held_out_first_error_f1": round(trainer.last_eval["eval_first_error_f1"], 4)})
    model.eval()
    trainer.save_model(args.output)  # gathers ZeRO-3 partitions; the main process alone writes
    if trainer.is_world_process_zero():
        Path(args.output, "training_args.bin").unlink(missing_ok=True)
    return model, trainer
