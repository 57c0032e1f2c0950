"""Decoding steps on weights prepacked for oneDNN: an optional fast path of ``generate``.

A decoding step multiplies a few rows (batch x beams) by every weight matrix of a decoder. At
that shape MKL's general product, which ``torch.nn.functional.linear`` uses on CPU, reaches a
fraction of the machine's speed; oneDNN has an inner-product kernel for weights reordered once
into its blocked layout (the kernel torch.compile's CPU backend uses for frozen weights).
:func:`packed_products` packs, for the length of a ``with`` block, the weight of every linear
layer of a module, and gives attention modules with separate query/key/value projections one
packed product for the three; the model code is not touched (the layers' ``forward`` is
swapped on the instances and restored on exit, so the packed copies, which do not follow
weight updates, never outlive the block). Where the kernel is not there (not CPU, not float32,
a torch without oneDNN) nothing changes. Results match ``F.linear`` to float32 rounding (the
sums are ordered differently). Measured gains are in ``benchmarks/README.md``.

Example:
    >>> layer = nn.Linear(4, 3)
    >>> x = torch.randn(2, 4)
    >>> with torch.no_grad(), packed_products(layer, rows=2, min_bytes=0):
    ...     packed = layer(x)
    >>> torch.allclose(packed, layer(x), atol=1e-6), "forward" in vars(layer)
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.nnet.attention import split_fused_heads

# Below this many bytes of weights a decoder stays in the core's caches between steps, where
# MKL's kernel is as fast or faster (see benchmarks/README.md, bench_generate).
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


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias`` with the weight as returned by :func:`pack_weight`."""
    # the last two arguments name a fused activation and its algorithm: none here
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "none")


def linear_weight(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The (out, in) weight and the bias of a linear layer: an ``nn.Linear`` or a module that
    defines ``linear_weight()`` (GPT-2's transposed layer); None for other modules."""
    if isinstance(layer, nn.Linear):
        return layer.weight, layer.bias
    if hasattr(layer, "linear_weight"):
        return layer.linear_weight(), layer.bias
    return None


def _packed_forward(
    weight: torch.Tensor, bias: torch.Tensor | None, rows: int, plain: Callable
) -> Callable | None:
    packed = pack_weight(weight, rows)
    if packed is None:
        return None
    bias = None if bias is None else bias.detach()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return packed_linear(x, packed, bias) if x.dtype == torch.float32 else plain(x)

    return forward


def _packed_qkv(attention: nn.Module, rows: int) -> Callable | None:
    """One packed product for the separate query/key/value projections of ``attention``
    (named by its ``qkv_names``), replacing its ``project_self``."""
    projections = [getattr(attention, name) for name in attention.qkv_names]
    weight = torch.cat([p.weight for p in projections])
    has_bias = projections[0].bias is not None
    bias = torch.cat([p.bias for p in projections]) if has_bias else None
    fused = _packed_forward(weight, bias, rows, lambda x: F.linear(x, weight, bias))
    if fused is None:
        return None
    plain = attention.project_self

    def project_self(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.float32:
            return plain(x)
        return split_fused_heads(fused(x), 3, attention.num_heads)

    return project_self


@contextmanager
def packed_products(
    module: nn.Module, rows: int, min_bytes: int | None = None
) -> Iterator[nn.Module]:
    """Inside the block, the linear layers of ``module`` (see :func:`linear_weight`) run on
    weights packed on entry for products of about ``rows`` rows, and attention modules with
    ``qkv_names`` and ``project_self`` project query, key and value in one packed product, if
    the parameters of ``module`` add up to ``min_bytes`` at least (default
    :data:`PACK_MIN_BYTES`). Only under ``torch.no_grad``/``inference_mode`` without autocast;
    elsewhere it changes nothing."""
    min_bytes = PACK_MIN_BYTES if min_bytes is None else min_bytes
    # the packed kernel has no backward and no autocast rule; small weights stay cached, where
    # MKL's kernel is faster
    usable = not (torch.is_grad_enabled() or torch.is_autocast_enabled("cpu")) and (
        sum(p.numel() * p.element_size() for p in module.parameters()) >= min_bytes
    )
    swapped: list[tuple[nn.Module, str]] = []
    try:
        for layer in module.modules() if usable else ():
            weights = linear_weight(layer)
            if weights is not None:
                forward = _packed_forward(*weights, rows, layer.forward)
                if forward is not None:
                    layer.forward = forward
                    swapped.append((layer, "forward"))
            if hasattr(layer, "qkv_names"):
                project_self = _packed_qkv(layer, rows)
                if project_self is not None:
                    layer.project_self = project_self
                    swapped.append((layer, "project_self"))
        yield module
    finally:
        for layer, name in swapped:
            delattr(layer, name)
