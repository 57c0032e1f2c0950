"""A sequential container that threads SpeechBrain's relative lengths through its stages.

Each stage is called as ``stage(x, lengths)`` when its ``forward`` takes a second argument and
as ``stage(x)`` otherwise; relative lengths stay valid through any down-sampling, so the same
``lengths`` reach every stage. A whole task model (features -> normalisation -> augmentation ->
encoder -> head) thus becomes one object that training and inference share.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = LengthsSequential(nn.Linear(4, 8), nn.ReLU())
    >>> model(torch.randn(2, 5, 4), torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 5, 8])
"""

from __future__ import annotations

import inspect

import torch
from torch import nn


class LengthsSequential(nn.Sequential):
    """``nn.Sequential`` whose stages may take the relative lengths as second argument."""

    def __init__(self, *stages: nn.Module) -> None:
        super().__init__(*stages)
        self._takes_lengths = [_takes_two_arguments(stage) for stage in stages]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, time, ...); lengths: (batch,) relative lengths, or None for full length."""
        for stage, takes_lengths in zip(self, self._takes_lengths, strict=True):
            x = stage(x, lengths) if takes_lengths else stage(x)
        return x


def _takes_two_arguments(module: nn.Module) -> bool:
    parameters = list(inspect.signature(module.forward).parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2
