"""What processors return: a dict whose keys are also attributes, and the list -> tensor step.

``BatchEncoding`` plays the part of transformers' ``BatchEncoding`` / ``BatchFeature``:
``inputs["input_values"]`` and ``inputs.input_values`` are the same object, and ``model(**inputs)``
passes every field by name.

Example:
    >>> batch = BatchEncoding({"input_ids": as_tensors([[5, 6], [7, 8]], "pt")})
    >>> batch.input_ids.tolist(), list(batch)
    ([[5, 6], [7, 8]], ['input_ids'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

TENSOR_TYPES = (None, "pt", "np")


class BatchEncoding(dict):
    """A dict of model inputs whose keys read as attributes (``inputs.input_ids``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"no field {name!r} in this batch; fields: {sorted(self)}"
            ) from None

    def to(self, device: str | torch.device) -> BatchEncoding:
        """The same batch with every tensor moved to ``device``."""
        return BatchEncoding(
            {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.items()}
        )


def check_tensor_type(return_tensors: str | None) -> None:
    if return_tensors not in TENSOR_TYPES:
        raise ValueError(f"return_tensors={return_tensors!r}: choose 'pt', 'np' or None")


def as_tensors(rows: Sequence, return_tensors: str | None, dtype: str = "int64") -> Any:
    """Rows of equal length -> one (batch, length) tensor ('pt') or array ('np'); None keeps them.

    Rows of different lengths cannot stack: the error says to pad.
    """
    check_tensor_type(return_tensors)
    if return_tensors is None:
        return rows
    lengths = {len(row) for row in rows}
    if len(lengths) > 1:
        raise ValueError(
            f"cannot make one tensor of rows of lengths {sorted(lengths)}: pass padding=True "
            "(or padding='max_length' with max_length) to pad them"
        )
    array = np.asarray(rows, dtype=dtype)
    return torch.from_numpy(array) if return_tensors == "pt" else array


def padded_length(
    lengths: Sequence[int],
    padding: bool | str,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
) -> int | None:
    """The length rows of ``lengths`` are padded to (None: no padding).

    ``padding``: False / "do_not_pad", True / "longest", or "max_length" (with ``max_length``;
    longer rows keep their length), then rounded up to a multiple of ``pad_to_multiple_of``.
    """
    if padding in (False, "do_not_pad"):
        return None
    if padding in (True, "longest"):
        length = max(lengths)
    elif padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        length = max(max_length, *lengths)
    else:
        raise ValueError(f"padding={padding!r}: choose False, True, 'longest' or 'max_length'")
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    return length


def id_rows(sequences: Any) -> list[list[int]]:
    """A batch of id sequences (nested lists, a 2-D tensor or array) -> lists of ints."""
    if isinstance(sequences, (torch.Tensor, np.ndarray)):
        if sequences.ndim != 2:
            raise ValueError(
                f"batch_decode expects (batch, length) ids, got shape {tuple(sequences.shape)}; "
                "use decode for one sequence"
            )
        return [[int(i) for i in row] for row in sequences.tolist()]
    return [id_list(row) for row in sequences]


def id_list(ids: Any) -> list[int]:
    """One id sequence (an int, a list, a 1-D tensor or array) -> a list of ints."""
    if isinstance(ids, (torch.Tensor, np.ndarray)):
        if ids.ndim > 1:
            raise ValueError(
                f"decode expects one sequence of ids, got shape {tuple(ids.shape)}; "
                "use batch_decode for a batch"
            )
        ids = ids.tolist()
    if isinstance(ids, (int, np.integer)):
        return [int(ids)]
    return [int(i) for i in ids]
