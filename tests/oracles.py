"""The releases of the libraries our oracle tests compare with, and the check made before each.

A test that compares with another library's output carries ``@pytest.mark.oracle("name")`` (or a
module-level ``pytestmark``); before it runs, ``conftest.py`` compares the installed release with
the one below and fails with one line when they differ, instead of a confusing numeric diff.
These releases equal ``requirements.lock`` (``tests/unit/test_lock.py`` checks it): refresh both
together (CONTRIBUTING.md, "Refreshing the lock").

``SPEECHLOBES_ORACLE_DRIFT=1`` turns the check off, so ``tools/check_latest.sh`` can see which
tests a newer release really changes.
"""

from __future__ import annotations

import os
from importlib import metadata

WRITTEN_AGAINST = {
    "jiwer": "4.0.0",
    "sacrebleu": "2.6.0",
    "scikit-learn": "1.9.1",
    "scipy": "1.17.1",
    "soxr": "1.1.0",
    "transformers": "5.23.0",
}


def version_mismatch(distribution: str) -> str | None:
    """One line saying why ``distribution`` is not the release the tests were written against,
    or None when it is (or when the drift check is on)."""
    if os.environ.get("SPEECHLOBES_ORACLE_DRIFT") == "1":
        return None
    if distribution not in WRITTEN_AGAINST:
        raise KeyError(f"tests/oracles.py: no release recorded for oracle {distribution!r}")
    expected = WRITTEN_AGAINST[distribution]
    try:
        found = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        found = "nothing installed"
    if found == expected:
        return None
    return f"written against {distribution} {expected}, found {found}: run tools/bootstrap.sh"
