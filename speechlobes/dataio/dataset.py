"""DynamicItemDataset: a manifest of examples plus the pipelines that turn them into tensors.

Compatible with SpeechBrain's ``speechbrain.dataio.dataset``: ``from_csv`` (an ``ID``
column, ``$data_root`` replacements), ``from_json`` (``{id: {field: value}}``, ``{data_root}``
replacements), ``add_dynamic_item``, ``set_output_keys``, ``output_keys_as``,
``filtered_sorted`` (a :class:`FilteredSortedDynamicItemDataset` with its own copy of the
pipeline), ``overfit_test``, ``batch_shuffle``, ``iterate_once``, and the module-level
``add_dynamic_item(datasets, ...)`` / ``set_output_keys(datasets, ...)``.

Example:
    >>> from speechlobes.dataio.pipeline import provides, takes
    >>> data = {"a": {"words": "hi there", "duration": 1.5}, "b": {"words": "yo", "duration": 0.5}}
    >>> dataset = DynamicItemDataset(data, output_keys=["id", "num_words"])
    >>> @takes("words")
    ... @provides("num_words")
    ... def count(words):
    ...     return len(words.split())
    >>> dataset.add_dynamic_item(count)
    >>> dataset[0]
    {'id': 'a', 'num_words': 2}
    >>> [example["id"] for example in dataset.filtered_sorted(sort_key="duration")]
    ['b', 'a']
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset

from speechlobes.dataio.audio import AudioReadError
from speechlobes.dataio.pipeline import DataPipeline, OutputKeys
from speechlobes.progress import progress

logger = logging.getLogger(__name__)

_CSV_VARIABLE = re.compile(r"\$([\w.]+)")  # $data_root in CSV manifests
_JSON_VARIABLE = re.compile(r"\{([^{}]+)\}")  # {data_root} in JSON manifests


class DynamicItemDataset(Dataset):
    """Examples ``{id: {field: value}}`` whose outputs are computed on access.

    Arguments:
        data: the static data, ``{example_id: {field: value}}``; ``id`` is reserved (each
            example's id is available under it).
        dynamic_items: DynamicItems (functions decorated with ``@takes``/``@provides``), or
            dicts with ``func``, ``takes``, ``provides``.
        output_keys: the keys an example returns (a dict renames: ``{name: source_key}``).
        skip_unreadable: when an example's audio cannot be read (:class:`AudioReadError`),
            log the file and return the next readable example instead of raising. The skipped
            ids are kept in ``skipped_ids`` (per process: each DataLoader worker counts its own).
        source: what the data came from, named in errors (set by ``from_csv``/``from_json``).
    """

    def __init__(
        self,
        data: dict[str, dict[str, Any]],
        dynamic_items: Iterable[Callable | dict[str, Any]] | None = None,
        output_keys: OutputKeys = None,
        *,
        skip_unreadable: bool = False,
        source: str = "the data",
    ):
        self.data = data
        self.data_ids = list(data.keys())
        self.skip_unreadable = skip_unreadable
        self.skipped_ids: set[str] = set()
        static_keys = set().union(*(fields.keys() for fields in data.values()))
        if "id" in static_keys:
            raise ValueError(
                f"{source}: the field 'id' is reserved for the example id; rename that field"
            )
        self.pipeline = DataPipeline({"id", *static_keys}, dynamic_items, output_keys, source)

    @classmethod
    def from_csv(
        cls,
        csv_path: str | os.PathLike,
        replacements: dict[str, str] | None = None,
        dynamic_items: Iterable[Callable | dict[str, Any]] | None = None,
        output_keys: OutputKeys = None,
        **kwargs: Any,
    ) -> DynamicItemDataset:
        """Load a CSV manifest with an ``ID`` column; ``$key`` in fields is replaced."""
        data = load_data_csv(csv_path, replacements)
        return cls(data, dynamic_items, output_keys, source=os.fspath(csv_path), **kwargs)

    @classmethod
    def from_json(
        cls,
        json_path: str | os.PathLike,
        replacements: dict[str, str] | None = None,
        dynamic_items: Iterable[Callable | dict[str, Any]] | None = None,
        output_keys: OutputKeys = None,
        **kwargs: Any,
    ) -> DynamicItemDataset:
        """Load a JSON manifest ``{id: {field: value}}``; ``{key}`` in strings is replaced."""
        data = load_data_json(json_path, replacements)
        return cls(data, dynamic_items, output_keys, source=os.fspath(json_path), **kwargs)

    def __len__(self) -> int:
        return len(self.data_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self.data_ids) <= index < len(self.data_ids):
            raise IndexError(f"index {index} out of range for {len(self.data_ids)} examples")
        for offset in range(len(self.data_ids)):
            data_id = self.data_ids[(index + offset) % len(self.data_ids)]
            if data_id in self.skipped_ids:
                continue
            try:
                return self._compute(data_id)
            except AudioReadError as error:
                if not self.skip_unreadable:
                    raise
                self.skipped_ids.add(data_id)
                logger.warning(
                    "skipping example '%s' of %s: %s (%d unreadable examples skipped in total)",
                    data_id,
                    self.pipeline.source,
                    error,
                    len(self.skipped_ids),
                )
        raise AudioReadError(f"{self.pipeline.source}: no example is readable")

    def _compute(self, data_id: str) -> dict[str, Any]:
        return self.pipeline.compute_outputs({**self.data[data_id], "id": data_id})

    def add_dynamic_item(
        self,
        func: Callable,
        takes: str | Iterable[str] | None = None,
        provides: str | Iterable[str] | None = None,
    ) -> None:
        """Add a DynamicItem, or ``func`` with its keys (see :mod:`speechlobes.dataio.pipeline`)."""
        self.pipeline.add_dynamic_item(func, takes, provides)

    def set_output_keys(self, keys: OutputKeys) -> None:
        """Choose what an example returns; a dict renames (``{name: source_key}``)."""
        self.pipeline.set_output_keys(keys)

    @contextlib.contextmanager
    def output_keys_as(self, keys: OutputKeys) -> Iterator[DynamicItemDataset]:
        """Temporarily return other output keys (not thread-safe)."""
        saved = self.pipeline.output_mapping
        self.pipeline.set_output_keys(keys)
        try:
            yield self
        finally:
            self.pipeline.set_output_keys(saved)

    def iterate_once(self, output_keys: OutputKeys = None, progressbar: bool = True) -> None:
        """Compute every example once (e.g. to fill a cache), with ``output_keys`` (default:
        the current ones)."""
        with self.output_keys_as(output_keys or self.pipeline.output_mapping):
            for _ in progress(self, "iterate_once", enabled=progressbar):
                pass

    def filtered_sorted(
        self,
        key_min_value: dict[str, Any] | None = None,
        key_max_value: dict[str, Any] | None = None,
        key_test: dict[str, Callable[[Any], bool]] | None = None,
        sort_key: str | None = None,
        reverse: bool = False,
        select_n: int | None = None,
    ) -> FilteredSortedDynamicItemDataset:
        """A dataset keeping examples with ``min <= value``, ``value <= max`` and
        ``test(value)``, sorted by ``sort_key`` (a static or dynamic key) if given.

        ``select_n`` keeps the first n examples (in the current order) that pass the
        filters; sorting applies to those. The result shares the static data but has its own
        copy of the pipeline: items or output keys set on it afterwards do not reach this
        dataset, nor the other way round (as SpeechBrain's deep copy).
        """
        key_min_value, key_max_value = key_min_value or {}, key_max_value or {}
        key_test = key_test or {}
        needed = {*key_min_value, *key_max_value, *key_test, *([sort_key] if sort_key else [])}
        kept: list[tuple[Any, int, str]] = []
        with self.output_keys_as(sorted(needed)):
            for position, data_id in enumerate(self.data_ids):
                if select_n is not None and len(kept) >= select_n:
                    break
                values = self._compute(data_id) if needed else {}
                if self._passes(values, key_min_value, key_max_value, key_test):
                    sort_value = values[sort_key] if sort_key else None
                    kept.append((sort_value, position, data_id))
        if sort_key is not None:
            kept.sort(key=lambda entry: entry[:2], reverse=reverse)
        return FilteredSortedDynamicItemDataset(self, [data_id for _, _, data_id in kept])

    def overfit_test(self, sample_count: int, total_count: int) -> FilteredSortedDynamicItemDataset:
        """The first ``sample_count`` examples repeated up to ``total_count`` examples."""
        repeats = math.ceil(total_count / sample_count)
        data_ids = (self.data_ids[:sample_count] * repeats)[:total_count]
        return FilteredSortedDynamicItemDataset(self, data_ids)

    def batch_shuffle(self, batch_size: int) -> FilteredSortedDynamicItemDataset:
        """Shuffle whole runs of ``batch_size`` consecutive examples (the incomplete last run
        stays last), so a length-sorted dataset keeps similar lengths together; draws from
        torch's global generator."""
        full = len(self.data_ids) // batch_size
        order = [
            start * batch_size + offset
            for start in torch.randperm(full).tolist()
            for offset in range(batch_size)
        ]
        order += range(full * batch_size, len(self.data_ids))
        return FilteredSortedDynamicItemDataset(self, [self.data_ids[i] for i in order])

    def _passes(
        self,
        values: dict[str, Any],
        key_min_value: dict[str, Any],
        key_max_value: dict[str, Any],
        key_test: dict[str, Callable[[Any], bool]],
    ) -> bool:
        for key, bound in (*key_min_value.items(), *key_max_value.items()):
            if isinstance(values[key], str) and not isinstance(bound, str):
                raise TypeError(
                    f"{self.pipeline.source}: '{key}' holds text ({values[key]!r}) but is "
                    f"compared with {bound!r}; convert the field with a dynamic item first"
                )
        return (
            all(values[key] >= bound for key, bound in key_min_value.items())
            and all(values[key] <= bound for key, bound in key_max_value.items())
            and all(test(values[key]) for key, test in key_test.items())
        )


class FilteredSortedDynamicItemDataset(DynamicItemDataset):
    """A selection of another dataset's examples, in a given order.

    Shares the static data; has its own deep copy of the pipeline (dynamic items and output
    keys). Made by :meth:`DynamicItemDataset.filtered_sorted`, ``overfit_test`` and
    ``batch_shuffle``.
    """

    def __init__(self, from_dataset: DynamicItemDataset, data_ids: list[str]):
        self.data = from_dataset.data
        self.data_ids = data_ids
        self.skip_unreadable = from_dataset.skip_unreadable
        self.skipped_ids = set()
        self.pipeline = copy.deepcopy(from_dataset.pipeline)

    @classmethod
    def from_csv(cls, *args: Any, **kwargs: Any) -> DynamicItemDataset:
        raise TypeError("a FilteredSortedDynamicItemDataset is made by filtered_sorted()")

    @classmethod
    def from_json(cls, *args: Any, **kwargs: Any) -> DynamicItemDataset:
        raise TypeError("a FilteredSortedDynamicItemDataset is made by filtered_sorted()")


def add_dynamic_item(
    datasets: Iterable[DynamicItemDataset],
    func: Callable,
    takes: str | Iterable[str] | None = None,
    provides: str | Iterable[str] | None = None,
) -> None:
    """Add the same dynamic item to several datasets."""
    for dataset in datasets:
        dataset.add_dynamic_item(func, takes, provides)


def set_output_keys(datasets: Iterable[DynamicItemDataset], output_keys: OutputKeys) -> None:
    """Set the same output keys on several datasets."""
    for dataset in datasets:
        dataset.set_output_keys(output_keys)


def apply_overfit_test(
    overfit_test: bool,
    overfit_test_sample_count: int,
    overfit_test_epoch_data_count: int,
    dataset: DynamicItemDataset,
) -> DynamicItemDataset:
    """``dataset.overfit_test(...)`` when ``overfit_test`` is true, else ``dataset``."""
    if not overfit_test:
        return dataset
    return dataset.overfit_test(overfit_test_sample_count, overfit_test_epoch_data_count)


def load_data_csv(
    csv_path: str | os.PathLike, replacements: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Read a CSV manifest into ``{ID: {column: value}}``; ``duration`` becomes a float.

    ``$name`` (letters, digits, ``_``, ``.``) in a field is replaced by ``replacements[name]``;
    a ``$name`` without a replacement is left as it is (text may hold a ``$``).
    """
    replacements = replacements or {}
    data: dict[str, dict[str, Any]] = {}
    with open(csv_path, newline="", encoding="utf-8") as csv_file:
        reader = csv.DictReader(csv_file, skipinitialspace=True)
        columns = reader.fieldnames or []
        if "ID" not in columns:
            raise KeyError(
                f"{csv_path}: no 'ID' column (columns: {columns}); the first row must name "
                "the columns, one of them 'ID'"
            )
        for row in reader:
            if None in row or None in row.values():
                raise ValueError(
                    f"{csv_path}, line {reader.line_num}: {len(columns)} columns expected "
                    f"({columns}), the row has a different number of fields"
                )
            example_id = row.pop("ID")
            if example_id in data:
                raise ValueError(f"{csv_path}, line {reader.line_num}: duplicate ID '{example_id}'")
            fields = {
                key: _replace(value, _CSV_VARIABLE, replacements) for key, value in row.items()
            }
            if "duration" in fields:
                fields["duration"] = _to_float(fields["duration"], csv_path, example_id)
            data[example_id] = fields
    return data


def load_data_json(
    json_path: str | os.PathLike, replacements: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Read a JSON manifest ``{id: {field: value}}``.

    ``{name}`` in any string (at any depth) is replaced by ``replacements[name]``, as
    ``str.format_map`` would; braces without a replacement are left as they are.
    """
    with open(json_path, encoding="utf-8") as json_file:
        data = json.load(json_file)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{json_path}: expected an object {{id: {{field: value}}}}")
    return _replace(data, _JSON_VARIABLE, replacements or {})


def _replace(value: Any, variable: re.Pattern, replacements: dict[str, str]) -> Any:
    if isinstance(value, str):
        return variable.sub(lambda m: str(replacements.get(m[1], m[0])), value)
    if isinstance(value, dict):
        return {key: _replace(item, variable, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, variable, replacements) for item in value]
    return value


def _to_float(value: str, path: str, example_id: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"{path}: example '{example_id}' has duration {value!r}, not a number"
        ) from None
