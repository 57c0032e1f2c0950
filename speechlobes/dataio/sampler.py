"""DynamicBatchSampler: batches bounded by total padded length, from buckets of similar lengths.

Each epoch the examples are shuffled (from ``seed + epoch``, so every rank and every resumed
run draws the same order), dealt into buckets of similar length, and packed greedily into
batches whose padded size ``longest * count`` stays within ``max_batch_length``. Packing
similar lengths together cuts the padding that fixed-size random batches waste.

Under distributed training every rank builds the same batch list and takes every
``world_size``-th batch, so ranks get disjoint batches and the same number of them: when the
count does not divide evenly, the largest batches are split in two (``drop_last=False``) or
the last batches are dropped (``drop_last=True``).

Example:
    >>> sampler = DynamicBatchSampler([1.0, 2.0, 3.0, 2.5, 1.2, 0.8], max_batch_length=5.0,
    ...                               num_buckets=2, seed=1)
    >>> batches = list(sampler)
    >>> sorted(index for batch in batches for index in batch)
    [0, 1, 2, 3, 4, 5]
    >>> all(len(b) * max(sampler.lengths[i] for i in b) <= 5.0 for b in batches)
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

BATCH_ORDERINGS = ("random", "ascending", "descending")


class DynamicBatchSampler(Sampler[list[int]]):
    """Yield lists of dataset indices; pass it as a DataLoader's ``batch_sampler``.

    Arguments:
        lengths_or_dataset: the example lengths, or a dataset whose static data holds them
            (a DynamicItemDataset: ``length_func(dataset.data[id])``).
        max_batch_length: bound on ``longest length * batch size`` (same unit as the
            lengths, e.g. seconds). A single longer example forms a batch of its own.
        num_buckets: how many length buckets; boundaries are length quantiles, so buckets
            hold similar numbers of examples. 1 disables bucketing.
        bucket_boundaries: explicit upper bucket boundaries (replace ``num_buckets``).
        length_func: reads the length from an example's static data; ``length_key`` is the
            shortcut for ``lambda data: float(data[length_key])``.
        shuffle: draw a new order each epoch (otherwise the dataset order is kept).
        batch_ordering: "random", or "ascending"/"descending" by the longest example.
        max_batch_ex: bound on the number of examples in a batch.
        seed, epoch: the shuffle draws from ``seed + epoch``; see :meth:`set_epoch`.
        drop_last: under distributed training, drop the last batches rather than split
            batches to give every rank the same count.
        rank, world_size: the process's place; read from torch.distributed when it is
            initialised and these are None.
    """

    def __init__(
        self,
        lengths_or_dataset: Sequence[float] | Any,
        max_batch_length: float,
        num_buckets: int = 20,
        bucket_boundaries: Sequence[float] | None = None,
        length_func: Callable[[dict[str, Any]], float] | None = None,
        length_key: str = "duration",
        shuffle: bool = True,
        batch_ordering: str = "random",
        max_batch_ex: int | None = None,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        if batch_ordering not in BATCH_ORDERINGS:
            raise ValueError(f"batch_ordering {batch_ordering!r}: choose one of {BATCH_ORDERINGS}")
        if max_batch_length <= 0 or num_buckets < 1:
            raise ValueError("max_batch_length must be positive and num_buckets at least 1")
        length_func = length_func or (lambda data: float(data[length_key]))
        self.lengths = _read_lengths(lengths_or_dataset, length_func)
        self.max_batch_length = max_batch_length
        self.max_batch_ex = max_batch_ex
        self.shuffle = shuffle
        self.batch_ordering = batch_ordering
        self.seed = seed
        self.epoch = epoch
        self.drop_last = drop_last
        self.rank, self.world_size = _distributed_place(rank, world_size)
        if bucket_boundaries is None:
            quantiles = np.linspace(0, 1, num_buckets + 1)[1:-1]
            bucket_boundaries = np.quantile(self.lengths, quantiles)
        self.bucket_boundaries = np.unique(np.asarray(bucket_boundaries, dtype=np.float64))
        too_long = int((self.lengths > max_batch_length).sum())
        if too_long:
            logger.warning(
                "%d examples are longer than max_batch_length=%s; each forms a batch alone",
                too_long,
                max_batch_length,
            )
        self._cache: tuple[int, list[list[int]]] | None = None
        self._logged_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order to draw (call before each epoch, as for DDP)."""
        self.epoch = epoch

    def all_batches(self) -> list[list[int]]:
        """Every rank's batches for the current epoch, in order (rank r takes r::world_size)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._build_batches())
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        if self._logged_epoch != self.epoch:
            self._logged_epoch = self.epoch
            logger.info(
                "epoch %d: %d batches, padding ratio %.3f",
                self.epoch,
                len(self.all_batches()),
                self.padding_ratio(),
            )
        return iter(self.all_batches()[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(self.all_batches()) // self.world_size

    def padding_ratio(self) -> float:
        """Fraction of the padded batch area that is padding, over all of this epoch's batches."""
        padded = useful = 0.0
        for batch in self.all_batches():
            batch_lengths = self.lengths[batch]
            padded += batch_lengths.max() * len(batch)
            useful += batch_lengths.sum()
        return 1.0 - useful / padded if padded else 0.0

    def _build_batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        bucket_of = np.searchsorted(self.bucket_boundaries, self.lengths[order], side="left")
        batches = []
        for bucket in range(len(self.bucket_boundaries) + 1):
            batches.extend(self._pack(order[bucket_of == bucket]))
        if self.batch_ordering == "random":
            batches = [batches[i] for i in rng.permutation(len(batches))]
        else:
            batches.sort(
                key=lambda batch: self.lengths[batch].max(),
                reverse=self.batch_ordering == "descending",
            )
        return self._even_out(batches)

    def _pack(self, indices: np.ndarray) -> list[list[int]]:
        """Greedily fill batches in the given order while longest * count fits."""
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = 0.0
        for index in indices.tolist():
            length = self.lengths[index]
            grown = max(longest, length) * (len(batch) + 1)
            full = self.max_batch_ex is not None and len(batch) >= self.max_batch_ex
            if batch and (grown > self.max_batch_length or full):
                batches.append(batch)
                batch, longest = [], 0.0
            batch.append(index)
            longest = max(longest, length)
        if batch:
            batches.append(batch)
        return batches

    def _even_out(self, batches: list[list[int]]) -> list[list[int]]:
        """Make the batch count a multiple of world_size, keeping every index exactly once."""
        excess = len(batches) % self.world_size
        if excess == 0:
            return batches
        if self.drop_last:
            return batches[: len(batches) - excess]
        missing = self.world_size - excess
        splittable = sorted(
            (i for i, batch in enumerate(batches) if len(batch) > 1),
            key=lambda i: -len(batches[i]),
        )
        if len(splittable) < missing:
            raise ValueError(
                f"{len(self.lengths)} examples cannot make the same number of batches on "
                f"{self.world_size} ranks; use more data, fewer ranks, or drop_last=True"
            )
        to_split = set(splittable[:missing])
        evened: list[list[int]] = []
        for i, batch in enumerate(batches):
            half = len(batch) // 2
            evened.extend([batch[:half], batch[half:]] if i in to_split else [batch])
        return evened


def _read_lengths(
    lengths_or_dataset: Sequence[float] | Any, length_func: Callable[[dict[str, Any]], float]
) -> np.ndarray:
    if hasattr(lengths_or_dataset, "data") and hasattr(lengths_or_dataset, "data_ids"):
        dataset = lengths_or_dataset
        try:
            lengths = [length_func(dataset.data[data_id]) for data_id in dataset.data_ids]
        except KeyError as error:
            raise KeyError(
                f"{dataset.pipeline.source}: examples lack the length field {error}; set "
                "length_key or length_func"
            ) from error
    else:
        lengths = lengths_or_dataset
    lengths = np.asarray(lengths, dtype=np.float64)
    if lengths.ndim != 1 or len(lengths) == 0:
        raise ValueError(f"need a non-empty 1-D list of lengths, got shape {lengths.shape}")
    if not np.isfinite(lengths).all() or (lengths < 0).any():
        raise ValueError("lengths must be finite and non-negative")
    return lengths


def _distributed_place(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None and world_size is None and torch.distributed.is_available():
        if torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank, world_size = rank or 0, world_size or 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    return rank, world_size
