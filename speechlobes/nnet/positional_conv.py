"""The convolutional positional embedding shared by BEATs and the Wav2Vec2 family.

A grouped Conv1d over time whose weight is weight-normalised per kernel tap (``dim=2``):
``w[:, :, k] = g[k] * v[:, :, k] / ||v[:, :, k]||``. torch's parametrization stores
``conv.parametrizations.weight.original0/1``; the older ``conv.weight_g`` / ``conv.weight_v``
names of original checkpoints are renamed on loading
(:func:`speechlobes.lobes.pretrained.rename_legacy_keys`).

Example:
    >>> embed = PositionalConvEmbedding(channels=8, kernel_size=4, groups=2)
    >>> embed(torch.randn(1, 10, 8)).shape              # (batch, time, channels)
    torch.Size([1, 10, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from speechlobes.nnet.activations import activation_fn


class SamePad(nn.Module):
    """Trim a padded convolution's output back to the input length.

    A Conv1d with ``padding=kernel_size // 2`` yields one extra frame for an even kernel; the
    LAST frame is dropped. With ``causal=True`` (padding ``kernel_size - 1``) the last
    ``kernel_size - 1`` frames are dropped.

    Example:
        >>> SamePad(4)(torch.zeros(1, 2, 11)).shape
        torch.Size([1, 2, 10])
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


class PositionalConvEmbedding(nn.Module):
    """Grouped, weight-normalised Conv1d over time -> SamePad -> activation; the caller adds
    the result to its input.

    With ``batch_norm`` (HuBERT's ``conv_pos_batch_norm``): BatchNorm1d on the input and a
    plain conv weight.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        groups: int,
        activation: str = "gelu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if batch_norm:
            self.batch_norm = nn.BatchNorm1d(channels)
            self.conv = nn.Conv1d(
                channels, channels, kernel_size, padding=kernel_size // 2, groups=groups
            )
        else:
            self.batch_norm = None
            self.conv = weight_norm_conv1d(channels, kernel_size, groups)
        self.padding = SamePad(kernel_size)
        self.activation = activation_fn(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, channels) -> the positional term, same shape."""
        x = x.transpose(1, 2)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        return self.activation(self.padding(self.conv(x))).transpose(1, 2)
