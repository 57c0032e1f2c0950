"""Label encoders: categories, multi-label sets and characters <-> integer indices.

The saved text format is SpeechBrain's (``'label' => index`` lines, a ``====`` separator,
then ``'key' => value`` extras), so label files of ported SpeechBrain models load as they are.

Example:
    >>> encoder = CategoricalEncoder()
    >>> encoder.update_from_iterable(["dog", "cat", "dog"])
    >>> encoder.encode_sequence(["cat", "dog"])
    [1, 0]
    >>> encoder.decode_ndim(torch.tensor([[0, 1], [1, 1]]))
    [['dog', 'cat'], ['cat', 'cat']]
"""

from __future__ import annotations

import ast
import os
import tempfile
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import torch

VALUE_SEPARATOR = " => "
EXTRAS_SEPARATOR = "================\n"


class CategoricalEncoder:
    """A one-to-one map between labels and integer indices.

    Arguments:
        starting_index: the index given to the first label.
        unk_label: when set, unknown labels encode to this label's index; otherwise encoding
            an unknown label raises a KeyError naming it.

    Example:
        >>> encoder = CategoricalEncoder(unk_label="<unk>")
        >>> encoder.update_from_iterable(["yes", "no"])
        >>> encoder.encode_label("maybe") == encoder.encode_label("<unk>")
        True
        >>> encoder.decode_ndim([1, 2])
        ['yes', 'no']
    """

    def __init__(self, starting_index: int = 0, unk_label: Hashable | None = None):
        self.starting_index = starting_index
        self.lab2ind: dict[Hashable, int] = {}
        self.ind2lab: dict[int, Hashable] = {}
        self.unk_label: Hashable | None = None
        if unk_label is not None:
            self.add_unk(unk_label)

    def __len__(self) -> int:
        return len(self.lab2ind)

    def __contains__(self, label: Hashable) -> bool:
        return label in self.lab2ind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} labels, starting_index={self.starting_index})"

    def add_label(self, label: Hashable) -> int:
        """Add a new label at the next free index; a label already present is an error."""
        if label in self.lab2ind:
            raise KeyError(f"label {label!r} is already encoded as {self.lab2ind[label]}")
        index = self.starting_index
        while index in self.ind2lab:
            index += 1
        self._bind(label, index)
        return index

    def ensure_label(self, label: Hashable) -> int:
        """The label's index, adding the label if it is new."""
        return self.lab2ind[label] if label in self.lab2ind else self.add_label(label)

    def insert_label(self, label: Hashable, index: int) -> None:
        """Put a new label at ``index``; a label already there moves to the next free index."""
        if label in self.lab2ind:
            raise KeyError(f"label {label!r} is already encoded as {self.lab2ind[label]}")
        displaced = self.ind2lab.pop(index, None)
        self._bind(label, index)
        if displaced is not None:
            del self.lab2ind[displaced]
            self.add_label(displaced)

    def add_unk(self, unk_label: Hashable = "<unk>") -> int:
        """Map every unknown label to ``unk_label`` from now on."""
        self.unk_label = unk_label
        return self.ensure_label(unk_label)

    def update_from_iterable(self, iterable: Iterable[Any], sequence_input: bool = False) -> None:
        """Add every new label, in order of first appearance (from sequences if asked)."""
        for item in iterable:
            for label in item if sequence_input else [item]:
                self.ensure_label(label)

    def update_from_didataset(
        self, didataset: Any, output_key: str, sequence_input: bool = False
    ) -> None:
        """Add the labels of one output key of a DynamicItemDataset."""
        with didataset.output_keys_as([output_key]):
            self.update_from_iterable(
                (example[output_key] for example in didataset), sequence_input
            )

    def encode_label(self, label: Hashable, allow_unk: bool = True) -> int:
        """The label's index; an unknown label maps to ``unk_label`` or raises KeyError."""
        if label in self.lab2ind:
            return self.lab2ind[label]
        if allow_unk and self.unk_label is not None:
            return self.lab2ind[self.unk_label]
        raise KeyError(
            f"label {label!r} is not in the encoder ({len(self)} labels) and no unk_label is "
            "set; update the encoder from all the data, or set unk_label"
        )

    def encode_label_torch(self, label: Hashable, allow_unk: bool = True) -> torch.Tensor:
        """The label's index as a LongTensor of shape (1,)."""
        return torch.LongTensor([self.encode_label(label, allow_unk)])

    def encode_sequence(self, sequence: Iterable[Hashable], allow_unk: bool = True) -> list[int]:
        """Indices of a sequence of labels (a string is a sequence of characters)."""
        return [self.encode_label(label, allow_unk) for label in sequence]

    def encode_sequence_torch(
        self, sequence: Iterable[Hashable], allow_unk: bool = True
    ) -> torch.Tensor:
        """Indices of a sequence of labels as a LongTensor."""
        return torch.LongTensor(self.encode_sequence(sequence, allow_unk))

    def decode_label(self, index: int) -> Hashable:
        """The label at ``index``."""
        index = int(index)
        if index not in self.ind2lab:
            raise KeyError(f"index {index} is not in the encoder ({len(self)} labels)")
        return self.ind2lab[index]

    def decode_torch(self, indices: torch.Tensor) -> list[Hashable]:
        """Labels of a 1-D tensor of indices."""
        return [self.decode_label(index) for index in indices.tolist()]

    def decode_ndim(self, indices: Any) -> Any:
        """Labels of indices nested to any depth (lists, tuples or tensors)."""
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        if isinstance(indices, list | tuple):
            return [self.decode_ndim(item) for item in indices]
        return self.decode_label(indices)

    def extras(self) -> dict[str, Any]:
        """The settings saved after the labels."""
        extras: dict[str, Any] = {"starting_index": self.starting_index}
        if self.unk_label is not None:
            extras["unk_label"] = self.unk_label
        return extras

    def _set_extras(self, extras: dict[str, Any]) -> None:
        self.starting_index = extras.get("starting_index", 0)
        self.unk_label = extras.get("unk_label")

    def save(self, path: str | os.PathLike) -> None:
        """Write the labels and extras as text (atomically: a reader never sees half a file)."""
        path = os.fspath(path)
        lines = [f"{label!r}{VALUE_SEPARATOR}{index}\n" for label, index in self.lab2ind.items()]
        lines.append(EXTRAS_SEPARATOR)
        lines += [f"{key!r}{VALUE_SEPARATOR}{value!r}\n" for key, value in self.extras().items()]
        folder = os.path.dirname(os.path.abspath(path))
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, encoding="utf-8") as tmp:
            tmp.writelines(lines)
        os.replace(tmp.name, path)

    def load(self, path: str | os.PathLike) -> None:
        """Replace the labels and extras with those saved in ``path``."""
        path = os.fspath(path)
        self.lab2ind, self.ind2lab = {}, {}
        extras: dict[str, Any] = {}
        in_extras = False
        with open(path, encoding="utf-8") as label_file:
            for line_number, line in enumerate(label_file, start=1):
                if line == EXTRAS_SEPARATOR:
                    in_extras = True
                    continue
                key, value = _parse_line(line, path, line_number)
                if in_extras:
                    extras[key] = ast.literal_eval(value)
                else:
                    self._bind(key, int(value))
        self._set_extras(extras)

    def load_if_possible(self, path: str | os.PathLike) -> bool:
        """Load ``path`` if it exists; returns whether it did."""
        if not os.path.isfile(path):
            return False
        self.load(path)
        return True

    def load_or_create(
        self,
        path: str | os.PathLike,
        from_iterables: Sequence[Iterable[Any]] = (),
        from_didatasets: Sequence[Any] = (),
        sequence_input: bool = False,
        output_key: str | None = None,
        special_labels: dict[str, Hashable] | None = None,
    ) -> None:
        """Load ``path``, or build the encoder from the data and save it there.

        ``special_labels`` (e.g. ``{"unk_label": "<unk>"}``, or for a TextEncoder
        ``{"blank_label": "<blank>", "bos_label": "<bos>", "eos_label": "<eos>"}``) are
        added first. Under distributed training, call it on the main process first.
        """
        if self.load_if_possible(path):
            return
        self.add_special_labels(special_labels or {})
        for iterable in from_iterables:
            self.update_from_iterable(iterable, sequence_input)
        for didataset in from_didatasets:
            if output_key is None:
                raise ValueError("load_or_create from datasets needs output_key")
            self.update_from_didataset(didataset, output_key, sequence_input)
        self.save(path)

    def add_special_labels(self, special_labels: dict[str, Hashable]) -> None:
        """Add special labels by role; this encoder knows ``unk_label``."""
        for role, label in special_labels.items():
            if role != "unk_label":
                raise ValueError(f"{type(self).__name__} has no special label {role!r}")
            self.add_unk(label)

    def _bind(self, label: Hashable, index: int) -> None:
        if index in self.ind2lab:
            raise KeyError(f"index {index} already holds label {self.ind2lab[index]!r}")
        self.lab2ind[label] = index
        self.ind2lab[index] = label


class MultiLabelEncoder(CategoricalEncoder):
    """Label sets <-> multi-hot float vectors (e.g. AudioSet's several tags per clip).

    Example:
        >>> encoder = MultiLabelEncoder()
        >>> encoder.update_from_iterable([["Speech", "Music"], ["Dog"]], sequence_input=True)
        >>> encoder.encode_labels("Music,Dog")
        tensor([0., 1., 1.])
        >>> encoder.decode_multi_hot(torch.tensor([0.9, 0.2, 0.7]))
        ['Speech', 'Dog']
        >>> encoder.decode_topk(torch.tensor([0.1, 0.8, 0.3]), k=2)
        [('Music', 0.800000011920929), ('Dog', 0.30000001192092896)]
    """

    def __init__(self, unk_label: Hashable | None = None):
        super().__init__(starting_index=0, unk_label=unk_label)

    def encode_labels(self, labels: Iterable[Hashable] | str, separator: str = ",") -> torch.Tensor:
        """Multi-hot vector (num_labels,) of a label list, or of a ``separator``-joined string."""
        if isinstance(labels, str):
            labels = [label.strip() for label in labels.split(separator) if label.strip()]
        vector = torch.zeros(len(self))
        vector[self.encode_sequence(labels)] = 1.0
        return vector

    def decode_multi_hot(self, scores: torch.Tensor, threshold: float = 0.5) -> list[Any]:
        """Labels whose score reaches ``threshold``; (batch, labels) gives one list per row."""
        if scores.dim() == 2:
            return [self.decode_multi_hot(row, threshold) for row in scores]
        return self.decode_torch(torch.nonzero(scores >= threshold).flatten())

    def decode_topk(self, scores: torch.Tensor, k: int = 5) -> list[Any]:
        """The k best ``(label, score)`` pairs, best first; (batch, labels) gives one list per row."""
        if scores.dim() == 2:
            return [self.decode_topk(row, k) for row in scores]
        top = torch.topk(scores, min(k, scores.numel()))
        return list(zip(self.decode_torch(top.indices), top.values.tolist(), strict=True))

    def _set_extras(self, extras: dict[str, Any]) -> None:
        super()._set_extras(extras)
        if self.starting_index != 0:
            raise ValueError("a MultiLabelEncoder file must have starting_index 0")


class TextEncoder(CategoricalEncoder):
    """Characters (or tokens) <-> indices, with CTC blank, bos/eos and unk labels.

    Similar to SpeechBrain's CTCTextEncoder; collapsing CTC repeats is the CTC decoder's job.

    Example:
        >>> encoder = TextEncoder()
        >>> encoder.insert_blank()
        >>> encoder.update_from_iterable(["ab ba"], sequence_input=True)
        >>> encoder.add_bos_eos()
        >>> encoder.encode_sequence("abba")
        [1, 2, 2, 1]
        >>> encoder.append_eos_index(encoder.encode_sequence("ab"))
        [1, 2, 5]
        >>> encoder.decode_text([4, 1, 0, 2, 5])
        'ab'
    """

    SPECIAL_ROLES = ("blank_label", "bos_label", "eos_label", "unk_label")

    def __init__(self, starting_index: int = 0, unk_label: Hashable | None = None):
        self.blank_label: Hashable | None = None
        self.bos_label: Hashable | None = None
        self.eos_label: Hashable | None = None
        super().__init__(starting_index, unk_label)

    def insert_blank(self, blank_label: Hashable = "<blank>", index: int | None = 0) -> None:
        """Add the CTC blank (at ``index``, 0 by default; at the end when None)."""
        if index is None:
            self.add_label(blank_label)
        else:
            self.insert_label(blank_label, index)
        self.blank_label = blank_label

    def add_bos_eos(self, bos_label: Hashable = "<bos>", eos_label: Hashable = "<eos>") -> None:
        """Add begin- and end-of-sequence labels at the end (one label if they are equal)."""
        self.ensure_label(bos_label)
        self.ensure_label(eos_label)
        self.bos_label, self.eos_label = bos_label, eos_label

    def get_blank_index(self) -> int:
        return self.lab2ind[self._require("blank_label")]

    def get_bos_index(self) -> int:
        return self.lab2ind[self._require("bos_label")]

    def get_eos_index(self) -> int:
        return self.lab2ind[self._require("eos_label")]

    def prepend_bos_label(self, labels: Sequence[Hashable]) -> list[Hashable]:
        return [self._require("bos_label"), *labels]

    def append_eos_label(self, labels: Sequence[Hashable]) -> list[Hashable]:
        return [*labels, self._require("eos_label")]

    def prepend_bos_index(self, indices: Sequence[int] | torch.Tensor) -> list[int] | torch.Tensor:
        """``[bos] + indices`` (a LongTensor in, a LongTensor out)."""
        if isinstance(indices, torch.Tensor):
            return torch.cat([indices.new_tensor([self.get_bos_index()]), indices])
        return [self.get_bos_index(), *indices]

    def append_eos_index(self, indices: Sequence[int] | torch.Tensor) -> list[int] | torch.Tensor:
        """``indices + [eos]`` (a LongTensor in, a LongTensor out)."""
        if isinstance(indices, torch.Tensor):
            return torch.cat([indices, indices.new_tensor([self.get_eos_index()])])
        return [*indices, self.get_eos_index()]

    def decode_text(self, indices: Iterable[int] | torch.Tensor, separator: str = "") -> str:
        """Join the labels of ``indices``, leaving out blank, bos and eos."""
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        special = {self.blank_label, self.bos_label, self.eos_label} - {None}
        labels = (self.decode_label(index) for index in indices)
        return separator.join(str(label) for label in labels if label not in special)

    def add_special_labels(self, special_labels: dict[str, Hashable]) -> None:
        """Add special labels by role: blank_label (index 0), bos_label, eos_label, unk_label."""
        unknown = set(special_labels) - set(self.SPECIAL_ROLES)
        if unknown:
            raise ValueError(f"unknown special labels {sorted(unknown)}; use {self.SPECIAL_ROLES}")
        if "blank_label" in special_labels:
            self.insert_blank(special_labels["blank_label"])
        if "bos_label" in special_labels or "eos_label" in special_labels:
            bos = special_labels.get("bos_label", special_labels.get("eos_label"))
            self.add_bos_eos(bos, special_labels.get("eos_label", bos))
        if "unk_label" in special_labels:
            self.add_unk(special_labels["unk_label"])

    def extras(self) -> dict[str, Any]:
        extras = super().extras()
        for role in ("blank_label", "bos_label", "eos_label"):
            if getattr(self, role) is not None:
                extras[role] = getattr(self, role)
        return extras

    def _set_extras(self, extras: dict[str, Any]) -> None:
        super()._set_extras(extras)
        for role in ("blank_label", "bos_label", "eos_label"):
            setattr(self, role, extras.get(role))

    def _require(self, role: str) -> Hashable:
        label = getattr(self, role)
        if label is None:
            adder = "insert_blank()" if role == "blank_label" else "add_bos_eos()"
            raise KeyError(f"the encoder has no {role}; call {adder} first")
        return label


CTCTextEncoder = TextEncoder


def _parse_line(line: str, path: str, line_number: int) -> tuple[Any, str]:
    key, separator, value = line.rstrip("\n").rpartition(VALUE_SEPARATOR)
    if not separator:
        raise ValueError(f"{path}, line {line_number}: expected 'label => value', got {line!r}")
    try:
        return ast.literal_eval(key), value
    except (ValueError, SyntaxError):
        raise ValueError(f"{path}, line {line_number}: cannot read label {key!r}") from None
