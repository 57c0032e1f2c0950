"""Decoding steps on weights prepacked for oneDNN: an optional fast path of ``generate``.

A decoding step multiplies a few rows (batch x beams) by every weight matrix of a decoder. At
that shape MKL's general product, which ``torch.nn.functional.linear`` uses on CPU, reaches a
fraction of the machine's speed; oneDNN has an inner-product kernel for weights reordered once
into its blocked layout (the kernel torch.compile's CPU backend uses for frozen weights).
:func:`packed_products` packs, for the length of a ``with`` block, the weight of every linear
layer of a module, gives attention modules with separate query/key/value projections one
packed product for the three (their key/value layers alone, which otherwise only project the
memory once per run, are not packed), and lets the product apply an exact GELU or ReLU that
follows it as it writes its output (modules name such a pair in ``linear_then_activation``).
The model code is not touched: the layers' ``forward`` (and such an activation) are swapped on
the instances and restored on exit, so the packed copies, which do not follow weight updates,
never outlive the block. Where the kernel is not there (not CPU, not float32,
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

from speechlobes.nnet.activations import identity
from speechlobes.nnet.attention import split_fused_heads

_CLASS_ATTRIBUTE = object()  # marks a swapped attribute that the instance did not hold

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


def linear_weight(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The (out, in) weight and the bias of a linear layer: an ``nn.Linear`` or a module that
    defines ``linear_weight()`` (GPT-2's transposed layer); None for other modules."""
    if isinstance(layer, nn.Linear):
        return layer.weight, layer.bias
    if hasattr(layer, "linear_weight"):
        return layer.linear_weight(), layer.bias
    return None


def _packed_forward(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    rows: int,
    plain: Callable,
    activation: Callable | None = None,
) -> Callable | None:
    """A packed replacement of ``plain`` (a linear layer's forward), applying ``activation``
    (one of :data:`FUSED_ACTIVATIONS`) after it when given."""
    packed = pack_weight(weight, rows)
    if packed is None:
        return None
    bias = None if bias is None else bias.detach()
    fused = "none" if activation is None else FUSED_ACTIVATIONS[activation]

    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            y = plain(x)
            return y if activation is None else activation(y)
        return packed_linear(x, packed, bias, fused)

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
    weights packed on entry for products of about ``rows`` rows, attention modules with
    ``qkv_names`` and ``project_self`` project query, key and value in one packed product, and
    a ``linear_then_activation`` pair (names of a linear layer and of the exact GELU or ReLU
    applied to its output) becomes one packed product, if the parameters of ``module`` add up
    to ``min_bytes`` at least (default :data:`PACK_MIN_BYTES`). Only under
    ``torch.no_grad``/``inference_mode`` without autocast; elsewhere it changes nothing."""
    min_bytes = PACK_MIN_BYTES if min_bytes is None else min_bytes
    # the packed kernel has no backward and no autocast rule; small weights stay cached, where
    # MKL's kernel is faster
    usable = not (torch.is_grad_enabled() or torch.is_autocast_enabled("cpu")) and (
        sum(p.numel() * p.element_size() for p in module.parameters()) >= min_bytes
    )
    swapped: list[tuple[nn.Module, str, object]] = []

    def swap(owner: nn.Module, name: str, value: Callable) -> None:
        swapped.append((owner, name, vars(owner).get(name, _CLASS_ATTRIBUTE)))
        setattr(owner, name, value)

    try:
        layers = list(module.modules()) if usable else []
        memory_only = {
            getattr(layer, name)
            for layer in layers
            if hasattr(layer, "qkv_names")
            for name in layer.qkv_names[1:]
        }
        for layer in layers:
            if hasattr(layer, "qkv_names"):
                project_self = _packed_qkv(layer, rows)
                if project_self is not None:
                    swap(layer, "project_self", project_self)
            if hasattr(layer, "linear_then_activation"):
                linear_name, activation_name = layer.linear_then_activation
                linear, activation = getattr(layer, linear_name), getattr(layer, activation_name)
                weights = linear_weight(linear)
                if activation in FUSED_ACTIVATIONS and weights is not None:
                    forward = _packed_forward(*weights, rows, linear.forward, activation)
                    if forward is not None:
                        swap(linear, "forward", forward)
                        swap(layer, activation_name, identity)
            weights = linear_weight(layer)
            if weights is not None and layer not in memory_only and "forward" not in vars(layer):
                forward = _packed_forward(*weights, rows, layer.forward)
                if forward is not None:
                    swap(layer, "forward", forward)
        yield module
    finally:
        for owner, name, old in reversed(swapped):
            if old is _CLASS_ATTRIBUTE:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
