"""DynamicItemDataset: a manifest of examples plus the pipelines that turn them into tensors.

Compatible with SpeechBrain's ``speechbrain.dataio.dataset``: ``from_csv`` (an ``ID``
column), ``from_json`` (``{id: {field: value}}``), ``$data_root``-style replacements,
``add_dynamic_item``, ``set_output_keys``, ``filtered_sorted``, and the module-level
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
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import Dataset

from speechlobes.dataio.audio import AudioReadError
from speechlobes.dataio.pipeline import DataPipeline, OutputKeys

logger = logging.getLogger(__name__)

_VARIABLE = re.compile(r"\$(\w+)")


class DynamicItemDataset(Dataset):
    """Examples ``{id: {field: value}}`` whose outputs are computed on access.

    Arguments:
        data: the static data, ``{example_id: {field: value}}``.
        dynamic_items: functions marked with ``@takes``/``@provides`` (or dicts with
            ``func``, ``takes``, ``provides``).
        output_keys: the keys an example returns (a dict renames: ``{name: source_key}``).
        skip_unreadable: when an example's audio cannot be read (:class:`AudioReadError`),
            log the file and return the next readable example instead of raising. The skipped
            ids are kept in ``skipped_ids`` (per process: each DataLoader worker counts its own).
        source: what the data came from, named in errors (set by ``from_csv``/``from_json``).

    Filtered views (:meth:`filtered_sorted`) share the data and the pipeline with the
    dataset they came from, as in SpeechBrain.
    """

    def __init__(
        self,
        data: dict[str, dict[str, Any]],
        dynamic_items: Iterable[Callable | dict[str, Any]] = (),
        output_keys: OutputKeys = (),
        skip_unreadable: bool = False,
        source: str = "the data",
    ):
        self.data = data
        self.data_ids = list(data.keys())
        self.skip_unreadable = skip_unreadable
        self.skipped_ids: set[str] = set()
        static_keys = {"id"}.union(*(fields.keys() for fields in data.values()))
        self.pipeline = DataPipeline(static_keys, dynamic_items, output_keys, source)

    @classmethod
    def from_csv(
        cls, csv_path: str | os.PathLike, replacements: dict[str, str] | None = None, **kwargs
    ) -> DynamicItemDataset:
        """Load a CSV manifest with an ``ID`` column; ``$key`` in fields is replaced."""
        return cls(load_data_csv(csv_path, replacements), source=os.fspath(csv_path), **kwargs)

    @classmethod
    def from_json(
        cls, json_path: str | os.PathLike, replacements: dict[str, str] | None = None, **kwargs
    ) -> DynamicItemDataset:
        """Load a JSON manifest ``{id: {field: value}}``; ``$key`` in strings is replaced."""
        return cls(load_data_json(json_path, replacements), source=os.fspath(json_path), **kwargs)

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
        """Add a function computing new keys (see :mod:`speechlobes.dataio.pipeline`)."""
        self.pipeline.add_dynamic_item(func, takes, provides)

    def set_output_keys(self, keys: OutputKeys) -> None:
        """Choose what an example returns; a dict renames (``{name: source_key}``).

        The keys are resolved now, so an unknown key (for instance a column the manifest
        lacks but a pipeline takes) is reported here, naming the manifest and the key.
        """
        self.pipeline.set_output_keys(keys)
        self.pipeline.plan  # noqa: B018 (resolve now to report missing keys early)

    @contextlib.contextmanager
    def output_keys_as(self, keys: OutputKeys) -> Iterator[DynamicItemDataset]:
        """Temporarily return other output keys."""
        saved = self.pipeline.output_keys
        self.pipeline.set_output_keys(keys)
        try:
            yield self
        finally:
            self.pipeline.set_output_keys(saved)

    def filtered_sorted(
        self,
        key_min_value: dict[str, Any] | None = None,
        key_max_value: dict[str, Any] | None = None,
        key_test: dict[str, Callable[[Any], bool]] | None = None,
        sort_key: str | None = None,
        reverse: bool = False,
        select_n: int | None = None,
    ) -> DynamicItemDataset:
        """A view keeping examples with ``min <= value``, ``value <= max`` and ``test(value)``.

        As in SpeechBrain, ``select_n`` keeps the first n examples (in the current order)
        that pass the filters, and the view is then sorted by ``sort_key`` (a static or
        dynamic key). Keys of dynamic items are computed for this, so prefer static keys.
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
        view = copy.copy(self)
        view.data_ids = [data_id for _, _, data_id in kept]
        return view

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


def load_data_csv(
    csv_path: str | os.PathLike, replacements: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Read a CSV manifest into ``{ID: {column: value}}``; ``duration`` becomes a float."""
    replacements = replacements or {}
    data: dict[str, dict[str, Any]] = {}
    with open(csv_path, newline="", encoding="utf-8") as csv_file:
        reader = csv.DictReader(csv_file, skipinitialspace=True)
        columns = reader.fieldnames or []
        if "ID" not in columns:
            raise ValueError(
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
            fields = {key: _replace(value, replacements) for key, value in row.items()}
            if "duration" in fields:
                fields["duration"] = _to_float(fields["duration"], csv_path, example_id)
            data[example_id] = fields
    return data


def load_data_json(
    json_path: str | os.PathLike, replacements: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Read a JSON manifest ``{id: {field: value}}``, replacing ``$key`` in every string."""
    with open(json_path, encoding="utf-8") as json_file:
        data = json.load(json_file)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{json_path}: expected an object {{id: {{field: value}}}}")
    return {key: _replace(fields, replacements or {}) for key, fields in data.items()}


def _replace(value: Any, replacements: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: str(replacements.get(m[1], m[0])), value)
    if isinstance(value, dict):
        return {key: _replace(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, replacements) for item in value]
    return value


def _to_float(value: str, path: str, example_id: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"{path}: example '{example_id}' has duration {value!r}, not a number"
        ) from None
