"""Online MCTS-DPO (algorithms.md 5.4): fresh trees from the current policy before every step, then one DPO step.

Each training step takes a batch of prompts, grows an MCTS tree for each with the policy being trained (the
sampler is injected by the caller; `reasoner train mcts-dpo-online` wires `search.mcts` and the ``mcts-dpo``
label rule of `prm.labels`: pairs along the committed path, at most 8 per prompt, with both steps' visit
counts), and takes one step of the conservative DPO loss on those pairs (`PreferenceTrainer`'s ``mcts-dpo`` loss:
ε = min(N_l / (max(1, N_w) + N_l), 0.5) per pair, plus ``sft_weight`` × the chosen steps' NLL). The reference
model is a frozen copy of the starting policy and is never re-synced, as in MCTS-DPO's code.

Where this differs from MCTS-DPO (5.1–5.2): our MCTS values steps by verified rollouts to the gold answer, not
by the policy's self-evaluation. With ``commit_simulations > 0`` the search commits step by step as MCTS-DPO's
does (re-searching below each committed step); with 0 (the default) one search per tree, and the committed path
is read from the finished tree. A batch whose trees yield no pair takes a zero step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from reasoner.trainers.common import TrainingKnobs, sample_with_current_policy, sampling_step, zero_loss
from reasoner.trainers.preference import PairCollator, PairGroups, PreferenceArgs, PreferenceTrainer, check_smoothing

__all__ = ["OnlineDPOArgs", "OnlineDPOTrainer", "train_online_dpo"]

Sampler = Callable[[Sequence[Any], Any, int], list[dict]]


@dataclass
class OnlineDPOArgs(TrainingKnobs):
    """Settings of `reasoner train mcts-dpo-online` (search as in `search.mcts.MCTSConfig`, MCTS-DPO's 2 children)."""

    problems: str = field(default="synthetic:train", metadata={"help": "prompts with gold answers"})
    limit: int | None = field(default=512, metadata={"help": "first N problems"})
    model: str | None = field(default=None, metadata={"help": "policy to train (default: embedded)"})
    output: str = "runs/mcts-dpo-online"
    simulations: int = field(default=16, metadata={"help": "MCTS simulations per tree (MCTS-DPO: 64, x4 at the root)"})
    children: int = field(default=2, metadata={"help": "children per expansion (MCTS-DPO's n_actions for math)"})
    commit_simulations: int = field(default=0, metadata={
        "help": "0: one search per tree, pairs along the best-Q path; N > 0: MCTS-DPO's step-by-step search, "
                "--simulations from the root, then N from each committed step (MCTS-DPO: 256 and 64)"})
    c_puct: float = 1.0
    temperature: float = 1.0
    max_depth: int = 12
    max_step_tokens: int = 48
    max_pairs: int = field(default=8, metadata={"help": "pairs per prompt per step (MCTS-DPO: 8)"})
    beta: float = 0.1
    visit_smoothing: bool = field(default=True, metadata={
        "help": "conservative ε per pair from its visit counts; false uses --label_smoothing"})
    label_smoothing: float = 0.0
    sft_weight: float = field(default=0.0, metadata={"help": "add this × per-token NLL of the chosen steps"})
    max_prompt_length: int = 512
    epochs: float = 1.0
    learning_rate: float = 1e-4
    batch_size: int = field(default=8, metadata={"help": "prompts per step"})
    warmup_steps: int = 0
    lr_scheduler: str = "constant"
    max_grad_norm: float = 1.0
    logging_steps: int = 5

    def pair_loss(self) -> PreferenceArgs:
        """The `PreferenceTrainer` settings of the loss on each step's pairs."""
        return PreferenceArgs(algo="mcts-dpo", output=self.output, beta=self.beta, label_smoothing=self.label_smoothing,
                              visit_smoothing=self.visit_smoothing, sft_weight=self.sft_weight,
                              max_prompt_length=self.max_prompt_length)


class OnlineDPOTrainer(PreferenceTrainer):
    """Samples pairs with the current policy in `compute_loss`, then the pair loss of `PreferenceTrainer`."""

    def __init__(self, *args, sampler: Sampler, make_generator: Callable[[Any, int], Any], tokenizer: Any,
                 step_format: Any, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler, self.make_generator = sampler, make_generator
        self.tokenizer, self.step_format = tokenizer, step_format
        self.collate = PairCollator(tokenizer.pad_token_id or 0, shared=True)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        problems = inputs["problems"]
        pairs = sample_with_current_policy(model, self.sampler, problems, self.make_generator, sampling_step(self),
                                           (self.args.process_index, self.args.world_size))
        self._record(pairs=len(pairs))
        if not pairs:
            loss = zero_loss(model, self.tokenizer, self.step_format, problems[0].question)
            return (loss, {}) if return_outputs else loss
        groups = PairGroups(pairs, self.tokenizer, self.step_format, max_prompt_length=self.preference.max_prompt_length)
        return super().compute_loss(model, self.collate(groups.groups), return_outputs, num_items_in_batch)


def train_online_dpo(policy: Any, problems: Sequence[Any], args: OnlineDPOArgs, sampler: Sampler,
                     callbacks: Sequence[Any] = ()) -> OnlineDPOTrainer:
    """Online MCTS-DPO on ``problems`` (with gold answers) for ``policy``; returns the trainer."""
    from reasoner.trainers.common import resume_checkpoint, step_generators, training_arguments

    check_smoothing("mcts-dpo-online", args.visit_smoothing, args.label_smoothing)
    reference = copy.deepcopy(policy.model).eval().requires_grad_(False)
    make_generator = step_generators(policy, args.seed)
    policy.model.train()
    trainer = OnlineDPOTrainer(
        model=policy.model, args=training_arguments(args), train_dataset=list(problems),
        data_collator=lambda batch: {"problems": batch}, callbacks=list(callbacks), preference=args.pair_loss(),
        reference_model=reference, sampler=sampler, make_generator=make_generator, tokenizer=policy.tokenizer,
        step_format=policy.step_format)
    trainer.train(resume_from_checkpoint=resume_checkpoint(args))
    policy.model.eval()
    return trainer
