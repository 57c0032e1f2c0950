"""HyperPyYAML helpers: key listing, command-line overrides, and errors that name file, line, key.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "h.yaml"
    >>> _ = path.write_text("lr: 0.1\\nmodel:\\n  hidden: 8\\n")
    >>> yaml_key_lines(path)
    {'lr': 1, 'model': 2, 'model.hidden': 3}
    >>> load_hparams(path, overrides_to_yaml([("model.hidden", "16")]))["model"]
    {'hidden': 16}
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml.error import MarkedYAMLError

__all__ = ["HparamsError", "closest_keys", "load_hparams", "overrides_to_yaml", "yaml_key_lines"]


class HparamsError(ValueError):
    """A problem in a hyperparameter file or an override, located by file, line and key."""


def yaml_key_lines(hparams_file: str | Path) -> dict[str, int]:
    """Every mapping key of the file as a dotted path, with its (1-based) line."""
    try:
        return _key_lines_of_text(Path(hparams_file).read_text(encoding="utf-8"))
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

    Values are kept as written on the command line, so YAML tags such as ``!ref`` work.
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
    return "".join(_emit(tree, 0))


def _emit(tree: dict, depth: int):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield f"{'  ' * depth}{key}:\n"
            yield from _emit(value, depth + 1)
        else:
            yield f"{'  ' * depth}{key}: {value}\n"


def load_hparams(hparams_file: str | Path, overrides: str | dict | None = None) -> dict:
    """``load_hyperpyyaml`` with errors that name the file, the line and the key.

    Example: ``hparams = load_hparams("hparams/train.yaml", overrides)``.
    """
    with open(hparams_file, encoding="utf-8") as stream:
        try:
            return load_hyperpyyaml(stream, overrides or None)
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
