"""Step-level preference training: Step-DPO, Step-APO, SVPO and MCTS-DPO pairs on `transformers.Trainer`.

Input: a pairs JSONL from `reasoner label` (``prompt``/``chosen``/``rejected`` + ``q_chosen``/``q_rejected``).
Pairs with the same prompt are grouped and, with ``prefix_sharing`` (default), each group is one packed row
(`reasoner.trainers.pairs`): the shared prompt is computed once for all its pairs. Losses come from
`reasoner.losses`:

* ``step-dpo``: `dpo_loss` (β, label smoothing);
* ``dpo``: the same loss on whole-solution pairs (``reasoner label --kind dpo``): the solution-level baseline, and
  with ``sft_weight`` 1 Iterative RPO (DPO + the chosen solution's per-token NLL);
* ``mcts-dpo``: `dpo_loss` with MCTS-DPO's conservative per-pair ε from the pair's visit counts
  (`visit_smoothing`, ``n_chosen`` / ``n_rejected``; ``--visit_smoothing false`` uses ``--label_smoothing``);
* any of them + ``sft_weight`` × the chosen step's per-token NLL (TRL's ``rpo_alpha``), which keeps a small
  policy from lowering the chosen likelihood along with the rejected one;
* ``step-apo``: `step_apo_loss` with the pair's Q gap (α);
* ``full-step-dpo``: `full_step_dpo_loss` on ``step-rewards`` records (`reasoner.trainers.full_step`);
* ``svpo``: `svpo_loss` — step DPO + value MSE to Q + ranking margin, with a tanh value head on the policy's
  last hidden state trained jointly (reconstructed objective, see its docstring).

Reference log-probs are computed once before training with the starting policy (``reference: precomputed``)
or at every step by a frozen copy (``reference: model``). Logged: loss, reward accuracy, chosen/rejected
rewards and margin, and the policy-vs-reference log-ratio (a KL proxy on the chosen steps).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset
from transformers import Trainer, set_seed
from transformers.utils import ModelOutput

from data.records import PAIR_FIELDS, PAIR_KINDS, read_jsonl
from reasoner.losses import dpo_loss, step_apo_loss, svpo_loss, visit_smoothing
from reasoner.trainers.common import AveragedMetrics, TrainingKnobs, bf16_autocast
from reasoner.trainers.pairs import collate_shared, collate_unshared, group_pairs, pair_logps, tokenize_pair

__all__ = ["PreferenceArgs", "PreferenceTrainer", "PairGroups", "PolicyWithValueHead", "train_preference",
           "ALGOS", "load_pairs", "check_smoothing"]

ALGOS = ("step-dpo", "step-apo", "svpo", "mcts-dpo", "dpo", "full-step-dpo")

VALUE_HEAD_WEIGHTS = "value_head.safetensors"


@dataclass
class PreferenceArgs(TrainingKnobs):
    """Settings of `reasoner train step-dpo|step-apo|svpo|mcts-dpo|dpo|full-step-dpo` (`reasoner train ALGO --help`)."""

    algo: str = "step-dpo"
    data: str = field(default="", metadata={"help": "pairs JSONL from `reasoner label`"})
    model: str | None = field(default=None, metadata={"help": "policy to train (default: embedded)"})
    output: str = field(default="runs/step-dpo", metadata={"help": "output directory"})
    beta: float | None = field(default=None, metadata={
        "help": "DPO β (default per algorithm, see DEFAULT_BETA: step-dpo 0.05, step-apo 0.3, svpo 0.1, "
                "mcts-dpo 0.1, dpo 0.1, full-step-dpo 0.05)"})
    alpha: float = field(default=1.0, metadata={"help": "step-apo: weight of the Q gap inside the sigmoid"})
    label_smoothing: float = 0.0
    visit_smoothing: bool = field(default=True, metadata={
        "help": "mcts-dpo: conservative ε per pair from its visit counts, min(N_l / (N_w + N_l), 0.5) (MCTS-DPO's "
                "--conservative); false uses --label_smoothing"})
    sft_weight: float = field(default=0.0, metadata={
        "help": "add this × per-token NLL of the chosen step (TRL's rpo_alpha): keeps chosen likelihoods from collapsing"})
    mse_weight: float = field(default=0.5, metadata={"help": "svpo: λ₁ of the value MSE"})
    rank_weight: float = field(default=0.5, metadata={"help": "svpo: λ₂ of the ranking margin"})
    margin: float = field(default=0.1, metadata={"help": "svpo: γ (negative: use the Q gap)"})
    token_rate: float = field(default=1.0, metadata={"help": "full-step-dpo: ρ of the token gates"})
    reward_temp: float = field(default=0.5, metadata={"help": "full-step-dpo: τ of the step-reward softmax"})
    prefix_sharing: bool = field(default=True, metadata={"help": "pack each prompt's pairs into one row"})
    max_pairs_per_group: int = 16
    reference: str = field(default="precomputed", metadata={"help": "precomputed or model (frozen copy)"})
    ref_model: str | None = field(default=None, metadata={
        "help": "reference policy (default: the policy being trained, as it starts); it must share that policy's "
                "tokenizer, e.g. an earlier round's policy kept as the reference of every round"})
    max_prompt_length: int = 512
    limit: int | None = field(default=None, metadata={"help": "use the first N pairs"})
    epochs: float = 1.0
    learning_rate: float = 1e-4
    batch_size: int = field(default=8, metadata={"help": "prompt groups per step"})
    warmup_steps: int = 10
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    logging_steps: int = 10


# Each method's own β (algorithms.md): Step-DPO's config_full.yaml 0.05 (2.3), CPL's pref_beta 0.3 (4.3),
# MCTS-DPO's scale_coeff 0.1 (5.3), Full-Step-DPO 0.05 (3.3); SVPO's is unpublished, 0.1 is 1.11's suggested start;
# solution-level DPO: DPO's and Iterative RPO's 0.1.
DEFAULT_BETA = {"step-dpo": 0.05, "step-apo": 0.3, "svpo": 0.1, "mcts-dpo": 0.1, "dpo": 0.1, "full-step-dpo": 0.05}
# Algorithms whose loss reads the pairs' Q values (a missing one is an error, not a silent ±1).
NEEDS_Q = ("step-apo", "svpo")


def required_pair_fields(algo: str | None, visit_smoothing: bool = True) -> tuple[str, ...]:
    """The record fields ``algo``'s loss reads: the pair itself, Q values for `NEEDS_Q`, visit counts for
    mcts-dpo with ``visit_smoothing``."""
    extra = ("q_chosen", "q_rejected") if algo in NEEDS_Q else ()
    if algo == "mcts-dpo" and visit_smoothing:
        extra = ("n_chosen", "n_rejected")
    return PAIR_FIELDS + extra


def check_smoothing(command: str, visit_smoothing: bool, label_smoothing: float) -> None:
    """ValueError when MCTS-DPO's per-pair smoothing from visit counts and a fixed ``--label_smoothing`` are both
    asked for (the first would silently override the second)."""
    if visit_smoothing and label_smoothing:
        raise ValueError(f"{command} takes each pair's label smoothing from its visit counts: pass --visit_smoothing "
                         "false to use --label_smoothing instead")


def resolve_beta(args: "PreferenceArgs") -> "PreferenceArgs":
    """Fill an unset ``args.beta`` with ``DEFAULT_BETA[args.algo]`` (before config.yaml records it)."""
    if args.beta is None and args.algo in DEFAULT_BETA:
        args.beta = DEFAULT_BETA[args.algo]
    return args


def load_pairs(path: str, limit: int | None = None, algo: str | None = None,
               visit_smoothing: bool = True) -> list[dict[str, Any]]:
    """Pair records with the preference columns checked (errors name file and line); the fields ``algo`` reads
    are required too (`required_pair_fields`: Q values for step-apo / svpo, visit counts for mcts-dpo)."""
    pairs = []
    for record in read_jsonl(path, required=required_pair_fields(algo, visit_smoothing), kinds=PAIR_KINDS):
        pairs.append(record)
        if limit and len(pairs) >= limit:
            break
    if not pairs:
        raise ValueError(f"{path}: no pairs to train on")
    return pairs


class PairGroups(Dataset):
    """Tokenised pairs grouped by prompt; each item carries its pairs' Q values and reference log-probs."""

    def __init__(self, records: Sequence[dict[str, Any]], tokenizer: Any, step_format: Any, max_pairs: int = 16,
                 max_prompt_length: int = 512, by_prompt: bool = True):
        tokenized = [tokenize_pair(tokenizer, step_format, r["prompt"], r["chosen"], r["rejected"], max_prompt_length)
                     for r in records]
        self.groups = group_pairs(tokenized, max_pairs=max_pairs, by_prompt=by_prompt)
        for group in self.groups:
            group["q"] = [(float(records[m].get("q_chosen", 1.0)), float(records[m].get("q_rejected", -1.0)))
                          for m in group["members"]]
            group["visits"] = [(float(records[m].get("n_chosen", 1)), float(records[m].get("n_rejected", 0)))
                               for m in group["members"]]
            group["ref"] = [(0.0, 0.0)] * len(group["pairs"])
        self.num_pairs = len(records)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.groups[index]

    @torch.no_grad()
    def compute_reference(self, model: nn.Module, pad_id: int, batch_size: int = 32, shared: bool = True,
                          bf16: bool = False) -> None:
        """Fill every pair's reference log-probs with ``model`` (the starting policy), once (in bf16 autocast when
        training will run in it, `bf16_autocast`)."""
        from tqdm.auto import tqdm

        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        collate = collate_shared if shared else collate_unshared
        for start in tqdm(range(0, len(self.groups), batch_size), desc="reference log-probs", unit="batch"):
            groups = self.groups[start:start + batch_size]
            with bf16_autocast(bf16, device):
                chosen, rejected = pair_logps(model, collate(groups, pad_id).to(device))
            offset = 0
            for group in groups:
                n = len(group["pairs"])
                group["ref"] = list(zip(chosen[offset:offset + n].tolist(), rejected[offset:offset + n].tolist()))
                offset += n
        model.train(was_training)


@dataclass
class PairCollator:
    """Groups → a `PairBatch` (shared or unshared layout) plus per-pair Q and reference tensors."""

    pad_token_id: int
    shared: bool = True

    def __call__(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        batch = (collate_shared if self.shared else collate_unshared)(groups, self.pad_token_id)
        q = torch.tensor([pair for g in groups for pair in g["q"]], dtype=torch.float32)
        ref = torch.tensor([pair for g in groups for pair in g["ref"]], dtype=torch.float32)
        visits = torch.tensor([pair for g in groups for pair in g["visits"]], dtype=torch.float32)
        return {"pair_batch": batch, "q_chosen": q[:, 0], "q_rejected": q[:, 1], "ref_chosen": ref[:, 0],
                "ref_rejected": ref[:, 1], "visits_chosen": visits[:, 0], "visits_rejected": visits[:, 1]}


@dataclass
class PolicyValueOutput(ModelOutput):
    """What `PolicyWithValueHead` returns: the policy's logits [batch, seq, vocab] and the value at every position
    [batch, seq] (a ModelOutput, so that wrappers rebuild it field by field)."""

    logits: torch.Tensor | None = None
    token_values: torch.Tensor | None = None


class PolicyWithValueHead(nn.Module):
    """A causal LM plus a tanh value head on its last hidden state (SVPO trains both together)."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy
        self.config = policy.config
        self.value_head = nn.Linear(policy.config.hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=getattr(policy.config, "initializer_range", 0.02))
        nn.init.zeros_(self.value_head.bias)

    def forward(self, **kwargs):
        """The policy's output plus ``token_values``: tanh of the value head at every position of the last hidden
        state, [batch, seq], in fp32. The head runs inside forward so that a wrapper sees it as part of the
        model: DistributedDataParallel syncs the gradients only of a graph built by its own forward (a policy
        or head called past it trains each process apart)."""
        output = self.policy(**kwargs, output_hidden_states=True)
        hidden = output.hidden_states[-1]
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            values = torch.tanh(self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1))
        return PolicyValueOutput(logits=output.logits, token_values=values)

    def save(self, directory: str, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """The policy via ``save_pretrained`` (safetensors) and the head as ``value_head.safetensors``.

        ``state_dict``: this module's weights to write instead of its own (under DeepSpeed ZeRO-3 the full
        weights that ``Trainer.save_model`` gathers from every process).
        """
        from safetensors.torch import save_file

        from reasoner.models import standalone_state_dict

        state = self.state_dict() if state_dict is None else state_dict
        self.policy.save_pretrained(directory, state_dict={name.removeprefix("policy."): tensor for name, tensor
                                                           in state.items() if name.startswith("policy.")})
        head = {name.removeprefix("value_head."): tensor for name, tensor in state.items() if name.startswith("value_head.")}
        save_file(standalone_state_dict(self.value_head, head), os.path.join(directory, VALUE_HEAD_WEIGHTS))

    def load(self, directory: str) -> None:
        """Load what `save` wrote (used to resume SVPO from a checkpoint)."""
        from safetensors.torch import load_file

        weights = load_file(os.path.join(directory, "model.safetensors"))
        self.policy.load_state_dict(weights, strict=False)  # tied lm_head weights are stored once
        self.value_head.load_state_dict(load_file(os.path.join(directory, VALUE_HEAD_WEIGHTS)))


class PreferenceTrainer(AveragedMetrics, Trainer):
    """`Trainer` whose loss is the chosen algorithm's pair loss over prefix-shared (or plain) pair batches."""

    def __init__(self, *args, preference: PreferenceArgs, reference_model: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.preference = preference
        # A frozen copy made before Trainer placed the policy: on several GPUs it must follow to this process's one.
        self.reference_model = None if reference_model is None else reference_model.to(self.args.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        options = self.preference
        device = next(model.parameters()).device
        batch = inputs["pair_batch"].to(device)
        q_chosen, q_rejected = inputs["q_chosen"].to(device), inputs["q_rejected"].to(device)
        ref_chosen, ref_rejected = inputs["ref_chosen"].to(device), inputs["ref_rejected"].to(device)
        if self.reference_model is not None:
            with torch.no_grad(), bf16_autocast(self.args.bf16, device):
                ref_chosen, ref_rejected = pair_logps(self.reference_model, batch)
        if options.algo == "svpo":
            chosen, rejected, output = pair_logps(model, batch, return_output=True)  # through the wrapper's forward
            ends = torch.tensor([[row, end] for row, _, end in batch.spans], device=device)
            values = output.token_values[ends[:, 0], ends[:, 1]].float()
            losses, parts = svpo_loss(chosen, rejected, ref_chosen, ref_rejected, values[batch.chosen],
                                      values[batch.rejected], q_chosen, q_rejected, beta=options.beta,
                                      label_smoothing=options.label_smoothing,
                                      mse_weight=options.mse_weight, rank_weight=options.rank_weight,
                                      margin=None if options.margin < 0 else options.margin)
            chosen_rewards, rejected_rewards = parts["chosen_rewards"], parts["rejected_rewards"]
            self._record(value_mse=parts["mse"].mean(), value_rank=parts["rank"].mean(),
                         value_accuracy=(values[batch.chosen] > values[batch.rejected]).float().mean())
        else:
            chosen, rejected = pair_logps(model, batch)
            if options.algo == "step-apo":
                losses, chosen_rewards, rejected_rewards = step_apo_loss(
                    chosen, rejected, ref_chosen, ref_rejected, q_chosen, q_rejected, beta=options.beta,
                    alpha=options.alpha, label_smoothing=options.label_smoothing)
            else:
                smoothing = options.label_smoothing
                if options.algo == "mcts-dpo" and options.visit_smoothing:
                    smoothing = visit_smoothing(inputs["visits_chosen"].to(device), inputs["visits_rejected"].to(device))
                    self._record(label_smoothing=smoothing.mean())
                losses, chosen_rewards, rejected_rewards = dpo_loss(
                    chosen, rejected, ref_chosen, ref_rejected, beta=options.beta, label_smoothing=smoothing)
        loss = losses.mean()
        if options.sft_weight:
            lengths = torch.tensor([end - start for _, start, end in batch.spans], device=device, dtype=chosen.dtype)
            nll = (-chosen / lengths[batch.chosen]).mean()
            loss = loss + options.sft_weight * nll
            self._record(nll_chosen=nll)
        self._record(rewards_chosen=chosen_rewards.mean(), rewards_rejected=rejected_rewards.mean(),
                     rewards_margin=(chosen_rewards - rejected_rewards).mean(),
                     rewards_accuracy=(chosen_rewards > rejected_rewards).float().mean(),
                     logratio_chosen=(chosen - ref_chosen).detach().mean())
        return (loss, {}) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        model = getattr(self.model, "module", self.model)
        if not isinstance(model, PolicyWithValueHead):
            return super()._save(output_dir, state_dict)
        if self.args.should_save:  # policy as a normal checkpoint (tied weights handled), head beside it
            model.save(output_dir or self.args.output_dir, state_dict)
            torch.save(self.args, os.path.join(output_dir or self.args.output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        target = getattr(model or self.model, "module", model or self.model)
        if not isinstance(target, PolicyWithValueHead):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        target.load(resume_from_checkpoint)


def train_preference(policy: Any, records: Sequence[Any], args: PreferenceArgs, callbacks: Sequence[Any] = (),
                     reference: nn.Module | None = None) -> tuple[nn.Module, PreferenceTrainer]:
    """Train ``policy`` (a `reasoner.models.Policy`) on ``records`` (pair dicts from `load_pairs`, or
    ``(line, record)`` step-reward records from `full_step.load_step_rewards` for full-step-dpo); returns the
    trained module (the policy's model, or a `PolicyWithValueHead` for SVPO) and the trainer. ``reference`` (a
    model over the same tokenizer) gives the reference log-probs; by default the policy's model as it starts."""
    from reasoner.trainers.common import resume_checkpoint, training_arguments

    if args.algo not in ALGOS:
        raise ValueError(f"unknown preference algorithm {args.algo!r}; known: {', '.join(ALGOS)}")
    resolve_beta(args)
    if args.algo == "mcts-dpo":
        check_smoothing(args.algo, args.visit_smoothing, args.label_smoothing)
    if args.algo != "full-step-dpo":
        needed = required_pair_fields(args.algo, args.visit_smoothing)[len(PAIR_FIELDS):]
        lacking = next((i for i, r in enumerate(records) if any(f not in r for f in needed)), None)
        if lacking is not None:
            raise ValueError(f"{args.data or 'pairs'}: pair {lacking + 1} has no {' / '.join(needed)}, which "
                             f"{args.algo} reads")
    if args.reference not in ("precomputed", "model"):
        raise ValueError(f"--reference must be precomputed or model, not {args.reference!r}")
    pad_id = policy.tokenizer.pad_token_id or 0
    training_args = training_arguments(args)
    reference_model = None
    scored_once = policy.model if reference is None else reference  # precomputed: before the first step, so no copy
    if args.algo == "full-step-dpo":
        from reasoner.trainers.full_step import FullStepDPOTrainer, StepRewardGroups, collate_groups

        if args.reference != "precomputed":
            raise ValueError("full-step-dpo uses precomputed reference log-probs")
        dataset = StepRewardGroups(records, policy.tokenizer, policy.step_format, path=args.data)
        dataset.compute_reference(scored_once, pad_id, bf16=training_args.bf16)
        trainer_class, collator = FullStepDPOTrainer, collate_groups(pad_id)
    else:
        dataset = PairGroups(records, policy.tokenizer, policy.step_format, args.max_pairs_per_group,
                             args.max_prompt_length)
        if args.reference == "precomputed":
            dataset.compute_reference(scored_once, pad_id, shared=args.prefix_sharing, bf16=training_args.bf16)
        else:
            reference_model = copy.deepcopy(policy.model) if reference is None else reference
            reference_model = reference_model.eval().requires_grad_(False)
        trainer_class, collator = PreferenceTrainer, PairCollator(pad_id, shared=args.prefix_sharing)
    set_seed(args.seed)  # before SVPO's value head is initialised: Trainer seeds only once the model exists
    model = PolicyWithValueHead(policy.model) if args.algo == "svpo" else policy.model
    model.train()
    trainer = trainer_class(model=model, args=training_args, train_dataset=dataset, data_collator=collator,
                            callbacks=list(callbacks), preference=args, reference_model=reference_model)
    trainer.train(resume_from_checkpoint=resume_checkpoint(args))
    model.eval()
    return model, trainer
