"""Label-balanced sampling for multi-label data (e.g. AudioSet), reproducible per epoch.

An example's weight is the sum over its labels of ``1 / count(label)``, so rare classes are
drawn as often as common ones on average. The sampler draws with replacement from a generator
seeded with ``seed + epoch`` (a :class:`ReproducibleWeightedRandomSampler`), so a resumed run
sees the same order. For single-label data, SpeechBrain's ``BalancingDataSampler`` is in
:mod:`speechlobes.dataio.sampler`.

Example:
    >>> weights = label_balanced_weights([["a"], ["a"], ["a", "b"]])
    >>> [round(w, 3) for w in weights.tolist()]
    [0.333, 0.333, 1.333]
    >>> sampler = EpochWeightedSampler(weights, seed=0)
    >>> len(list(sampler))
    3
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import torch

from speechlobes.dataio.sampler import ReproducibleWeightedRandomSampler


def label_balanced_weights(label_lists: Sequence[Sequence[Hashable]]) -> torch.Tensor:
    """One weight per example: the sum of the inverse frequencies of its labels."""
    counts = Counter(label for labels in label_lists for label in labels)
    weights = [sum(1.0 / counts[label] for label in labels) for labels in label_lists]
    if not any(weights):
        raise ValueError("label_balanced_weights: no example has a label")
    return torch.tensor(weights, dtype=torch.float64)


class EpochWeightedSampler(ReproducibleWeightedRandomSampler):
    """Draw ``num_samples`` (default: as many as weights) indices with replacement,
    proportionally to ``weights``, from ``seed + epoch``."""

    def __init__(self, weights: torch.Tensor, num_samples: int | None = None, seed: int = 0):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        super().__init__(weights, len(weights) if num_samples is None else num_samples, True, seed)
