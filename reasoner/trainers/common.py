"""What every trainer here shares: `transformers.TrainingArguments` from one of our config dataclasses."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["training_arguments", "resume_checkpoint", "mixed_precision", "TRAINING_DTYPE", "check_deepspeed_config",
           "single_process_environment", "TrainingKnobs", "check_training_device", "one_gpu_per_process", "bf16_autocast", "AveragedMetrics", "close_process_group", "exit_process",
           "sample_with_current_policy", "sampling_seed", "sampling_step", "step_generators", "zero_loss"]


@dataclass
class TrainingKnobs:
    """Fields every training command shares (each command's config dataclass adds its own after these)."""

    max_steps: int = field(default=-1, metadata={"help": "stop after N optimizer steps (-1: run the epochs)"})
    gradient_accumulation_steps: int = 1
    save_steps: int = 500
    seed: int = 0
    report_to: str = field(default="none", metadata={"help": "none, tensorboard, wandb, ... (transformers)"})
    deepspeed: str | None = field(default=None, metadata={"help": "configs/deepspeed/zero2.json or zero3.json"})
    device: str | None = field(default=None, metadata={"help": "cpu or cuda (default: cuda when there is a GPU)"})
    precision: str = field(default="auto", metadata={
        "help": "auto: bf16 autocast over fp32 weights on a GPU with bf16, fp32 elsewhere; fp32: fp32 passes everywhere"})
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in --output"})

    def __post_init__(self) -> None:
        check_training_device(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision {self.precision}: use one of {', '.join(PRECISIONS)}")


# Trained weights stay fp32 (the optimizer's updates, about lr times a weight, are below bf16's resolution for
# most weights); on a GPU the forward and backward passes run in bf16 under autocast (`mixed_precision`).
TRAINING_DTYPE = "float32"
PRECISIONS = ("auto", "fp32")


def check_training_device(device: str | None) -> None:
    """Refuse a training ``--device`` the Trainer would not honour, before anything is loaded: a single training
    process always trains on ``cuda:0`` of the visible GPUs (``transformers.TrainingArguments``), so
    ``--device cuda:1`` would load the model on GPU 1 and then train it on GPU 0."""
    if device is None or device == "auto":
        return
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device {device}: not a torch device (use cpu or cuda)") from exc
    if parsed.type == "cuda" and parsed.index not in (None, 0):
        raise ValueError(f"--device {device}: training runs on the first visible GPU; to train on GPU {parsed.index}, "
                         f"run with CUDA_VISIBLE_DEVICES={parsed.index} and --device cuda")


def on_cpu(device: str | None) -> bool:
    """Whether training runs on the CPU: no CUDA here, or ``--device cpu`` asked for it."""
    return not torch.cuda.is_available() or str(device or "").startswith("cpu")


def mixed_precision(device: str | None = None) -> bool:
    """Whether training runs its passes in bf16 autocast over fp32 weights: on a CUDA GPU that supports bf16
    (also what ``"bf16": {"enabled": "auto"}`` resolves to in the DeepSpeed configs). Never on CPU, where
    bf16 is ~160x slower than fp32."""
    return not on_cpu(device) and torch.cuda.is_bf16_supported(including_emulation=False)


def bf16_autocast(enabled: bool, device: torch.device | str):
    """The bf16 autocast the Trainer puts around the policy's own forward when it trains in mixed precision
    (``TrainingArguments.bf16``), for the forwards it does not wrap: reference log-probs (precomputed, or from a
    frozen copy) and SVPO's direct call of the inner policy. Without it the reference runs in fp32 and the
    policy in bf16, and the log-ratio of an untrained policy to its reference is not 0."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bool(enabled))


def resume_checkpoint(args: Any) -> str | None:
    """What ``Trainer.train(resume_from_checkpoint=...)`` gets: with ``--resume``, the last ``checkpoint-N`` in
    ``--output``, or None (a fresh start) when there is none yet, so that a recipe with ``resume: true`` also
    runs the first time; without ``--resume``, None."""
    from transformers.trainer_utils import get_last_checkpoint

    if not getattr(args, "resume", False) or not os.path.isdir(args.output):
        return None
    return get_last_checkpoint(args.output)


def _check_report_to(report_to: str) -> None:
    """A ValueError naming what is installed when ``--report_to`` names a logger that is not (transformers
    would raise a RuntimeError from deep inside Trainer)."""
    from transformers.integrations import get_available_reporting_integrations

    available = get_available_reporting_integrations()
    if report_to not in ("none", "all") and report_to not in available:
        raise ValueError(f"--report_to {report_to}: not installed here (installed: {', '.join(available) or 'none'}); "
                         "pip install it or use --report_to none")


def training_arguments(args: Any, **overrides: Any):
    """TrainingArguments from a config with ``output``, ``epochs``, ``batch_size``, ``learning_rate``,
    ``lr_scheduler``, ``warmup_steps``, ``logging_steps``, ``save_steps``, ``seed``, ``report_to``,
    ``deepspeed`` (and optionally ``max_steps``, ``weight_decay``, ``gradient_accumulation_steps``,
    ``max_grad_norm``); CPU when CUDA is not there or ``--device cpu`` (else bf16 autocast over fp32 weights,
    `mixed_precision`, unless ``--precision fp32``), no dataloader workers, our own columns kept."""
    from transformers import TrainingArguments

    _check_report_to(args.report_to)
    if args.deepspeed:
        check_deepspeed_config(args.deepspeed)
        single_process_environment()
    values = dict(
        output_dir=args.output, num_train_epochs=args.epochs, max_steps=getattr(args, "max_steps", -1),
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=getattr(args, "gradient_accumulation_steps", 1),
        learning_rate=args.learning_rate, lr_scheduler_type=args.lr_scheduler, warmup_steps=args.warmup_steps,
        weight_decay=getattr(args, "weight_decay", 0.0), max_grad_norm=getattr(args, "max_grad_norm", 1.0),
        logging_steps=args.logging_steps, save_steps=args.save_steps, save_total_limit=2, seed=args.seed,
        data_seed=args.seed, report_to=[] if args.report_to == "none" else [args.report_to],
        deepspeed=args.deepspeed, use_cpu=on_cpu(getattr(args, "device", None)),
        bf16=mixed_precision(getattr(args, "device", None)) and getattr(args, "precision", "auto") != "fp32",
        dataloader_num_workers=0,
        remove_unused_columns=False, disable_tqdm=False,
    )
    values.update(overrides)
    # TrainingArguments opens the process group under a launcher; close it at exit, once per process.
    atexit.unregister(close_process_group)
    atexit.register(close_process_group)
    return one_gpu_per_process(TrainingArguments(**values))


def one_gpu_per_process(training_args: Any) -> Any:
    """Keep a single training process on one GPU. With several GPUs visible and no launcher, the Trainer would wrap
    the model in ``torch.nn.DataParallel``, which splits only plain tensor arguments along dim 0 (not our packed
    pair and tree batches) and replicates the model every step; multi-GPU training here is ``torchrun``'s DDP
    (README, Scaling out). The same override the Trainer itself applies to model-parallel models."""
    from transformers.training_args import ParallelMode

    if training_args.parallel_mode == ParallelMode.NOT_DISTRIBUTED:
        print(f"{training_args.n_gpu} GPUs are visible: this process trains on one (cuda:0); for data-parallel "
              "training on all of them run the command under torchrun --nproc_per_node N", file=sys.stderr)
        training_args._n_gpu = 1
    return training_args


def close_process_group() -> None:
    """Destroy the torch.distributed group training opened, at exit, as PyTorch asks: it waits for the
    group's pending work and stops its threads. Groups that other objects still reference (DeepSpeed's)
    keep their threads; :func:`exit_process` covers those. Not after each training run: pipeline stages run
    in one process share the group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> None:
    """End a command-line process with ``code``. In a process that opened a torch.distributed group (a
    torchrun worker), after the threads are joined and the atexit handlers have run (logging, report_to
    writers, :func:`close_process_group`), it skips the interpreter's finalisation with ``os._exit``.

    Why: DeepSpeed keeps its gloo process groups referenced until finalisation, so their worker threads
    outlive ``destroy_process_group``. A worker that frees a finished collective (an async all-gather) after
    its caller let go of the tensors holds their last reference and must take the GIL to free them; once
    finalisation has begun, Python ends that thread with a forced unwind through a C++ destructor and the
    rank aborts: "terminate called without an active exception" (gdb on the core of an aborted rank:
    ``AsyncAllgatherWork::~AsyncAllgatherWork`` in ``ProcessGroupGloo::runLoop`` while the main thread is in
    ``Py_FinalizeEx``). With no group open this is plain ``sys.exit(code)``."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def check_deepspeed_config(path: str) -> None:
    """Refuse, before any training, a ZeRO-3 config whose saves would write no weights: without
    ``stage3_gather_16bit_weights_on_model_save`` ``Trainer.save_model`` hands the model's empty partitions
    (an empty state dict) to every save, and each checkpoint and the final model come out unloadable."""
    import json
    from pathlib import Path

    from data.records import RecordError

    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read the DeepSpeed config ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise RecordError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    zero = config.get("zero_optimization") or {}
    if zero.get("stage") == 3 and zero.get("stage3_gather_16bit_weights_on_model_save") is not True:
        raise ValueError(f"{path}: zero_optimization.stage3_gather_16bit_weights_on_model_save must be true under "
                         "ZeRO-3, or the saved models hold no weights (see configs/deepspeed/zero3.json)")


LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def single_process_environment() -> None:
    """Without a launcher (``torchrun``, ``deepspeed``, ``accelerate launch``, ``mpirun``, ``srun``), describe a
    one-process job in the environment, as transformers' DeepSpeed guide does for notebooks; otherwise DeepSpeed
    falls back to MPI discovery and fails without ``mpi4py``. This is how `reasoner pipeline`, which runs its
    training stages in its own process, trains with a ``deepspeed`` config on one GPU. A launcher's variables (or
    a SLURM step of several tasks) are left alone, and so are a ``MASTER_ADDR`` / ``MASTER_PORT`` already set.
    The variables stay for the life of the process, as the one-process group DeepSpeed starts with them does."""
    import os
    import socket

    if any(name in os.environ for name in LAUNCHER_VARIABLES) or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:  # a free port for the one-process group's rendezvous
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")


class AveragedMetrics:
    """`transformers.Trainer` mixin: values recorded with `_record` during training steps are averaged into the
    next logged line (loss components, reward accuracies, KL, ...), then cleared."""

    def _record(self, **values: Any) -> None:
        if not self.model.training:
            return
        metrics = self.__dict__.setdefault("_metrics", {})
        for key, value in values.items():
            metrics.setdefault(key, []).append(float(value.detach()) if isinstance(value, torch.Tensor) else float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Also averages the recorded values in. A non-finite value is logged as None, so that ``trainer_state.json``
        stays JSON (``json.dump`` writes a bare ``NaN``): an undefined metric (an AUC with one class empty), and a
        diverged loss too, which then reads ``null``."""
        from data.records import json_safe

        metrics = self.__dict__.get("_metrics", {})
        if "loss" in logs:
            for key, values in metrics.items():
                logs[key] = round(sum(values) / len(values), 5)
            metrics.clear()
        super().log(json_safe(logs), start_time)


def sample_with_current_policy(model: Any, sampler: Any, problems: Any, make_generator: Any, step: int,
                               process: tuple[int, int] = (0, 1)) -> Any:
    """``sampler(problems, generator, step)`` with a generator on the policy being trained (online trainers: trees
    from the current policy at every step), in eval mode and without gradients, then back to training.

    ``make_generator(model, stream)`` gets a stream number unique to this step and process (``process`` = (index,
    count)), so that every step and every process draws its own random numbers."""
    index, count = process
    with torch.no_grad(), _full_weights_for_sampling(model) as full:
        unwrapped = getattr(full, "module", full)
        unwrapped.eval()
        try:
            return sampler(problems, make_generator(unwrapped, step * count + index), step)
        finally:
            unwrapped.train()


def sampling_step(trainer: Any) -> int:
    """The sampling step of the micro-batch ``trainer`` is about to compute: ``global_step * accumulation + i`` for
    its i-th micro-batch of the optimizer step (``global_step`` alone when there is no accumulation), so that every
    micro-batch of a step draws its own trees rather than replaying the first one's random numbers."""
    step = trainer.state.global_step
    last_step, last_index = getattr(trainer, "_micro_batch", (None, -1))
    index = last_index + 1 if last_step == step else 0
    trainer._micro_batch = (step, index)
    return step * trainer.args.gradient_accumulation_steps + index


def sampling_seed(seed: int, stream: int) -> int:
    """The sampling generator's seed for one step of one process of an online trainer run with ``--seed seed``:
    `search.protocols.derived_seed`, so that no two (seed, stream) pairs share a stream (``seed * K + stream``
    repeats once a run has K streams)."""
    from search.protocols import derived_seed

    return derived_seed("online", seed, stream)


def step_generators(policy: Any, seed: int) -> Any:
    """An online trainer's ``make_generator(model, stream)``: an HF step generator on ``model`` (the policy being
    trained) with ``policy``'s tokenizer and step format, seeded for that step and process."""
    from reasoner.backends.hf import HFStepGenerator

    return lambda model, stream: HFStepGenerator(model, policy.tokenizer, policy.step_format,
                                                 seed=sampling_seed(seed, stream))


def zero_loss(model: Any, tokenizer: Any, step_format: Any, question: str) -> torch.Tensor:
    """A zero loss through the same forward pass as a real step, for a batch that sampled nothing to train on:
    under DeepSpeed ZeRO-1/2 every process reduces gradients in the order its backward pass produces them, so
    all must have the same graph."""
    from reasoner.models import encode_prefix

    device = next(model.parameters()).device
    prompt = encode_prefix(tokenizer, step_format.render(question, []))
    return (model(input_ids=torch.tensor([prompt], device=device)).logits * 0.0).sum()  # no inf * 0 in fp16


def _full_weights_for_sampling(model):
    """A context giving ``model`` with whole weights for sampling: under DeepSpeed ZeRO-3 each process holds only
    partitions that every forward gathers collectively, which deadlocks once processes sample trees of different
    sizes, so the weights are gathered once and the gathering hooks lifted meanwhile (DeepSpeed's
    ``unwrap_model_for_generation``, as TRL's online trainers do); otherwise ``model`` itself."""
    from contextlib import nullcontext

    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled() and hasattr(model, "optimizer"):  # the DeepSpeed engine
        from deepspeed.runtime.zero import unwrap_model_for_generation

        return unwrap_model_for_generation(model)
    return nullcontext(model)
