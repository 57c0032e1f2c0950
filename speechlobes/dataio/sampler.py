"""Samplers: reproducible shuffling, weighted and class-balanced draws, and dynamic batching.

The names, signatures and defaults are SpeechBrain's (``speechbrain.dataio.sampler``). Every
random draw comes from a generator seeded with ``seed + epoch``, so an epoch's order depends
on (seed, epoch) only: a resumed run sees the same order. Call ``set_epoch`` before each epoch
(the Brain does).

:class:`DynamicBatchSampler` packs examples of similar length together, as SpeechBrain does:
each example goes to the bucket of its length (bucket boundaries given, or ``num_buckets``
boundaries spread along a log-normal curve up to ``max_batch_length``), and a bucket is emitted
as a batch when it holds ``max_batch_length // boundary`` examples (at most ``max_batch_ex``),
so no batch's total padded length exceeds ``max_batch_length``.

Example:
    >>> lengths = [1.0, 2.0, 3.0, 2.5, 1.2, 0.8]
    >>> sampler = DynamicBatchSampler(range(6), 5.0, bucket_boundaries=[1.25, 2.5],
    ...                               lengths_list=lengths, shuffle=False,
    ...                               batch_ordering="ascending")
    >>> list(sampler)
    [[0, 4, 5], [1, 3], [2]]
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence, Sized
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, WeightedRandomSampler

__all__ = [
    "BalancingDataSampler",
    "ConcatDatasetBatchSampler",
    "DistributedSamplerWrapper",
    "DynamicBatchSampler",
    "ReproducibleRandomSampler",
    "ReproducibleWeightedRandomSampler",
]

logger = logging.getLogger(__name__)

BATCH_ORDERINGS = ("random", "ascending", "descending")


class _EpochSeeded:
    """Mixin: the sampler's own generator is seeded with ``seed + epoch`` at each iteration."""

    def _seed_generator(self, seed: int, epoch: int, kwargs: dict) -> None:
        if "generator" in kwargs:
            raise ValueError(f"{type(self).__name__} makes its own generator; drop generator=")
        self.seed = int(seed)
        self.epoch = epoch
        self.generator = torch.Generator()

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose draws to make."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class ReproducibleRandomSampler(_EpochSeeded, RandomSampler):
    """A ``RandomSampler`` whose order is drawn from ``seed + epoch`` at each iteration.

    Takes RandomSampler's arguments (``replacement``, ``num_samples``) except ``generator``.

    Example:
        >>> sampler = ReproducibleRandomSampler(range(5), seed=3)
        >>> list(sampler) == list(sampler)
        True
        >>> sampler.set_epoch(1)
        >>> sorted(sampler)
        [0, 1, 2, 3, 4]
    """

    def __init__(self, data_source: Sized, seed: int = 563375142, epoch: int = 0, **kwargs):
        self._seed_generator(seed, epoch, kwargs)
        super().__init__(data_source, generator=self.generator, **kwargs)


class ReproducibleWeightedRandomSampler(_EpochSeeded, WeightedRandomSampler):
    """A ``WeightedRandomSampler`` whose draws come from ``seed + epoch`` at each iteration.

    Example:
        >>> sampler = ReproducibleWeightedRandomSampler([0.0, 1.0, 0.0], 4, replacement=True)
        >>> list(sampler)
        [1, 1, 1, 1]
    """

    def __init__(
        self,
        weights: Sequence[float] | torch.Tensor,
        num_samples: int,
        replacement: bool,
        seed: int = 129491412,
        epoch: int = 0,
        **kwargs,
    ):
        self._seed_generator(seed, epoch, kwargs)
        super().__init__(weights, num_samples, replacement, generator=self.generator, **kwargs)


class BalancingDataSampler(ReproducibleWeightedRandomSampler):
    """Draws examples of a DynamicItemDataset so that every value of ``key`` (e.g. a class)
    comes up equally often on average: an example's weight is 1 / (count of its value).

    Example:
        >>> from speechlobes.dataio.dataset import DynamicItemDataset
        >>> data = {"a": {"cls": "x"}, "b": {"cls": "x"}, "c": {"cls": "y"}}
        >>> BalancingDataSampler(DynamicItemDataset(data), "cls").weights.tolist()
        [0.5, 0.5, 1.0]
    """

    def __init__(
        self,
        dataset: Any,
        key: str,
        num_samples: int | None = None,
        replacement: bool = True,
        seed: int = 563375142,
        epoch: int = 0,
        **kwargs,
    ):
        self.dataset = dataset
        self.key = key
        with dataset.output_keys_as([key]):
            values = [example[key] for example in dataset]
        counts = Counter(values)
        weights = 1.0 / torch.tensor([float(counts[value]) for value in values])
        super().__init__(weights, num_samples or len(dataset), replacement, seed, epoch, **kwargs)


class DistributedSamplerWrapper(DistributedSampler):
    """Give each rank its share of another sampler's output (indices or whole batches).

    ``DistributedSampler``'s arguments (``num_replicas``, ``rank``, ``shuffle``, ``seed``,
    ``drop_last``) choose the positions; ``set_epoch`` reaches the wrapped sampler too.

    Example:
        >>> batches = [[0, 1], [2, 3], [4]]
        >>> list(DistributedSamplerWrapper(batches, num_replicas=2, rank=1, shuffle=False))
        [[2, 3], [0, 1]]
    """

    def __init__(self, sampler: Any, *args, **kwargs):
        super().__init__(sampler, *args, **kwargs)
        self.sampler = sampler

    def __iter__(self) -> Iterator[Any]:
        outputs = list(self.sampler)
        return iter([outputs[position] for position in super().__iter__()])

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class ConcatDatasetBatchSampler(Sampler[list[int]]):
    """Batches for a ``torch.utils.data.ConcatDataset``: each batch takes ``batch_sizes[i]``
    indices from ``samplers[i]`` (offset into the concatenation), in order; an epoch ends
    when the sampler with the fewest full batches runs out.

    Example:
        >>> sampler = ConcatDatasetBatchSampler([range(4), range(6)], [1, 2])
        >>> list(sampler)
        [[0, 4, 5], [1, 6, 7], [2, 8, 9]]
    """

    def __init__(self, samplers: Sequence[Any], batch_sizes: Sequence[int], epoch: int = 0):
        if not isinstance(samplers, list | tuple):
            raise ValueError(f"samplers must be a list or tuple of samplers, got {samplers!r}")
        if not isinstance(batch_sizes, list | tuple):
            raise ValueError(f"batch_sizes must be a list or tuple, got {batch_sizes!r}")
        if len(batch_sizes) != len(samplers):
            raise ValueError(
                f"{len(samplers)} samplers but {len(batch_sizes)} batch sizes: give one each"
            )
        self.samplers = samplers
        self.batch_sizes = batch_sizes
        self.offsets = [0, *np.cumsum([len(sampler) for sampler in samplers]).tolist()[:-1]]
        self.epoch = epoch
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to every sampler that takes one."""
        self.epoch = epoch
        for sampler in self.samplers:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        iterators = [iter(sampler) for sampler in self.samplers]
        for _ in range(len(self)):
            batch = []
            for iterator, offset, size in zip(
                iterators, self.offsets, self.batch_sizes, strict=True
            ):
                batch.extend(offset + next(iterator) for _ in range(size))
            yield batch

    def __len__(self) -> int:
        return min(
            len(sampler) // size
            for sampler, size in zip(self.samplers, self.batch_sizes, strict=True)
        )


def lognormal_bucket_boundaries(max_batch_length: float, num_buckets: int) -> np.ndarray:
    """SpeechBrain's bucket boundaries: ``num_buckets`` quantiles of a log-normal(0, 1) at
    evenly spaced probabilities, scaled so the last boundary is ``max_batch_length``.

    Example:
        >>> lognormal_bucket_boundaries(100.0, 3).round(2).tolist()
        [25.95, 50.94, 100.0]
    """
    probabilities = np.arange(1, num_buckets + 1) / (num_buckets + 1)
    quantiles = np.exp([NormalDist().inv_cdf(p) for p in probabilities])
    return np.sort(quantiles * max_batch_length / quantiles[-1])


class DynamicBatchSampler(Sampler[list[int]]):
    """Yield lists of dataset indices; pass it as a DataLoader's ``batch_sampler``.

    Arguments:
        dataset: a DynamicItemDataset (lengths read by ``length_func`` from each example's
            static data), or any sized dataset together with ``lengths_list``.
        max_batch_length: bound on a batch's total padded length (the unit of the lengths,
            e.g. seconds). A longer single example forms a batch of its own.
        num_buckets: how many buckets, with log-normally spread boundaries (see
            :func:`lognormal_bucket_boundaries`); give it or ``bucket_boundaries``.
        length_func: reads the length from an example's static data.
        shuffle: draw the examples in a new order each epoch (otherwise the dataset order,
            e.g. sorted by length).
        batch_ordering: "random", or "ascending"/"descending" by each batch's longest example.
        max_batch_ex: bound on the number of examples in a batch.
        bucket_boundaries: explicit ascending upper bucket boundaries (replace num_buckets).
        lengths_list: the example lengths (replaces length_func).
        seed, epoch: draws come from ``seed + epoch``; see :meth:`set_epoch`.
        drop_last: drop the incomplete batches left in the buckets at the end of an epoch.
        verbose: log every batch's padding at debug level.
        rank, world_size: the process's place under torchrun (read from torch.distributed
            when it is initialised and these are None). Every rank builds the same batch list
            and takes every ``world_size``-th batch; batches are split (or, with drop_last,
            the last ones dropped) so every rank gets the same number.
    """

    def __init__(
        self,
        dataset: Any,
        max_batch_length: float,
        num_buckets: int | None = None,
        length_func: Callable[[dict[str, Any]], float] = lambda x: x["duration"],
        shuffle: bool = True,
        batch_ordering: str = "random",
        max_batch_ex: int | None = None,
        bucket_boundaries: Sequence[float] = (),
        lengths_list: Sequence[float] | None = None,
        seed: int = 42,
        epoch: int = 0,
        drop_last: bool = False,
        verbose: bool = False,
        *,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        if batch_ordering not in BATCH_ORDERINGS:
            raise ValueError(f"batch_ordering {batch_ordering!r}: choose one of {BATCH_ORDERINGS}")
        if max_batch_length <= 0:
            raise ValueError(f"max_batch_length must be positive, got {max_batch_length}")
        self._dataset = dataset
        self.lengths = _read_lengths(dataset, length_func, lengths_list)
        self._max_batch_length = max_batch_length
        self._max_batch_ex = np.inf if max_batch_ex is None else max_batch_ex
        self._shuffle_ex = shuffle
        self._batch_ordering = batch_ordering
        self._seed = seed
        self._epoch = epoch
        self._drop_last = drop_last
        self.verbose = verbose
        self.rank, self.world_size = _distributed_place(rank, world_size)
        self._bucket_boundaries = _boundaries(max_batch_length, num_buckets, bucket_boundaries)
        self._bucket_lens = [
            int(min(self._max_batch_ex, max(1, int(max_batch_length / boundary))))
            for boundary in self._bucket_boundaries
        ] + [1]
        too_long = int((self.lengths > self._bucket_boundaries[-1]).sum())
        if too_long:
            logger.warning(
                "%d examples are longer than the last bucket boundary %.4g; each forms a "
                "batch alone",
                too_long,
                self._bucket_boundaries[-1],
            )
        self._generate_batches()

    @property
    def bucket_boundaries(self) -> np.ndarray:
        """The upper boundaries of the buckets (a last bucket takes what lies beyond)."""
        return self._bucket_boundaries

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` (call before each epoch, as for DDP)."""
        self._epoch = epoch
        self._generate_batches()

    def get_durations(self, batch: Sequence[int]) -> list[float]:
        """The lengths of the examples of ``batch``."""
        return self.lengths[list(batch)].tolist()

    def all_batches(self) -> list[list[int]]:
        """Every rank's batches for the current epoch, in order (rank r takes r::world_size)."""
        return self._batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(self._batches) // self.world_size

    def padding_ratio(self) -> float:
        """Fraction of the padded batch area that is padding, over all of this epoch's batches."""
        padded = useful = 0.0
        for batch in self._batches:
            batch_lengths = self.lengths[batch]
            padded += batch_lengths.max() * len(batch)
            useful += batch_lengths.sum()
        return 1.0 - useful / padded if padded else 0.0

    def _generate_batches(self) -> None:
        if self._shuffle_ex:
            generator = torch.Generator().manual_seed(self._seed + self._epoch)
            order = torch.randperm(len(self._dataset), generator=generator).tolist()
        else:
            order = range(len(self._dataset))
        batches: list[list[int]] = []
        open_batches: list[list[int]] = [[] for _ in self._bucket_lens]
        for index in order:
            bucket = int(np.searchsorted(self._bucket_boundaries, self.lengths[index]))
            open_batches[bucket].append(index)
            if len(open_batches[bucket]) >= self._bucket_lens[bucket]:
                batches.append(open_batches[bucket])
                open_batches[bucket] = []
        if not self._drop_last:
            batches.extend(batch for batch in open_batches if batch)
        self._batches = self._even_out(self._ordered(batches))
        logger.info(
            "DynamicBatchSampler, epoch %d: %d batches, padding ratio %.3f",
            self._epoch,
            len(self._batches),
            self.padding_ratio(),
        )
        if self.verbose:
            for number, batch in enumerate(self._batches):
                lengths = self.lengths[batch]
                logger.debug(
                    "batch %d: %d examples, %.1f total length, %.1f padding",
                    number,
                    len(batch),
                    lengths.sum(),
                    (lengths.max() - lengths).sum(),
                )

    def _ordered(self, batches: list[list[int]]) -> list[list[int]]:
        if self._batch_ordering == "random":
            generator = torch.Generator().manual_seed(self._seed + self._epoch)
            return [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return sorted(
            batches,
            key=lambda batch: self.lengths[batch].max(),
            reverse=self._batch_ordering == "descending",
        )

    def _even_out(self, batches: list[list[int]]) -> list[list[int]]:
        """Make the batch count a multiple of world_size, keeping every index exactly once."""
        excess = len(batches) % self.world_size
        if excess == 0:
            return batches
        if self._drop_last:
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


def _boundaries(
    max_batch_length: float, num_buckets: int | None, bucket_boundaries: Sequence[float]
) -> np.ndarray:
    if len(bucket_boundaries) == 0:
        if num_buckets is None or num_buckets < 1:
            raise RuntimeError(
                "DynamicBatchSampler: give num_buckets (at least 1) or bucket_boundaries"
            )
        return lognormal_bucket_boundaries(max_batch_length, num_buckets)
    boundaries = np.asarray(bucket_boundaries, dtype=np.float64)
    if (boundaries < 0).any():
        raise ValueError(f"bucket_boundaries must be non-negative, got {list(bucket_boundaries)}")
    if len(np.unique(boundaries)) != len(boundaries) or (np.diff(boundaries) < 0).any():
        raise ValueError(
            f"bucket_boundaries must be ascending without duplicates, got {list(bucket_boundaries)}"
        )
    return boundaries


def _read_lengths(
    dataset: Any,
    length_func: Callable[[dict[str, Any]], float],
    lengths_list: Sequence[float] | None,
) -> np.ndarray:
    if lengths_list is not None:
        lengths = lengths_list
        if len(lengths) != len(dataset):
            raise ValueError(
                f"lengths_list has {len(lengths)} lengths for a dataset of {len(dataset)} examples"
            )
    elif hasattr(dataset, "data") and hasattr(dataset, "data_ids"):
        try:
            lengths = [length_func(dataset.data[data_id]) for data_id in dataset.data_ids]
        except KeyError as error:
            raise KeyError(
                f"{dataset.pipeline.source}: examples lack the length field {error}; pass "
                "length_func (e.g. lambda x: float(x['length'])) or lengths_list"
            ) from error
    else:
        raise TypeError(
            f"DynamicBatchSampler: a {type(dataset).__name__} has no static data to read "
            "lengths from; pass lengths_list (one length per example)"
        )
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
