"""The one attention kernel of speechlobes, on ``torch.nn.functional.scaled_dot_product_attention``.

Every lobe projects its own queries, keys and values (their parameter names follow each
original checkpoint) and then calls :func:`attend`. Position information that acts on the
scores (BEATs' bucketed relative bias, the conformer's relative term) arrives as an additive
``bias``; padding arrives as a boolean ``key_padding_mask``. Both are folded into one float
mask so SDPA runs its fused kernels.

Example:
    >>> q = k = v = torch.randn(2, 4, 10, 16)          # (batch, heads, time, head_dim)
    >>> pad = torch.zeros(2, 10, dtype=torch.bool); pad[1, 7:] = True
    >>> attend(q, k, v, key_padding_mask=pad).shape
    torch.Size([2, 4, 10, 16])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(batch, time, heads * head_dim) -> (batch, heads, time, head_dim)."""
    batch, time, width = x.shape
    return x.view(batch, time, num_heads, width // num_heads).transpose(1, 2)


def split_fused_heads(x: torch.Tensor, parts: int, num_heads: int) -> tuple[torch.Tensor, ...]:
    """(batch, time, parts * heads * head_dim), such as a fused q|k|v projection -> ``parts``
    tensors (batch, heads, time, head_dim), all views of ``x``."""
    batch, time, width = x.shape
    head_dim = width // (parts * num_heads)
    return x.view(batch, time, parts, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, time, head_dim) -> (batch, time, heads * head_dim)."""
    batch, heads, time, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, time, heads * head_dim)


def additive_mask(
    key_padding_mask: torch.Tensor | None,
    bias: torch.Tensor | None,
    causal: bool,
    query_len: int,
    key_len: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor | None:
    """Combine a score bias, a key padding mask (True = padded) and causality into one float mask.

    The result broadcasts against scores of shape (batch, heads, query_len, key_len). Masked
    entries get the dtype's most negative finite value rather than -inf, so a row whose keys are
    all padded yields a uniform average instead of NaN.
    """
    if key_padding_mask is None and not causal:
        return None if bias is None else bias.to(dtype)
    if bias is None:
        mask = torch.zeros(1, 1, query_len, key_len, dtype=dtype, device=device)
    else:  # masked by the one pass that writes the mask (no zeros + bias pass first)
        mask = bias.to(dtype)
    neg = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=device)
    if key_padding_mask is not None:
        mask = torch.where(key_padding_mask[:, None, None, :].to(device), neg, mask)
    if causal:
        offset = key_len - query_len  # queries are the last `query_len` positions (KV cache)
        future = torch.ones(query_len, key_len, dtype=torch.bool, device=device).triu(offset + 1)
        mask = torch.where(future, neg, mask)
    return mask


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    dropout: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention over already projected heads.

    Args:
        query: (batch, heads, query_len, head_dim).
        key, value: (batch, heads, key_len, head_dim).
        bias: added to the scaled scores; broadcastable to (batch, heads, query_len, key_len).
        key_padding_mask: (batch, key_len), True where the key is padding.
        causal: forbid keys after the query (queries aligned to the END of the keys).
        dropout: attention dropout probability (pass 0.0 in eval mode).
        scale: score scale, default head_dim ** -0.5.

    Returns:
        (batch, heads, query_len, head_dim).
    """
    query_len, key_len = query.shape[-2], key.shape[-2]
    if bias is None and key_padding_mask is None and causal and query_len == key_len:
        return F.scaled_dot_product_attention(
            query, key, value, dropout_p=dropout, is_causal=True, scale=scale
        )
    mask = additive_mask(
        key_padding_mask, bias, causal, query_len, key_len, query.dtype, query.device
    )
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scale
    )


def attention_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """The softmax probabilities :func:`attend` uses, for callers that return attention maps.

    Same arguments as :func:`attend`; returns (batch, heads, query_len, key_len).
    """
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    mask = additive_mask(
        key_padding_mask, bias, causal, query.shape[-2], key.shape[-2], scores.dtype, scores.device
    )
    if mask is not None:
        scores = scores + mask
    return scores.softmax(dim=-1)
