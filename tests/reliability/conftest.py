"""Fixtures of the reliability tests."""

import shutil
from pathlib import Path

import pytest
from helpers import make_ctc_experiment


@pytest.fixture(scope="session")
def ctc_experiment(tmp_path_factory) -> Path:
    """A CTC experiment folder, moved after training to a path with a space in it."""
    root = tmp_path_factory.mktemp("ctc")
    trained = make_ctc_experiment(root / "trained")
    moved = root / "moved here" / "exp 1"
    moved.parent.mkdir()
    shutil.move(trained, moved)
    return moved
