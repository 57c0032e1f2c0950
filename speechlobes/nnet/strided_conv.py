"""A strided 1-D convolution (no padding) on time-major rows, computed as matrix products.

``nn.Conv1d`` wants (batch, channels, time), while the layers around a strided feature
encoder (a LayerNorm over channels, the projection after it) want (batch, time, channels):
going back and forth costs a copy of the activations per layer, and oneDNN's direct
convolution reaches ~2/3 of the speed of a plain matrix product on these shapes. Here a batch
is ``batch * slots`` rows of channels. With ``k`` taps and stride ``s`` the taps fall into
``ceil(k / s)`` blocks of at most ``s``; block ``j`` of output row ``t`` reads the
``taps * channels`` values that start at input row ``s * (t + j)`` and lie next to each other
in memory, so every block is one matrix product on a strided view of the input, no copy. A
thin input (a waveform: ``taps * channels`` at most the output channels) instead has its
overlapping windows copied out and multiplied once.

Rows run on across items: an output row whose window reaches past its item's valid frames
mixes in padding or the next item, and the last ``ceil(k / s) - 1`` rows lack their last
blocks. Callers keep the valid frames, ``(frames - k) // s + 1`` per item.

Example:
    >>> import torch
    >>> conv = torch.nn.Conv1d(4, 6, kernel_size=3, stride=2)
    >>> x = torch.randn(2, 4, 10)                              # (batch, channels, time)
    >>> rows = x.transpose(1, 2).reshape(20, 4)                # (batch * time, channels)
    >>> out = conv1d_rows(rows, conv.weight, conv.bias, stride=2).view(2, 5, 6)[:, :4]
    >>> torch.allclose(out, conv(x).transpose(1, 2), atol=1e-6)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv1d_rows(
    rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int
) -> torch.Tensor:
    """Conv1d ``weight`` (out, in, taps) with ``stride`` over ``rows`` (N, in), time-major:
    (N // stride, out). N must be a multiple of ``stride``."""
    count, channels = rows.shape
    out_channels, in_channels, taps = weight.shape
    if channels != in_channels or count % stride:
        raise ValueError(
            f"rows {tuple(rows.shape)} must have {in_channels} channels and a multiple of "
            f"stride {stride} rows"
        )
    outputs = count // stride
    by_tap = weight.permute(2, 1, 0)  # (taps, in, out)
    if taps * channels <= out_channels:
        # a thin input such as a waveform: its windows, copied out, are smaller than the output
        flat = F.pad(rows, (0, 0, 0, max(taps - stride, 0))).flatten()
        windows = flat.unfold(0, taps * channels, stride * channels)
        out = torch.mm(windows, by_tap.reshape(taps * channels, out_channels))
    else:
        blocks = rows.contiguous().view(outputs, stride * channels)
        out = None
        for block, first in enumerate(range(0, taps, stride)):
            width = min(stride, taps - first)
            window = blocks[block:, : width * channels]
            block_weight = by_tap[first : first + width].reshape(width * channels, out_channels)
            if out is None:
                out = torch.mm(window, block_weight)
            else:
                out[: outputs - block].addmm_(window.to(out.dtype), block_weight.to(out.dtype))
    return out if bias is None else out.add_(bias)
