"""Online Tree-GRPO (algorithms.md section 6) as a `transformers.Trainer` subclass.

Each training step takes a batch of prompts, samples Tree-GRPO trees for them with the *current* policy (m trees
per prompt, n branches per round, l rounds; the sampler is injected by the caller, `reasoner train tree-grpo`
wires `search.tree_grpo`), scores every leaf with the verifier (reward 1 / 0), computes the intra- + inter-tree
advantages (`reasoner.losses.tree_grpo_advantages`) and takes one gradient step on the dual-clip policy loss
with the k3 KL to a frozen reference (`reasoner.losses.clipped_policy_loss`). With one update per batch the
"old" policy is the sampling policy itself (ratio 1 at the step), as in GRPO with one PPO epoch.

Trajectories of one prompt are packed into one row ([prompt][trajectory 0][copy][trajectory 1]...,
`reasoner.trainers.pairs`), so the prompt is computed once; the steps two trajectories of a tree share are
still computed per trajectory (a tree mask is the next step). Trajectories with advantage 0 (say, a prompt whose
leaves all got the same reward) stay in: their tokens count in the token-means and carry the KL and entropy
terms, as in verl, so the policy term's scale does not change from batch to batch. Every leaf is trained on (6.1's
"sample k leaves per tree" is not applied), and a trajectory ends at its final-answer step without an EOS token
(our decoders never sample one to stop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from transformers import Trainer

from reasoner.losses import clipped_policy_loss, tree_grpo_advantages
from reasoner.models import encode_continuation, encode_prefix
from reasoner.trainers.pairs import pad_rows, response_token_logps
from reasoner.trainers.common import (AveragedMetrics, TrainingKnobs, bf16_autocast, sample_with_current_policy,
                                      sampling_step, zero_loss)

__all__ = ["TreeGRPOArgs", "TreeGRPOTrainer", "train_tree_grpo"]

Sampler = Callable[[Sequence[Any], Any, int], list[dict]]


@dataclass
class TreeGRPOArgs(TrainingKnobs):
    """Settings of `reasoner train tree-grpo` (sampling as in `search.tree_grpo.TreeGRPOConfig`)."""

    problems: str = field(default="synthetic:train", metadata={"help": "prompts with gold answers"})
    limit: int | None = field(default=256, metadata={"help": "first N problems"})
    model: str | None = field(default=None, metadata={"help": "policy to train (default: embedded)"})
    output: str = "runs/tree-grpo"
    trees_per_prompt: int = 2
    expand_nodes: int = 2
    rounds: int = 1
    temperature: float = 1.0
    max_depth: int = 12
    max_step_tokens: int = 48
    advantage: str = field(default="tree", metadata={"help": "tree, tree_inner or grpo"})
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float = 3.0
    kl_coef: float = 0.001
    entropy_coef: float = field(default=0.001, metadata={"help": "c_ent of the entropy bonus (verl's default)"})
    epochs: float = 1.0
    learning_rate: float = 1e-4
    batch_size: int = field(default=8, metadata={"help": "prompts per step"})
    warmup_steps: int = 0
    lr_scheduler: str = "constant"
    logging_steps: int = 5


class TreeGRPOTrainer(AveragedMetrics, Trainer):
    """Samples trees in `compute_loss`, then one clipped policy-gradient step on their leaves."""

    def __init__(self, *args, grpo: TreeGRPOArgs, sampler: Sampler, make_generator: Callable[[Any, int], Any],
                 reference_model: torch.nn.Module, tokenizer: Any, step_format: Any, **kwargs):
        super().__init__(*args, **kwargs)
        self.grpo, self.sampler, self.make_generator = grpo, sampler, make_generator
        self.tokenizer, self.step_format = tokenizer, step_format
        self.reference_model = reference_model.to(self.args.device)  # made before Trainer placed the policy

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        problems = inputs["problems"]
        leaves = sample_with_current_policy(model, self.sampler, problems, self.make_generator, sampling_step(self),
                                           (self.args.process_index, self.args.world_size))
        rewards = [leaf["reward"] for leaf in leaves]
        advantages = tree_grpo_advantages(rewards, [leaf["prompt"] for leaf in leaves],
                                          [leaf["tree"] for leaf in leaves], mode=self.grpo.advantage)
        self._record(reward=sum(rewards) / max(len(rewards), 1), trajectories=len(leaves))
        keep = [i for i, leaf in enumerate(leaves) if leaf["steps"]]
        device = next(model.parameters()).device
        if not keep:
            loss = zero_loss(model, self.tokenizer, self.step_format, problems[0].question)
            return (loss, {}) if return_outputs else loss
        groups = self._groups(problems, [leaves[i] for i in keep])
        pad = self.tokenizer.pad_token_id or 0
        logps, entropy = (pad_rows(rows) for rows in response_token_logps(model, groups, pad, device, with_entropy=True))
        with torch.no_grad(), bf16_autocast(self.args.bf16, device):
            reference = pad_rows(response_token_logps(self.reference_model, groups, pad, device))
        mask = pad_rows([torch.ones(len(c), device=device) for g in groups for c in g["completions"]])
        order = [i for g in groups for i in g["members"]]
        kept = advantages[keep][order].to(device)
        loss, parts = clipped_policy_loss(logps, logps.detach(), reference, kept, mask,
                                          clip_low=self.grpo.clip_low, clip_high=self.grpo.clip_high,
                                          dual_clip=self.grpo.dual_clip, kl_coef=self.grpo.kl_coef,
                                          entropy=entropy, entropy_coef=self.grpo.entropy_coef)
        self._record(**parts)
        return (loss, {}) if return_outputs else loss

    def _groups(self, problems: Sequence[Any], leaves: Sequence[dict]) -> list[dict]:
        """Trajectories of one prompt → one packed group; ``members`` index into the kept leaves' advantages."""
        by_prompt: dict[int, dict] = {}
        for position, leaf in enumerate(leaves):
            group = by_prompt.setdefault(leaf["prompt"], {
                "prompt": encode_prefix(self.tokenizer, self.step_format.prompt(problems[leaf["prompt"]].question)),
                "completions": [], "pairs": [], "members": []})
            text = self.step_format.render_solution(leaf["steps"])
            group["completions"].append(encode_continuation(self.tokenizer, text))
            group["members"].append(position)
        return list(by_prompt.values())


def train_tree_grpo(policy: Any, problems: Sequence[Any], args: TreeGRPOArgs, sampler: Sampler,
                    callbacks: Sequence[Any] = ()) -> TreeGRPOTrainer:
    """Online Tree-GRPO on ``problems`` (with gold answers) for ``policy``; returns the trainer."""
    import copy

    from reasoner.trainers.common import resume_checkpoint, step_generators, training_arguments

    if args.advantage not in ("tree", "tree_inner", "grpo"):
        raise ValueError(f"unknown advantage mode {args.advantage!r}: use tree, tree_inner or grpo")
    reference = copy.deepcopy(policy.model).eval().requires_grad_(False)
    make_generator = step_generators(policy, args.seed)
    policy.model.train()
    trainer = TreeGRPOTrainer(
        model=policy.model, args=training_arguments(args), train_dataset=list(problems),
        data_collator=lambda batch: {"problems": batch}, callbacks=list(callbacks), grpo=args, sampler=sampler,
        make_generator=make_generator, reference_model=reference, tokenizer=policy.tokenizer,
        step_format=policy.step_format)
    trainer.train(resume_from_checkpoint=resume_checkpoint(args))
    policy.model.eval()
    return trainer
