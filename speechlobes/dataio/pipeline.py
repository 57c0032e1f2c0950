"""Dynamic items: functions that compute new keys of an example from existing ones.

As in SpeechBrain (``speechbrain.utils.data_pipeline``), ``@takes`` and ``@provides`` turn a
function into a :class:`DynamicItem` (a :class:`GeneratorDynamicItem` for a generator
function), which stays callable. A generator provides its keys one call at a time, yielding
them in order; ``@provides("wav", ["left", "right"])`` yields ``wav`` first, then the tuple
``(left, right)``. A :class:`DataPipeline` works out which items the requested output keys
need, runs only those, in dependency order, and advances a generator only as far as needed.

Example:
    >>> @takes("words")
    ... @provides("words_upper", "num_chars")
    ... def text_pipeline(words):
    ...     yield words.upper()
    ...     yield len(words)
    >>> pipeline = DataPipeline(["id", "words"], [text_pipeline], ["id", "num_chars"])
    >>> pipeline({"id": "a", "words": "hello"})
    {'id': 'a', 'num_chars': 5}
    >>> pipeline.compute_specific(["words_upper"], {"id": "a", "words": "hi"})
    {'words_upper': 'HI'}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DataPipeline",
    "DynamicItem",
    "GeneratorDynamicItem",
    "OutputKeys",
    "provides",
    "takes",
]

OutputKeys = Sequence[str] | dict[str, str] | None


class DynamicItem:
    """A function with the keys it takes (its arguments, in order) and the keys it provides.

    A function providing several keys returns a tuple of that many values.

    Example:
        >>> item = DynamicItem(takes=["words"], func=len, provides=["num_chars"])
        >>> item("hello"), item.next_provides()
        (5, ['num_chars'])
    """

    def __init__(
        self,
        takes: Sequence[str] | None = None,
        func: Callable | None = None,
        provides: Sequence[Any] | None = None,
    ):
        self.takes = list(takes) if takes is not None else []
        self.func = func
        self.provides = list(provides) if provides is not None else []

    @property
    def name(self) -> str:
        """The function's name, for messages."""
        return getattr(self.func, "__name__", repr(self.func))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}: {self.takes} -> {self.provides})"

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)

    def next_takes(self) -> list[str]:
        """The keys the next call reads."""
        return self.takes

    def next_provides(self) -> list[str]:
        """The keys the next call returns."""
        return self.provides

    def provided_in_order(self) -> list[list[str]]:
        """The keys of each successive call (a plain function is called once)."""
        return [self.provides]

    def reset(self) -> None:
        """Forget any state of the current example (nothing to forget here)."""


class GeneratorDynamicItem(DynamicItem):
    """A generator function: the first call starts it with the taken keys, each call returns
    its next yield, which provides the next entry of ``provides`` (a key, or a list of keys
    yielded together as a tuple).

    Example:
        >>> def split_then_count(text):
        ...     words = text.split()
        ...     yield words
        ...     yield len(words)
        >>> item = GeneratorDynamicItem(takes=["text"], func=split_then_count,
        ...                             provides=["words", "num_words"])
        >>> item("a b c"), item()
        (['a', 'b', 'c'], 3)
        >>> item.reset()
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.current_generator = None
        self.num_provided_items = 0

    def __call__(self, *args: Any) -> Any:
        if self.num_provided_items == len(self.provides):
            raise RuntimeError(
                f"dynamic item '{self.name}' was called more times than it provides "
                f"({self.provides})"
            )
        if self.current_generator is None:
            self.current_generator = self.func(*args)
        try:
            value = next(self.current_generator)
        except StopIteration:
            raise ValueError(
                f"dynamic item '{self.name}' yielded {self.num_provided_items} values, it "
                f"provides {len(self.provides)}: {self.provides}"
            ) from None
        self.num_provided_items += 1
        return value

    def next_takes(self) -> list[str]:
        return self.takes if self.current_generator is None else []

    def next_provides(self) -> list[str]:
        return _as_key_list(self.provides[self.num_provided_items])

    def provided_in_order(self) -> list[list[str]]:
        return [_as_key_list(keys) for keys in self.provides]

    def reset(self) -> None:
        if self.current_generator is not None:
            self.current_generator.close()
        self.current_generator = None
        self.num_provided_items = 0


def _as_key_list(keys: str | Sequence[str]) -> list[str]:
    return [keys] if isinstance(keys, str) else list(keys)


def _dynamic_item_of(obj: Callable) -> DynamicItem:
    if isinstance(obj, DynamicItem):
        return obj
    if inspect.isgeneratorfunction(obj):
        return GeneratorDynamicItem(func=obj)
    return DynamicItem(func=obj)


def takes(*argkeys: str) -> Callable[[Callable], DynamicItem]:
    """Decorator: the keys a dynamic item reads, in argument order.

    Makes a :class:`DynamicItem` (a :class:`GeneratorDynamicItem` for a generator function),
    or completes one made by ``@provides``; the result stays callable.
    """
    return _setting_keys("takes", argkeys)


def provides(*output_keys: str | Sequence[str]) -> Callable[[Callable], DynamicItem]:
    """Decorator: the keys a dynamic item computes.

    A plain function providing several keys returns a tuple of them; a generator yields
    them one by one (a list of keys, e.g. ``provides("wav", ["left", "right"])``, is one
    yield of several values).
    """
    return _setting_keys("provides", output_keys)


def _setting_keys(role: str, keys: Sequence[Any]) -> Callable[[Callable], DynamicItem]:
    """A decorator setting a dynamic item's ``takes`` or ``provides`` (once)."""

    def decorator(obj: Callable) -> DynamicItem:
        item = _dynamic_item_of(obj)
        if getattr(item, role):
            raise ValueError(f"dynamic item '{item.name}' already {role} {getattr(item, role)}")
        setattr(item, role, list(keys))
        return item

    return decorator


@dataclass(frozen=True)
class _Step:
    item: DynamicItem
    calls: int  # how many successive calls of the item are needed


class DataPipeline:
    """Resolve and run the dynamic items that the output keys need.

    Arguments:
        static_data_keys: keys every example holds before any dynamic item runs.
        dynamic_items: :class:`DynamicItem` objects (e.g. functions decorated with
            ``@takes``/``@provides``), or dicts with ``func``, ``takes`` and ``provides``.
        output_keys: the keys :meth:`compute_outputs` returns; a dict renames
            (``{output_name: source_key}``).
        source: what the static data came from (a manifest path), named in errors.

    The output keys are resolved when an example is first computed, so they may be set
    before the items that provide them are added.

    Example:
        >>> pipeline = DataPipeline(["x"], [{"func": abs, "takes": "x", "provides": "y"}],
        ...                         output_keys={"abs_x": "y"})
        >>> pipeline({"x": -3})
        {'abs_x': 3}
    """

    def __init__(
        self,
        static_data_keys: Iterable[str],
        dynamic_items: Iterable[Callable | dict[str, Any]] | None = None,
        output_keys: OutputKeys = None,
        source: str = "the data",
    ):
        self.static_keys: set[str] = set()
        self.source = source
        self.dynamic_items: list[DynamicItem] = []
        self._providers: dict[str, DynamicItem] = {}
        self._plan: list[_Step] | None = None
        self.add_static_keys(static_data_keys)
        self.add_dynamic_items(dynamic_items or [])
        self.set_output_keys(output_keys)

    def add_static_keys(self, static_keys: Iterable[str]) -> None:
        """Declare keys present in every example's data."""
        self.static_keys.update(static_keys)
        self._plan = None

    def add_dynamic_items(self, dynamic_items: Iterable[Callable | dict[str, Any]]) -> None:
        """Add several items: DynamicItems, or dicts of ``add_dynamic_item`` arguments."""
        for item in dynamic_items:
            if isinstance(item, dict):
                self.add_dynamic_item(**item)
            else:
                self.add_dynamic_item(item)

    def add_dynamic_item(
        self,
        func: Callable,
        takes: str | Sequence[str] | None = None,
        provides: str | Sequence[str] | None = None,
    ) -> None:
        """Add ``func`` reading ``takes`` and computing ``provides`` (single keys may be bare
        strings), or a ready :class:`DynamicItem` (then without takes/provides)."""
        if isinstance(func, DynamicItem):
            if takes is not None or provides is not None:
                raise ValueError(
                    f"dynamic item '{func.name}' already has its keys: add it without "
                    "takes= and provides="
                )
            item = func
        else:
            name = getattr(func, "__name__", repr(func))
            if takes is None or provides is None:
                raise ValueError(
                    f"dynamic item '{name}' needs its keys: decorate it with @takes(...) and "
                    "@provides(...) or pass takes= and provides="
                )
            item = _dynamic_item_of(func)
            item.takes = _as_key_list(takes)
            item.provides = _as_key_list(provides)
        self._register(item)

    def _register(self, item: DynamicItem) -> None:
        keys = [key for group in item.provided_in_order() for key in group]
        if not keys:
            raise ValueError(f"dynamic item '{item.name}' provides no key")
        for key in keys:
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
        for key in keys:
            self._providers[key] = item
        self.dynamic_items.append(item)
        self._plan = None

    def set_output_keys(self, keys: OutputKeys) -> None:
        """Choose the returned keys: a list, or a dict ``{output_name: source_key}``."""
        self.output_mapping = _output_mapping(keys)
        self._plan = None

    @property
    def plan(self) -> list[_Step]:
        """The dynamic items to run for the current output keys, in dependency order."""
        if self._plan is None:
            self._plan = self._resolve(list(self.output_mapping.values()))
        return self._plan

    def compute_outputs(self, data: dict[str, Any]) -> dict[str, Any]:
        """Run the needed dynamic items on one example and return the output keys."""
        return self._compute(data, self.plan, self.output_mapping)

    def compute_specific(self, keys: OutputKeys, data: dict[str, Any]) -> dict[str, Any]:
        """Compute ``keys`` for one example, leaving the output keys as they are."""
        mapping = _output_mapping(keys)
        return self._compute(data, self._resolve(list(mapping.values())), mapping)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.compute_outputs(data)

    def _compute(
        self, data: dict[str, Any], plan: list[_Step], mapping: dict[str, str]
    ) -> dict[str, Any]:
        values = dict(data)
        try:
            for step in plan:
                for _ in range(step.calls):
                    self._call(step.item, values)
        finally:
            for step in plan:
                step.item.reset()
        return {name: self._value(values, key, None) for name, key in mapping.items()}

    def _call(self, item: DynamicItem, values: dict[str, Any]) -> None:
        args = [self._value(values, key, item.name) for key in item.next_takes()]
        keys = item.next_provides()
        result = item(*args)
        if len(keys) == 1:
            values[keys[0]] = result
            return
        if not isinstance(result, tuple | list) or len(result) != len(keys):
            raise ValueError(
                f"dynamic item '{item.name}' provides {keys} at once: return (or yield) a "
                "tuple of that many values"
            )
        values.update(zip(keys, result, strict=True))

    def _value(self, values: dict[str, Any], key: str, reader: str | None) -> Any:
        if key not in values:
            who = f"dynamic item '{reader}'" if reader else "the output keys"
            raise KeyError(
                f"{self.source}: example '{values.get('id')}' has no '{key}', which {who} "
                "needs; give every example that field"
            )
        return values[key]

    def _resolve(self, keys: list[str]) -> list[_Step]:
        calls: dict[int, int] = {}  # id(item) -> how many successive calls are needed
        order: list[DynamicItem] = []
        state: dict[int, str] = {}  # id(item) -> "visiting" | "done"

        def visit(key: str, reader: str | None, path: tuple[str, ...]) -> None:
            if key in self.static_keys:
                return
            item = self._providers.get(key)
            if item is None:
                who = f"dynamic item '{reader}' takes" if reader else "output key"
                raise KeyError(
                    f"{self.source}: {who} '{key}', which is neither a column of "
                    f"{self.source} (columns: {sorted(self.static_keys)}) nor provided by a "
                    f"dynamic item (provided: {sorted(self._providers)})"
                )
            call = next(i for i, group in enumerate(item.provided_in_order()) if key in group)
            calls[id(item)] = max(calls.get(id(item), 0), call + 1)
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
        return [_Step(item, calls[id(item)]) for item in order]


def _output_mapping(keys: OutputKeys) -> dict[str, str]:
    if keys is None:
        return {}
    return dict(keys) if isinstance(keys, dict) else {key: key for key in keys}
