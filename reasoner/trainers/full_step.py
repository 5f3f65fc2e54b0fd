"""Full-Step-DPO (algorithms.md 3.3): K responses per prompt with per-step rewards, one packed row per prompt.

Input: a ``step-rewards`` JSONL from `reasoner label` (``prompt``, ``responses``, ``rewards``,
``step_rewards``). Each response is split into steps with the policy's step format and tokenised piecewise, so
every token carries the reward of its step (never 0: 0 marks padding in the loss). The K responses of a prompt
are the branches of one prefix-shared row (`reasoner.trainers.pairs.collate_shared`), reference per-token
log-probs are computed once, and the loss is `reasoner.losses.full_step_dpo_loss` per prompt, averaged.

Unlike the reference collator (3.2), no EOS is appended to a response: our decoders end a solution at its
final-answer step, never by sampling EOS, so there is no stop token to teach. The "Step k:" header of a header
format belongs to step k's tokens (the reference splits at the "\nStep" token).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from data.records import STEP_REWARD_FIELDS, STEP_REWARD_KINDS, RecordError, read_jsonl
from reasoner.losses import full_step_dpo_loss
from reasoner.models import encode_continuation, encode_prefix
from reasoner.trainers.common import bf16_autocast
from reasoner.trainers.pairs import pad_rows, response_token_logps
from reasoner.trainers.preference import PreferenceTrainer

__all__ = ["StepRewardGroups", "FullStepDPOTrainer", "load_step_rewards"]


def load_step_rewards(path: str, limit: int | None = None) -> list[tuple[int, dict]]:
    """(line, record) pairs of a step-rewards file; field kinds are checked here, list shapes later, per record,
    with its line."""
    records = list(read_jsonl(path, with_line_numbers=True, required=STEP_REWARD_FIELDS, kinds=STEP_REWARD_KINDS))
    if not records:
        raise ValueError(f"{path}: no step-reward records to train on")
    return records[:limit] if limit else records


class StepRewardGroups(Dataset):
    """One item per prompt: its token ids, K response token lists, per-token step rewards, outcome rewards."""

    def __init__(self, records: Sequence[tuple[int, dict]], tokenizer: Any, step_format: Any, path: str = "",
                 max_responses: int = 8):
        self.groups = []
        for line, record in records:
            if not (len(record["responses"]) == len(record["rewards"]) == len(record["step_rewards"])):
                raise RecordError(path, line, "'responses', 'rewards' and 'step_rewards' must have one length")
            completions, token_rewards = [], []
            for response, rewards in zip(record["responses"][:max_responses], record["step_rewards"][:max_responses]):
                steps = _steps_of(response, step_format, len(rewards))
                if len(steps) != len(rewards):
                    raise RecordError(path, line, f"a response has {len(steps)} steps but {len(rewards)} step rewards")
                ids, per_token = [], []
                for index, (step, reward) in enumerate(zip(steps, rewards)):
                    piece = encode_continuation(tokenizer, step_format.header(index) + step.strip() + step_format.delimiter)
                    ids.extend(piece)
                    per_token.extend([float(reward) or 1e-6] * len(piece))
                completions.append(ids)
                token_rewards.append(per_token)
            self.groups.append({"prompt": encode_prefix(tokenizer, record["prompt"]), "completions": completions,
                                "pairs": [], "token_rewards": token_rewards,
                                "rewards": [float(r) for r in record["rewards"][:max_responses]],
                                "ref": None})

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.groups[index]

    @torch.no_grad()
    def compute_reference(self, model: torch.nn.Module, pad_id: int, batch_size: int = 16, bf16: bool = False) -> None:
        """Per-token reference log-probs of every response, with the starting policy, once (in bf16 autocast when
        training will run in it, `bf16_autocast`)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        for start in range(0, len(self.groups), batch_size):
            groups = self.groups[start:start + batch_size]
            with bf16_autocast(bf16, device):
                per_response = response_token_logps(model, groups, pad_id, device)
            offset = 0
            for group in groups:
                k = len(group["completions"])
                group["ref"] = [t.tolist() for t in per_response[offset:offset + k]]
                offset += k
        model.train(was_training)


def _steps_of(response: str, step_format: Any, expected: int) -> list[str]:
    """The response's steps; empty steps (a policy can write one) are kept when that matches the rewards."""
    steps = step_format.split(response)
    if len(steps) == expected:
        return steps
    raw = response.split(step_format.delimiter)
    if raw and raw[-1] == "":
        raw = raw[:-1]
    if step_format.step_header:
        raw = [re.sub(r"^Step\s*\d+\s*:\s*", "", piece) for piece in raw]
    return raw


class FullStepDPOTrainer(PreferenceTrainer):
    """`PreferenceTrainer` whose items are prompts with K scored responses (Full-Step-DPO's loss)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        options = self.preference
        groups = inputs["groups"]
        device = next(model.parameters()).device
        per_response = response_token_logps(model, groups, inputs["pad_id"], device)
        losses, offset = [], 0
        for group in groups:
            k = len(group["completions"])
            logps = pad_rows(per_response[offset:offset + k])
            offset += k
            loss, parts = full_step_dpo_loss(logps, pad_rows(group["ref"], device), pad_rows(group["token_rewards"], device),
                                             torch.tensor(group["rewards"], device=device), beta=options.beta,
                                             token_rate=options.token_rate, reward_temp=options.reward_temp)
            losses.append(loss)
            self._record(pairs=parts["pairs"].float())
        loss = torch.stack(losses).mean()
        return (loss, {}) if return_outputs else loss


def collate_groups(pad_id: int):
    """Items are passed through whole: packing happens inside the loss (it needs per-token log-probs)."""
    return lambda groups: {"groups": groups, "pad_id": pad_id}
