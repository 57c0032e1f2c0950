"""DataLoaders that a Checkpointer can save mid-epoch, and an endlessly looping one.

As SpeechBrain's ``speechbrain.dataio.dataloader``: :func:`make_dataloader` collates a
DynamicItemDataset with ``PaddedBatch`` (other datasets with torch's default collate), turns
``shuffle=True`` into a :class:`ReproducibleRandomSampler`, and returns a
:class:`SaveableDataLoader` (a plain DataLoader for iterable datasets), or a
:class:`LoopedLoader` with ``looped_nominal_epoch``.

A SaveableDataLoader records how many batches of the epoch were handed out; after recovery
the next iteration skips exactly those. The skip walks the batch sampler only (indices, no
data loading) and draws nothing from the global random generators, so a run killed
mid-epoch and restarted continues bit-identically. Its own ``torch.Generator`` (which seeds
worker processes) is re-seeded from (seed, epoch) by :meth:`SaveableDataLoader.set_epoch`.

Example:
    >>> loader = make_dataloader(list(range(10)), batch_size=4, shuffle=True)
    >>> loader.set_epoch(1)
    >>> first = next(iter(loader))
    >>> loader.set_epoch(1)
    >>> torch.equal(next(iter(loader)), first)
    True
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from speechlobes.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.sampler import ReproducibleRandomSampler
from speechlobes.utils.seed import global_seed

__all__ = ["LoopedLoader", "SaveableDataLoader", "make_dataloader"]

logger = logging.getLogger(__name__)


def _set_epoch(obj: Any, epoch: int) -> None:
    if hasattr(obj, "set_epoch"):
        obj.set_epoch(epoch)


class _SkippingSampler(Sampler):
    """Wraps a (batch) sampler; the next iteration starts after ``skip`` items."""

    def __init__(self, sampler: Any):
        self.sampler = sampler
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        _set_epoch(self.sampler, epoch)
        _set_epoch(getattr(self.sampler, "sampler", None), epoch)

    def __iter__(self) -> Iterator[Any]:
        skip, self.skip = self.skip, 0
        for index, item in enumerate(self.sampler):
            if index >= skip:
                yield item

    def __len__(self) -> int:
        return len(self.sampler)


@register_checkpoint_hooks
class SaveableDataLoader(DataLoader):
    """A DataLoader whose position inside an epoch is saved by a Checkpointer.

    Takes DataLoader's arguments. Call ``set_epoch(epoch)`` before each epoch (the Brain
    does) so that shuffling depends on (seed, epoch) only. ``batches_consumed`` counts the
    batches handed out in the current epoch. A checkpoint loaded after the loader was first
    iterated (e.g. the best model, before testing) leaves its position alone.

    Example:
        >>> loader = SaveableDataLoader(list(range(6)), batch_size=2)
        >>> iterator = iter(loader); _ = next(iterator); loader.batches_consumed
        1
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        **kwargs,
    ):
        self.seed = global_seed()
        self.epoch = 0
        self.batches_consumed = 0
        self._iterated = False
        kwargs.setdefault("generator", torch.Generator().manual_seed(self.seed))
        common = dict(num_workers=num_workers, collate_fn=collate_fn, pin_memory=pin_memory)
        if isinstance(dataset, IterableDataset):
            logger.warning(
                "SaveableDataLoader cannot save the position in an IterableDataset; save the "
                "position on the dataset itself"
            )
            super().__init__(
                dataset, batch_size, shuffle, sampler, batch_sampler, drop_last=drop_last,
                **common, **kwargs,
            )  # fmt: skip
            self._skipper = None
            return
        built_here = batch_sampler is None and batch_size is not None
        if batch_sampler is None:
            if shuffle and sampler is not None:
                raise ValueError("give either a sampler or shuffle=True, not both")
            if sampler is None:
                sampler = (
                    RandomSampler(dataset, generator=kwargs["generator"])
                    if shuffle
                    else SequentialSampler(dataset)
                )
            if batch_size is not None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        elif sampler is not None or shuffle or batch_size != 1 or drop_last:
            raise ValueError("batch_sampler excludes sampler, shuffle, batch_size and drop_last")
        if batch_sampler is not None:
            self._skipper = _SkippingSampler(batch_sampler)
            super().__init__(dataset, batch_sampler=self._skipper, **common, **kwargs)
            if built_here:  # show the sampler and batch size asked for, as a DataLoader does
                shown = dict(sampler=sampler, batch_size=batch_size, drop_last=drop_last)
                for name, value in shown.items():
                    object.__setattr__(self, name, value)  # DataLoader forbids it after init
        else:  # batch_size=None: no batching, one index per item
            self._skipper = _SkippingSampler(sampler)
            super().__init__(dataset, batch_size=None, sampler=self._skipper, **common, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order (samplers' ``set_epoch``) and re-seed worker seeding."""
        self.epoch = epoch
        if self._skipper is not None:
            self._skipper.set_epoch(epoch)
        self.generator.manual_seed(self.seed + epoch)

    def __iter__(self) -> Iterator[Any]:
        self._iterated = True
        self.batches_consumed = self._skipper.skip if self._skipper is not None else 0
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
        if self._iterated or self._skipper is None:
            return  # already running (or unseekable): a checkpoint loaded for its model
        position = json.loads(Path(path).read_text())
        self.epoch = position["epoch"]
        self._skipper.skip = 0 if end_of_epoch else position["batches_consumed"]
        if self._skipper.skip:
            logger.info("resuming epoch %d after batch %d", self.epoch, self._skipper.skip)


def guess_batch_size(batch: Any) -> int:
    """The number of examples in a batch (PaddedBatch, tensor, or a sequence of tensors);
    1 when it cannot tell.

    Example:
        >>> guess_batch_size((torch.zeros(3, 2), torch.zeros(3)))
        3
    """
    if hasattr(batch, "batchsize"):
        return batch.batchsize
    if isinstance(batch, torch.Tensor) and batch.dim() > 0:
        return batch.shape[0]
    if isinstance(batch, list | tuple) and batch:
        first = batch[0]
        return first.shape[0] if isinstance(first, torch.Tensor) and first.dim() > 0 else 1
    return 1


@register_checkpoint_hooks
class LoopedLoader:
    """Loop a loader (or any iterable) for ever, in nominal epochs of ``epoch_length`` batches.

    Useful with endless (iterable) datasets. The counters ``step`` (in the nominal epoch),
    ``total_steps`` and ``total_samples`` are saved; after recovery the underlying iterable
    starts again from its beginning.

    Example:
        >>> looped = LoopedLoader([[1, 2], [3]], epoch_length=3)
        >>> list(looped), list(looped)
        ([[1, 2], [3], [1, 2]], [[3], [1, 2], [3]])
    """

    def __init__(
        self, loader: Any, epoch_length: int, batchsize_fn: Callable[[Any], int] | None = None
    ):
        self.loader = loader
        self.iterator: Iterator[Any] | None = None
        self.epoch_length = epoch_length
        self.step = 0
        self.total_steps = 0
        self.total_samples = 0
        self.batchsize_fn = batchsize_fn or guess_batch_size

    def __iter__(self) -> LoopedLoader:
        if self.iterator is None:
            self.iterator = iter(self.loader)
        return self

    def __next__(self) -> Any:
        if self.step >= self.epoch_length:
            self.step = 0
            raise StopIteration
        self.step += 1
        self.total_steps += 1
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            batch = next(self.iterator)
        self.total_samples += self.batchsize_fn(batch)
        return batch

    def __len__(self) -> int:
        return self.epoch_length

    @mark_as_saver
    def save(self, path: Path) -> None:
        counters = {"step": self.step, "total_steps": self.total_steps}
        Path(path).write_text(json.dumps({**counters, "total_samples": self.total_samples}))

    @mark_as_loader
    def load(self, path: Path, end_of_epoch: bool = True) -> None:
        counters = json.loads(Path(path).read_text())
        self.step = counters["step"]
        self.total_steps = counters["total_steps"]
        self.total_samples = counters["total_samples"]
        if not end_of_epoch and self.step == 0 and self.total_steps > 0:
            # saved after a nominal epoch ended (e.g. during validation): end at once
            self.step = self.epoch_length


def make_dataloader(
    dataset: Any, looped_nominal_epoch: int | None = None, **loader_kwargs
) -> DataLoader | LoopedLoader:
    """A DataLoader with SpeechBrain's defaults (see the module docstring).

    ``loader_kwargs`` are DataLoader arguments; ``shuffle=True`` is replaced by a
    :class:`ReproducibleRandomSampler` seeded with the global seed
    (:func:`speechlobes.utils.seed.global_seed`).
    """
    if "collate_fn" not in loader_kwargs and isinstance(dataset, DynamicItemDataset):
        loader_kwargs["collate_fn"] = PaddedBatch
    if loader_kwargs.get("shuffle", False):
        if loader_kwargs.get("sampler") is not None:
            raise ValueError("give either a sampler or shuffle=True, not both")
        loader_kwargs["sampler"] = ReproducibleRandomSampler(dataset, seed=global_seed())
        del loader_kwargs["shuffle"]
    if isinstance(dataset, IterableDataset):
        loader = DataLoader(dataset, **loader_kwargs)
    else:
        loader = SaveableDataLoader(dataset, **loader_kwargs)
    if looped_nominal_epoch is not None:
        return LoopedLoader(loader, looped_nominal_epoch)
    return loader
