"""Supervised fine-tuning on gold step-by-step solutions, loss on solution tokens only.

Each example is ``prompt(question)`` (labels -100) followed by the solution written in the policy's step
format, every step with its header, plus EOS (labels = the tokens): the text sampling writes. Built on `transformers.Trainer`, so DeepSpeed,
accelerate, ``report_to`` and checkpoint resumption come from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from data.problems import Problem
from reasoner.models import encode_continuation, encode_prefix
from reasoner.steps import StepFormat
from reasoner.trainers.common import TrainingKnobs

__all__ = ["SFTDataset", "SFTCollator", "sft_example", "solution_steps", "train_sft", "SFTArgs"]


def solution_steps(problem: Problem, step_format: StepFormat) -> list[str]:
    """The solution's steps, by the format's split (headers such as ``Step k:`` dropped, so a solution written in
    the format, as `reasoner label --kind rft` writes it, comes back as its own steps), except that a solution
    without a blank line under a blank-line format (a line-based gold solution: GSM8K, synthetic) gives one step
    per non-empty line."""
    solution = problem.solution or ""
    if step_format.delimiter == "\n\n" and "\n\n" not in solution.strip():
        return [line.strip() for line in solution.split("\n") if line.strip()]
    return step_format.split(solution)


def sft_example(tokenizer, step_format: StepFormat, question: str, steps: Sequence[str], max_length: int = 1024) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` (prompt masked with -100) of one prompt + solution + EOS."""
    prompt_ids = encode_prefix(tokenizer, step_format.prompt(question))  # render_solution writes every header
    completion_ids = encode_continuation(tokenizer, step_format.render_solution(steps))
    completion_ids = completion_ids + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + completion_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


class SFTDataset(Dataset):
    """Tokenized SFT examples from problems with gold solutions."""

    def __init__(self, problems: Sequence[Problem], tokenizer, step_format: StepFormat, max_length: int = 1024):
        self.examples = [
            sft_example(tokenizer, step_format, problem.question, solution_steps(problem, step_format), max_length)
            for problem in problems
            if problem.solution
        ]
        if not self.examples:
            raise ValueError("no problem with a gold solution to train on")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.examples[index]


@dataclass
class SFTCollator:
    """Right-pads ``input_ids`` with the pad id and ``labels`` with -100."""

    pad_token_id: int

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(example["input_ids"]) for example in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, example in enumerate(batch):
            length = len(example["input_ids"])
            input_ids[row, :length] = torch.tensor(example["input_ids"])
            labels[row, :length] = torch.tensor(example["labels"])
            attention[row, :length] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


@dataclass
class SFTArgs(TrainingKnobs):
    """Settings of `reasoner train sft` (plus the shared `TrainingKnobs`)."""

    data: str = field(default="synthetic:train", metadata={"help": "problem spec with gold solutions"})
    model: str | None = field(default=None, metadata={"help": "policy to fine-tune (default: embedded)"})
    output: str = field(default="runs/sft", metadata={"help": "output directory"})
    limit: int | None = field(default=None, metadata={"help": "use the first N problems"})
    max_length: int = 1024
    epochs: float = 1.0
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    warmup_steps: int = 0
    lr_scheduler: str = "constant_with_warmup"
    logging_steps: int = 20
    label_smoothing: float = field(default=0.0, metadata={
        "help": "label smoothing eps on solution tokens: target 1-eps on the gold token + eps spread evenly over the "
                "vocabulary (transformers' LabelSmoother); 0 = plain cross-entropy"})


def train_sft(model, tokenizer, step_format: StepFormat, problems: Sequence[Problem], args: SFTArgs,
              callbacks: Sequence[Any] = (), max_steps: int = -1) -> Any:
    """Run SFT with `transformers.Trainer`; returns the trainer (its ``state`` holds the log history)."""
    from transformers import Trainer

    from reasoner.trainers.common import resume_checkpoint, training_arguments

    dataset = SFTDataset(problems, tokenizer, step_format, args.max_length)
    training_args = training_arguments(args, max_steps=max_steps if max_steps >= 0 else args.max_steps,
                                       label_smoothing_factor=args.label_smoothing)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=SFTCollator(tokenizer.pad_token_id),
        callbacks=list(callbacks),
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(args))
    return trainer
