"""``functools.lru_cache`` for functions that build constant tensors.

A tensor first built under ``torch.inference_mode()`` is an *inference tensor*: once cached,
any later autograd-tracked computation that saves it for backward fails ("Inference tensors
cannot be saved for backward"), e.g. a model evaluated before it is trained. The cached
function here always runs outside inference mode, so what it returns is a normal tensor
whatever mode its first caller was in.

Example:
    >>> import torch
    >>> @tensor_cache(maxsize=4)
    ... def ramp(n: int) -> torch.Tensor:
    ...     return torch.arange(n, dtype=torch.float32)
    >>> with torch.inference_mode():
    ...     ramp(3).is_inference()
    False
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

Result = TypeVar("Result")


def tensor_cache(maxsize: int) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """An ``lru_cache(maxsize)`` whose function body runs with inference mode off."""

    def decorate(build: Callable[..., Result]) -> Callable[..., Result]:
        @functools.lru_cache(maxsize=maxsize)
        @functools.wraps(build)
        def cached(*args, **kwargs) -> Result:
            with torch.inference_mode(False):
                return build(*args, **kwargs)

        return cached

    return decorate
