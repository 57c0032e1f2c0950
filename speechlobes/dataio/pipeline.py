"""Dynamic items: functions that compute new keys of an example from existing ones.

A function declares what it reads with ``@takes`` and what it computes with ``@provides``.
A generator function may provide several keys, yielding them in order. A
:class:`DataPipeline` resolves, for the requested output keys, which functions must run and
in what order, and runs only those (a generator is advanced only as far as needed).

Example:
    >>> @takes("words")
    ... @provides("words_upper", "num_chars")
    ... def text_pipeline(words):
    ...     yield words.upper()
    ...     yield len(words)
    >>> pipeline = DataPipeline(["id", "words"], [text_pipeline], ["id", "num_chars"])
    >>> pipeline.compute_outputs({"id": "a", "words": "hello"})
    {'id': 'a', 'num_chars': 5}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

OutputKeys = Sequence[str] | dict[str, str]


def takes(*keys: str) -> Callable[[Callable], Callable]:
    """Declare the keys a dynamic-item function reads, in argument order."""

    def mark(func: Callable) -> Callable:
        func.takes = keys
        return func

    return mark


def provides(*keys: str) -> Callable[[Callable], Callable]:
    """Declare the keys a dynamic-item function computes (a generator yields them in order)."""

    def mark(func: Callable) -> Callable:
        func.provides = keys
        return func

    return mark


@dataclass(frozen=True)
class DynamicItem:
    """A function with the keys it takes and the keys it provides.

    Example:
        >>> item = DynamicItem(len, ("words",), ("num_chars",))
        >>> item.provides
        ('num_chars',)
    """

    func: Callable
    takes: tuple[str, ...]
    provides: tuple[str, ...]

    @classmethod
    def from_function(
        cls,
        func: Callable,
        takes: str | Iterable[str] | None = None,
        provides: str | Iterable[str] | None = None,
    ) -> DynamicItem:
        """Build from explicit keys, falling back to those set by ``@takes``/``@provides``."""
        takes = getattr(func, "takes", None) if takes is None else takes
        provides = getattr(func, "provides", None) if provides is None else provides
        name = getattr(func, "__name__", repr(func))
        if takes is None or provides is None:
            raise ValueError(
                f"dynamic item '{name}' needs its keys: decorate it with @takes(...) and "
                "@provides(...) or pass takes= and provides="
            )
        takes = (takes,) if isinstance(takes, str) else tuple(takes)
        provides = (provides,) if isinstance(provides, str) else tuple(provides)
        if not provides:
            raise ValueError(f"dynamic item '{name}' provides no key")
        return cls(func, takes, provides)

    @property
    def name(self) -> str:
        return getattr(self.func, "__name__", repr(self.func))

    @property
    def is_generator(self) -> bool:
        return inspect.isgeneratorfunction(self.func)


@dataclass(frozen=True)
class _Step:
    item: DynamicItem
    needed: int  # how many of the item's provided keys (in order) are needed


class DataPipeline:
    """Resolve and run the dynamic items that the output keys need.

    Arguments:
        static_keys: keys every example holds before any dynamic item runs.
        dynamic_items: functions marked with ``@takes``/``@provides``, or dicts with
            ``func``, ``takes`` and ``provides``.
        output_keys: the keys :meth:`compute_outputs` returns; a dict renames
            (``{output_name: source_key}``).
        source: what the static data came from (a manifest path), named in errors.

    Example:
        >>> pipeline = DataPipeline(["id", "x"], output_keys={"y": "x"})
        >>> pipeline.compute_outputs({"id": "a", "x": 3})
        {'y': 3}
    """

    def __init__(
        self,
        static_keys: Iterable[str],
        dynamic_items: Iterable[Callable | dict[str, Any]] = (),
        output_keys: OutputKeys = (),
        source: str = "the data",
    ):
        self.static_keys = set(static_keys)
        self.source = source
        self._providers: dict[str, DynamicItem] = {}
        self._plan: list[_Step] | None = None
        for item in dynamic_items:
            if isinstance(item, dict):
                self.add_dynamic_item(**item)
            else:
                self.add_dynamic_item(item)
        self.set_output_keys(output_keys)

    def add_dynamic_item(
        self,
        func: Callable,
        takes: str | Iterable[str] | None = None,
        provides: str | Iterable[str] | None = None,
    ) -> None:
        """Add a function; its keys come from the arguments or its ``@takes``/``@provides``."""
        item = DynamicItem.from_function(func, takes, provides)
        for key in item.provides:
            if key in self.static_keys:
                raise ValueError(
                    f"dynamic item '{item.name}' provides '{key}', which is already a static "
                    f"key of {self.source}; give the computed key another name"
                )
            if key in self._providers:
                raise ValueError(
                    f"dynamic item '{item.name}' provides '{key}', already provided by "
                    f"'{self._providers[key].name}'"
                )
        for key in item.provides:
            self._providers[key] = item
        self._plan = None

    def set_output_keys(self, keys: OutputKeys) -> None:
        """Choose the returned keys: a list, or a dict ``{output_name: source_key}``."""
        self.output_keys = dict(keys) if isinstance(keys, dict) else {key: key for key in keys}
        self._plan = None

    @property
    def plan(self) -> list[_Step]:
        """The dynamic items to run for the current output keys, in dependency order."""
        if self._plan is None:
            self._plan = self._resolve(list(self.output_keys.values()))
        return self._plan

    def compute_outputs(self, data: dict[str, Any]) -> dict[str, Any]:
        """Run the needed dynamic items on one example and return the output keys."""
        values = dict(data)
        for step in self.plan:
            args = [self._value(values, key, step.item.name) for key in step.item.takes]
            results = self._call(step, args)
            values.update(zip(step.item.provides, results, strict=False))
        return {name: self._value(values, key, None) for name, key in self.output_keys.items()}

    def _call(self, step: _Step, args: list[Any]) -> list[Any]:
        item = step.item
        if item.is_generator:
            generator = item.func(*args)
            results = []
            for _ in range(step.needed):
                try:
                    results.append(next(generator))
                except StopIteration:
                    raise ValueError(
                        f"dynamic item '{item.name}' yielded {len(results)} values, "
                        f"it provides {len(item.provides)}: {list(item.provides)}"
                    ) from None
            generator.close()
            return results
        result = item.func(*args)
        if len(item.provides) == 1:
            return [result]
        if not isinstance(result, tuple | list) or len(result) != len(item.provides):
            raise ValueError(
                f"dynamic item '{item.name}' provides {list(item.provides)}: return a tuple "
                "of that many values, or make it a generator"
            )
        return list(result)

    def _value(self, values: dict[str, Any], key: str, reader: str | None) -> Any:
        if key not in values:
            who = f"dynamic item '{reader}'" if reader else "the output keys"
            raise KeyError(
                f"{self.source}: example '{values.get('id')}' has no '{key}', which {who} "
                "needs; give every example that field"
            )
        return values[key]

    def _resolve(self, keys: list[str]) -> list[_Step]:
        needed: dict[int, int] = {}  # id(item) -> how many provided keys are needed
        order: list[DynamicItem] = []
        state: dict[int, str] = {}  # id(item) -> "visiting" | "done"

        def visit(key: str, reader: str | None, path: tuple[str, ...]) -> None:
            if key in self.static_keys:
                return
            item = self._providers.get(key)
            if item is None:
                who = f"dynamic item '{reader}' takes" if reader else "output key"
                columns = sorted(self.static_keys)
                raise KeyError(
                    f"{self.source}: {who} '{key}', which is neither a column of "
                    f"{self.source} (columns: {columns}) nor provided by a dynamic item "
                    f"(provided: {sorted(self._providers)})"
                )
            position = item.provides.index(key) + 1
            needed[id(item)] = max(needed.get(id(item), 0), position)
            if state.get(id(item)) == "done":
                return
            if state.get(id(item)) == "visiting":
                cycle = " -> ".join((*path, key))
                raise ValueError(f"dynamic items depend on each other in a cycle: {cycle}")
            state[id(item)] = "visiting"
            for taken in item.takes:
                visit(taken, item.name, (*path, key))
            state[id(item)] = "done"
            order.append(item)

        for key in keys:
            visit(key, None, ())
        return [_Step(item, needed[id(item)]) for item in order]
