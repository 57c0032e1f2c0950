"""speechlobes: a speech toolkit of standalone lobes and a Brain training loop.

As ``import speechbrain as sb``: ``speechlobes.Brain``, ``Stage``, ``RunOptions``,
``create_experiment_directory`` and ``parse_arguments``, and subpackages as attributes
(``speechlobes.dataio.dataset.DynamicItemDataset``); all are imported on first use, so
importing the top level stays cheap.
"""

import importlib
from collections.abc import Callable
from typing import Any

from speechlobes.version import __version__

__all__ = [
    "Brain",
    "RunOptions",
    "Stage",
    "__version__",
    "create_experiment_directory",
    "parse_arguments",
]

_CORE_NAMES = {"Brain", "RunOptions", "Stage", "create_experiment_directory", "parse_arguments"}


def lazy_submodules(package: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` importing ``package.<name>`` on first access."""

    def __getattr__(name: str) -> Any:
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


_submodule = lazy_submodules(__name__)


def __getattr__(name: str) -> Any:
    if name in _CORE_NAMES:
        return getattr(importlib.import_module("speechlobes.core"), name)
    return _submodule(name)
