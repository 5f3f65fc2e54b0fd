"""A training-free step scorer: how surprising each step is to the policy itself.

``score`` gives, per step, exp(running minimum token log-prob over the solution so far) in (0, 1]: a step the
policy would almost never write (an arithmetic slip it knows better than) drags its prefix and everything
after it down. It needs no labels, so it is the baseline any trained value model should beat: it is what
`reasoner eval-prm --policy-likelihood` scores.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from prm.model import score_solutions, step_features
from reasoner.models import token_logps

__all__ = ["PolicyLikelihoodScorer"]


class PolicyLikelihoodScorer:
    """`StepScorer` from a loaded `reasoner.models.Policy`: exp(running-min token log-prob) per step."""

    head = "probability"
    threshold = None

    def __init__(self, policy: Any, batch_size: int = 64):
        self.policy = policy
        self.batch_size = batch_size

    @torch.no_grad()
    def score(self, questions: Sequence[str], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        policy = self.policy
        return score_solutions(policy.tokenizer, policy.step_format, questions, step_lists, self._step_values,
                               policy.device, self.batch_size)

    def _step_values(self, input_ids: torch.Tensor, attention: torch.Tensor, ends: Sequence[Sequence[int]],
                     prompt_lengths: Sequence[int]) -> list[float]:
        logits = self.policy.model(input_ids=input_ids, attention_mask=attention).logits
        running = step_features(token_logps(logits, input_ids), ends, prompt_lengths)[:, 1]
        return torch.exp(running * 10.0).tolist()  # undo the feature scaling (/10, clipped at -20 nats)
