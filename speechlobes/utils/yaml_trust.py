"""What a HyperPyYAML file from someone else may build: the trust model of experiment folders.

HyperPyYAML runs code: ``!new:``, ``!name:`` and ``!apply:`` call any importable name, and the
YAML loader underneath also honours ``!!python/...`` tags. Loading a downloaded or shared
experiment folder must not run arbitrary code, so before anything is built,
:func:`check_trusted_tree` walks the parsed (not built) tree and refuses every tag outside this
allowlist, naming the key:

- the plain YAML types, ``!ref``, ``!copy``, ``!tuple`` (whose text must be plain YAML) and
  ``!PLACEHOLDER``;
- ``!new:``, ``!name:`` and ``!apply:`` of names defined in (after import, by the object's own
  ``__module__``, so a path through another module's attributes does not help):

  - ``speechlobes``, except the modules that load other YAML files, run functions they are
    given or write manifests (:data:`DENIED_SPEECHLOBES`);
  - ``torch.nn`` and ``torch.optim``, torch's tensor factories and dtypes
    (:data:`TORCH_FUNCTIONS`);
  - harmless standard-library types (:data:`STANDARD_TYPES`): containers, numbers, paths.

Everything else is refused: ``os``, ``subprocess``, ``builtins.eval``, ``torch.load``,
``torch.hub``, ``!module:``, ``!applyref:``, ``!include:``, ``!!python/...``, private names.
What the allowed objects do is ours to keep safe: checkpoints are read with safetensors or
``torch.load(weights_only=True)``. Pass ``trust_code=True`` (``--trust-code``) to build
anything, for folders you made or trust.

Example:
    >>> import ruamel.yaml
    >>> tree = ruamel.yaml.YAML(typ="rt").load("cmd: !apply:os.system [id]\\n")
    >>> check_trusted_tree(tree, "hyperparams.yaml")
    Traceback (most recent call last):
    ...
    speechlobes.utils.yaml_trust.UntrustedYamlError: hyperparams.yaml, key 'cmd': !apply:os.system
    is not allowed in a folder that is not trusted (it is outside speechlobes,
    torch.nn/torch.optim and harmless standard types); if you trust this folder, load it with
    trust_code=True (command line: --trust-code)
"""

from __future__ import annotations

import pydoc
import re
from typing import Any

import yaml

__all__ = ["UntrustedYamlError", "check_trusted_tree"]

DENIED_SPEECHLOBES = (
    "speechlobes.core",
    "speechlobes.distributed",
    "speechlobes.inference",
    "speechlobes.utils",
    "speechlobes.dataio.preparation",
)
TORCH_MODULES = ("torch.nn", "torch.optim")
TORCH_FUNCTIONS = frozenset(
    f"torch.{name}"
    for name in (
        "tensor",
        "as_tensor",
        "zeros",
        "ones",
        "full",
        "empty",
        "arange",
        "linspace",
        "eye",
        "device",
        "Size",
        "Generator",
        "manual_seed",
    )
)
STANDARD_TYPES = frozenset(
    {
        *(f"builtins.{name}" for name in ("dict", "list", "tuple", "set", "frozenset")),
        *(f"builtins.{name}" for name in ("int", "float", "complex", "str", "bool", "bytes")),
        "builtins.range",
        "builtins.slice",
        "collections.OrderedDict",
        "collections.Counter",
        "collections.defaultdict",
        "fractions.Fraction",
        "decimal.Decimal",
        "datetime.timedelta",
        "pathlib.Path",
        "pathlib.PurePath",
        "functools.partial",
    }
)
PLAIN_TAGS = frozenset({"!ref", "!copy", "!tuple", "!PLACEHOLDER"})
YAML_TYPES = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
)
CALLING_TAGS = ("!new:", "!name:", "!apply:")
TUPLE_TEXT = re.compile(r"^\(.*\)$", re.DOTALL)


class UntrustedYamlError(ValueError):
    """A YAML file asks to build something outside the allowlist of untrusted files."""


def check_trusted_tree(tree: Any, source: str) -> None:
    """Raise :class:`UntrustedYamlError` (naming ``source`` and the key) if the parsed
    ruamel round-trip ``tree`` would build anything outside the allowlist."""
    _walk(tree, "", source, set())


def _walk(node: Any, key: str, source: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias: checked where it was first met
        return
    seen.add(id(node))
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag is not None:
        _check_tag(tag, key, source)
    if tag == "!tuple" or (isinstance(node, str) and TUPLE_TEXT.match(node)):
        _check_tuple_text(str(getattr(node, "value", node)), key, source)
    if isinstance(node, dict):
        for child_key, child in node.items():
            _walk(child_key, key, source, seen)
            _walk(child, f"{key}.{child_key}" if key else str(child_key), source, seen)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            _walk(child, f"{key}[{index}]", source, seen)


def _check_tag(tag: str, key: str, source: str) -> None:
    if tag in PLAIN_TAGS or tag in YAML_TYPES:
        return
    prefix = next((p for p in CALLING_TAGS if tag.startswith(p)), None)
    if prefix is None or not _allowed(tag[len(prefix) :]):
        raise UntrustedYamlError(
            f"{source}, key {key!r}: {tag} is not allowed in a folder that is not trusted "
            "(it is outside speechlobes, torch.nn/torch.optim and harmless standard types); "
            "if you trust this folder, load it with trust_code=True (command line: --trust-code)"
        )


def _allowed(dotted: str) -> bool:
    """Whether ``dotted`` names an allowed callable. Names under speechlobes and torch are
    judged by the ``__module__`` of the object they resolve to, so ``speechlobes.x.os.system``
    or ``torch.nn.modules.module.torch.load`` is judged as what it really is."""
    parts = dotted.split(".")
    if any(part.startswith("_") for part in parts):
        return False
    if dotted in STANDARD_TYPES or dotted in TORCH_FUNCTIONS:
        return True
    if parts[0] == "math" and len(parts) == 2:
        return True  # math holds numeric functions and constants only
    if parts[0] not in ("speechlobes", "torch"):
        return False
    try:
        target = pydoc.locate(dotted)
    except pydoc.ErrorDuringImport:
        return False
    import torch

    if isinstance(target, torch.dtype):
        return True
    module = getattr(target, "__module__", None) or ""
    if module.startswith("speechlobes."):
        return not any(module == d or module.startswith(f"{d}.") for d in DENIED_SPEECHLOBES)
    if module.startswith("torch._C"):  # kernels exposed as torch.nn.functional.*
        return dotted.startswith(tuple(f"{m}." for m in TORCH_MODULES))
    return any(module == m or module.startswith(f"{m}.") for m in TORCH_MODULES)


def _check_tuple_text(text: str, key: str, source: str) -> None:
    """HyperPyYAML parses ``(a, b)`` with PyYAML's full loader: its inside must be plain YAML."""
    try:
        yaml.safe_load(f"[{text.strip()[1:-1]}]")
    except yaml.YAMLError as error:
        raise UntrustedYamlError(
            f"{source}, key {key!r}: the tuple {text!r} is not plain YAML "
            f"({getattr(error, 'problem', None) or error}); if you "
            "trust this folder, load it with trust_code=True (command line: --trust-code)"
        ) from error
