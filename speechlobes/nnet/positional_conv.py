"""Convolutional relative positional embedding pieces shared by BEATs and the Wav2Vec2 family.

The positional convolution is a grouped Conv1d whose weight is weight-normalised per kernel
tap (``dim=2``): ``w[:, :, k] = g[k] * v[:, :, k] / ||v[:, :, k]||``. torch's parametrization
stores ``conv.parametrizations.weight.original0/1`` and also accepts the older
``conv.weight_g`` / ``conv.weight_v`` names when loading a state dict.

Example:
    >>> conv = weight_norm_conv1d(channels=8, kernel_size=4, groups=2)
    >>> x = torch.randn(1, 8, 10)                       # (batch, channels, time)
    >>> SamePad(4)(conv(x)).shape                       # even kernel: one extra frame dropped
    torch.Size([1, 8, 10])
"""

from __future__ import annotations

import torch
from torch import nn


class SamePad(nn.Module):
    """Trim a padded convolution's output back to the input length.

    A Conv1d with ``padding=kernel_size // 2`` yields one extra frame for an even kernel; the
    LAST frame is dropped. With ``causal=True`` (padding ``kernel_size - 1``) the last
    ``kernel_size - 1`` frames are dropped.
    """

    def __init__(self, kernel_size: int, causal: bool = False) -> None:
        super().__init__()
        self.remove = kernel_size - 1 if causal else int(kernel_size % 2 == 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, time)."""
        return x[:, :, : -self.remove] if self.remove > 0 else x


def weight_norm_conv1d(
    channels: int, kernel_size: int, groups: int, bias: bool = True
) -> nn.Conv1d:
    """A grouped, same-padded Conv1d with per-tap weight normalisation (``dim=2``)."""
    conv = nn.Conv1d(
        channels, channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=bias
    )
    return nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
