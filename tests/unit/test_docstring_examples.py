"""Every docstring example in speechlobes runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import speechlobes

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(speechlobes.__path__, prefix="speechlobes.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
