"""`StepGenerator` on a transformers causal LM, with batched sampling and prefix KV reuse.

One `expand` call samples ``n`` next steps for every state at once:

1. every state is rendered with the policy's `StepFormat` and tokenized;
2. **prefill**: each distinct prefix is looked up in a `PrefixKVCache`; only the tokens after its longest
   cached prefix are encoded, in one padded batch (cached past left-padded, new tokens right-padded, with
   explicit position ids), and the result is cached for the node's children and every later expansion
   below it;
3. **decode**: all ``len(states) * n`` rows run in one batch on the left-padded prefix KV, each row stopping
   at the step delimiter, EOS or ``max_step_tokens``; finished rows are dropped from the batch as they end.

Padding never changes a row's distribution: pads are masked and position ids are the unpadded ones, so
batched greedy decoding equals unbatched greedy decoding token for token (tested).

``reuse_prefix=False`` turns the cache off and encodes every row's full prefix (what plain
``generate(num_return_sequences=n)`` does); the generation benchmark compares the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from reasoner.backends.kv_cache import (
    KVEntry, PrefixKVCache, cache_argument, cache_from_layers, layers_of_cache, output_cache, preallocated_cache,
)
from reasoner.models import encode_prefix, eos_token_ids
from reasoner.steps import StepFormat, is_final_step
from search.protocols import State, StepSample

__all__ = ["HFStepGenerator", "GenerationStats"]


@dataclass
class GenerationStats:
    """Counters over the generator's lifetime (tokens sampled, prefix tokens encoded, forward passes)."""

    generated_tokens: int = 0
    prefill_tokens: int = 0
    forward_passes: int = 0
    calls: int = 0


class HFStepGenerator:
    """Samples next reasoning steps from a transformers causal LM (see the module docstring).

    Args:
        model, tokenizer: a causal LM and its tokenizer.
        step_format: how states are rendered and where a step ends.
        reuse_prefix: keep prefix KV states across calls (False: re-encode every row's prefix).
        cache_bytes: memory budget of the prefix KV cache.
        max_batch_rows: largest decode batch; bigger requests are split.
        top_p: nucleus sampling threshold (1.0 = off).
        seed: seed of the sampling generator (results are deterministic for a fixed seed and call order).
    """

    def __init__(
        self,
        model,
        tokenizer,
        step_format: StepFormat,
        *,
        reuse_prefix: bool = True,
        cache_bytes: int = 1 << 30,
        max_batch_rows: int = 512,
        prefill_batch_tokens: int = 32768,
        top_p: float = 1.0,
        seed: int = 0,
    ):
        self.model = model
        self.cache_argument = cache_argument(model)
        self.body_cache_argument = cache_argument(model.base_model)
        self.tokenizer = tokenizer
        self.step_format = step_format
        self.reuse_prefix = reuse_prefix
        self.cache = PrefixKVCache(cache_bytes)
        self.max_batch_rows = max_batch_rows
        self.prefill_batch_tokens = prefill_batch_tokens
        self.top_p = top_p
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.stats = GenerationStats()
        self.eos_ids = eos_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids or {0})
        self.piece_text = self._piece_texts()

    # ----------------------------------------------------------------- protocol
    @torch.no_grad()
    def expand(
        self, states: Sequence[State], n: int, *, temperature: float = 1.0, max_step_tokens: int = 64
    ) -> list[list[StepSample]]:
        """``n`` sampled next steps for each state (greedy when ``temperature == 0``)."""
        self.stats.calls += 1
        if not states:
            return []
        prefixes = [tuple(self.encode(self.step_format.render(s.question, s.steps))) for s in states]
        results: list[list[StepSample]] = [[] for _ in states]
        rows = [index for index in range(len(states)) for _ in range(n)]
        per_chunk = max(1, self.max_batch_rows)
        for start in range(0, len(rows), per_chunk):
            chunk = rows[start : start + per_chunk]
            if self.reuse_prefix:
                unique = list(dict.fromkeys(prefixes[i] for i in chunk))
                entries = dict(zip(unique, self._prefill(unique)))
                row_entries = [entries[prefixes[i]] for i in chunk]
            else:
                row_entries = self._prefill([prefixes[i] for i in chunk])
            for index, sample in zip(chunk, self._decode(row_entries, temperature, max_step_tokens)):
                results[index].append(sample)
        return results

    def reseed(self, seed: int) -> None:
        """Restart the sampling stream at ``seed`` (the `StepGenerator` protocol's optional hook; the prefix KV
        cache is kept, as it holds no randomness)."""
        self.generator.manual_seed(seed)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with the tokenizer's BOS (if it adds one), as the model was trained."""
        return encode_prefix(self.tokenizer, text)

    # ------------------------------------------------------------------ prefill
    def _prefill(self, prefixes: Sequence[tuple[int, ...]]) -> list[KVEntry]:
        """KV entries for ``prefixes``: cached ones reused, the rest encoded in padded batches."""
        found: dict[int, KVEntry] = {}
        todo: list[tuple[int, KVEntry | None]] = []
        for index, ids in enumerate(prefixes):
            entry = self.cache.get(ids) if self.reuse_prefix else None
            if entry is not None:
                self.cache.hits += 1
                self.cache.reused_tokens += len(ids)
                found[index] = entry
                continue
            past = self.cache.longest_prefix(ids[:-1]) if self.reuse_prefix else None
            self.cache.misses += 1
            todo.append((index, past))
        # Sort by new-token count so that batches carry little padding.
        todo.sort(key=lambda item: len(prefixes[item[0]]) - (len(item[1].ids) if item[1] else 0))
        batch: list[tuple[int, KVEntry | None]] = []
        for item in todo:
            width = len(prefixes[item[0]])
            if batch and (len(batch) + 1) * width > self.prefill_batch_tokens:
                found.update(self._prefill_batch(batch, prefixes))
                batch = []
            batch.append(item)
        if batch:
            found.update(self._prefill_batch(batch, prefixes))
        return [found[index] for index in range(len(prefixes))]

    def _prefill_batch(
        self, batch: list[tuple[int, KVEntry | None]], prefixes: Sequence[tuple[int, ...]]
    ) -> dict[int, KVEntry]:
        past_lengths = [len(past.ids) if past else 0 for _, past in batch]
        new_ids = [prefixes[index][length:] for (index, _), length in zip(batch, past_lengths)]
        rows, past_width, new_width = len(batch), max(past_lengths), max(len(ids) for ids in new_ids)
        input_ids = torch.full((rows, new_width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, past_width + new_width), dtype=torch.long)
        positions = torch.zeros((rows, new_width), dtype=torch.long)
        for row, (ids, length) in enumerate(zip(new_ids, past_lengths)):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, past_width - length : past_width + len(ids)] = 1
            positions[row] = torch.arange(length, length + new_width)
        past = None
        if past_width:
            past = cache_from_layers(
                self._left_pad([entry.layers if entry else None for _, entry in batch], past_lengths, past_width)
            )
        body = self.model.base_model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            **{self.body_cache_argument: past},
        )
        self.stats.forward_passes += 1
        self.stats.prefill_tokens += sum(len(ids) for ids in new_ids)
        last = torch.tensor([len(ids) - 1 for ids in new_ids], device=self.device)
        hidden = body.last_hidden_state[torch.arange(rows, device=self.device), last]
        logits = self.model.get_output_embeddings()(hidden).float()
        layers = layers_of_cache(output_cache(body))
        out: dict[int, KVEntry] = {}
        for row, ((index, _), length, ids) in enumerate(zip(batch, past_lengths, new_ids)):
            lo, hi = past_width - length, past_width + len(ids)
            entry = KVEntry(
                ids=prefixes[index],
                layers=[(k[row : row + 1, :, lo:hi].clone(), v[row : row + 1, :, lo:hi].clone()) for k, v in layers],
                next_logits=logits[row].clone(),
            )
            self.cache.encoded_tokens += len(ids)
            self.cache.reused_tokens += length
            if self.reuse_prefix:
                self.cache.put(entry)
            out[index] = entry
        return out

    def _left_pad(self, layer_lists, lengths: Sequence[int], width: int,
                  extra: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Stack per-row KV (rows of different lengths) into ``[rows, heads, width + extra, dim]``.

        Row r's KV sits right-aligned in the first ``width`` positions (left padding is zeros, masked);
        the ``extra`` positions are room for decoding. Rows that share an entry are copied from one source.
        """
        template = next(layers for layers in layer_lists if layers is not None)
        padded = []
        for layer, (key0, value0) in enumerate(template):
            shape = (len(layer_lists), key0.shape[1], width + extra, key0.shape[3])
            keys, values = key0.new_zeros(shape), value0.new_zeros(shape)
            for row, (layers, length) in enumerate(zip(layer_lists, lengths)):
                if layers is not None and length:
                    keys[row, :, width - length : width] = layers[layer][0][0]
                    values[row, :, width - length : width] = layers[layer][1][0]
            padded.append((keys, values))
        return padded

    # ------------------------------------------------------------------- decode
    def _decode(self, entries: Sequence[KVEntry], temperature: float, max_tokens: int) -> list[StepSample]:
        rows = len(entries)
        lengths = [len(entry.ids) for entry in entries]
        width = max(lengths)
        cache = preallocated_cache(self._left_pad([entry.layers for entry in entries], lengths, width, max_tokens), width)
        mask = torch.zeros((rows, width), dtype=torch.long, device=self.device)
        for row, length in enumerate(lengths):
            mask[row, width - length :] = 1
        logits = torch.stack([entry.next_logits for entry in entries]).to(self.device)
        position = torch.tensor(lengths, device=self.device)
        active = torch.arange(rows, device=self.device)  # original row index of each batch row
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logprobs = [0.0] * rows
        texts = [""] * rows
        hit_eos = [False] * rows
        finished = [False] * rows
        for step in range(max_tokens):
            next_tokens, token_logprobs = self._sample(logits, temperature)
            keep, sampled = [], 0
            for batch_row, original in enumerate(active.tolist()):
                if finished[original]:
                    continue
                sampled += 1
                token = int(next_tokens[batch_row])
                tokens[original].append(token)
                logprobs[original] += float(token_logprobs[batch_row])
                if token in self.eos_ids:
                    hit_eos[original] = finished[original] = True
                    continue
                texts[original] += self.piece_text[token]
                if self.step_format.delimiter in texts[original]:
                    finished[original] = True
                    continue
                keep.append(batch_row)
            self.stats.generated_tokens += sampled
            if not keep or step == max_tokens - 1:
                break
            if len(keep) <= len(active) // 2:  # compact the batch once half of it has finished
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                active, mask, position = active[index], mask[index], position[index]
                next_tokens = next_tokens[index]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = self.model(
                input_ids=next_tokens.unsqueeze(1),
                attention_mask=mask,
                position_ids=position.unsqueeze(1),
                use_cache=True,
                **{self.cache_argument: cache},
            )
            self.stats.forward_passes += 1
            cache = output_cache(out)
            logits = out.logits[:, -1].float()
            position = position + 1
        return [self._sample_record(tokens[r], logprobs[r], hit_eos[r]) for r in range(rows)]

    def _sample(self, logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Next tokens (greedy at temperature 0) and their log-probabilities under the raw model."""
        logprobs = torch.log_softmax(logits, dim=-1)
        if temperature <= 0:
            chosen = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            if self.top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True)
                drop = sorted_probs.cumsum(-1) - sorted_probs > self.top_p
                sorted_probs[drop] = 0.0
                probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
            chosen = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        return chosen, logprobs.gather(-1, chosen.unsqueeze(1)).squeeze(1)

    def _sample_record(self, token_ids: list[int], logprob: float, hit_eos: bool) -> StepSample:
        body = [token for token in token_ids if token not in self.eos_ids]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        delimiter = self.step_format.delimiter
        if delimiter in text:
            text = text.split(delimiter, 1)[0]
        text = text.strip()
        return StepSample(
            text=text,
            num_tokens=len(token_ids),
            logprob=logprob if math.isfinite(logprob) else -1e4,
            finished=hit_eos or is_final_step(text),
        )

    # ------------------------------------------------------------------ helpers
    def _piece_texts(self) -> list[str]:
        """Decoded text of every vocabulary id, for stop-string checks without re-decoding whole rows."""
        size = max(len(self.tokenizer), self.model.get_output_embeddings().weight.shape[0])
        return [self.tokenizer.decode([token]) if token < len(self.tokenizer) else "" for token in range(size)]
