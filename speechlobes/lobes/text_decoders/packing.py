"""Linear layers that can run on weights prepacked for CPU decoding.

A decoding step multiplies a few rows (batch x beams) by every weight matrix of a decoder. At
that shape MKL's general product, which ``torch.nn.functional.linear`` uses on CPU, reaches a
fraction of the machine's speed; oneDNN has an inner-product kernel for weights reordered once
into its blocked layout (the kernel torch.compile's CPU backend uses for frozen weights), about
a fifth faster per decoding step of a 256-wide decoder. :func:`prepacked_linears` packs the
weights of every packable layer of a module for the length of a ``with`` block: the packed
copies do not follow weight updates, so they are meant for inference and dropped on exit.
Where the kernel is not there (not CPU, not float32, a torch without oneDNN) the layers run
``F.linear`` as usual. Results match ``F.linear`` to float32 rounding (the sums are ordered
differently).

Example:
    >>> layer = Linear(4, 3)
    >>> x = torch.randn(2, 4)
    >>> with torch.no_grad(), prepacked_linears(layer, rows=2, min_bytes=0):
    ...     packed = layer(x)
    >>> torch.allclose(packed, layer(x), atol=1e-6), layer.packed is None
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# Below this many bytes of weights a decoder stays in the core's caches between steps, and there
# MKL's kernel is as fast or faster (bench_generate, 1 thread: 1.3 MB "small" decoder 73 ms
# unpacked vs 96 ms packed; 16 MB "medium" 317 ms vs 278 ms greedy, 724 ms vs 613 ms beam-4).
PACK_MIN_BYTES = 4 * 2**20


def pack_weight(weight: torch.Tensor, rows: int) -> torch.Tensor | None:
    """A oneDNN-packed copy of an (out, in) weight for products with about ``rows`` rows, or
    None where that kernel cannot run (the caller then keeps ``F.linear``)."""
    usable = (
        weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )
    if not usable:
        return None
    with torch.no_grad():
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows)


def packed_linear(
    x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, activation: str = "none"
) -> torch.Tensor:
    """``x @ weight.T + bias`` with the weight as returned by :func:`pack_weight`, then
    oneDNN's ``activation`` ("none", "gelu" (exact), "relu")."""
    # the last argument names GELU's algorithm; the others ignore it
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, activation, [], "none")


# Activations the packed kernel applies to its output as torch does, bit for bit (oneDNN's
# tanh-GELU and SiLU differ in the last bit, so they run separately).
FUSED_ACTIVATIONS = {F.gelu: "gelu", F.relu: "relu"}


class Linear(nn.Linear):
    """``torch.nn.Linear`` (same arguments and state dict) that :func:`prepacked_linears` can
    switch to a packed weight."""

    packed: torch.Tensor | None = None

    def pack(self, rows: int) -> None:
        self.packed = pack_weight(self.weight, rows)

    def unpack(self) -> None:
        self.packed = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None or x.dtype != torch.float32:
            return F.linear(x, self.weight, self.bias)
        return packed_linear(x, self.packed, self.bias)

    def activated(self, x: torch.Tensor, activation: Callable) -> torch.Tensor:
        """``activation(self(x))``; on a packed weight exact GELU and ReLU are applied by the
        product as it writes its output (one pass less over the output)."""
        fused = FUSED_ACTIVATIONS.get(activation)
        if fused is None or self.packed is None or x.dtype != torch.float32:
            return activation(self(x))
        return packed_linear(x, self.packed, self.bias, fused)


def packable_layers(module: nn.Module) -> list[nn.Module]:
    """The outermost submodules of ``module`` with ``pack(rows)`` and ``unpack()`` (a packable
    module packs its own children as it sees fit)."""
    if hasattr(module, "pack") and hasattr(module, "unpack"):
        return [module]
    return [layer for child in module.children() for layer in packable_layers(child)]


@contextmanager
def prepacked_linears(
    module: nn.Module, rows: int, min_bytes: int | None = None
) -> Iterator[nn.Module]:
    """Inside the block, the packable layers of ``module`` (see :func:`packable_layers`, such
    as :class:`Linear`) run on weights packed on entry for products of about ``rows`` rows, if
    the parameters of ``module`` add up to ``min_bytes`` at least (default
    :data:`PACK_MIN_BYTES`). Only under ``torch.no_grad``/``inference_mode`` without autocast;
    elsewhere it changes nothing."""
    min_bytes = PACK_MIN_BYTES if min_bytes is None else min_bytes
    # the packed kernel has no backward and no autocast rule; small weights stay cached, where
    # MKL's kernel is faster
    usable = not (torch.is_grad_enabled() or torch.is_autocast_enabled("cpu")) and (
        sum(p.numel() * p.element_size() for p in module.parameters()) >= min_bytes
    )
    layers = packable_layers(module) if usable else []
    try:
        for layer in layers:
            layer.pack(rows)
        yield module
    finally:
        for layer in layers:
            layer.unpack()
