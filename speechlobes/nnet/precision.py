"""Running lobes in reduced precision the PyTorch way (``model.to(torch.bfloat16)``, ``.half()``).

A lobe cast to bfloat16 takes float32 or bfloat16 waveforms and returns its outputs in its own
dtype. Two helpers make that hold without a dtype argument anywhere:

- :func:`parameter_dtype`: the dtype a module computes in (its first floating parameter), so a
  front end can cast its float32 features to it just before the first learned layer;
- :class:`FullPrecisionBuffers`: a mixin for feature extractors whose constant tables (a mel
  matrix, an analysis window) must not be rounded to bfloat16 when the model around them is;
  they still follow the model from device to device.

Under autocast the parameters stay float32, so the casts are no-ops and autocast chooses.

Example:
    >>> layer = torch.nn.Linear(4, 2).to(torch.bfloat16)
    >>> parameter_dtype(layer)
    torch.bfloat16
    >>> class Table(FullPrecisionBuffers, torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.register_buffer("table", torch.tensor([0.1], dtype=torch.float64))
    >>> Table().to(torch.bfloat16).table.dtype
    torch.float64
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def parameter_dtype(module: nn.Module, default: torch.dtype = torch.float32) -> torch.dtype:
    """The dtype of ``module``'s first floating parameter (``default`` without one)."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return default


class FullPrecisionBuffers:
    """Mixin for an ``nn.Module``: its own floating buffers keep their dtype when the module
    is cast (``.to(dtype)``, ``.half()``, ``.bfloat16()``) but move with it between devices.

    Sub-modules are cast as usual; only the buffers registered on this module are kept.
    """

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):
        kept = {
            name: buffer
            for name, buffer in self._buffers.items()
            if buffer is not None and buffer.is_floating_point()
        }
        super()._apply(fn, recurse)
        for name, buffer in kept.items():
            moved = self._buffers[name]
            if moved.dtype != buffer.dtype:
                self._buffers[name] = buffer.to(moved.device)
        return self
