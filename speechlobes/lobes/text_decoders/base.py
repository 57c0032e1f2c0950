"""What every text decoder of speechlobes shares: config I/O, the KV cache, the two attentions.

The decoders (BERT-as-decoder, GPT-2, BART/MBart, our native Transformer decoder) keep their own
parameter names, so that Hugging Face state-dict keys map 1:1, and they all speak the same
interface::

    decoder(input_ids, encoder_hidden_states, encoder_padding_mask, cache=...) -> DecoderOutput
    decoder.new_cache(encoder_hidden_states, encoder_padding_mask) -> DecoderCache

A :class:`DecoderCache` holds, per layer, the self-attention keys/values (they grow by one step
at a time) and the cross-attention keys/values, computed ONCE from the encoder output. Search
rows may be a multiple of the encoder batch (beams, several samples per utterance): row ``r``
then belongs to utterance ``r // group`` and cross-attention folds the group into the query
axis, so the encoder keys are never copied per beam.

Example:
    >>> cache = DecoderCache(num_layers=1)
    >>> k = v = torch.zeros(2, 4, 1, 8)                 # (rows, heads, new steps, head_dim)
    >>> cache.append(0, k, v)
    >>> cache.keys_values(0)[0].shape, cache.length
    (torch.Size([2, 4, 1, 8]), 1)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.lobes.hf_io import (
    check_keys,
    load_hf_state_dict,
    read_config,
    save_hf_folder,
)
from speechlobes.lobes.text_decoders.packing import Linear, pack_weight, packed_linear
from speechlobes.nnet.attention import (
    additive_mask,
    attend,
    attention_weights,
    merge_heads,
    split_fused_heads,
    split_heads,
)

logger = logging.getLogger(__name__)


class DecoderConfigIO:
    """Mixin for config dataclasses: Hugging Face ``config.json`` in and out.

    Keys the dataclass does not model are kept in ``extra`` and written back unchanged, so a
    foreign config survives a load/save round trip.
    """

    model_type = ""

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        extra = {k: v for k, v in values.items() if k not in names and k != "model_type"}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        extra = values.pop("extra")
        return {**extra, **values, "model_type": self.model_type}

    @classmethod
    def from_json(cls, path: str | Path):
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation(name: str):
    """The activation function a Hugging Face config names (``hidden_act`` and friends)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


@dataclass
class DecoderOutput:
    """What a decoder returns. ``hidden_states[0]`` is the embedding output and the last entry
    the input of the LM head; attentions are (batch, heads, query, key) per layer."""

    logits: torch.Tensor
    cache: DecoderCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


class DecoderCache:
    """Per-layer keys/values of a decoding run.

    Self-attention keys/values live in buffers shaped (units, heads, capacity, head_dim), rows =
    units * group, with room for ``capacity`` entries (doubled when outgrown): a decoding step
    writes its keys in place instead of concatenating into a fresh tensor. When the new keys
    require gradients the cache grows by concatenation instead, leaving earlier steps untouched
    for autograd.

    Beam search never copies the cache per row. On the first reordering that keeps every row
    within its utterance (also one that expands each utterance's row to its beams), the rows
    of an utterance become one ``group`` sharing one list of entries: each step appends ``group`` entries (one per row) and ``slots`` (rows, steps)
    records which entry holds each step of each row's history; a reordering only reorders
    ``slots``. Self-attention runs once per utterance over all its entries, masked to each
    row's own history (:meth:`grouped_keys_values`). Beams mostly share their early history, so
    many entries end up read by no row: once a third of an utterance's entries are dead the
    entries are compacted (the live ones move to the front, in order). Other reorderings (rows
    moving between utterances) gather the rows' histories into new buffers.
    """

    def __init__(self, num_layers: int, capacity: int = 0) -> None:
        self.capacity = capacity
        self.buffers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self.lengths = [0] * num_layers  # steps
        self.entries = [0] * num_layers  # entries per unit (= steps while group == 1)
        self.group = 1
        self.slots: torch.Tensor | None = None  # (rows, steps) entry of each row's step
        self.recorded = 0  # steps whose slots are written
        self.group_mask: tuple[tuple[int, int, int], torch.Tensor] | None = None
        self.cross_keys: list[torch.Tensor | None] = [None] * num_layers
        self.cross_values: list[torch.Tensor | None] = [None] * num_layers
        self.cross_bias: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """Number of positions already in the self-attention cache."""
        return self.lengths[0]

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Add the new steps' keys/values (rows, heads, new, head_dim) of ``layer``."""
        tracked = torch.is_grad_enabled() and (key.requires_grad or value.requires_grad)
        if tracked:
            self.ungroup()
        new, group = key.shape[2], self.group
        start, first = self.lengths[layer], self.entries[layer]
        last = first + new * group
        self.lengths[layer], self.entries[layer] = start + new, last
        buffers = self.buffers[layer]
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
        self, layer: int, kept: int, needed: int, key: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Room for ``needed`` entries per unit in ``layer``'s buffers, the first ``kept``
        entries kept; ``key`` (rows, heads, new, head_dim) shapes the first buffers."""
        old = self.buffers[layer]
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

    def keys_values(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All keys and values of ``layer`` so far, per row: (rows, heads, time, head_dim)."""
        key, value = self.buffers[layer]
        if self.slots is None:
            length = self.lengths[layer]
            return key[:, :, :length], value[:, :, :length]
        return self._row_histories(key, layer), self._row_histories(value, layer)

    def _row_histories(self, buffer: torch.Tensor, layer: int) -> torch.Tensor:
        units, length = buffer.shape[0], self.lengths[layer]
        index = self.slots[:, :length].reshape(units, self.group * length)
        return unfold_groups(select_entries(buffer, index).unflatten(2, (self.group, length)))

    def grouped_keys_values(
        self, layer: int, new: int
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

    def reorder(self, rows: torch.Tensor) -> DecoderCache:
        """Keep row ``rows[i]`` as row ``i`` (beam reordering, expansion to beams).

        Cross-attention entries are shared by the rows of an utterance and are not touched:
        rows must stay within their utterance.
        """
        layers = [i for i, buffers in enumerate(self.buffers) if buffers is not None]
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
        if self.cross_keys[0] is None or keys.requires_grad:
            return False
        utterances = self.cross_keys[0].shape[0]
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
            for layer, buffers in enumerate(self.buffers):
                if buffers is not None and buffers[0].shape[2] < self.capacity * after:
                    self._grow(layer, self.entries[layer], self.capacity * after)
        return True

    def _regroup(self, group: int) -> None:
        """Make the per-row buffers the entries of utterances of ``group`` rows: interleaved
        copies of the steps so far, or the buffers themselves with one row per utterance."""
        for layer, buffers in enumerate(self.buffers):
            if buffers is not None and group > 1:
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
        keys = next(b[0] for b in self.buffers if b is not None)
        self.group = group
        rows = keys.shape[0] * group
        steps = max(self.capacity, self.length)
        self.slots = torch.empty(rows, steps, dtype=torch.long, device=keys.device)
        self.recorded = 0
        self._record_steps(0, self.length)

    def _drop_dead_entries(self, layers: list[int]) -> None:
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
        for layer, buffers in enumerate(self.buffers):
            if buffers is not None:
                self.buffers[layer] = tuple(self._row_histories(b, layer) for b in buffers)
                self.entries[layer] = self.lengths[layer]
        self.group, self.slots, self.recorded, self.group_mask = 1, None, 0, None


def padding_bias(padding_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(batch, keys) bool mask, True = padded -> additive bias (batch, 1, 1, keys).

    None when nothing is padded, so attention runs without a mask.
    """
    if padding_mask is None or not bool(padding_mask.any()):
        return None
    keys = padding_mask.shape[-1]
    return additive_mask(padding_mask, None, False, 1, keys, dtype, padding_mask.device)


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


def self_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cache: DecoderCache | None,
    layer: int,
    padding_mask: torch.Tensor | None,
    dropout: float,
    scale: float | None,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal self-attention over the cached past plus the new steps.

    query/key/value: (rows, heads, new, head_dim); padding_mask: (rows, past + new), True = padded.
    Returns the attended values (rows, heads, new, head_dim) and, on request, the weights.
    """
    if cache is not None:
        cache.append(layer, key, value)
        if cache.group > 1 and padding_mask is None and not need_weights:
            keys, values, mask = cache.grouped_keys_values(layer, query.shape[2])
            folded = fold_groups(query, cache.group).flatten(2, 3)
            out = attend(folded, keys, values, mask, None, False, dropout, scale)
            return unfold_groups(out.unflatten(2, (cache.group, -1))), None
        key, value = cache.keys_values(layer)
    causal = query.shape[2] > 1  # a single new query may see every key
    out = attend(query, key, value, None, padding_mask, causal, dropout, scale)
    weights = (
        attention_weights(query, key, None, padding_mask, causal, scale) if need_weights else None
    )
    return out, weights


def cross_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    bias: torch.Tensor | None,
    dropout: float,
    scale: float | None,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of decoder rows on encoder frames, the encoder batch shared by row groups.

    query: (rows, heads, steps, head_dim) with rows = group * batch; key/value: (batch, heads,
    frames, head_dim); bias: (batch, 1, 1, frames) additive padding bias or None.
    """
    rows, steps = query.shape[0], query.shape[2]
    group = rows // key.shape[0]
    if group * key.shape[0] != rows:
        raise ValueError(
            f"decoder rows ({rows}) are not a multiple of the encoder batch ({key.shape[0]})"
        )
    folded = fold_groups(query, group).flatten(2, 3)
    out = attend(folded, key, value, bias, None, False, dropout, scale)
    out = unfold_groups(out.unflatten(2, (group, steps)))
    weights = None
    if need_weights:
        weights = attention_weights(folded, key, bias, None, False, scale)
        weights = weights.unflatten(2, (group, steps)).transpose(1, 2).flatten(0, 1)
    return out, weights


def init_weights(module: nn.Module, std: float) -> None:
    """The usual text-model initialisation: N(0, std) matrices, zero biases, unit norms."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, std=std)
            if sub.padding_idx is not None:
                with torch.no_grad():
                    sub.weight[sub.padding_idx].zero_()
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


def load_decoder_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    source: str,
    tied_keys: tuple[str, ...] = (),
    ignored_prefixes: tuple[str, ...] = (),
    optional_prefixes: tuple[str, ...] = (),
) -> None:
    """Load a (renamed) checkpoint into a decoder, strictly, except for cross-attention.

    Cross-attention weights absent from the checkpoint (a plain language model made into a
    decoder) keep their fresh initialisation and are logged, and so do missing keys under
    ``optional_prefixes`` (an LM head absent from a base-model checkpoint); tied keys may be
    absent and keys under ``ignored_prefixes`` are skipped. Any other missing or unexpected key,
    or a shape mismatch, is an error naming ``source``.
    """
    ignore = [f"^{re.escape(k)}$" for k in tied_keys] + [
        f"^{re.escape(p)}" for p in ignored_prefixes
    ]
    missing, unexpected = check_keys(model, state_dict, strict=False, ignore=ignore, source=source)
    fresh = [
        k for k in missing if "cross" in k or "encoder_attn" in k or k.startswith(optional_prefixes)
    ]
    absent = [k for k in missing if k not in fresh]
    if absent or unexpected:
        raise ValueError(
            f"{source} does not match {type(model).__name__}: missing {absent}, unexpected "
            f"{unexpected}. Check config.json against the weights."
        )
    if fresh:
        logger.info(
            "%s: %d cross-attention / head tensors are not in the checkpoint and were freshly "
            "initialised (fine-tune before use): %s",
            source,
            len(fresh),
            ", ".join(fresh),
        )
    known = model.state_dict()
    model.load_state_dict({k: v for k, v in state_dict.items() if k in known}, strict=False)


class Attention(nn.Module):
    """Multi-head attention with separate ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (BART
    naming), used as causal self-attention with a cache or, with ``cross``, as cross-attention.

    Under :func:`~speechlobes.lobes.text_decoders.packing.prepacked_linears` self-attention projects q|k|v in
    one product on a packed copy of the three weights.
    """

    packed_qkv: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __init__(
        self,
        width: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        cross: bool = False,
    ):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by {num_heads} attention heads")
        self.num_heads = num_heads
        self.dropout = dropout
        self.cross = cross
        self.q_proj = Linear(width, width, bias=bias)
        self.k_proj = Linear(width, width, bias=bias)
        self.v_proj = Linear(width, width, bias=bias)
        self.out_proj = Linear(width, width, bias=bias)

    def pack(self, rows: int) -> None:
        """Packed weights for decoding steps: q|k|v fused (self-attention) or q alone (cross:
        its keys and values are computed once per utterance), and the output projection."""
        self.out_proj.pack(rows)
        if self.cross:
            self.q_proj.pack(rows)
            return
        projections = (self.q_proj, self.k_proj, self.v_proj)
        weight = pack_weight(torch.cat([p.weight for p in projections]), rows)
        if weight is not None:
            biases = None if self.q_proj.bias is None else [p.bias.detach() for p in projections]
            self.packed_qkv = (weight, None if biases is None else torch.cat(biases))

    def unpack(self) -> None:
        self.packed_qkv = None
        for projection in (self.q_proj, self.out_proj):
            projection.unpack()

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (rows, steps, width) -> queries, keys, values (rows, heads, steps, head_dim)."""
        if self.packed_qkv is not None and x.dtype == torch.float32:
            return split_fused_heads(packed_linear(x, *self.packed_qkv), 3, self.num_heads)
        return tuple(
            split_heads(p(x), self.num_heads) for p in (self.q_proj, self.k_proj, self.v_proj)
        )

    def attend_self(
        self,
        x: torch.Tensor,
        layer: int,
        cache: DecoderCache | None,
        padding_mask: torch.Tensor | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (rows, steps, width) -> (rows, steps, width), causal over cache + x."""
        q, k, v = self.project_qkv(x)
        dropout = self.dropout if self.training else 0.0
        out, weights = self_attention(
            q, k, v, cache, layer, padding_mask, dropout, None, need_weights
        )
        return self.out_proj(merge_heads(out)), weights

    def cross_kv(self, encoder_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (batch, frames, width) -> keys and values (batch, heads, frames, d)."""
        return (
            split_heads(self.k_proj(encoder_states), self.num_heads),
            split_heads(self.v_proj(encoder_states), self.num_heads),
        )

    def attend_cross(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        bias: torch.Tensor | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = split_heads(self.q_proj(x), self.num_heads)
        dropout = self.dropout if self.training else 0.0
        out, weights = cross_attention(q, kv[0], kv[1], bias, dropout, None, need_weights)
        return self.out_proj(merge_heads(out)), weights


class TextDecoder(nn.Module):
    """Base of every text decoder: the layer loop, the cache and the folder I/O.

    A subclass defines ``config_class``, the ``blocks`` ModuleList (each block is called as
    ``block(x, index, cache, self_padding, cross_kv, cross_bias, need_weights)`` and returns
    ``(x, self_weights, cross_weights)`` and has ``cross_kv(encoder_states)``), ``embed(ids,
    past_length)``, ``lm_logits(x)`` and, if it has one, ``final_norm(x)``.
    """

    config_class: type = DecoderConfigIO
    architecture = ""
    tied_keys: tuple[str, ...] = ()
    ignored_prefixes: tuple[str, ...] = ()
    optional_prefixes: tuple[str, ...] = ()

    blocks: nn.ModuleList

    def embed(self, input_ids: torch.Tensor, past_length: int) -> torch.Tensor:
        raise NotImplementedError

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def hidden_size(self) -> int:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def new_cache(
        self,
        encoder_hidden_states: torch.Tensor,
        encoder_padding_mask: torch.Tensor | None = None,
        capacity: int = 0,
    ) -> DecoderCache:
        """A cache whose cross-attention keys/values are computed now, once; ``capacity``:
        the steps to reserve room for (the prompt plus the tokens to generate)."""
        cache = DecoderCache(len(self.blocks), capacity)
        for i, block in enumerate(self.blocks):
            # contiguous per head: read at every step, they stream faster (~3 % of a step)
            keys, values = block.cross_kv(encoder_hidden_states)
            cache.cross_keys[i], cache.cross_values[i] = keys.contiguous(), values.contiguous()
        cache.cross_bias = padding_bias(encoder_padding_mask, encoder_hidden_states.dtype)
        return cache

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_padding_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> DecoderOutput:
        """Logits for ``input_ids`` (rows, steps) that follow the cached positions.

        encoder_padding_mask: (batch, frames), True = padded. attention_mask: (rows, past +
        steps) Hugging Face style, 1 = real token. Rows may be a multiple of the encoder batch.
        """
        if cache is not None and cache.cross_keys[0] is None and encoder_hidden_states is not None:
            filled = self.new_cache(encoder_hidden_states, encoder_padding_mask)
            cache.cross_keys, cache.cross_values = filled.cross_keys, filled.cross_values
            cache.cross_bias = filled.cross_bias
        if cache is not None and cache.cross_keys[0] is not None:
            cross_kv = list(zip(cache.cross_keys, cache.cross_values, strict=True))
            cross_bias = cache.cross_bias
        elif encoder_hidden_states is not None:
            cross_kv = [block.cross_kv(encoder_hidden_states) for block in self.blocks]
            cross_bias = padding_bias(encoder_padding_mask, encoder_hidden_states.dtype)
        else:
            cross_kv, cross_bias = [None] * len(self.blocks), None
        self_padding = None if attention_mask is None else attention_mask == 0
        x = self.embed(input_ids, 0 if cache is None else cache.length)
        states, self_weights, cross_weights = [x], [], []
        for i, block in enumerate(self.blocks):
            x, weights, cross = block(
                x, i, cache, self_padding, cross_kv[i], cross_bias, output_attentions
            )
            states.append(x)
            self_weights.append(weights)
            cross_weights.append(cross)
        x = self.final_norm(x)
        states[-1] = x
        return DecoderOutput(
            logits=self.lm_logits(x),
            cache=cache,
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(self_weights) if output_attentions else None,
            cross_attentions=tuple(cross_weights)
            if output_attentions and cross_kv[0] is not None
            else None,
        )

    def rename_checkpoint_keys(self, state_dict: dict[str, torch.Tensor]) -> dict:
        """Map the keys of a foreign checkpoint (other head classes) onto ours; identity here."""
        return state_dict

    def load_checkpoint(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load a checkpoint of this model (any supported head class), see load_decoder_state_dict."""
        load_decoder_state_dict(
            self,
            self.rename_checkpoint_keys(dict(state_dict)),
            source,
            self.tied_keys,
            self.ignored_prefixes,
            self.optional_prefixes,
        )

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """Our state dict without the tied copies (what Hugging Face writes)."""
        return {k: v for k, v in self.state_dict().items() if k not in self.tied_keys}

    @classmethod
    def config_from_dict(cls, values: dict):
        """The config object for a ``config.json`` dict (checks the model type)."""
        model_type = values.get("model_type", cls.config_class.model_type)
        if model_type != cls.config_class.model_type:
            raise ValueError(
                f"{cls.__name__} reads model_type {cls.config_class.model_type!r}, the config "
                f"says {model_type!r}"
            )
        return cls.config_class.from_dict(values)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **config_overrides):
        """Load a Hugging Face folder of this model (any of its head classes).

        ``config_overrides`` update config fields first (e.g. ``add_cross_attention=True``);
        missing cross-attention weights are created and logged.
        """
        config = cls.config_from_dict({**read_config(folder), **config_overrides})
        model = cls(config)
        model.load_checkpoint(load_hf_state_dict(folder), str(folder))
        return model

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` as transformers' causal-LM class would."""
        config = {**self.config.to_dict(), "architectures": [self.architecture]}
        save_hf_folder(folder, config, self.checkpoint_state_dict())
