"""Position encodings that act inside attention: Transformer-XL relative sinusoids and rotary.

Both are used together with :func:`speechlobes.nnet.attention.attend`:

* relative: a per-layer projection ``P(r)`` of the sinusoid for distance ``r = i - j`` gives the
  score term ``(q_i + v) . P(i - j)``. :func:`relative_sinusoids` builds the table for the
  2T-1 distances ``+(T-1) .. -(T-1)`` and :func:`relative_scores_to_bias` turns the scores
  against that table, (..., T, 2T-1), into an additive (..., T, T) bias, exactly (a slice and
  reshape of the flattened scores, no padding copy).
* rotary: :class:`RotaryEmbedding` holds ``inv_freq`` (a checkpoint buffer) and
  :func:`apply_rotary` rotates pairs ``(x[k], x[k + d/2])`` by ``t * inv_freq[k]``.

Example:
    >>> import torch
    >>> table = relative_sinusoids(5, 8)                 # (2*5-1, 8), row 0 = distance +4
    >>> scores = torch.randn(2, 3, 5, 9)                 # (batch, heads, T, 2T-1)
    >>> relative_scores_to_bias(scores).shape
    torch.Size([2, 3, 5, 5])
    >>> rotary = RotaryEmbedding(head_dim=8)
    >>> cos, sin = rotary(5)
    >>> apply_rotary(torch.randn(2, 3, 5, 8), cos, sin).shape
    torch.Size([2, 3, 5, 8])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from speechlobes.nnet.precision import FullPrecisionBuffers


def relative_sinusoids(
    length: int,
    dim: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Interleaved sinusoids for distances ``length-1, ..., 0, ..., -(length-1)``:
    (2*length-1, dim).

    ``pe(r)[2m] = sin(r * w_m)``, ``pe(r)[2m+1] = cos(r * w_m)``, ``w_m = 10000^(-2m/dim)``.
    """
    distances = torch.arange(length - 1, -length, -1, dtype=torch.float32, device=device)
    freqs = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / dim)
    )
    angles = distances[:, None] * freqs[None, :]
    table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
    return table.to(dtype)


def relative_scores_to_bias(scores: torch.Tensor) -> torch.Tensor:
    """(..., T, 2T-1) scores against :func:`relative_sinusoids` rows -> (..., T, T) bias.

    ``bias[..., i, j] = scores[..., i, (T-1) - (i-j)]``: the score of query i for distance i - j.
    """
    length = scores.shape[-2]
    if scores.shape[-1] != 2 * length - 1:
        raise ValueError(f"relative scores must be (..., T, 2T-1); got {tuple(scores.shape)}")
    if length == 1:
        return scores
    # element (i, T-1-i+j) sits at flat offset (T-1) + i * (2T-2) + j: a slice, then a reshape
    lead = scores.shape[:-2]
    flat = scores.reshape(*lead, length * (2 * length - 1))
    rows = flat[..., length - 1 : length - 1 + length * (2 * length - 2)]
    return rows.reshape(*lead, length, 2 * length - 2)[..., :length]


class RotaryEmbedding(FullPrecisionBuffers, nn.Module):
    """Cosines and sines of rotary position embeddings for a head size ``head_dim``.

    ``inv_freq[k] = 1 / base^(2k / head_dim)`` is a (persistent) buffer, as checkpoints store it.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
        self.register_buffer("inv_freq", 1.0 / (base**exponents))

    def forward(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (cos, sin), each (length, head_dim), in the dtype of ``inv_freq``."""
        positions = torch.arange(length, device=self.inv_freq.device).type_as(self.inv_freq)
        freqs = torch.outer(positions, self.inv_freq)
        angles = torch.cat([freqs, freqs], dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x: (..., T, head_dim) by position; cos/sin: (T, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)
