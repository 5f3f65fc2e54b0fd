"""Step pairs as model input, with and without prefix sharing (algorithms.md section 9).

Pairs that share a prompt (question + earlier steps) form a *group*: one prompt, its distinct completions
(single steps, or a step plus its continuation), and the (chosen, rejected) index pairs among them.
Unshared, every pair is two rows, ``[prompt][chosen]`` and ``[prompt][rejected]``, as a plain DPO trainer
feeds it: the prompt is computed twice per pair. Shared, a whole group is one packed row

    [prompt (P)][completion 0][copy of the last prompt token][completion 1][copy][completion 2]...

(for one pair this is exactly section 9's ``[prompt][chosen][copy][rejected]``) with

* position ids 0..P-1 for the prompt, P.. for completion 0, and for every later completion P-1 for its copy
  token then P.., so each branch sits at the positions it would have right after the prompt;
* a 4-D attention mask: causal, and a token of completion j ≥ 1 (its copy included) sees only prompt tokens
  0..P-2 and earlier tokens of its own branch (the copy stands in for the last prompt token); completion 0
  sees the whole prompt. No branch sees another.

The summed log-probs of each completion then equal the unshared computation to float tolerance, with one
forward/backward over P + Σ(C_j + 1) tokens instead of Σ_pairs 2P + C_w + C_l.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from reasoner.models import encode_continuation, encode_prefix, pad_right, token_logps
from reasoner.steps import StepFormat

__all__ = ["tokenize_pair", "group_pairs", "collate_shared", "collate_unshared", "pair_logps", "token_logps",
           "span_logps", "PairBatch", "response_token_logps", "pad_rows"]


def tokenize_pair(tokenizer: Any, step_format: StepFormat, prompt: str, chosen: str, rejected: str,
                  max_prompt_length: int = 512) -> dict[str, list[int]]:
    """Token ids of a pair: ``prompt`` (rendered, BOS added; left-truncated to ``max_prompt_length``) and each
    completion written with the step delimiter after every step (no EOS: a step, not the end of a solution), and
    with the header's whitespace first when the prompt ends with an open header (``Step 2:`` + `` Tom``, as the
    policy wrote it; `StepFormat.gap_after`)."""
    prompt_ids = encode_prefix(tokenizer, prompt)
    if len(prompt_ids) > max_prompt_length:
        prompt_ids = prompt_ids[:1] + prompt_ids[-(max_prompt_length - 1):]
    gap = step_format.gap_after(prompt)

    def completion(text: str) -> list[int]:
        steps = text.split(step_format.delimiter) if step_format.delimiter in text else [text]
        body = step_format.delimiter.join(s.strip() for s in steps if s.strip()) + step_format.delimiter
        return encode_continuation(tokenizer, gap + body)

    return {"prompt": prompt_ids, "chosen": completion(chosen), "rejected": completion(rejected)}


@dataclass
class PairBatch:
    """Model inputs, the (row, start, end) span of every completion whose next-token log-probs are summed,
    and per pair the indices of its chosen and rejected spans."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None
    spans: list[tuple[int, int, int]]
    chosen: torch.Tensor
    rejected: torch.Tensor

    def to(self, device: torch.device) -> "PairBatch":
        position_ids = None if self.position_ids is None else self.position_ids.to(device)
        return PairBatch(self.input_ids.to(device), self.attention_mask.to(device), position_ids, self.spans,
                         self.chosen.to(device), self.rejected.to(device))


def group_pairs(tokenized: Sequence[dict[str, Any]], max_pairs: int = 16, by_prompt: bool = True) -> list[dict[str, Any]]:
    """Tokenised pairs → groups of pairs with identical prompt ids (at most ``max_pairs`` each; one pair per
    group when ``by_prompt`` is False): ``prompt``, ``completions`` (distinct), ``pairs`` ((chosen index,
    rejected index) per pair) and ``members`` (the pairs' positions in the input)."""
    groups: dict[tuple, dict[str, Any]] = {}
    counts: dict[tuple[int, ...], int] = {}
    for position, pair in enumerate(tokenized):
        prompt_key = tuple(pair["prompt"])
        seen = counts.get(prompt_key, 0)
        counts[prompt_key] = seen + 1
        key = (prompt_key, seen // max_pairs) if by_prompt else (prompt_key, seen)
        group = groups.setdefault(key, {"prompt": pair["prompt"], "completions": [], "pairs": [],
                                        "members": [], "_index": {}})
        ids = []
        for side in ("chosen", "rejected"):
            key = tuple(pair[side])
            if key not in group["_index"]:
                group["_index"][key] = len(group["completions"])
                group["completions"].append(pair[side])
            ids.append(group["_index"][key])
        group["pairs"].append(tuple(ids))
        group["members"].append(position)
    for group in groups.values():
        del group["_index"]
    return list(groups.values())


def collate_unshared(groups: Sequence[dict[str, Any]], pad_id: int) -> PairBatch:
    """Two right-padded rows per pair, [prompt][chosen] and [prompt][rejected] (the usual DPO input)."""
    rows, spans, chosen, rejected = [], [], [], []
    for group in groups:
        prompt = group["prompt"]
        for c, r in group["pairs"]:
            for side, target in ((c, chosen), (r, rejected)):
                completion = group["completions"][side]
                target.append(len(spans))
                spans.append((len(rows), len(prompt) - 1, len(prompt) - 1 + len(completion)))
                rows.append(prompt + completion)
    input_ids, attention = pad_right(rows, pad_id)
    return PairBatch(input_ids, attention, None, spans, torch.tensor(chosen), torch.tensor(rejected))


def collate_shared(groups: Sequence[dict[str, Any]], pad_id: int) -> PairBatch:
    """One packed row per group with the position ids and 4-D mask described in the module docstring."""
    rows, positions, spans, chosen, rejected = [], [], [], [], []
    for row_index, group in enumerate(groups):
        prompt = group["prompt"]
        P = len(prompt)
        row, pos, branch = list(prompt), list(range(P)), [-1] * P
        first_span = len(spans)
        for j, completion in enumerate(group["completions"]):
            if j == 0:
                spans.append((row_index, P - 1, P - 1 + len(completion)))
            else:
                spans.append((row_index, len(row), len(row) + len(completion)))
                row.append(prompt[-1])
                pos.append(P - 1)
                branch.append(j)
            row.extend(completion)
            pos.extend(range(P, P + len(completion)))
            branch.extend([j] * len(completion))
        chosen.extend(first_span + c for c, _ in group["pairs"])
        rejected.extend(first_span + r for _, r in group["pairs"])
        rows.append(row)
        positions.append((pos, branch, P))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width, width), dtype=torch.bool)
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    index = torch.arange(width)
    for i, (row, (pos, branch, P)) in enumerate(zip(rows, positions)):
        n = len(row)
        input_ids[i, :n] = torch.tensor(row)
        position_ids[i, :n] = torch.tensor(pos)
        b = torch.full((width,), -2, dtype=torch.long)
        b[:n] = torch.tensor(branch)
        same_branch = b[:, None] == b[None, :]
        prompt_key = (b[None, :] == -1) & ((b[:, None] <= 0) | (index[None, :] < P - 1))
        mask[i] = causal & (same_branch | prompt_key)
        mask[i, :, n:] = False  # padding keys
        mask[i, index[n:], index[n:]] = True  # a padding query sees itself (no all-masked row, no NaN)
    return PairBatch(input_ids, mask[:, None], position_ids, spans, torch.tensor(chosen), torch.tensor(rejected))


def pad_rows(rows: Sequence[Sequence[float] | torch.Tensor], device: torch.device | str | None = None) -> torch.Tensor:
    """Float rows of different lengths (per-token log-probs, rewards, masks) → one zero-padded [n, width] tensor."""
    width = max(len(r) for r in rows)
    if device is None:
        device = rows[0].device if isinstance(rows[0], torch.Tensor) else "cpu"
    out = torch.zeros((len(rows), width), device=device)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, device=device)
    return out


def span_logps(per_token: torch.Tensor, spans: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """Sum of per-token log-probs over each (row, start, end) span, shape [len(spans)]."""
    return torch.stack([per_token[row, start:end].sum() for row, start, end in spans])


def pair_logps(model: Any, batch: PairBatch, return_output: bool = False):
    """Summed log-probs of chosen and rejected per pair, [n_pairs] each (plus the model's whole output on
    request, e.g. the values a policy-with-value-head computes in its forward, read at the completions' ends)."""
    kwargs: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    if batch.position_ids is not None:
        kwargs["position_ids"] = batch.position_ids
    output = model(**kwargs)
    completions = span_logps(token_logps(output.logits, batch.input_ids), batch.spans)
    chosen, rejected = completions[batch.chosen], completions[batch.rejected]
    if return_output:
        return chosen, rejected, output
    return chosen, rejected


def response_token_logps(model: torch.nn.Module, groups: Sequence[dict], pad_id: int, device,
                         with_entropy: bool = False) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-token log-probs of every response of ``groups`` (one packed row per prompt), in order; with
    ``with_entropy`` also the entropy H = −Σ_v p_v log p_v of the distribution each token was drawn from."""
    batch = collate_shared(groups, pad_id).to(device)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids).logits
    if not with_entropy:
        per_token = token_logps(logits, batch.input_ids)
        return [per_token[row, start:end] for row, start, end in batch.spans]
    per_token, entropy = token_logps(logits, batch.input_ids, with_entropy=True)
    return ([per_token[row, start:end] for row, start, end in batch.spans],
            [entropy[row, start:end] for row, start, end in batch.spans])
