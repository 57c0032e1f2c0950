"""Bucketed relative-position attention bias (T5 style) and its GRU-like query gate.

BEATs and WavLM add to every attention score a learned per-head scalar chosen by the
*bucket* of the relative position ``r = key_index - query_index``. Buckets are exact for
small distances and logarithmic up to ``max_distance``; bidirectional bucketing spends half
of the buckets on keys after the query. The bucket map for a given length never changes, so
:func:`relative_position_buckets` caches it per (lengths, bucketing, device).

The gate (``gru_rel_pos``) rescales that bias per query and head from the projected query
itself: ``gate = a * (b * scale[h] - 1) + 2`` with ``a, b = sigmoid`` of two sums of four
linear outputs, and the score bias of query ``i`` becomes ``gate[i] * bias[i, j]``.

Example:
    >>> relative_position_buckets(4, 4, num_buckets=32, max_distance=40)
    tensor([[ 0, 17, 18, 19],
            [ 1,  0, 17, 18],
            [ 2,  1,  0, 17],
            [ 3,  2,  1,  0]])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from speechlobes.utils.tensor_cache import tensor_cache


def bucket_relative_positions(
    relative_position: torch.Tensor, num_buckets: int, max_distance: int, bidirectional: bool = True
) -> torch.Tensor:
    """Map integer relative positions to bucket indices in ``[0, num_buckets)``.

    Bidirectional: positive offsets (key after query) use the upper half of the buckets. Within
    a half of ``n`` buckets, distances below ``n // 2`` are their own bucket; larger ones are
    spread logarithmically up to ``max_distance`` (the log is taken in float32, as the
    original models were trained with) and clipped to the last bucket.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    log_ratio = torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
    far = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    far = far.clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, far)


@tensor_cache(maxsize=64)
def relative_position_buckets(
    query_len: int,
    key_len: int,
    num_buckets: int,
    max_distance: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(query_len, key_len) bucket indices of ``key - query``, cached per arguments.

    The returned tensor is shared between callers: do not modify it in place.
    """
    query = torch.arange(query_len)[:, None]
    key = torch.arange(key_len)[None, :]
    return bucket_relative_positions(key - query, num_buckets, max_distance).to(device)


def relative_position_bias(
    table: nn.Embedding, query_len: int, key_len: int, max_distance: int
) -> torch.Tensor:
    """Look the buckets up in a (num_buckets, heads) table: returns (heads, query_len, key_len),
    contiguous: every layer's gated bias then comes out in the layout attention reads (from
    the permuted lookup it came out permuted, and each layer copied it, batch x heads x T x T)."""
    weight = table.weight
    buckets = relative_position_buckets(
        query_len, key_len, weight.shape[0], max_distance, weight.device
    )
    return nn.functional.embedding(buckets, weight).permute(2, 0, 1).contiguous()


def gated_relative_bias(
    query: torch.Tensor,
    gate_linear: nn.Linear,
    gate_scale: torch.Tensor,
    bias: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scale a position bias per query and head by the GRU-like gate.

    Args:
        query: (batch, heads, time, head_dim), the projected query BEFORE score scaling.
        gate_linear: Linear(head_dim -> 8).
        gate_scale: (1, heads, 1, 1), the learned ``grep_a``.
        bias: (heads, time, key_len) position bias.
        key_padding_mask: optional (batch, key_len), True where the key is padding: those
            scores get the query dtype's most negative value, so the result is the whole
            additive attention mask, built in place without another full-size pass.

    Returns:
        (batch, heads, time, key_len) gated bias.
    """
    batch, heads, time, _ = query.shape
    # The gate acts per head on head_dim; running it on the (batch, time, heads, head_dim)
    # layout of the projection output avoids copying the transposed query.
    sums = gate_linear(query.transpose(1, 2)).view(batch, time, heads, 2, 4).sum(-1)
    gate_a, gate_b = torch.sigmoid(sums).transpose(1, 2).chunk(2, dim=-1)
    gate = gate_a * (gate_b * gate_scale - 1.0) + 2.0
    gated = gate * bias
    if key_padding_mask is not None:
        gated.masked_fill_(key_padding_mask[:, None, None, :], torch.finfo(query.dtype).min)
    return gated
