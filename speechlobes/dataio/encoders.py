"""Label encoders: categories, multi-label sets and text tokens <-> integer indices.

SpeechBrain's ``speechbrain.dataio.encoder`` classes (``CategoricalEncoder``,
``TextEncoder``, ``CTCTextEncoder``) with their methods and file format (``'label' => index``
lines, a ``====`` separator, then ``'key' => value`` extras), so label files of SpeechBrain
models load as they are; plus :class:`MultiLabelEncoder` for multi-hot targets. An encoder is
recoverable by a Checkpointer.

Example:
    >>> encoder = CategoricalEncoder()
    >>> encoder.update_from_iterable(["dog", "cat", "dog"])
    >>> encoder.expect_len(2)
    >>> encoder.encode_sequence(["cat", "dog"])
    [1, 0]
    >>> encoder.decode_ndim(torch.tensor([[0, 1], [1, 1]]))
    [['dog', 'cat'], ['cat', 'cat']]
"""

from __future__ import annotations

import ast
import collections
import itertools
import logging
import os
import tempfile
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import torch

from speechlobes.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechlobes.distributed import barrier, if_main_process

__all__ = [
    "CTCTextEncoder",
    "CategoricalEncoder",
    "MultiLabelEncoder",
    "TextEncoder",
    "load_text_encoder_tokens",
]

logger = logging.getLogger(__name__)

DEFAULT_UNK = "<unk>"
DEFAULT_BOS = "<bos>"
DEFAULT_EOS = "<eos>"
DEFAULT_BLANK = "<blank>"


@register_checkpoint_hooks
class CategoricalEncoder:
    """A one-to-one map between labels and integer indices.

    Arguments:
        starting_index: the index given to the first label.
        **special_labels: ``unk_label=...`` maps every unknown label to that label.

    Encoding an unknown label without an unk label raises a KeyError naming it. Call
    :meth:`expect_len` with the number of labels downstream code expects (or
    :meth:`ignore_len`): encoding and decoding then check it.

    Example:
        >>> encoder = CategoricalEncoder(unk_label="<unk>")
        >>> encoder.update_from_iterable(["yes", "no"])
        >>> encoder.ignore_len()
        >>> encoder.encode_label("maybe") == encoder.encode_label("<unk>")
        True
        >>> encoder.decode_ndim([1, 2])
        ['yes', 'no']
    """

    VALUE_SEPARATOR = " => "
    EXTRAS_SEPARATOR = "================\n"

    def __init__(self, starting_index: int = 0, **special_labels: Any):
        self.lab2ind: dict[Hashable, int] = {}
        self.ind2lab: dict[int, Hashable] = {}
        self.starting_index = starting_index
        self.handle_special_labels(special_labels)

    def handle_special_labels(self, special_labels: dict[str, Any]) -> None:
        """Add the special labels given by role (here ``unk_label``)."""
        if "unk_label" in special_labels:
            self.add_unk(special_labels["unk_label"])

    def __len__(self) -> int:
        return len(self.lab2ind)

    def __contains__(self, label: Hashable) -> bool:
        return label in self.lab2ind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} labels, starting_index={self.starting_index})"

    @classmethod
    def from_saved(cls, path: str | os.PathLike) -> CategoricalEncoder:
        """An encoder loaded from a saved file."""
        encoder = cls()
        encoder.load(path)
        return encoder

    # ------------------------------------------------------------------ building
    def update_from_iterable(self, iterable: Iterable[Any], sequence_input: bool = False) -> None:
        """Add every new label, in order of first appearance (from sequences if asked)."""
        for label in itertools.chain.from_iterable(iterable) if sequence_input else iterable:
            self.ensure_label(label)

    def update_from_didataset(
        self, didataset: Any, output_key: str, sequence_input: bool = False
    ) -> None:
        """Add the labels of one output key of a DynamicItemDataset."""
        with didataset.output_keys_as([output_key]):
            self.update_from_iterable(
                (example[output_key] for example in didataset), sequence_input
            )

    def limited_labelset_from_iterable(
        self,
        iterable: Iterable[Any],
        sequence_input: bool = False,
        n_most_common: int | None = None,
        min_count: int = 1,
    ) -> collections.Counter:
        """Add the ``n_most_common`` labels (all by default) seen at least ``min_count``
        times, most common first; returns the counts of every label."""
        if self.lab2ind:
            logger.info("%s is not empty: the new labels come after the present ones", self)
        labels = itertools.chain.from_iterable(iterable) if sequence_input else iterable
        counts = collections.Counter(labels)
        for label, count in counts.most_common(n_most_common):
            if count < min_count:
                break
            self.add_label(label)
        return counts

    def load_or_create(
        self,
        path: str | os.PathLike,
        from_iterables: Sequence[Iterable[Any]] = (),
        from_didatasets: Sequence[Any] = (),
        sequence_input: bool = False,
        output_key: str | None = None,
        special_labels: dict[str, Any] | None = None,
    ) -> None:
        """Load ``path``, or build the encoder from the data, add ``special_labels`` (e.g.
        ``{"unk_label": "<unk>"}``, or for a CTCTextEncoder ``{"blank_label": 0}``: an index)
        and save it there. Under torchrun the main process builds it, the others load it."""
        try:
            if if_main_process() and not self.load_if_possible(path):
                for iterable in from_iterables:
                    self.update_from_iterable(iterable, sequence_input)
                for didataset in from_didatasets:
                    if output_key is None:
                        raise ValueError("load_or_create from datasets needs output_key")
                    self.update_from_didataset(didataset, output_key, sequence_input)
                self.handle_special_labels(special_labels or {})
                self.save(path)
        finally:
            barrier()
        self.load(path)

    def add_label(self, label: Hashable) -> int:
        """Add a new label at the next free index (an error if it is present); returns it."""
        if label in self.lab2ind:
            raise KeyError(f"label {label!r} is already encoded as {self.lab2ind[label]}")
        index = self._next_index()
        self.lab2ind[label] = index
        self.ind2lab[index] = label
        return index

    def ensure_label(self, label: Hashable) -> int:
        """The label's index, adding the label if it is new."""
        return self.lab2ind[label] if label in self.lab2ind else self.add_label(label)

    def insert_label(self, label: Hashable, index: int) -> None:
        """Add a new label at ``index`` (an error if it is present); a label already at
        ``index`` moves to the next free index."""
        if label in self.lab2ind:
            raise KeyError(f"label {label!r} is already encoded as {self.lab2ind[label]}")
        self.enforce_label(label, index)

    def enforce_label(self, label: Hashable, index: int) -> None:
        """Make ``label`` encode to ``index``, moving it if present; a label already at
        ``index`` moves to the next free index."""
        index = int(index)
        if self.lab2ind.get(label) == index:
            return
        if label in self.lab2ind:
            del self.ind2lab[self.lab2ind[label]]
        displaced = self.ind2lab.get(index)
        self.lab2ind[label] = index
        self.ind2lab[index] = label
        if displaced is not None:
            new_index = self._next_index()
            self.lab2ind[displaced] = new_index
            self.ind2lab[new_index] = displaced
            logger.info("label %r moved from %d to %d for %r", displaced, index, new_index, label)

    def add_unk(self, unk_label: Hashable = DEFAULT_UNK) -> int:
        """Add the label that every unknown label encodes to; returns its index."""
        self.unk_label = unk_label
        return self.add_label(unk_label)

    def _next_index(self) -> int:
        index = self.starting_index
        while index in self.ind2lab:
            index += 1
        return index

    def is_continuous(self) -> bool:
        """Whether the indices run from ``starting_index`` without a gap."""
        indices = sorted(self.ind2lab)
        return self.starting_index in indices and all(
            later - earlier == 1 for earlier, later in itertools.pairwise(indices)
        )

    # ------------------------------------------------------------------ length checks
    def expect_len(self, expected_len: int) -> None:
        """Check at every encoding and decoding that the encoder has ``expected_len`` labels."""
        self.expected_len = expected_len

    def ignore_len(self) -> None:
        """Do not check the number of labels (and do not warn that it is unchecked)."""
        self.expected_len = None

    def _assert_len(self) -> None:
        if not hasattr(self, "expected_len"):
            logger.warning(
                "%s.expect_len was never called: assuming %d labels is right; call "
                "expect_len(n) (or ignore_len()) to check it",
                type(self).__name__,
                len(self),
            )
            self.ignore_len()
        elif self.expected_len is not None and len(self) != self.expected_len:
            raise RuntimeError(
                f".expect_len({self.expected_len}) was called, but {len(self)} categories found"
            )

    # ------------------------------------------------------------------ encoding
    def encode_label(self, label: Hashable, allow_unk: bool = True) -> int:
        """The label's index; an unknown label maps to the unk label or raises KeyError."""
        self._assert_len()
        if label in self.lab2ind:
            return self.lab2ind[label]
        unk_label = getattr(self, "unk_label", None)
        if allow_unk and unk_label is not None:
            return self.lab2ind[unk_label]
        hint = "allow_unk=False was passed" if unk_label is not None else "call add_unk() first"
        raise KeyError(
            f"label {label!r} is not in the encoder ({len(self)} labels); {hint}, or update the "
            "encoder from all the data"
        )

    def encode_label_torch(self, label: Hashable, allow_unk: bool = True) -> torch.Tensor:
        """The label's index as a LongTensor of shape (1,)."""
        return torch.LongTensor([self.encode_label(label, allow_unk)])

    def encode_sequence(self, sequence: Iterable[Hashable], allow_unk: bool = True) -> list[int]:
        """Indices of a sequence of labels (a string is a sequence of characters)."""
        self._assert_len()
        return [self.encode_label(label, allow_unk) for label in sequence]

    def encode_sequence_torch(
        self, sequence: Iterable[Hashable], allow_unk: bool = True
    ) -> torch.Tensor:
        """Indices of a sequence of labels as a LongTensor."""
        return torch.LongTensor(self.encode_sequence(sequence, allow_unk))

    # ------------------------------------------------------------------ decoding
    def decode_label(self, index: int) -> Hashable:
        """The label at ``index``."""
        index = int(index)
        if index not in self.ind2lab:
            raise KeyError(f"index {index} is not in the encoder ({len(self)} labels)")
        return self.ind2lab[index]

    def decode_torch(self, x: torch.Tensor) -> list[Any]:
        """Labels of an integer tensor of any shape, as nested lists."""
        self._assert_len()
        return self.decode_ndim(x)

    def decode_ndim(self, x: Any) -> Any:
        """Labels of indices nested to any depth (lists, tuples, tensors), or of one index."""
        self._assert_len()
        if isinstance(x, torch.Tensor):
            x = x.tolist()
        try:
            return [self.decode_ndim(item) for item in x]
        except TypeError:  # not iterable: one index
            return self.decode_label(x)

    # ------------------------------------------------------------------ saving
    def _get_extras(self) -> dict[str, Any]:
        """The settings saved after the labels (subclasses add theirs)."""
        extras: dict[str, Any] = {"starting_index": self.starting_index}
        if hasattr(self, "unk_label"):
            extras["unk_label"] = self.unk_label
        return extras

    def _set_extras(self, extras: dict[str, Any]) -> None:
        if "unk_label" in extras:
            self.unk_label = extras["unk_label"]
        self.starting_index = extras.get("starting_index", 0)

    @mark_as_saver
    def save(self, path: str | os.PathLike) -> None:
        """Write the labels and extras as text (atomically: a reader never sees half a file)."""
        path = os.fspath(path)
        separator = self.VALUE_SEPARATOR
        lines = [f"{label!r}{separator}{index}\n" for label, index in self.lab2ind.items()]
        lines.append(self.EXTRAS_SEPARATOR)
        lines += [f"{key!r}{separator}{value!r}\n" for key, value in self._get_extras().items()]
        folder = os.path.dirname(os.path.abspath(path))
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, encoding="utf-8") as tmp:
            tmp.writelines(lines)
        os.replace(tmp.name, path)

    def load(self, path: str | os.PathLike) -> None:
        """Replace the labels and extras with those saved in ``path``."""
        path = os.fspath(path)
        if self.lab2ind:
            logger.debug("%s: loading %s replaces the labels present", type(self).__name__, path)
        self.lab2ind, self.ind2lab = {}, {}
        extras: dict[str, Any] = {}
        in_extras = False
        with open(path, encoding="utf-8") as label_file:
            for line_number, line in enumerate(label_file, start=1):
                if line == self.EXTRAS_SEPARATOR:
                    in_extras = True
                    continue
                key, value = _parse_line(line, path, line_number)
                if in_extras:
                    extras[key] = ast.literal_eval(value)
                elif int(value) in self.ind2lab:
                    raise ValueError(f"{path}, line {line_number}: index {value} appears twice")
                else:
                    self.lab2ind[key] = int(value)
                    self.ind2lab[int(value)] = key
        self._set_extras(extras)

    @mark_as_loader
    def load_if_possible(self, path: str | os.PathLike, end_of_epoch: bool = False) -> bool:
        """Load ``path`` if it exists; returns whether it did. A malformed file is an error
        (nothing is rebuilt over it)."""
        if not os.path.isfile(path):
            return False
        self.load(path)
        return True


class MultiLabelEncoder(CategoricalEncoder):
    """Label sets <-> multi-hot float vectors (e.g. AudioSet's several tags per clip).

    Its size is that of its label file, so the length check is off unless asked for.

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
        specials = {} if unk_label is None else {"unk_label": unk_label}
        super().__init__(starting_index=0, **specials)
        self.ignore_len()

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
        """The k best ``(label, score)`` pairs, best first; (batch, labels) gives one list
        per row.
        """
        if scores.dim() == 2:
            return [self.decode_topk(row, k) for row in scores]
        top = torch.topk(scores, min(k, scores.numel()))
        return list(zip(self.decode_torch(top.indices), top.values.tolist(), strict=True))

    def _set_extras(self, extras: dict[str, Any]) -> None:
        super()._set_extras(extras)
        if self.starting_index != 0:
            raise ValueError("a MultiLabelEncoder file must have starting_index 0")


class TextEncoder(CategoricalEncoder):
    """Tokens <-> indices for sequence-to-sequence models, with begin/end-of-sentence labels.

    ``update_from_iterable`` and ``update_from_didataset`` take sequences by default.
    ``special_labels`` ``bos_label``/``eos_label`` are the INDICES where ``<bos>``/``<eos>``
    go (both or neither).

    Example:
        >>> encoder = TextEncoder()
        >>> encoder.update_from_iterable([["hello", "world"]])
        >>> encoder.insert_bos_eos(bos_index=0, eos_index=1)
        >>> encoder.expect_len(4)
        >>> encoder.encode_sequence(["world", "hello"])
        [3, 2]
        >>> encoder.append_eos_index(encoder.prepend_bos_index([2]))
        [0, 2, 1]
        >>> encoder.decode_text([0, 2, 3, 1], separator=" ")
        'hello world'
    """

    def handle_special_labels(self, special_labels: dict[str, Any]) -> None:
        super().handle_special_labels(special_labels)
        if "bos_label" in special_labels and "eos_label" in special_labels:
            self.insert_bos_eos(
                DEFAULT_BOS,
                DEFAULT_EOS,
                bos_index=special_labels["bos_label"],
                eos_index=special_labels["eos_label"],
            )
        elif "bos_label" in special_labels or "eos_label" in special_labels:
            raise TypeError("give both bos_label and eos_label (their indices), or neither")

    def update_from_iterable(self, iterable: Iterable[Any], sequence_input: bool = True) -> None:
        super().update_from_iterable(iterable, sequence_input)

    def update_from_didataset(
        self, didataset: Any, output_key: str, sequence_input: bool = True
    ) -> None:
        super().update_from_didataset(didataset, output_key, sequence_input)

    def limited_labelset_from_iterable(
        self,
        iterable: Iterable[Any],
        sequence_input: bool = True,
        n_most_common: int | None = None,
        min_count: int = 1,
    ) -> collections.Counter:
        return super().limited_labelset_from_iterable(
            iterable, sequence_input, n_most_common, min_count
        )

    def add_bos_eos(self, bos_label: Hashable = DEFAULT_BOS, eos_label: Hashable = DEFAULT_EOS):
        """Add begin- and end-of-sentence labels after the others (one label if equal)."""
        self.add_label(bos_label)
        if eos_label != bos_label:
            self.add_label(eos_label)
        self.bos_label, self.eos_label = bos_label, eos_label

    def insert_bos_eos(
        self,
        bos_label: Hashable = DEFAULT_BOS,
        eos_label: Hashable = DEFAULT_EOS,
        bos_index: int = 0,
        eos_index: int | None = None,
    ) -> None:
        """Insert the labels at ``bos_index`` and ``eos_index`` (default: ``bos_index + 1``);
        labels already there move to free indices."""
        self.insert_label(bos_label, bos_index)
        if eos_label != bos_label:
            self.insert_label(eos_label, bos_index + 1 if eos_index is None else eos_index)
        self.bos_label, self.eos_label = bos_label, eos_label

    def get_bos_index(self) -> int:
        return self.encode_label(self._special("bos_label", RuntimeError))

    def get_eos_index(self) -> int:
        return self.encode_label(self._special("eos_label", RuntimeError))

    def prepend_bos_label(self, x: Iterable[Hashable]) -> list[Hashable]:
        return [self._special("bos_label", KeyError), *x]

    def append_eos_label(self, x: Iterable[Hashable]) -> list[Hashable]:
        return [*x, self._special("eos_label", KeyError)]

    def prepend_bos_index(self, x: Iterable[int] | torch.Tensor) -> list[int] | torch.Tensor:
        """``[bos] + x`` (a tensor in, a tensor of the same dtype out)."""
        bos = self.lab2ind[self._special("bos_label", KeyError)]
        if isinstance(x, torch.Tensor):
            return torch.cat([x.new_tensor([bos]), x])
        return [bos, *x]

    def append_eos_index(self, x: Iterable[int] | torch.Tensor) -> list[int] | torch.Tensor:
        """``x + [eos]`` (a tensor in, a tensor of the same dtype out)."""
        eos = self.lab2ind[self._special("eos_label", KeyError)]
        if isinstance(x, torch.Tensor):
            return torch.cat([x, x.new_tensor([eos])])
        return [*x, eos]

    def decode_text(self, indices: Iterable[int] | torch.Tensor, separator: str = "") -> str:
        """Join the labels of ``indices``, leaving out the special ones (blank, bos, eos)."""
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        special = {getattr(self, role, None) for role in ("blank_label", "bos_label", "eos_label")}
        labels = (self.decode_label(index) for index in indices)
        return separator.join(str(label) for label in labels if label not in special)

    def _get_extras(self) -> dict[str, Any]:
        extras = super()._get_extras()
        for role in ("bos_label", "eos_label"):
            if hasattr(self, role):
                extras[role] = getattr(self, role)
        return extras

    def _set_extras(self, extras: dict[str, Any]) -> None:
        super()._set_extras(extras)
        for role in ("bos_label", "eos_label"):
            if role in extras:
                setattr(self, role, extras[role])

    def _special(self, role: str, error: type[Exception]) -> Hashable:
        if not hasattr(self, role):
            adder = "add_blank() or insert_blank()" if role == "blank_label" else "add_bos_eos()"
            raise error(f"the encoder has no {role}; call {adder} first")
        return getattr(self, role)


class CTCTextEncoder(TextEncoder):
    """A TextEncoder with the CTC blank label and CTC's collapsing rules.

    ``special_labels`` ``blank_label`` is the INDEX of ``<blank>``.

    Example:
        >>> encoder = CTCTextEncoder()
        >>> encoder.update_from_iterable("abcd", sequence_input=False)
        >>> encoder.add_blank()
        >>> encoder.expect_len(5)
        >>> encoder.get_blank_index()
        4
        >>> encoder.collapse_indices_ndim([4, 4, 0, 0, 1, 4, 1, 2])
        [0, 1, 1, 2]
    """

    def handle_special_labels(self, special_labels: dict[str, Any]) -> None:
        if "blank_label" in special_labels:
            self.insert_blank(index=special_labels["blank_label"])
        super().handle_special_labels(special_labels)

    def add_blank(self, blank_label: Hashable = DEFAULT_BLANK) -> None:
        """Add the blank after the other labels."""
        self.add_label(blank_label)
        self.blank_label = blank_label

    def insert_blank(self, blank_label: Hashable = DEFAULT_BLANK, index: int = 0) -> None:
        """Insert the blank at ``index``; a label already there moves to a free index."""
        self.insert_label(blank_label, index)
        self.blank_label = blank_label

    def get_blank_index(self) -> int:
        return self.encode_label(self._special("blank_label", RuntimeError))

    def collapse_labels(self, x: Sequence[Hashable], merge_repeats: bool = True) -> list[Hashable]:
        """CTC collapsing of one label sequence: merge repeats (if asked), drop blanks."""
        return _collapse(x, self._special("blank_label", KeyError), merge_repeats)

    def collapse_indices_ndim(self, x: Any, merge_repeats: bool = True) -> list[Any]:
        """CTC collapsing of index sequences nested to any depth."""
        blank = self.lab2ind[self._special("blank_label", KeyError)]
        if isinstance(x, torch.Tensor):
            x = x.tolist()
        if x and isinstance(x[0], list | tuple | torch.Tensor):
            return [self.collapse_indices_ndim(item, merge_repeats) for item in x]
        return _collapse(x, blank, merge_repeats)

    def _get_extras(self) -> dict[str, Any]:
        extras = super()._get_extras()
        if hasattr(self, "blank_label"):
            extras["blank_label"] = self.blank_label
        return extras

    def _set_extras(self, extras: dict[str, Any]) -> None:
        super()._set_extras(extras)
        if "blank_label" in extras:
            self.blank_label = extras["blank_label"]


def _collapse(sequence: Sequence[Any], blank: Any, merge_repeats: bool) -> list[Any]:
    return [
        item
        for i, item in enumerate(sequence)
        if item != blank and not (merge_repeats and i > 0 and item == sequence[i - 1])
    ]


def load_text_encoder_tokens(model_path: str | os.PathLike) -> list[Hashable]:
    """The labels of a saved text encoder, in index order of the file."""
    encoder = TextEncoder()
    encoder.load(model_path)
    return list(encoder.lab2ind)


def _parse_line(line: str, path: str, line_number: int) -> tuple[Any, str]:
    key, separator, value = line.rstrip("\n").rpartition(CategoricalEncoder.VALUE_SEPARATOR)
    if not separator:
        raise ValueError(f"{path}, line {line_number}: expected 'label => value', got {line!r}")
    try:
        return ast.literal_eval(key), value
    except (ValueError, SyntaxError):
        raise ValueError(f"{path}, line {line_number}: cannot read label {key!r}") from None
