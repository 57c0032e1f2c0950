"""PaddedBatch: the collate function that pads tensors and keeps their relative lengths.

As SpeechBrain's ``speechbrain.dataio.batch.PaddedBatch``: numpy arrays become tensors
(torch's ``default_convert``); each tensor field becomes ``PaddedData(data, lengths)``, the
tensors padded on the right to the batch maximum and ``lengths`` = length / longest along the
first (time) dimension; other fields are stacked when they can be (numbers and equal-shaped
tensors become one tensor) and stay lists otherwise (text).

Example:
    >>> batch = PaddedBatch([
    ...     {"id": "a", "sig": torch.tensor([1.0, 2.0, 3.0, 4.0]), "spk": 3},
    ...     {"id": "b", "sig": torch.tensor([5.0, 6.0]), "spk": 5},
    ... ])
    >>> batch.id, batch.spk
    (['a', 'b'], tensor([3, 5]))
    >>> batch.sig.data
    tensor([[1., 2., 3., 4.],
            [5., 6., 0., 0.]])
    >>> batch["sig"].lengths, batch.sig.abs_lengths
    (tensor([1.0000, 0.5000]), tensor([4, 2]))
    >>> ids, (wavs, wav_lens), speakers = batch
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data._utils.collate import default_convert

from speechlobes.nnet.lengths import relative_to_absolute_lengths

__all__ = ["PaddedBatch", "PaddedData", "batch_pad_right", "undo_padding"]


class PaddedData(NamedTuple):
    """A padded batch tensor (batch, time, ...) and relative lengths (batch,) along time."""

    data: torch.Tensor
    lengths: torch.Tensor

    @property
    def abs_lengths(self) -> torch.Tensor:
        """Integer lengths along the time dimension (int64)."""
        return relative_to_absolute_lengths(self.lengths, self.data.shape[1])

    def to(self, *args, **kwargs) -> PaddedData:
        return PaddedData(self.data.to(*args, **kwargs), self.lengths.to(*args, **kwargs))

    def pin_memory(self) -> PaddedData:
        return PaddedData(self.data.pin_memory(), self.lengths.pin_memory())


def batch_pad_right(
    tensors: Sequence[torch.Tensor], mode: str = "constant", value: float = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad tensors on the right to the largest size along every dimension and stack them.

    Returns the (batch, ...) tensor and the relative lengths along the first dimension (0
    when every tensor is empty). ``mode`` and ``value`` are ``torch.nn.functional.pad``'s.

    Example:
        >>> padded, lengths = batch_pad_right([torch.ones(2), torch.ones(4)], value=-1)
        >>> padded.tolist(), lengths.tolist()
        ([[1.0, 1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]], [0.5, 1.0])
    """
    if not len(tensors):
        raise IndexError("batch_pad_right: no tensors to pad")
    ranks = {tensor.dim() for tensor in tensors}
    if len(ranks) != 1:
        raise IndexError(f"cannot pad tensors of different ranks together: {sorted(ranks)}")
    max_shape = [max(sizes) for sizes in zip(*(tensor.shape for tensor in tensors), strict=True)]
    if mode == "constant":
        padded = tensors[0].new_full((len(tensors), *max_shape), value)
        for row, tensor in zip(padded, tensors, strict=True):
            row[tuple(slice(0, size) for size in tensor.shape)] = tensor
    else:
        padded = torch.stack([_pad_to(tensor, max_shape, mode) for tensor in tensors])
    lengths = torch.tensor([float(tensor.shape[0]) for tensor in tensors])
    return padded, lengths / max_shape[0] if max_shape[0] > 0 else lengths


def _pad_to(tensor: torch.Tensor, shape: list[int], mode: str) -> torch.Tensor:
    """Non-constant padding (reflect, replicate, circular) of the trailing dimensions that
    need it; torch pads at most the last three, of a tensor with a leading batch dimension."""
    pads = []
    for size, target in zip(reversed(tensor.shape), reversed(shape), strict=True):
        pads += [0, target - size]
    while pads and pads[-1] == 0:  # leading dimensions already at full size
        pads = pads[:-2]
    return F.pad(tensor[None], pads, mode=mode)[0] if pads else tensor


def undo_padding(batch: torch.Tensor, lengths: torch.Tensor) -> list[list[Any]]:
    """The rows of a padded (batch, time, ...) tensor cut to their relative ``lengths``, as
    nested lists.

    Example:
        >>> undo_padding(torch.tensor([[1, 2, 0], [3, 0, 0]]), torch.tensor([2 / 3, 1 / 3]))
        [[1, 2], [3]]
    """
    absolute = relative_to_absolute_lengths(lengths, batch.shape[1]).tolist()
    return [row[:length].tolist() for row, length in zip(batch, absolute, strict=True)]


class PaddedBatch:
    """Collate a list of example dicts into one batch (a DataLoader ``collate_fn``).

    Arguments:
        examples: dicts with the same keys, e.g. the outputs of a DynamicItemDataset.
        padded_keys: the keys to pad; by default every key whose values are tensors with at
            least one dimension (after ``default_convert``, so numpy arrays count).
        device_prep_keys: the keys :meth:`to` and :meth:`pin_memory` move; by default every
            field holding tensors.
        padding_func: ``padding_func(tensors, **kwargs) -> (padded, relative_lengths)``.
        padding_kwargs: keyword arguments of ``padding_func`` for every key, e.g.
            ``{"value": -100}``.
        per_key_padding_kwargs: ``{key: kwargs}`` replacing ``padding_kwargs`` for those keys.
        apply_default_convert: convert numpy arrays and numbers with torch's
            ``default_convert`` first.
        nonpadded_stack: stack the fields that are not padded when they can be (numbers, numpy
            scalars, equal-shaped tensors); the others stay lists.

    Fields are read as attributes or items (``batch.sig``, ``batch["sig"]``); iterating
    yields the fields in key order, so ``ids, sigs = batch`` unpacks them. ``len(batch)`` is
    the number of examples.
    """

    def __init__(
        self,
        examples: Sequence[dict[str, Any]],
        padded_keys: Sequence[str] | None = None,
        device_prep_keys: Sequence[str] | None = None,
        padding_func: Callable[..., tuple[torch.Tensor, torch.Tensor]] = batch_pad_right,
        padding_kwargs: dict[str, Any] | None = None,
        per_key_padding_kwargs: dict[str, dict[str, Any]] | None = None,
        apply_default_convert: bool = True,
        nonpadded_stack: bool = True,
    ):
        if not examples:
            raise ValueError("PaddedBatch needs at least one example")
        self._keys = list(examples[0].keys())
        for example in examples:
            if set(example.keys()) != set(self._keys):
                raise ValueError(
                    f"example {example.get('id', '')!r} has keys {sorted(example)}, the first "
                    f"example has {sorted(self._keys)}; every example needs the same keys"
                )
        self._batchsize = len(examples)
        per_key_padding_kwargs = per_key_padding_kwargs or {}
        self._device_prep_keys = []
        for key in self._keys:
            if key.startswith("_") or hasattr(PaddedBatch, key):
                raise ValueError(
                    f"field {key!r} clashes with a PaddedBatch attribute; rename it, e.g. "
                    f"dataset.set_output_keys({{'{key}_': '{key}', ...}})"
                )
            values = [example[key] for example in examples]
            if apply_default_convert:
                values = default_convert(values)
            if _should_pad(key, values, padded_keys):
                kwargs = per_key_padding_kwargs.get(key, padding_kwargs or {})
                field = PaddedData(*padding_func(values, **kwargs))
            elif nonpadded_stack:
                field = _stack_if_possible(values)
            else:
                field = values
            setattr(self, key, field)
            holds_tensors = isinstance(field, torch.Tensor | PaddedData) or any(
                isinstance(value, torch.Tensor) for value in field
            )
            if (device_prep_keys is None and holds_tensors) or (
                device_prep_keys is not None and key in device_prep_keys
            ):
                self._device_prep_keys.append(key)

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(f"the batch has no field {key!r}; fields: {self._keys}")
        return getattr(self, key)

    def __iter__(self) -> Iterator[Any]:
        return (getattr(self, key) for key in self._keys)

    def __len__(self) -> int:
        return self._batchsize

    @property
    def batchsize(self) -> int:
        """The number of examples."""
        return self._batchsize

    def keys(self) -> list[str]:
        """The field names, in example order."""
        return list(self._keys)

    def at_position(self, position: int) -> Any:
        """The field at ``position`` in key order."""
        return getattr(self, self._keys[position])

    def to(self, *args, **kwargs) -> PaddedBatch:
        """Move the tensor fields (``Tensor.to`` arguments), in place; returns the batch."""
        for key in self._device_prep_keys:
            setattr(self, key, _recursive_to(getattr(self, key), *args, **kwargs))
        return self

    def pin_memory(self) -> PaddedBatch:
        """Pin the tensor fields in page-locked memory (called by a DataLoader)."""
        for key in self._device_prep_keys:
            setattr(self, key, _recursive_pin(getattr(self, key)))
        return self


def _should_pad(key: str, values: list[Any], padded_keys: Sequence[str] | None) -> bool:
    if padded_keys is not None:
        if key in padded_keys and not all(isinstance(v, torch.Tensor) for v in values):
            raise ValueError(f"field {key!r} is in padded_keys but not every value is a tensor")
        return key in padded_keys
    return isinstance(values[0], torch.Tensor) and values[0].dim() > 0


def _stack_if_possible(values: list[Any]) -> Any:
    """One tensor from numbers, numpy scalars or equal-shaped tensors; else the list."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        if all(isinstance(v, torch.Tensor) and v.shape == first.shape for v in values):
            return torch.stack(values)
        return values
    if isinstance(first, np.ndarray | np.number) and first.dtype.kind in "biufc":
        return _stack_if_possible([torch.as_tensor(value) for value in values])
    if isinstance(first, float) and all(isinstance(v, int | float) for v in values):
        return torch.tensor(values, dtype=torch.float64)
    if isinstance(first, int) and all(isinstance(v, int) for v in values):
        return torch.tensor(values)
    return values


def _recursive_to(value: Any, *args, **kwargs) -> Any:
    if isinstance(value, torch.Tensor | PaddedData):
        return value.to(*args, **kwargs)
    if isinstance(value, Mapping):
        return {key: _recursive_to(item, *args, **kwargs) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_recursive_to(item, *args, **kwargs) for item in value]
    return value


def _recursive_pin(value: Any) -> Any:
    if isinstance(value, torch.Tensor | PaddedData):
        return value.pin_memory()
    if isinstance(value, Mapping):
        return {key: _recursive_pin(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_recursive_pin(item) for item in value]
    return value
