"""The key/value cache for beam search: beams share their history instead of copying it.

Same interface as the plain :class:`~speechlobes.lobes.text_decoders.cache.KVCache` (see its
module), so decoders run on either unchanged; ``generate`` uses this one (an optional fast
path). What it does differently:

* the memory (encoder frames) and its keys/values stay per utterance; the rows of an utterance
  (its beams or samples) are folded onto them in attention, so nothing is copied per beam;
* self-attention keys/values are written in place into buffers with reserved room, and a beam
  reordering only rewrites a (rows, steps) table of which entry holds each row's step;
  self-attention then runs once per utterance over its entries, under a mask of each row's own
  history; entries no surviving row reads are compacted away.

Example:
    >>> cache = BeamCache(memory=torch.zeros(1, 5, 8))
    >>> q = k = v = torch.zeros(1, 2, 1, 4)            # (rows, heads, new steps, head_dim)
    >>> _ = cache.attend_self("layer 0", q, k, v)
    >>> cache.reorder(torch.tensor([0, 0, 0])).group  # one utterance, three beams: no copy
    3
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

from speechlobes.lobes.text_decoders.cache import KeysValues, memory_mask
from speechlobes.nnet.attention import attend


class BeamCache:
    """Keys/values of a decoding run, laid out for beam search (see the module docstring).

    Self-attention keys/values live in buffers shaped (units, heads, capacity, head_dim), rows =
    units * group, with room for ``capacity`` entries (doubled when outgrown): a decoding step
    writes its keys in place instead of concatenating into a fresh tensor. When the new keys
    require gradients the cache grows by concatenation instead, leaving earlier steps untouched
    for autograd.

    Beam search never copies the cache per row. On the first reordering that keeps every row
    within its utterance (also one that expands each utterance's row to its beams), the rows
    of an utterance become one ``group`` sharing one list of entries: each step appends
    ``group`` entries (one per row) and ``slots`` (rows, steps) records which entry holds each
    step of each row's history; a reordering only reorders
    ``slots``. Self-attention runs once per utterance over all its entries, masked to each
    row's own history (:meth:`grouped_keys_values`). Beams mostly share their early history, so
    many entries end up read by no row: once a third of an utterance's entries are dead the
    entries are compacted (the live ones move to the front, in order). Other reorderings (rows
    moving between utterances) gather the rows' histories into new buffers.
    """

    def __init__(
        self,
        memory: torch.Tensor | None = None,
        memory_lens: torch.Tensor | None = None,
        capacity: int = 0,
    ) -> None:
        self.memory = memory
        self.mask = memory_mask(memory, memory_lens)
        self.memory_kv: dict[Hashable, KeysValues] = {}
        self.capacity = capacity
        self.buffers: dict[Hashable, KeysValues] = {}
        self.lengths: dict[Hashable, int] = {}  # steps
        self.entries: dict[Hashable, int] = {}  # entries per unit (= steps while group == 1)
        self.group = 1
        self.slots: torch.Tensor | None = None  # (rows, steps) entry of each row's step
        self.recorded = 0  # steps whose slots are written
        self.group_mask: tuple[tuple[int, int, int], torch.Tensor] | None = None

    @property
    def length(self) -> int:
        """Number of positions already in the self-attention cache."""
        return next(iter(self.lengths.values()), 0)

    def attend_self(
        self,
        module: Hashable,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        dropout: float = 0.0,
        scale: float | None = None,
    ) -> torch.Tensor:
        """Causal attention of the new steps over the cached past plus themselves: once per
        utterance over its shared entries when the rows are grouped."""
        self.append(module, key, value)
        if self.group > 1:
            keys, values, mask = self.grouped_keys_values(module, query.shape[2])
            folded = fold_groups(query, self.group).flatten(2, 3)
            out = attend(folded, keys, values, mask, None, False, dropout, scale)
            return unfold_groups(out.unflatten(2, (self.group, -1)))
        keys, values = self.keys_values(module)
        causal = query.shape[2] > 1  # a single new query may see every key
        return attend(query, keys, values, None, None, causal, dropout, scale)

    def attend_memory(
        self,
        module: Hashable,
        query: torch.Tensor,
        project: Callable[[torch.Tensor], KeysValues],
        dropout: float = 0.0,
        scale: float | None = None,
    ) -> torch.Tensor:
        """Attention of the rows on the memory of their utterance: the memory's keys/values
        are projected once per utterance and the rows of an utterance folded onto them."""
        if module not in self.memory_kv:
            # contiguous per head: read at every step, they stream faster
            key, value = project(self.memory)
            self.memory_kv[module] = key.contiguous(), value.contiguous()
        key, value = self.memory_kv[module]
        rows, steps = query.shape[0], query.shape[2]
        group = rows // key.shape[0]
        if group * key.shape[0] != rows:
            raise ValueError(
                f"decoder rows ({rows}) are not a multiple of the encoder batch ({key.shape[0]})"
            )
        folded = fold_groups(query, group).flatten(2, 3)
        out = attend(folded, key, value, self.mask, None, False, dropout, scale)
        return unfold_groups(out.unflatten(2, (group, steps)))

    def append(self, layer: Hashable, key: torch.Tensor, value: torch.Tensor) -> None:
        """Add the new steps' keys/values (rows, heads, new, head_dim) of ``layer`` (an
        attention module, or any key naming one)."""
        tracked = torch.is_grad_enabled() and (key.requires_grad or value.requires_grad)
        if tracked:
            self.ungroup()
        new, group = key.shape[2], self.group
        start, first = self.lengths.get(layer, 0), self.entries.get(layer, 0)
        last = first + new * group
        self.lengths[layer], self.entries[layer] = start + new, last
        buffers = self.buffers.get(layer)
        if tracked:
            if buffers is not None:
                key = torch.cat([buffers[0][:, :, :first], key], dim=2)
                value = torch.cat([buffers[1][:, :, :first], value], dim=2)
            self.buffers[layer] = (key, value)
            return
        if buffers is None or last > buffers[0].shape[2]:
            buffers = self._grow(layer, first, last, key)
        for target, source in zip(buffers, (key, value), strict=True):
            window = target[:, :, first:last]
            if group > 1:  # entry first + step * group + row-in-group
                window = window.unflatten(2, (new, group))
                source = fold_groups(source, group).transpose(2, 3)
            window.copy_(source)
        if self.slots is not None and start + new > self.recorded:
            self._record_steps(first, new)

    def _grow(
        self, layer: Hashable, kept: int, needed: int, key: torch.Tensor | None = None
    ) -> KeysValues:
        """Room for ``needed`` entries per unit in ``layer``'s buffers, the first ``kept``
        entries kept; ``key`` (rows, heads, new, head_dim) shapes the first buffers."""
        old = self.buffers.get(layer)
        if old is None:
            rows, heads, _, head_dim = key.shape
            units, size, like = rows // self.group, 0, key
        else:
            units, heads, size, head_dim = old[0].shape
            like = old[0]
        size = max(needed, self.capacity * self.group, 2 * size)
        new = tuple(like.new_empty(units, heads, size, head_dim) for _ in range(2))
        if old is not None:
            for target, source in zip(new, old, strict=True):
                target[:, :, :kept] = source[:, :, :kept]
        self.buffers[layer] = new
        return new

    def _record_steps(self, first: int, new: int) -> None:
        """The ``new`` steps from entry ``first`` on were written by each row itself."""
        rows, size = self.slots.shape
        end = self.recorded + new
        if end > size:
            grown = self.slots.new_empty(rows, max(end, 2 * size))
            grown[:, : self.recorded] = self.slots[:, : self.recorded]
            self.slots = grown
        device = self.slots.device
        own = torch.arange(rows, device=device) % self.group
        steps = torch.arange(new, device=device) * self.group
        self.slots[:, self.recorded : end] = first + steps + own[:, None]
        self.recorded = end
        self.group_mask = None

    def keys_values(self, layer: Hashable) -> KeysValues:
        """All keys and values of ``layer`` so far, per row: (rows, heads, time, head_dim)."""
        key, value = self.buffers[layer]
        if self.slots is None:
            length = self.lengths[layer]
            return key[:, :, :length], value[:, :, :length]
        return self._row_histories(key, layer), self._row_histories(value, layer)

    def _row_histories(self, buffer: torch.Tensor, layer: Hashable) -> torch.Tensor:
        units, length = buffer.shape[0], self.lengths[layer]
        index = self.slots[:, :length].reshape(units, self.group * length)
        return unfold_groups(select_entries(buffer, index).unflatten(2, (self.group, length)))

    def grouped_keys_values(
        self, layer: Hashable, new: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every entry of each utterance, (units, heads, entries, head_dim) keys and values, and
        the additive mask (units, 1, group * new, entries) that lets the ``new`` last steps of
        each row (folded as by :func:`fold_groups`) see their own history only."""
        entries = self.entries[layer]
        key, value = self.buffers[layer]
        mask = self._mask(self.lengths[layer], new, entries, key.dtype)
        return key[:, :, :entries], value[:, :, :entries], mask

    def _mask(self, length: int, new: int, entries: int, dtype: torch.dtype) -> torch.Tensor:
        if self.group_mask is None or self.group_mask[0] != (length, new, entries):
            rows, device = self.slots.shape[0], self.slots.device
            steps = torch.arange(length, device=device)
            # the step at which each row reads each entry (`length`: never)
            read_at = torch.full((rows, entries), length, dtype=torch.long, device=device)
            read_at.scatter_(1, self.slots[:, :length], steps.expand(rows, length))
            visible = read_at[:, None, :] <= steps[length - new :, None]
            mask = torch.zeros(visible.shape, dtype=dtype, device=device)
            mask.masked_fill_(~visible, torch.finfo(dtype).min)
            units = rows // self.group
            self.group_mask = ((length, new, entries), mask.view(units, 1, -1, entries))
        return self.group_mask[1]

    def reorder(self, rows: torch.Tensor) -> BeamCache:
        """Keep row ``rows[i]`` as row ``i`` (beam reordering, expansion to beams).

        The memory and its keys/values are shared by the rows of an utterance and are not
        touched: rows must stay within their utterance.
        """
        layers = list(self.buffers)
        if not layers:
            return self
        self.group_mask = None
        if self._within_utterances(rows, self.buffers[layers[0]][0]):
            self.slots = self.slots.index_select(0, rows)
            self._drop_dead_entries(layers)
            return self
        self.ungroup()
        for layer in layers:
            self.buffers[layer] = tuple(b.index_select(0, rows) for b in self.buffers[layer])
        return self

    def _within_utterances(self, rows: torch.Tensor, keys: torch.Tensor) -> bool:
        """Whether ``rows`` gives each utterance several rows that all continue rows of that
        utterance; if so the cache is now grouped, ``group`` = the new rows per utterance."""
        if self.memory is None or keys.requires_grad:
            return False
        utterances = self.memory.shape[0]
        current = keys.shape[0] * self.group
        if current % utterances or rows.shape[0] % utterances:
            return False
        before, after = current // utterances, rows.shape[0] // utterances
        own = torch.arange(rows.shape[0], device=rows.device) // after
        if after == 1 or not bool((rows // before == own).all()):
            return False
        if self.slots is None:
            self._regroup(before)
        self.group = after
        if after > before:  # room for `after` entries per step now, not by doubling later
            for layer, buffers in self.buffers.items():
                if buffers[0].shape[2] < self.capacity * after:
                    self._grow(layer, self.entries[layer], self.capacity * after)
        return True

    def _regroup(self, group: int) -> None:
        """Make the per-row buffers the entries of utterances of ``group`` rows: interleaved
        copies of the steps so far, or the buffers themselves with one row per utterance."""
        for layer, buffers in self.buffers.items():
            if group > 1:
                rows, heads, size, head_dim = buffers[0].shape
                length = self.lengths[layer]
                shape = (rows // group, heads, size * group, head_dim)
                grouped = tuple(b.new_empty(shape) for b in buffers)
                for target, source in zip(grouped, buffers, strict=True):
                    target[:, :, : length * group].unflatten(2, (length, group)).copy_(
                        fold_groups(source[:, :, :length], group).transpose(2, 3)
                    )
                self.buffers[layer] = grouped
                self.entries[layer] = length * group
        keys = next(iter(self.buffers.values()))[0]
        self.group = group
        rows = keys.shape[0] * group
        steps = max(self.capacity, self.length)
        self.slots = torch.empty(rows, steps, dtype=torch.long, device=keys.device)
        self.recorded = 0
        self._record_steps(0, self.length)

    def _drop_dead_entries(self, layers: list[Hashable]) -> None:
        """Compact the entries once a third of some utterance's entries are read by no row."""
        length, entries = self.lengths[layers[0]], self.entries[layers[0]]
        if any((self.lengths[i], self.entries[i]) != (length, entries) for i in layers):
            return  # layers mid-step: wait until every layer has the same entries
        group, device = self.group, self.slots.device
        units = self.slots.shape[0] // group
        live = torch.zeros(units, entries, dtype=torch.bool, device=device)
        live.scatter_(1, self.slots[:, :length].reshape(units, group * length), True)
        kept = int(live.sum(dim=1).max())
        if 3 * kept > 2 * entries:
            return
        # live entries first, in their order; shorter utterances keep some dead ones as padding
        order = torch.sort((~live).to(torch.uint8), dim=1, stable=True).indices[:, :kept]
        rank = torch.empty(units, entries, dtype=torch.long, device=device)
        rank.scatter_(1, order, torch.arange(kept, device=device).expand(units, kept))
        history = self.slots[:, :length]
        history.copy_(rank.repeat_interleave(group, dim=0).gather(1, history))
        for layer in layers:
            for buffer in self.buffers[layer]:
                buffer[:, :, :kept] = select_entries(buffer, order)
            self.entries[layer] = kept

    def ungroup(self) -> None:
        """Give every row its own copy of its history (undoes the beam groups)."""
        if self.slots is None:
            return
        for layer, buffers in self.buffers.items():
            self.buffers[layer] = tuple(self._row_histories(b, layer) for b in buffers)
            self.entries[layer] = self.lengths[layer]
        self.group, self.slots, self.recorded, self.group_mask = 1, None, 0, None


def select_entries(buffer: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Entries ``index`` (units, n) of each unit of a contiguous cache buffer (units, heads,
    capacity, head_dim) -> (units, heads, n, head_dim), copied as whole head_dim rows."""
    units, heads, capacity, head_dim = buffer.shape
    first = torch.arange(units * heads, device=index.device).view(units, heads, 1) * capacity
    rows = (first + index[:, None, :]).flatten()
    return buffer.view(-1, head_dim).index_select(0, rows).view(units, heads, -1, head_dim)


def fold_groups(x: torch.Tensor, group: int) -> torch.Tensor:
    """(rows, heads, steps, head_dim), rows = units * group -> (units, heads, group, steps,
    head_dim): the rows of a unit (an utterance's beams) side by side."""
    rows, heads, steps, head_dim = x.shape
    return x.view(rows // group, group, heads, steps, head_dim).transpose(1, 2)


def unfold_groups(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fold_groups`."""
    units, heads, group, steps, head_dim = x.shape
    return x.transpose(1, 2).reshape(units * group, heads, steps, head_dim)
