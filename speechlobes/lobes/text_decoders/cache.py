"""The key/value cache of a decoding run: the plain default.

A decoder block is called as ``block(x, memory, mask, cache)``; its attention modules hand
their new keys and values to the cache and let it attend, so a cache decides how the past is
kept without the model code changing. This is the simple one: per attention module, the
self-attention keys/values of every row, grown by concatenation; the keys/values of the memory
(the encoder frames), computed once; reordering rows (beam search) is ``index_select`` on all
of them. :class:`~speechlobes.lobes.text_decoders.beam_cache.BeamCache` is the fast one for beam
search, behind the same interface.

The interface (what attention modules and the search use):

* ``cache.memory`` (rows, frames, width) or None, ``cache.mask`` (rows, 1, 1, frames) additive
  padding bias or None: the memory the cache was made for;
* ``cache.length``: positions already cached (the next token's position);
* ``cache.attend_self(module, q, k, v, dropout, scale)``: append ``k``, ``v`` (rows, heads,
  new, head_dim) to ``module``'s entries and attend causally over all of them;
* ``cache.attend_memory(module, q, project, dropout, scale)``: attend over the memory's keys and
  values, ``project(memory) -> (k, v)`` computed on the first call only;
* ``cache.reorder(rows)``: keep row ``rows[i]`` as row ``i``.

Example:
    >>> cache = KVCache()
    >>> q = k = v = torch.zeros(2, 4, 1, 8)                 # (rows, heads, new steps, head_dim)
    >>> cache.attend_self("layer 0", q, k, v).shape, cache.length
    (torch.Size([2, 4, 1, 8]), 1)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

from speechlobes.nnet.attention import additive_mask, attend
from speechlobes.nnet.lengths import check_relative_lengths, relative_padding_mask

KeysValues = tuple[torch.Tensor, torch.Tensor]


def memory_mask(
    memory: torch.Tensor | None, memory_lens: torch.Tensor | None
) -> torch.Tensor | None:
    """Relative lengths of the memory frames -> additive bias (batch, 1, 1, frames) hiding the
    padded ones, or None when nothing is padded (attention then runs without a mask; under
    ``torch.compile`` the bias is always built, since that test would split the graph)."""
    if memory is None or memory_lens is None:
        return None
    check_relative_lengths(memory_lens, memory.shape[0], "memory_lens")
    frames = memory.shape[1]
    padding = relative_padding_mask(memory_lens.to(memory.device), frames)
    if not torch.compiler.is_compiling() and not bool(padding.any()):
        return None
    return additive_mask(padding, None, False, 1, frames, memory.dtype, memory.device)


class KVCache:
    """Keys and values of every row, concatenated step by step (see the module docstring).

    Args:
        memory: (batch, frames, width) encoder frames the decoder attends to, or None.
        memory_lens: their relative lengths (None: all frames valid).
    """

    def __init__(
        self, memory: torch.Tensor | None = None, memory_lens: torch.Tensor | None = None
    ) -> None:
        self.memory = memory
        self.mask = memory_mask(memory, memory_lens)
        self.self_kv: dict[Hashable, KeysValues] = {}
        self.memory_kv: dict[Hashable, KeysValues] = {}

    @property
    def length(self) -> int:
        """Positions already in the self-attention cache."""
        return next((k.shape[2] for k, _ in self.self_kv.values()), 0)

    def append(self, module: Hashable, key: torch.Tensor, value: torch.Tensor) -> KeysValues:
        """Add the new steps' keys/values (rows, heads, new, head_dim) of ``module``; returns
        all of them so far."""
        if module in self.self_kv:
            old_key, old_value = self.self_kv[module]
            key, value = torch.cat([old_key, key], dim=2), torch.cat([old_value, value], dim=2)
        self.self_kv[module] = key, value
        return key, value

    def attend_self(
        self,
        module: Hashable,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        dropout: float = 0.0,
        scale: float | None = None,
    ) -> torch.Tensor:
        """Causal attention of the new steps over the cached past plus themselves."""
        keys, values = self.append(module, key, value)
        return attend(query, keys, values, causal=query.shape[2] > 1, dropout=dropout, scale=scale)

    def attend_memory(
        self,
        module: Hashable,
        query: torch.Tensor,
        project: Callable[[torch.Tensor], KeysValues],
        dropout: float = 0.0,
        scale: float | None = None,
    ) -> torch.Tensor:
        """Attention over the memory, its keys/values projected once per module."""
        if module not in self.memory_kv:
            self.memory_kv[module] = project(self.memory)
        keys, values = self.memory_kv[module]
        return attend(query, keys, values, bias=self.mask, dropout=dropout, scale=scale)

    def reorder(self, rows: torch.Tensor) -> KVCache:
        """Keep row ``rows[i]`` as row ``i`` (beam reordering, expansion to beams)."""
        for store in (self.self_kv, self.memory_kv):
            for module, (key, value) in store.items():
                store[module] = key.index_select(0, rows), value.index_select(0, rows)
        if self.memory is not None:
            self.memory = self.memory.index_select(0, rows)
        if self.mask is not None:
            self.mask = self.mask.index_select(0, rows)
        return self
