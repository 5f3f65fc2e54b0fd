"""Reproducible build of the embedded tiny policy (``reasoner build-tiny-policy``).

1. A byte-level BPE tokenizer trained on the synthetic task, digits split into single tokens, so that
   arithmetic is learnable and the step delimiter ``\\n`` is always its own token.
2. A ~1.1 M-parameter Llama trained from scratch with the SFT trainer on ``synthetic:train``, with the
   training mixes of `data.training_mixes` the flags ask for (the embedded policy: ``--decompose_prob 0.4``).
3. Training: greedy accuracy on a slice of ``synthetic:test`` every ``eval_every`` steps (every
   ``fine_eval_every`` once it reaches ``fine_from_greedy``); every checkpoint at or above ``keep_from_greedy``
   is kept; training stops after ``stop_patience`` slice scores in a row above ``stop_above_greedy`` (or one
   above ``stop_at_greedy``).
4. Selection: every kept checkpoint is scored greedily on the whole test split; the ``candidates`` with the
   highest greedy accuracy in [min_greedy, max_greedy] get pass@k with temperature sampling, and the best
   pass@k is shipped: a deliberately weak policy, so that search, Step-DPO and value guidance have room to show
   gains. The weak point is picked on synthetic:test, the split the targets are stated on (the task has no
   validation split). ``build.json`` beside the weights records the whole history.

``reasoner build-tiny-verifier`` continues the same SFT from the embedded policy well past its weak point
(~90 % greedy) and writes ``reasoner/assets/tiny-verifier``: the backbone of the demo's step value model. A
verifier that knows the task better than the policy is the usual setting (search-and-learn pairs a 1-3B policy
with an 8B PRM); a value model probing the weak policy's own states cannot see its confident arithmetic slips.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from data.problems import Problem
from reasoner.steps import get_format

__all__ = ["TinyBuildArgs", "TinyVerifierArgs", "build_tokenizer", "tiny_model", "tiny_policy_setup",
           "tiny_policy_sft_args", "build_tiny_policy",
           "build_tiny_verifier", "policy_accuracy"]

log = logging.getLogger(__name__)


@dataclass
class TinyBuildArgs:
    """Settings of the embedded policy build."""

    output: str = field(default="reasoner/assets/tiny-policy", metadata={"help": "where the policy is written"})
    seed: int = 0
    vocab_size: int = 512
    hidden_size: int = 144
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 384
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    max_steps: int = 3000
    eval_every: int = field(default=50, metadata={"help": "score the slice's greedy accuracy every this many steps"})
    fine_eval_every: int = field(default=25, metadata={"help": "... and every this many once near the weak point"})
    fine_from_greedy: float = field(default=0.20, metadata={"help": "slice greedy that switches to fine_eval_every"})
    eval_problems: int = field(default=128, metadata={"help": "the slice: this many first synthetic:test problems"})
    keep_from_greedy: float = field(default=0.30, metadata={"help": "keep every checkpoint with slice greedy >= this"})
    stop_above_greedy: float = field(default=0.50, metadata={
        "help": "stop after stop_patience slice scores in a row above this"})
    stop_patience: int = 2
    stop_at_greedy: float = field(default=0.58, metadata={"help": "stop at once when a slice score is above this"})
    test_problems: int = field(default=0, metadata={
        "help": "score kept checkpoints on this many synthetic:test problems (0 = all 500)"})
    min_greedy: float = field(default=0.40, metadata={"help": "the greedy window a shipped checkpoint must be in"})
    max_greedy: float = 0.50
    candidates: int = field(default=3, metadata={
        "help": "this many in-window checkpoints with the highest greedy get pass@k; the best pass@k is shipped"})
    pass_k: int = 16
    pass_temperature: float = 1.0
    min_pass: float = field(default=0.80, metadata={"help": "the pass@k target (recorded as met_targets)"})
    ema_decay: float = field(default=0.0, metadata={
        "help": "score and keep an exponential moving average of the weights (0 = off, the raw weights)"})
    drill_problems: int = field(default=0, metadata={
        "help": "arithmetic drill problems (data.training_mixes.arithmetic_drill) mixed into synthetic:train (0 = none)"})
    commute_prob: float = field(default=0.0, metadata={
        "help": "write each training sum / product with swapped operands with this probability (0 = gold order)"})
    decompose_prob: float = field(default=0.0, metadata={
        "help": "work each training sum / difference / product out through tens and units with this probability "
                "(data.training_mixes.decompose_steps; 0 = the gold lines)"})
    extra_train: int = field(default=0, metadata={
        "help": "this many more train-side synthetic problems (data.training_mixes.extra_train_problems) added to "
                "synthetic:train (0 = the 20,000 of the split)"})
    long_copies: int = field(default=1, metadata={
        "help": "repeat each training problem with at least --long_min_lines computation lines this many times "
                "in all (1 = the split as is)"})
    long_min_lines: int = field(default=4, metadata={"help": "what --long_copies counts as a long problem"})
    label_smoothing: float = field(default=0.0, metadata={
        "help": "label smoothing eps of the SFT loss (0 = plain cross-entropy, the shipped build)"})


@dataclass
class TinyVerifierArgs:
    """Settings of the embedded verifier backbone build (SFT continued from the embedded policy)."""

    output: str = field(default="reasoner/assets/tiny-verifier", metadata={"help": "where the model is written"})
    policy: str | None = field(default=None, metadata={"help": "model to continue from (default: embedded)"})
    seed: int = 0
    steps: int = 900
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 20
    eval_problems: int = 500
    decompose_prob: float = field(default=0.0, metadata={
        "help": "work training steps out through tens and units with this probability, as the policy's build "
                "(--decompose_prob there): a verifier that knows the policy's routes does not read a worked step "
                "as a slip (0 = the gold lines)"})


def build_tokenizer(texts, vocab_size: int = 512):
    """Byte-level BPE with single-digit tokens and ``<|pad|>``, ``<|bos|>``, ``<|eos|>`` specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|bos|>", "<|eos|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos_id = tokenizer.token_to_id("<|bos|>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>",
        model_max_length=1024, padding_side="right",
    )


def tiny_model(tokenizer, args: TinyBuildArgs):
    """A fresh Llama of the configured size for ``tokenizer``'s vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def policy_accuracy(model, tokenizer, problems: list[Problem], *, k: int = 0, temperature: float = 1.0,
                    seed: int = 0, step_format_name: str = "tiny") -> dict[str, float]:
    """Greedy accuracy and (when ``k``) pass@k / maj@k with temperature sampling, on ``problems``."""
    from reasoner.backends.hf import HFStepGenerator
    from search.decode import accuracy_report

    was_training = model.training
    model.eval()
    generator = HFStepGenerator(model, tokenizer, get_format(step_format_name), seed=seed, max_batch_rows=1024)
    report = accuracy_report(generator, [p.question for p in problems], [p.answer for p in problems], k=k,
                             temperature=temperature)
    result = {key: value for key, value in report.items() if key in ("greedy", f"pass@{k}", f"maj@{k}")}
    if was_training:
        model.train()
    return result


class WeightAverage:
    """An exponential moving average of a model's weights, kept in a copy of the model.

    ``ema_t = d_t * ema_{t-1} + (1 - d_t) * theta_t`` with ``d_t = min(decay, (1 + t) / (10 + t))`` (the usual
    warm-up, so early averages are not dominated by the initialisation). Averaging the iterates of a
    high-learning-rate run smooths out its most recent updates. Tried for the embedded build
    (``--ema_decay 0.99``): the average reached the greedy window 200 steps sooner but with the same pass@16
    at a given greedy accuracy (README, "The embedded tiny policy"), so the shipped build keeps the raw weights.
    """

    def __init__(self, model, decay: float):
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model, step: int) -> None:
        """Fold the current weights of ``model`` (same architecture) into the average."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for average, current in zip(self.model.parameters(), model.parameters()):
            average.mul_(decay).add_(current.detach().to(average.dtype), alpha=1 - decay)


def tiny_policy_setup(args: TinyBuildArgs) -> tuple[Any, Any, Any, list[Problem]]:
    """The build's starting point: (step format, tokenizer trained on synthetic:train, fresh model, training
    problems with the recipe's mixes applied). Shared with ``docs/tiny-policy-sweep.py`` so that it
    trains exactly as the build does."""
    from data.synthetic import load_split
    from data.training_mixes import (arithmetic_drill, commute_operands, decompose_steps, extra_train_problems,
                                     oversample_long)
    from reasoner.trainers.sft import solution_steps

    step_format = get_format("tiny")
    train = load_split("train")
    corpus = (step_format.render(p.question, solution_steps(p, step_format)) for p in train)
    tokenizer = build_tokenizer(corpus, args.vocab_size)
    model = tiny_model(tokenizer, args)
    if args.extra_train:
        train = train + extra_train_problems(args.extra_train, seed=args.seed)
    if args.drill_problems:  # drawn from the gold order, so fact inputs are the word problems' running values
        train = train + arithmetic_drill(train, args.drill_problems, seed=args.seed)
    if args.commute_prob:
        train = commute_operands(train, args.commute_prob, seed=args.seed)
    if args.decompose_prob:
        train = decompose_steps(train, args.decompose_prob, seed=args.seed)
    if args.long_copies != 1:  # 0 or less is refused there
        train = oversample_long(train, args.long_min_lines, args.long_copies)
    return step_format, tokenizer, model, train


def tiny_policy_sft_args(args: TinyBuildArgs, scratch: Path) -> Any:
    """The build's SFT settings (constant learning rate after warm-up, no trainer checkpoints) in ``scratch``."""
    from reasoner.trainers.sft import SFTArgs

    return SFTArgs(output=str(scratch), batch_size=args.batch_size, learning_rate=args.learning_rate,
                   weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, save_steps=10**9,
                   logging_steps=50, seed=args.seed, epochs=100, label_smoothing=args.label_smoothing)


def build_tiny_policy(args: TinyBuildArgs) -> dict:
    """Train the embedded policy, keep the checkpoints near its weak point, ship the in-window one with the best
    pass@k (module docstring); returns the build record."""
    from transformers import TrainerCallback

    from data.synthetic import load_split
    from reasoner.models import load_policy, save_policy
    from reasoner.trainers.sft import train_sft

    started = time.time()
    step_format, tokenizer, model, train = tiny_policy_setup(args)
    test = load_split("test")
    test = test[: args.test_problems] if args.test_problems else test
    slice_ = test[: args.eval_problems]
    parameters = sum(p.numel() for p in model.parameters())
    log.info("tiny policy: %d parameters, vocabulary %d", parameters, len(tokenizer))
    output = Path(args.output)
    record: dict = {"seed": args.seed, "parameters": parameters, "history": []}

    kept = output.parent / "tiny-policy-candidates"
    averaged = WeightAverage(model, args.ema_decay) if args.ema_decay > 0 else None
    near = {"fine": False, "above": 0}

    class KeepNearWeakPoint(TrainerCallback):
        """Scores the slice; keeps checkpoints past keep_from_greedy; stops once the policy is past the window."""

        def on_step_end(self, train_args, state, control, model=None, **kwargs):
            if averaged is not None:
                averaged.update(model, state.global_step)
            if state.global_step % (args.fine_eval_every if near["fine"] else args.eval_every):
                return
            if averaged is not None:
                model = averaged.model
            greedy = policy_accuracy(model, tokenizer, slice_, seed=args.seed)["greedy"]
            scores = {"step": state.global_step, "slice_greedy": greedy, "seconds": round(time.time() - started, 1)}
            record["history"].append(scores)
            print(json.dumps(scores), flush=True)
            near["fine"] = near["fine"] or greedy >= args.fine_from_greedy
            if greedy >= args.keep_from_greedy:
                save_policy(model, kept / f"step-{state.global_step}", tokenizer=tokenizer, step_format=step_format)
            near["above"] = near["above"] + 1 if greedy > args.stop_above_greedy else 0
            if near["above"] >= args.stop_patience or greedy > args.stop_at_greedy:
                control.should_training_stop = True

    sft_args = tiny_policy_sft_args(args, output.parent / "tiny-policy-checkpoints")
    train_sft(model, tokenizer, step_format, train, sft_args, callbacks=[KeepNearWeakPoint()],
              max_steps=args.max_steps)
    shutil.rmtree(sft_args.output, ignore_errors=True)
    record["train_seconds"] = round(time.time() - started, 1)

    def scored(step: int, k: int = 0) -> dict:
        policy = load_policy(str(kept / f"step-{step}"), dtype="float32")
        scores = policy_accuracy(policy.model, policy.tokenizer, test, k=k, temperature=args.pass_temperature,
                                 seed=args.seed)
        print(json.dumps({"step": step, **scores}), flush=True)
        return {"step": step, **scores}

    steps = sorted(int(d.name.removeprefix("step-")) for d in kept.glob("step-*")) if kept.exists() else []
    record["test_greedy"] = [scored(step) for step in tqdm(steps, desc="greedy on synthetic:test", disable=None)]
    window = [r for r in record["test_greedy"] if args.min_greedy <= r["greedy"] <= args.max_greedy]
    window = sorted(window, key=lambda r: -r["greedy"])[: args.candidates]
    if not window:
        shutil.rmtree(kept, ignore_errors=True)
        raise RuntimeError(f"no kept checkpoint has greedy accuracy in [{args.min_greedy}, {args.max_greedy}] on "
                           f"{len(test)} synthetic:test problems; scores: {record['test_greedy']}")
    record["test_pass"] = [scored(r["step"], k=args.pass_k) for r in window]
    chosen = max(record["test_pass"], key=lambda r: r[f"pass@{args.pass_k}"])
    record["chosen"] = chosen
    record["met_targets"] = chosen[f"pass@{args.pass_k}"] >= args.min_pass
    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(kept / f"step-{chosen['step']}", output)
    shutil.rmtree(kept, ignore_errors=True)
    record["wall_seconds"] = round(time.time() - started, 1)
    record["command"] = " ".join(["reasoner build-tiny-policy", *_changed_flags(args, ("seed", "output"))])
    (output / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def build_tiny_verifier(args: TinyVerifierArgs) -> dict:
    """Continue SFT of the embedded policy on ``synthetic:train`` (cosine schedule) and save it with its greedy
    accuracy on ``synthetic:test``; returns the build record (also ``build.json`` beside the weights)."""
    import hashlib

    from data.synthetic import load_split
    from reasoner.models import embedded_model_dir, load_policy, save_policy
    from reasoner.trainers.sft import SFTArgs, train_sft

    started = time.time()
    policy = load_policy(args.policy, dtype="float32")
    start_weights = (embedded_model_dir(args.policy) or Path(str(args.policy))) / "model.safetensors"
    start_sha256 = hashlib.sha256(start_weights.read_bytes()).hexdigest() if start_weights.exists() else None
    output = Path(args.output)
    scratch = output.parent / (output.name + "-checkpoints")
    sft_args = SFTArgs(output=str(scratch), batch_size=args.batch_size, learning_rate=args.learning_rate,
                       warmup_steps=args.warmup_steps, lr_scheduler="cosine", save_steps=10**9, logging_steps=100,
                       seed=args.seed)
    train = load_split("train")
    if args.decompose_prob:
        from data.training_mixes import decompose_steps

        train = decompose_steps(train, args.decompose_prob, seed=args.seed)
    policy.model.train()
    train_sft(policy.model, policy.tokenizer, policy.step_format, train, sft_args,
              max_steps=args.steps)
    policy.model.eval()
    shutil.rmtree(scratch, ignore_errors=True)
    scores = policy_accuracy(policy.model, policy.tokenizer, load_split("test")[: args.eval_problems],
                             seed=args.seed, step_format_name=policy.step_format.name)
    save_policy(policy.model, output, tokenizer=policy.tokenizer, step_format=policy.step_format)
    record = {
        "seed": args.seed, "steps": args.steps, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
        "decompose_prob": args.decompose_prob,
        "started_from": policy.name,
        "started_from_sha256": start_sha256,
        "greedy": scores["greedy"], "eval_problems": args.eval_problems,
        "wall_seconds": round(time.time() - started, 1),
        "command": " ".join(["reasoner build-tiny-verifier", *_changed_flags(args, ("seed", "steps", "output"))]),
    }
    (output / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _changed_flags(args: Any, always: Sequence[str]) -> list[str]:
    """CLI flags (`reasoner.pipeline.flags`) for the fields in ``always`` and every field off its default."""
    from reasoner.pipeline import flags

    return flags({spec.name: getattr(args, spec.name) for spec in fields(args)
                  if spec.name in always or getattr(args, spec.name) != spec.default})
