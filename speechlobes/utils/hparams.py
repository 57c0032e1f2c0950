"""HyperPyYAML helpers: key listing, typed command-line overrides, and errors that name file,
line and key.

Overrides are typed by the file: ``--key=value`` must parse (as YAML) to the type of the
key's value in the file (an int for an int, a number for a float, true/false for a boolean, a
list for a list; anything for a string, which stays a string; a bare ``--key`` only for a
boolean), and a few values are refused on sight (:data:`VALUE_RULES`: fewer than one epoch, a
negative learning rate, a batch size below one, a dropout outside [0, 1)). Values written
with a YAML tag (``!ref <seed>``, ``!new:...``) are passed on unchecked.

A missing key is an error naming the file: ``load_hparams`` returns a dict whose
``hparams["key"]`` raises :class:`MissingHparamError` (a ``KeyError``) with the closest keys.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "h.yaml"
    >>> _ = path.write_text("lr: 0.1\\nmodel:\\n  hidden: 8\\n")
    >>> yaml_key_lines(path)
    {'lr': 1, 'model': 2, 'model.hidden': 3}
    >>> load_hparams(path, overrides_to_yaml([("model.hidden", "16")]))["model"]
    {'hidden': 16}
    >>> typed_override(path, "lr", "abc")
    Traceback (most recent call last):
    ...
    speechlobes.utils.hparams.HparamsError: --lr=abc: expected a number (lr is 0.1 in ...h.yaml,
    line 1)
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml.error import MarkedYAMLError, YAMLError

__all__ = [
    "VALUE_RULES",
    "Hparams",
    "HparamsError",
    "MissingHparamError",
    "check_value",
    "closest_keys",
    "load_hparams",
    "overrides_to_yaml",
    "typed_override",
    "yaml_key_lines",
]


class HparamsError(ValueError):
    """A problem in a hyperparameter file or an override, located by file, line and key."""


class MissingHparamError(HparamsError, KeyError):
    """A key a script needs is not in its hyperparameter file."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class Hparams(dict):
    """The loaded hyperparameters: a dict whose missing keys raise :class:`MissingHparamError`
    naming the file and the closest keys (``get`` and ``in`` behave as for any dict)."""

    def __init__(self, hparams_file: str | Path, values: dict) -> None:
        super().__init__(values)
        self.hparams_file = hparams_file

    def __missing__(self, key: str) -> Any:
        close = closest_keys(str(key), [str(k) for k in self])
        raise MissingHparamError(
            f"{self.hparams_file}: no key {key!r}, which this script needs; add it to the file "
            f"or pass --{key}=... (closest keys: {', '.join(close) or '(none)'})"
        )


# (regular expression on the key's last name, test, what a valid value is)
VALUE_RULES: list[tuple[str, Any, str]] = [
    (r"(number_of_|num_|n_|max_)?epochs", lambda v: v >= 1, "at least 1"),
    (r"(.*_)?batch_size", lambda v: v >= 1, "at least 1"),
    (r"(.*_)?(lr|learning_rate)(_.*)?", lambda v: v >= 0, "0 or more"),
    (r"(.*_)?dropout(_.*)?", lambda v: 0 <= v < 1, "in [0, 1)"),
]


def yaml_key_lines(hparams_file: str | Path) -> dict[str, int]:
    """Every mapping key of the file as a dotted path, with its (1-based) line."""
    lines: dict[str, int] = {}
    _collect_keys(_round_trip_tree(hparams_file), "", lines)
    return lines


def _round_trip_tree(hparams_file: str | Path) -> Any:
    """The file parsed without building anything (tags kept as ruamel tagged nodes)."""
    try:
        return ruamel.yaml.YAML(typ="rt").load(Path(hparams_file).read_text(encoding="utf-8"))
    except MarkedYAMLError as error:
        raise _error_at(hparams_file, error, error.problem_mark.line + 1) from error


def _key_lines_of_text(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    _collect_keys(ruamel.yaml.YAML(typ="rt").load(text), "", lines)
    return lines


def _collect_keys(node: Any, prefix: str, lines: dict[str, int]) -> None:
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        lines[dotted] = node.lc.key(key)[0] + 1
        _collect_keys(value, f"{dotted}.", lines)


def closest_keys(name: str, keys: list[str], count: int = 5) -> list[str]:
    """The ``count`` keys most similar to ``name`` (difflib), for "did you mean" messages."""
    return difflib.get_close_matches(name, keys, n=count, cutoff=0.4)


def overrides_to_yaml(pairs: list[tuple[str, str]]) -> str:
    """``[("a.b", "1"), ("c", "!ref <a>")]`` -> nested YAML text for HyperPyYAML overrides.

    Values are YAML text (as :func:`typed_override` returns them), so tags such as ``!ref``
    work.
    """
    tree: dict[str, Any] = {}
    for dotted, raw in pairs:
        node = tree
        *parents, leaf = dotted.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise HparamsError(f"override --{dotted}: {parent!r} was already given a value")
        node[leaf] = raw
    return "\n".join(_emit(tree, 0))


# What YAML reads as null; a string key given one of these is unset, not the word "null".
YAML_NULLS = ("null", "Null", "NULL", "~")


def typed_override(hparams_file: str | Path, dotted: str, raw: str | None) -> str:
    """The YAML text of ``--dotted=raw`` after checking it against the file's value for that
    key (see the module docstring); ``raw`` None is a bare ``--dotted``.

    Raises:
        HparamsError: the value does not parse to the key's type or breaks a
            :data:`VALUE_RULES` rule; the message names the key, its value, file and line.
    """
    tree = _round_trip_tree(hparams_file)
    current = _follow_reference(tree, _lookup(tree, dotted))
    kind = _kind(current)
    line = yaml_key_lines(hparams_file).get(dotted)
    where = f"{dotted} is {_shown(current)} in {hparams_file}" + (f", line {line}" if line else "")
    shown = f"--{dotted}" if raw is None else f"--{dotted}={raw}"
    if raw is None:
        if kind != "a boolean":
            raise HparamsError(f"{shown}: give a value ({where}); a bare --key is for booleans")
        return "true"
    if raw.lstrip().startswith("!"):
        return raw  # a YAML tag: HyperPyYAML resolves it
    if kind == "a string":
        if raw.strip() in YAML_NULLS:
            return "null"  # unset, as in YAML (e.g. --heldout_sentences=null)
        return json.dumps(raw, ensure_ascii=False)  # stays a string, whatever it looks like
    try:
        value = ruamel.yaml.YAML(typ="safe", pure=True).load(raw)
    except YAMLError as error:
        raise HparamsError(f"{shown}: not a YAML value ({error}) ({where})") from error
    if kind == "an object":
        raise HparamsError(
            f"{shown}: {where}; override its arguments (--{dotted}.<argument>=...) or give "
            "another object with a tag (!new:...)"
        )
    if kind is not None and not _has_kind(value, kind):
        raise HparamsError(f"{shown}: expected {kind} ({where})")
    check_value(dotted, value, shown)
    return raw


def check_value(dotted: str, value: Any, shown: str | None = None) -> None:
    """Raise :class:`HparamsError` if a number breaks the :data:`VALUE_RULES` rule of its key.

    Example:
        >>> check_value("model.dropout", 1.5)
        Traceback (most recent call last):
        ...
        speechlobes.utils.hparams.HparamsError: model.dropout=1.5: dropout must be in [0, 1)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    name = dotted.rsplit(".", 1)[-1]
    for pattern, valid, meaning in VALUE_RULES:
        if re.fullmatch(pattern, name) and not valid(value):
            raise HparamsError(f"{shown or f'{dotted}={value}'}: {name} must be {meaning}")


def _lookup(tree: Any, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _follow_reference(tree: Any, node: Any, depth: int = 0) -> Any:
    """The node a plain ``!ref <key>`` (or ``!copy``) points to; other nodes unchanged."""
    tag = _tag(node)
    if tag in ("!ref", "!copy") and depth < 20:
        match = re.fullmatch(r"\s*<([^<>]+)>\s*", str(node.value))
        if match:
            target = _lookup(tree, match.group(1).replace("[", ".").replace("]", ""))
            return _follow_reference(tree, target, depth + 1)
    return node


def _tag(node: Any) -> str | None:
    tag = getattr(node, "tag", None)
    return getattr(tag, "value", tag) if tag is not None else None


def _not_bool(value: Any) -> bool:
    return not isinstance(value, bool)


# The kinds of value a file holds, in words, and what an override of each must parse to.
KINDS: tuple[tuple[type, str, Any], ...] = (
    (bool, "a boolean", lambda v: isinstance(v, bool)),
    (int, "an integer", lambda v: isinstance(v, int) and _not_bool(v)),
    (float, "a number", lambda v: isinstance(v, int | float) and _not_bool(v)),
    (str, "a string", lambda v: True),
    (list, "a list", lambda v: isinstance(v, list)),
    (dict, "a mapping", lambda v: isinstance(v, dict)),
)


def _kind(node: Any) -> str | None:
    """What an override of ``node`` must be, in words; None when anything goes."""
    tag = _tag(node)
    if tag is not None:
        return None if tag in ("!ref", "!copy", "!tuple", "!PLACEHOLDER") else "an object"
    return next((words for kind, words, _ in KINDS if isinstance(node, kind)), None)


def _has_kind(value: Any, kind: str) -> bool:
    return next(test for _, words, test in KINDS if words == kind)(value)


def _shown(node: Any) -> str:
    tag = _tag(node)
    if tag is not None:
        return f"an object ({tag})"
    text = json.dumps(node, default=str) if not isinstance(node, str) else repr(node)
    return text if len(text) <= 40 else text[:37] + "..."


def _emit(tree: dict, depth: int):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield f"{'  ' * depth}{key}:"
            yield from _emit(value, depth + 1)
        else:
            yield f"{'  ' * depth}{key}: {value}"


def load_hparams(hparams_file: str | Path, overrides: str | dict | None = None) -> dict:
    """``load_hyperpyyaml`` with errors that name the file, the line and the key.

    Example: ``hparams = load_hparams("hparams/train.yaml", overrides)``.
    """
    with open(hparams_file, encoding="utf-8") as stream:
        try:
            return Hparams(hparams_file, load_hyperpyyaml(stream, overrides or None))
        except MarkedYAMLError as error:
            raise _error_at(hparams_file, error, error.problem_mark.line + 1) from error
        except Exception as error:
            key = _failing_key(error)
            line = (
                yaml_key_lines(hparams_file).get(key)
                if key
                else _reference_line(hparams_file, error)
            )
            raise _error_at(hparams_file, error, line, key) from error


def _failing_key(error: Exception) -> str | None:
    """The key whose YAML node was being built when ``error`` was raised, if any.

    HyperPyYAML builds objects from a re-serialised copy of the file (references resolved,
    overrides applied); the failing node's line in that copy gives the key.
    """
    found, traceback = None, error.__traceback__
    while traceback is not None:
        frame_locals = traceback.tb_frame.f_locals
        node, loader = frame_locals.get("node"), frame_locals.get("loader")
        buffer = getattr(getattr(loader, "reader", None), "buffer", None)
        if getattr(node, "start_mark", None) is not None and isinstance(buffer, str):
            found = (node.start_mark.line + 1, buffer.rstrip("\x00"))
        traceback = traceback.tb_next
    if found is None:
        return None
    line, text = found
    try:
        return _deepest_key_before(_key_lines_of_text(text), line)
    except MarkedYAMLError:
        return None


def _reference_line(hparams_file: str | Path, error: Exception) -> int | None:
    """The line using the reference a "reference ... is not valid" error names."""
    match = re.search(r'reference "([^"]+)"', str(error))
    if match is None:
        return None
    lines = Path(hparams_file).read_text(encoding="utf-8").splitlines()
    return next((n for n, text in enumerate(lines, 1) if f"<{match.group(1)}" in text), None)


def _error_at(
    hparams_file: str | Path, error: Exception, line: int | None, key: str | None = None
) -> HparamsError:
    message = getattr(error, "problem", None) or str(error)
    if key is None and line is not None:
        key = _key_at_line(hparams_file, line)
    where = (
        f"{hparams_file}" + (f", line {line}" if line else "") + (f", key {key!r}" if key else "")
    )
    return HparamsError(f"{where}: {type(error).__name__}: {message}")


def _key_at_line(hparams_file: str | Path, line: int) -> str | None:
    """The deepest key defined at or before ``line`` (None if the file does not parse)."""
    try:
        return _deepest_key_before(_key_lines_of_text(Path(hparams_file).read_text("utf-8")), line)
    except MarkedYAMLError:
        return None


def _deepest_key_before(keys: dict[str, int], line: int) -> str | None:
    """The key defined last at or before ``line`` (the most nested one on a shared line)."""
    before = [(key_line, key.count("."), key) for key, key_line in keys.items() if key_line <= line]
    return max(before)[2] if before else None
