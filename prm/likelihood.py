"""A training-free step scorer: how surprising each step is to the policy itself.

``score`` gives, per step, exp(running minimum token log-prob over the solution so far) in (0, 1]: a step the
policy would almost never write (an arithmetic slip it knows better than) drags its prefix and everything
after it down. It needs no labels, so it is the baseline any trained value model should beat: it is what
`reasoner eval-prm --policy-likelihood` scores.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from prm.model import _step_features, encode_steps, pad_right

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
        tokenizer, fmt, model = self.policy.tokenizer, self.policy.step_format, self.policy.model
        encoded = [encode_steps(tokenizer, fmt, fmt.prompt(q), steps) for q, steps in zip(questions, step_lists)]
        results: list[list[float]] = [[] for _ in encoded]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        order = [i for i in sorted(range(len(encoded)), key=lambda i: len(encoded[i][0])) if encoded[i][1]]
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            input_ids, attention = pad_right([encoded[i][0] for i in rows], pad, self.policy.device)
            logps = torch.log_softmax(model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float(), -1)
            token_logps = torch.gather(logps, 2, input_ids[:, 1:, None]).squeeze(-1)
            running = _step_features(token_logps, [encoded[i][1] for i in rows], [encoded[i][2] for i in rows])[:, 1]
            values = torch.exp(running * 10.0).tolist()  # undo the feature scaling (/10, clipped at -20 nats)
            offset = 0
            for i in rows:
                results[i] = values[offset:offset + len(encoded[i][1])]
                offset += len(encoded[i][1])
        return results
