"""Pooling over time that ignores padded frames.

Every pooling takes ``x: (batch, time, channels)`` and ``lengths: (batch,)`` relative lengths
(None: all frames valid) and returns ``(batch, channels)``; the padding mask is built once,
with :func:`speechlobes.nnet.lengths.relative_padding_mask`.

Example:
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> MaskedMeanPooling()(x, torch.tensor([2 / 3]))
    tensor([[2.]])
"""

from __future__ import annotations

import torch
from torch import nn

from speechlobes.nnet.lengths import relative_padding_mask


def _padding(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
    return None if lengths is None else relative_padding_mask(lengths.to(x.device), x.shape[1])


class MaskedMeanPooling(nn.Module):
    """Mean over the valid frames."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        padding_mask = _padding(x, lengths)
        if padding_mask is None:
            return x.mean(dim=1)
        valid = (~padding_mask).unsqueeze(-1).to(x.dtype)
        return (x * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)


class MaskedMaxPooling(nn.Module):
    """Maximum over the valid frames, per channel: each channel keeps its strongest moment, so
    several short events at different times all survive (good for multi-label tagging)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        padding_mask = _padding(x, lengths)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), torch.finfo(x.dtype).min)
        return x.max(dim=1).values


class AttentivePooling(nn.Module):
    """Attention-weighted mean: a small MLP scores each frame, softmax over valid frames."""

    def __init__(self, input_size: int, hidden_size: int = 128) -> None:
        super().__init__()
        self.score = nn.Sequential(
            nn.Linear(input_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1)
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.score(x).squeeze(-1)
        padding_mask = _padding(x, lengths)
        if padding_mask is not None:
            scores = scores.masked_fill(padding_mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=1).unsqueeze(-1)
        return (weights * x).sum(dim=1)
