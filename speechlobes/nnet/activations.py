"""The one activation table of speechlobes: checkpoint config names -> functions.

Hugging Face configs (``hidden_act``, ``activation_function``), BEATs' ``activation_fn`` and
our own configs all name their activation here. ``"gelu"`` is the exact (erf) GELU; the tanh
approximation answers to its several historical names.

Example:
    >>> x = torch.tensor([-1.0, 0.0, 2.0])
    >>> activation_fn("relu")(x).tolist(), activation_fn("linear")(x) is x
    ([0.0, 0.0, 2.0], True)
    >>> activation_fn("swishy")
    Traceback (most recent call last):
    ...
    ValueError: activation 'swishy' not supported; use one of ['gelu', 'gelu_accurate',
    'gelu_fast', 'gelu_new', 'gelu_pytorch_tanh', 'linear', 'relu', 'sigmoid', 'silu', 'swish',
    'tanh']
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation."""
    return F.gelu(x, approximate="tanh")


def identity(x: torch.Tensor) -> torch.Tensor:
    """The input, unchanged."""
    return x


ACTIVATIONS: dict[str, Activation] = {
    "gelu": F.gelu,
    "gelu_accurate": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "linear": identity,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation_fn(name: str) -> Activation:
    """The activation function called ``name`` in a config."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} not supported; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
