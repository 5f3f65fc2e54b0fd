"""A memory-bounded cache of prefix KV states, keyed by token ids, with longest-prefix lookup.

Tree search expands the same prefixes again and again: the k children of a node share the node's prefix,
and every later expansion below the node starts with it. Each entry holds the per-layer key/value tensors of
one token sequence plus the next-token logits after it; a token trie finds the longest cached prefix of a
new sequence, so only the remaining tokens are encoded. Entries are evicted least-recently-used once the
cache holds more than ``max_bytes``.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["KVEntry", "PrefixKVCache", "cache_argument", "cache_from_layers", "layers_of_cache", "output_cache",
           "preallocated_cache"]

_END = -1  # trie key marking "an entry ends here"


@dataclass
class KVEntry:
    """KV states of ``ids`` (per layer, shapes ``[1, kv_heads, len(ids), head_dim]``) and the logits after it."""

    ids: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    next_logits: torch.Tensor

    @property
    def nbytes(self) -> int:
        size = self.next_logits.numel() * self.next_logits.element_size()
        for key, value in self.layers:
            size += key.numel() * key.element_size() + value.numel() * value.element_size()
        return size


class PrefixKVCache:
    """LRU cache of `KVEntry` by token ids, bounded by ``max_bytes``; `longest_prefix` walks a token trie."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[int, ...], KVEntry] = OrderedDict()
        self.bytes = 0
        self.trie: dict = {}
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0
        self.encoded_tokens = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, ids: tuple[int, ...]) -> KVEntry | None:
        entry = self.entries.get(ids)
        if entry is not None:
            self.entries.move_to_end(ids)
        return entry

    def longest_prefix(self, ids: Sequence[int]) -> KVEntry | None:
        """The cached entry whose ids are the longest prefix of ``ids`` (``ids`` itself included), or None."""
        node, best_length = self.trie, 0
        for depth, token in enumerate(ids, start=1):
            node = node.get(token)
            if node is None:
                break
            if _END in node:
                best_length = depth
        if best_length == 0:
            return None
        return self.get(tuple(ids[:best_length]))

    def put(self, entry: KVEntry) -> None:
        """Insert (or refresh) an entry, then evict least-recently-used ones beyond the byte budget."""
        if entry.ids in self.entries:
            self.entries.move_to_end(entry.ids)
            return
        size = entry.nbytes
        if size > self.max_bytes:
            return
        self.entries[entry.ids] = entry
        self.bytes += size
        node = self.trie
        for token in entry.ids:
            node = node.setdefault(token, {})
        node[_END] = True
        while self.bytes > self.max_bytes and self.entries:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        ids, entry = self.entries.popitem(last=False)
        self.bytes -= entry.nbytes
        path = [self.trie]
        for token in ids:
            path.append(path[-1][token])
        path[-1].pop(_END, None)
        # Prune trie nodes that lead to no entry any more.
        for depth in range(len(ids), 0, -1):
            if path[depth]:
                break
            del path[depth - 1][ids[depth - 1]]

    def clear(self) -> None:
        self.entries.clear()
        self.trie = {}
        self.bytes = 0

    def stats(self) -> dict[str, float]:
        total = self.reused_tokens + self.encoded_tokens
        return {
            "entries": len(self.entries),
            "megabytes": round(self.bytes / 2**20, 2),
            "hits": self.hits,
            "misses": self.misses,
            "reused_token_fraction": round(self.reused_tokens / total, 4) if total else 0.0,
        }


def cache_from_layers(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """A transformers `DynamicCache` holding the given per-layer (key, value) tensors."""
    from transformers import DynamicCache

    try:
        return DynamicCache(ddp_cache_data=list(layers))
    except TypeError:  # older transformers
        return DynamicCache.from_legacy_cache(tuple(layers))


def cache_argument(model) -> str:
    """The keyword under which ``model.forward`` takes a KV cache.

    transformers 5.2x renamed ``past_key_values`` to ``cache`` (the old name warns and goes away in 5.40);
    vLLM's pins keep GPU installs on older releases that only know ``past_key_values``.
    """
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(output):
    """The KV cache a forward pass returned, under its new name (``cache``) or its old one."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def layers_of_cache(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (key, value) tensors of a transformers cache object (or a legacy tuple)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(key, value) for key, value in cache]


def preallocated_cache(buffers: Sequence[tuple[torch.Tensor, torch.Tensor]], length: int):
    """A `DynamicCache` whose layers write new tokens in place into preallocated buffers.

    ``buffers`` are per-layer ``[rows, heads, capacity, dim]`` tensors whose first ``length`` positions hold
    the prefix KV. The stock dynamic layer concatenates on every decode step (a copy of the whole KV per
    token); here a step writes one column. Falls back to a plain cache on transformers versions without
    cache layers.
    """
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # older transformers: no layer objects
        return cache_from_layers([(k[:, :, :length], v[:, :, :length]) for k, v in buffers])

    class _InPlaceLayer(DynamicLayer):
        def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor):
            super().__init__()
            self.key_buffer, self.value_buffer, self.length = key_buffer, value_buffer, length
            self.dtype, self.device, self.is_initialized = key_buffer.dtype, key_buffer.device, True
            self._view()

        def _view(self) -> None:
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]

        def update(self, key_states, value_states, *args, **kwargs):
            new = key_states.shape[-2]
            if self.length + new > self.key_buffer.shape[2]:  # out of room: grow like the stock layer
                self.key_buffer = torch.cat([self.key_buffer, torch.zeros_like(self.key_buffer)], dim=2)
                self.value_buffer = torch.cat([self.value_buffer, torch.zeros_like(self.value_buffer)], dim=2)
            self.key_buffer[:, :, self.length : self.length + new] = key_states
            self.value_buffer[:, :, self.length : self.length + new] = value_states
            self.length += new
            self._view()
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self._view()

    cache = DynamicCache()
    cache.layers = [_InPlaceLayer(k, v) for k, v in buffers]
    return cache
