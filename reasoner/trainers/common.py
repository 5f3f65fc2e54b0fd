"""What every trainer here shares: `transformers.TrainingArguments` from one of our config dataclasses."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["training_arguments"]


def training_arguments(args: Any, **overrides: Any):
    """TrainingArguments from a config with ``output``, ``epochs``, ``batch_size``, ``learning_rate``,
    ``lr_scheduler``, ``warmup_steps``, ``logging_steps``, ``save_steps``, ``seed``, ``report_to``,
    ``deepspeed`` (and optionally ``max_steps``, ``weight_decay``, ``gradient_accumulation_steps``,
    ``max_grad_norm``); CPU unless CUDA is there, no dataloader workers, our own columns kept."""
    from transformers import TrainingArguments

    values = dict(
        output_dir=args.output, num_train_epochs=args.epochs, max_steps=getattr(args, "max_steps", -1),
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=getattr(args, "gradient_accumulation_steps", 1),
        learning_rate=args.learning_rate, lr_scheduler_type=args.lr_scheduler, warmup_steps=args.warmup_steps,
        weight_decay=getattr(args, "weight_decay", 0.0), max_grad_norm=getattr(args, "max_grad_norm", 1.0),
        logging_steps=args.logging_steps, save_steps=args.save_steps, save_total_limit=2, seed=args.seed,
        data_seed=args.seed, report_to=[] if args.report_to == "none" else [args.report_to],
        deepspeed=args.deepspeed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        remove_unused_columns=False, disable_tqdm=False,
    )
    values.update(overrides)
    return TrainingArguments(**values)
