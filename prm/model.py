"""The step value model: a causal-LM backbone with a scalar head read at step-end tokens.

Layout (algorithms.md 1.9, 7.3): the backbone is a copy of the policy (a causal LM), the head is
``Linear(hidden, 1)`` (weights N(0, initializer_range), bias 0) on the last hidden state. A solution is
tokenised piecewise, as TRL's PRMTrainer does: the prompt (``step_format.prompt(question)`` with BOS), then
per step ``header + step + delimiter``; the value of step i is read at the last token of its piece (the
delimiter), so a step is scored with the delimiter the model was trained on. Output: ``tanh`` in [-1, 1]
for Q targets (AlphaMath's value head) or ``sigmoid`` in [0, 1] for PRM labels.

Likelihood features (``likelihood_features=True``; our addition, not from a paper): the head also sees, per
step, how surprising the step is to the backbone's own LM head: the step's minimum and mean token
log-prob and the running minimum over the steps so far (each /10, clipped to [-2, 0], gradients stopped),
through a second ``Linear(3, 1)`` initialised to zero. Why: on the embedded tiny policy, a head on hidden
states alone learned problem difficulty rather than arithmetic (step AUC 0.60 on corrupted solutions),
while the policy's own running-minimum token log-prob alone ranks those steps at AUC 0.97; the features let
the value model use what the LM already knows.

A saved model is a directory: ``config.json`` (the backbone's transformers config), ``value_head.json``
(head kind, features, step format, provenance), ``model.safetensors`` (backbone + heads) and the
tokenizer, so ``ValueModel.from_pretrained(path)`` rebuilds it with no code beyond this file. It implements
`search.protocols.StepScorer` (batched) for MCTS, beam search and best-of-N.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from data.records import read_json_file
from reasoner.models import (encode_continuation, encode_prefix, pad_right, resolve_device, resolve_dtype,
                             standalone_state_dict, token_logps)
from reasoner.steps import StepFormat, get_format

__all__ = ["ValueModel", "encode_steps", "score_solutions", "step_features", "load_value_model", "HEADS", "VALUE_HEAD_FILE"]

HEADS = ("tanh", "sigmoid")
VALUE_HEAD_FILE = "value_head.json"
WEIGHTS_FILE = "model.safetensors"
NUM_FEATURES = 3


def encode_steps(tokenizer: Any, step_format: StepFormat, prompt: str, steps: Sequence[str], first_index: int = 0,
                 max_length: int | None = None) -> tuple[list[int], list[int], int]:
    """Token ids of prompt + steps, the index of each step's last token (its delimiter), and the prompt length.

    ``prompt`` is rendered text (``step_format.prompt(question)``, or a prefix ending with the first step's open
    header: ``step_format.render(question, earlier_steps)``); ``first_index`` is the number of the first step (for
    headers such as ``Step k:``). Pieces are tokenised separately (prompt with BOS, then ``header + step +
    delimiter`` per step) so a step-end position never merges with the next step's text.
    Steps that do not fit in ``max_length`` get no position.
    """
    ids = encode_prefix(tokenizer, prompt)
    prompt_length = len(ids)
    ends = []
    for index, step in enumerate(steps, start=first_index):
        if index == first_index and step_format.gap_after(prompt):  # the prompt ends with this step's open header
            header = step_format.header_gap
        elif index == first_index and prompt.endswith(step_format.header(index)):
            header = ""
        else:
            header = step_format.header(index)
        piece = header + step.strip() + step_format.delimiter
        ids = ids + encode_continuation(tokenizer, piece)
        if max_length is not None and len(ids) > max_length:
            return ids[:max_length], ends, prompt_length
        ends.append(len(ids) - 1)
    return ids, ends, prompt_length


class ValueModel(nn.Module):
    """Causal-LM backbone + scalar head(s); ``score`` gives one value per step (the `StepScorer` protocol)."""

    def __init__(self, lm: nn.Module, tokenizer: Any, step_format: StepFormat, head: str = "tanh",
                 likelihood_features: bool = False, source: str = ""):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown value head {head!r}; known: {', '.join(HEADS)}")
        self.lm = lm
        self.config = lm.config  # lets transformers.Trainer read model settings
        self.value_head = nn.Linear(lm.config.hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=getattr(lm.config, "initializer_range", 0.02))
        nn.init.zeros_(self.value_head.bias)
        self.feature_head = nn.Linear(NUM_FEATURES, 1) if likelihood_features else None
        if self.feature_head is not None:
            nn.init.zeros_(self.feature_head.weight)
            nn.init.zeros_(self.feature_head.bias)
        self.tokenizer = tokenizer
        self.step_format = step_format
        self.head = head
        self.source = source
        self.threshold: float | None = None  # first-error decision threshold, calibrated by train-prm

    @property
    def likelihood_features(self) -> bool:
        return self.feature_head is not None

    # ------------------------------------------------------------------ building, saving, loading
    @classmethod
    def from_policy(cls, policy: Any, head: str = "tanh", likelihood_features: bool = False) -> "ValueModel":
        """A fresh value model whose backbone is a copy of ``policy``'s causal LM."""
        return cls(copy.deepcopy(policy.model), policy.tokenizer, policy.step_format, head=head,
                   likelihood_features=likelihood_features, source=policy.name).to(policy.device)

    def save_pretrained(self, output_dir: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write config, head description, safetensors weights and tokenizer to ``output_dir``.

        ``state_dict``: the weights to write instead of the module's own (under DeepSpeed ZeRO-3 the full
        weights that ``Trainer.save_model`` gathers from every process; see `standalone_state_dict`).
        """
        from safetensors.torch import save_file

        output = self.save_description(output_dir)
        save_file(standalone_state_dict(self, state_dict), str(output / WEIGHTS_FILE), metadata={"format": "pt"})
        return output

    def save_description(self, output_dir: str | Path) -> Path:
        """Everything but the weights: backbone config, ``value_head.json`` and the tokenizer."""
        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        self.lm.config.save_pretrained(output)
        description = {"head": self.head, "likelihood_features": self.likelihood_features, "threshold": self.threshold,
                       "step_format": self.step_format.to_dict(), "source": self.source,
                       "hidden_size": self.lm.config.hidden_size}
        (output / VALUE_HEAD_FILE).write_text(json.dumps(description, indent=2) + "\n")
        self.tokenizer.save_pretrained(output)
        return output

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, dtype: str | None = None) -> "ValueModel":
        """Load a directory written by `save_pretrained` (weights must match the config exactly), in ``dtype``
        (`reasoner.models.resolve_dtype`: fp32 on CPU, bf16 on GPU unless given), heads included."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        description_file = path / VALUE_HEAD_FILE
        if not description_file.exists():
            raise FileNotFoundError(f"{path}: not a value model directory (no {VALUE_HEAD_FILE}); "
                                    "train one with `reasoner train-prm`")
        description = read_json_file(description_file)
        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
        model = cls(lm, AutoTokenizer.from_pretrained(path), get_format(description["step_format"]),
                    head=description["head"], likelihood_features=description.get("likelihood_features", False),
                    source=description.get("source", ""))
        model.threshold = description.get("threshold")
        try:
            load_model(model, str(path / WEIGHTS_FILE), strict=True)
        except SafetensorError as exc:
            raise ValueError(f"{path / WEIGHTS_FILE}: unreadable weights ({exc}); was the save cut short?") from None
        target = resolve_device(device)
        return model.to(device=target, dtype=resolve_dtype(dtype, target)).eval()

    # ------------------------------------------------------------------ computing values
    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, ends: Sequence[Sequence[int]],
                prompt_lengths: Sequence[int]) -> torch.Tensor:
        """Head logits at every step end, flat in row order (row 0's steps, then row 1's, ...).

        ``ends[r]`` are row r's step-end indices and ``prompt_lengths[r]`` its prompt length (from
        `encode_steps`); apply `activate` for values.
        """
        if self.feature_head is None:
            hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            output = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            hidden = output.hidden_states[-1]
            step_logps = token_logps(output.logits.detach(), input_ids)
        rows = torch.tensor([r for r, row_ends in enumerate(ends) for _ in row_ends], device=hidden.device)
        cols = torch.tensor([e for row_ends in ends for e in row_ends], device=hidden.device)
        logits = self.value_head(hidden[rows, cols].to(self.value_head.weight.dtype)).squeeze(-1)
        if self.feature_head is None:
            return logits
        features = step_features(step_logps, ends, prompt_lengths).to(self.feature_head.weight.dtype)
        return logits + self.feature_head(features).squeeze(-1)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits → values: tanh ([-1, 1]) or sigmoid ([0, 1]) depending on the head."""
        return torch.tanh(logits) if self.head == "tanh" else torch.sigmoid(logits)

    @torch.no_grad()
    def score(self, questions: Sequence[str], step_lists: Sequence[Sequence[str]], batch_size: int = 64,
              max_length: int | None = None) -> list[list[float]]:
        """One value per step of each solution; batched over solutions (sorted by length, right-padded)."""
        was_training = self.training
        self.eval()
        results = score_solutions(self.tokenizer, self.step_format, questions, step_lists,
                                  lambda *batch: self.activate(self(*batch)).float().cpu().tolist(),
                                  self.device, batch_size, max_length)
        for i, steps in enumerate(step_lists):  # steps cut by max_length inherit the last readable value
            if len(results[i]) < len(steps):
                fill = results[i][-1] if results[i] else (0.0 if self.head == "tanh" else 0.5)
                results[i] = results[i] + [fill] * (len(steps) - len(results[i]))
        self.train(was_training)
        return results


def score_solutions(tokenizer: Any, step_format: StepFormat, questions: Sequence[str],
                    step_lists: Sequence[Sequence[str]], step_values: Any, device: torch.device | str,
                    batch_size: int = 64, max_length: int | None = None) -> list[list[float]]:
    """The batching loop of every step scorer here: encode each solution (`encode_steps`), batch them sorted
    by length, and call ``step_values(input_ids, attention_mask, ends, prompt_lengths)``, which returns one
    value per step end, flat in row order. Steps cut by ``max_length`` get no value."""
    encoded = [encode_steps(tokenizer, step_format, step_format.prompt(q), steps, max_length=max_length)
               for q, steps in zip(questions, step_lists)]
    results: list[list[float]] = [[] for _ in encoded]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = [i for i in sorted(range(len(encoded)), key=lambda i: len(encoded[i][0])) if encoded[i][1]]
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, attention = pad_right([encoded[i][0] for i in rows], pad, device)
        values = step_values(input_ids, attention, [encoded[i][1] for i in rows], [encoded[i][2] for i in rows])
        offset = 0
        for i in rows:
            results[i] = values[offset:offset + len(encoded[i][1])]
            offset += len(encoded[i][1])
    return results


def step_features(token_logps: torch.Tensor, ends: Sequence[Sequence[int]], prompt_lengths: Sequence[int]) -> torch.Tensor:
    """Per step: [min, running min, mean] of its tokens' log-probs (/10, clipped to [-2, 0]), flat in row order.

    ``token_logps[r, j]`` is log p(token j+1 | ≤ j), so step k's tokens (prompt_end+1 .. end) are predicted at
    positions [previous end, end).
    """
    features = []
    for row, row_ends in enumerate(ends):
        start = prompt_lengths[row] - 1
        running = token_logps.new_zeros(())
        for end in row_ends:
            segment = token_logps[row, start:end]
            step_min = segment.min()
            running = torch.minimum(running, step_min)
            features.append(torch.stack([step_min, running, segment.mean()]))
            start = end
    return (torch.stack(features) / 10.0).clamp(-2.0, 0.0)


def load_value_model(path: str | Path, device: str | None = None) -> ValueModel:
    """`ValueModel.from_pretrained`, the name the CLI and search use."""
    return ValueModel.from_pretrained(path, device=device)
