"""PaddedBatch: the collate function that pads tensors and keeps their relative lengths.

Each tensor field becomes ``PaddedData(data, lengths)``: the tensors padded on the right to
the batch maximum along every dimension, and ``lengths`` = length / longest along the first
(time) dimension, SpeechBrain's relative lengths. Other fields stay lists.

Example:
    >>> batch = PaddedBatch([
    ...     {"id": "a", "sig": torch.tensor([1.0, 2.0, 3.0, 4.0])},
    ...     {"id": "b", "sig": torch.tensor([5.0, 6.0])},
    ... ])
    >>> batch.id
    ['a', 'b']
    >>> batch.sig.data
    tensor([[1., 2., 3., 4.],
            [5., 6., 0., 0.]])
    >>> batch["sig"].lengths, batch.sig.abs_lengths
    (tensor([1.0000, 0.5000]), tensor([4, 2]))
    >>> ids, (wavs, wav_lens) = batch
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from speechlobes.nnet.lengths import relative_to_absolute_lengths


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


def pad_right(tensors: Sequence[torch.Tensor], value: float = 0.0) -> PaddedData:
    """Pad tensors with ``value`` to the largest size along every dimension and stack them.

    Relative lengths are taken along the first dimension (0 when every tensor is empty).
    """
    ranks = {tensor.dim() for tensor in tensors}
    if len(ranks) != 1:
        raise ValueError(f"cannot pad tensors of different ranks together: {sorted(ranks)}")
    max_shape = [max(sizes) for sizes in zip(*(tensor.shape for tensor in tensors), strict=True)]
    padded = tensors[0].new_full((len(tensors), *max_shape), value)
    for row, tensor in zip(padded, tensors, strict=True):
        row[tuple(slice(0, size) for size in tensor.shape)] = tensor
    lengths = torch.tensor([float(tensor.shape[0]) for tensor in tensors])
    return PaddedData(padded, lengths / max_shape[0] if max_shape[0] > 0 else lengths)


class PaddedBatch:
    """Collate a list of example dicts into one batch (a DataLoader ``collate_fn``).

    Arguments:
        examples: dicts with the same keys, e.g. the outputs of a DynamicItemDataset.
        padded_keys: the keys to pad; by default every key whose values are tensors with at
            least one dimension (numpy arrays count as tensors). 0-d tensors are stacked.
        device_prep_keys: the keys :meth:`to` and :meth:`pin_memory` move; by default every
            tensor field.
        padding_kwargs: ``{"value": v}`` to pad with ``v`` instead of 0.

    Fields are read as attributes or items (``batch.sig``, ``batch["sig"]``); iterating
    yields the fields in key order, so ``ids, sigs = batch`` unpacks them (SpeechBrain).
    ``len(batch)`` is the number of examples.
    """

    def __init__(
        self,
        examples: Sequence[dict[str, Any]],
        padded_keys: Sequence[str] | None = None,
        device_prep_keys: Sequence[str] | None = None,
        padding_kwargs: dict[str, Any] | None = None,
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
        value = (padding_kwargs or {}).get("value", 0.0)
        tensor_keys = []
        for key in self._keys:
            if key.startswith("_") or hasattr(PaddedBatch, key):
                raise ValueError(
                    f"field {key!r} clashes with a PaddedBatch attribute; rename it, e.g. "
                    f"dataset.set_output_keys({{'{key}_': '{key}', ...}})"
                )
            values = [_as_tensor(example[key]) for example in examples]
            is_tensor = all(isinstance(item, torch.Tensor) for item in values)
            if padded_keys is not None and key in padded_keys and not is_tensor:
                raise ValueError(f"field {key!r} is in padded_keys but not every value is a tensor")
            if (padded_keys is not None and key in padded_keys) or (
                padded_keys is None and is_tensor and values[0].dim() > 0
            ):
                field = pad_right(values, value)
            elif is_tensor and all(item.dim() == 0 for item in values):
                field = torch.stack(values)
            else:
                field = [example[key] for example in examples]
            if not isinstance(field, list):
                tensor_keys.append(key)
            setattr(self, key, field)
        self._device_prep_keys = tensor_keys if device_prep_keys is None else device_prep_keys

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
        return self._batchsize

    def keys(self) -> list[str]:
        return list(self._keys)

    def to(self, *args, **kwargs) -> PaddedBatch:
        """Move the tensor fields (``Tensor.to`` arguments), in place; returns the batch."""
        for key in self._device_prep_keys:
            setattr(self, key, getattr(self, key).to(*args, **kwargs))
        return self

    def pin_memory(self) -> PaddedBatch:
        """Pin the tensor fields in page-locked memory (called by a DataLoader)."""
        for key in self._device_prep_keys:
            setattr(self, key, getattr(self, key).pin_memory())
        return self


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return torch.from_numpy(value)
    return value
