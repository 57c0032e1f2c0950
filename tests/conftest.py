import pytest
from oracles import version_mismatch


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Oracle tests first check the oracle's release (tests/oracles.py)."""
    for marker in item.iter_markers("oracle"):
        for distribution in marker.args:
            problem = version_mismatch(distribution)
            if problem:
                pytest.fail(problem, pytrace=False)
