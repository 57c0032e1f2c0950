"""A resumable DataLoader: an epoch's order is a function of (seed, epoch), and a mid-epoch
checkpoint records how many batches were consumed so a restart skips exactly those.

Skipping walks the batch sampler only (indices, no data loading) and draws no random numbers
from the global generators, which is what makes a killed-and-restarted run bit-identical to an
uninterrupted one. The loader's own ``torch.Generator`` (which seeds workers) is re-seeded
from (seed, epoch) too.

Example:
    >>> loader = make_dataloader(list(range(10)), batch_size=4, shuffle=True, seed=3,
    ...                          collate_fn=list)
    >>> loader.set_epoch(1)
    >>> first = next(iter(loader))
    >>> loader.set_epoch(1)
    >>> next(iter(loader)) == first
    True
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    Sampler,
    SequentialSampler,
)

from speechlobes.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

__all__ = [
    "DistributedBatchSampler",
    "EpochRandomSampler",
    "ResumableDataLoader",
    "make_dataloader",
]

logger = logging.getLogger(__name__)


def _set_epoch(obj: Any, epoch: int) -> None:
    if hasattr(obj, "set_epoch"):
        obj.set_epoch(epoch)


class EpochRandomSampler(Sampler[int]):
    """A random permutation drawn from a generator seeded with ``seed + epoch``.

    Example:
        >>> sampler = EpochRandomSampler(5, seed=0)
        >>> sampler.set_epoch(2)
        >>> sorted(sampler)
        [0, 1, 2, 3, 4]
    """

    def __init__(self, data_source: Sized | int, seed: int = 0):
        self.num_samples = data_source if isinstance(data_source, int) else len(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


class DistributedBatchSampler(Sampler[list[int]]):
    """Give rank ``r`` of ``world_size`` the batches ``r, r + world_size, ...`` of a batch sampler.

    The batch list is padded by repeating its first batches so every rank gets the same number
    (DDP needs equal step counts). ``set_epoch`` is forwarded to the wrapped sampler.

    Example:
        >>> batches = [[0, 1], [2, 3], [4]]
        >>> list(DistributedBatchSampler(batches, rank=1, world_size=2))
        [[2, 3], [0, 1]]
    """

    def __init__(self, batch_sampler: Any, rank: int, world_size: int):
        self.batch_sampler = batch_sampler
        self.rank = rank
        self.world_size = world_size

    def set_epoch(self, epoch: int) -> None:
        _set_epoch(self.batch_sampler, epoch)

    def __iter__(self) -> Iterator[list[int]]:
        batches = list(self.batch_sampler)
        padded = batches + batches[: len(self) * self.world_size - len(batches)]
        return iter(padded[self.rank :: self.world_size])

    def __len__(self) -> int:
        return math.ceil(len(self.batch_sampler) / self.world_size)


class _SkippingBatchSampler(Sampler[list[int]]):
    """Wraps a batch sampler; the next iteration starts after ``skip`` batches."""

    def __init__(self, batch_sampler: Any):
        self.batch_sampler = batch_sampler
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        _set_epoch(self.batch_sampler, epoch)
        _set_epoch(getattr(self.batch_sampler, "sampler", None), epoch)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        for index, batch in enumerate(self.batch_sampler):
            if index >= skip:
                yield batch

    def __len__(self) -> int:
        return len(self.batch_sampler)


@register_checkpoint_hooks
class ResumableDataLoader(DataLoader):
    """A DataLoader whose position inside an epoch is saved by a Checkpointer.

    Build it with :func:`make_dataloader`. Call ``set_epoch(epoch)`` before each epoch (the
    Brain does) so shuffling depends on (seed, epoch) only. ``batches_consumed`` counts the
    batches handed out in the current epoch; a Checkpointer saves it with the epoch.

    Example:
        >>> loader = make_dataloader(list(range(6)), batch_size=2, collate_fn=list)
        >>> iterator = iter(loader); _ = next(iterator); loader.batches_consumed
        1
    """

    def __init__(self, dataset: Any, batch_sampler: Any, seed: int = 0, **kwargs):
        self.seed = seed
        self.epoch = 0
        self.batches_consumed = 0
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        super().__init__(dataset, batch_sampler=_SkippingBatchSampler(batch_sampler), **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order (samplers' ``set_epoch``) and re-seed worker seeding."""
        self.epoch = epoch
        self.batch_sampler.set_epoch(epoch)
        self.generator.manual_seed(self.seed + epoch)

    def __iter__(self) -> Iterator[Any]:
        self.batches_consumed = self.batch_sampler.skip
        for batch in super().__iter__():
            self.batches_consumed += 1
            yield batch
        self.batches_consumed = 0

    @mark_as_saver
    def _save(self, path: Path) -> None:
        position = {"epoch": self.epoch, "batches_consumed": self.batches_consumed}
        Path(path).write_text(json.dumps(position))

    @mark_as_loader
    def _load(self, path: Path, end_of_epoch: bool) -> None:
        position = json.loads(Path(path).read_text())
        self.epoch = position["epoch"]
        self.batch_sampler.skip = 0 if end_of_epoch else position["batches_consumed"]
        if self.batch_sampler.skip:
            logger.info("resuming epoch %d after batch %d", self.epoch, self.batch_sampler.skip)


def make_dataloader(
    dataset: Any,
    batch_size: int = 1,
    shuffle: bool = False,
    sampler: Any = None,
    batch_sampler: Any = None,
    drop_last: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    collate_fn: Any = None,
    **kwargs,
) -> DataLoader:
    """Build a :class:`ResumableDataLoader` (a plain DataLoader for iterable datasets).

    ``shuffle`` uses :class:`EpochRandomSampler` (``seed + epoch``). With ``world_size > 1``
    a plain loader gets a ``DistributedSampler`` and a given ``batch_sampler`` is split with
    :class:`DistributedBatchSampler`, unless it splits itself (its ``world_size`` attribute
    already equals ``world_size``, as a ``DynamicBatchSampler``'s does). ``collate_fn`` defaults to
    ``speechlobes.dataio.batch.PaddedBatch``; other kwargs go to ``DataLoader``.
    """
    if collate_fn is None:
        from speechlobes.dataio.batch import PaddedBatch

        collate_fn = PaddedBatch
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn, **kwargs)
    if batch_sampler is not None:
        if sampler is not None or shuffle or batch_size != 1 or drop_last:
            raise ValueError("batch_sampler excludes sampler, shuffle, batch_size and drop_last")
        if world_size > 1 and getattr(batch_sampler, "world_size", 1) != world_size:
            batch_sampler = DistributedBatchSampler(batch_sampler, rank, world_size)
    else:
        if sampler is not None and shuffle:
            raise ValueError("give either a sampler or shuffle=True, not both")
        if sampler is None and world_size > 1:
            sampler = DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
            )
        elif sampler is None:
            sampler = EpochRandomSampler(dataset, seed) if shuffle else SequentialSampler(dataset)
        batch_sampler = BatchSampler(sampler, batch_size, drop_last)
    return ResumableDataLoader(dataset, batch_sampler, seed=seed, collate_fn=collate_fn, **kwargs)
