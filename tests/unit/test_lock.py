"""The set-up installs exactly requirements.lock, and the oracle tests know their releases."""

import re
from importlib import metadata
from pathlib import Path

import oracles
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def locked() -> dict[str, str]:
    """{canonical name: version} of requirements.lock."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line.strip())
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def setup_requirements() -> list[Requirement]:
    text = (ROOT / "setup.py").read_text()
    quoted = re.findall(r'^\s+"([A-Za-z][^"]*)",', text, flags=re.MULTILINE)
    return [Requirement(entry) for entry in quoted]


def test_every_installed_locked_package_has_its_locked_version():
    wrong = {}
    for name, version in locked().items():
        try:
            installed = metadata.version(name).split("+")[0]  # torch 2.13.0+cpu is 2.13.0
        except metadata.PackageNotFoundError:
            wrong[name] = f"not installed (lock: {version})"
            continue
        if installed != version:
            wrong[name] = f"{installed} (lock: {version})"
    assert not wrong, f"run tools/bootstrap.sh: {wrong}"


def test_every_requirement_of_setup_py_is_locked_and_admits_the_locked_version():
    pins = locked()
    requirements = setup_requirements()
    assert len(requirements) > 15
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in setup.py but not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), requirement


def test_the_oracle_releases_are_the_locked_ones():
    pins = locked()
    assert {name: pins[canonicalize_name(name)] for name in oracles.WRITTEN_AGAINST} == (
        oracles.WRITTEN_AGAINST
    )


def test_an_oracle_of_another_release_is_named_in_one_line(monkeypatch):
    monkeypatch.delenv("SPEECHLOBES_ORACLE_DRIFT", raising=False)
    monkeypatch.setattr(oracles.metadata, "version", lambda name: "9.9.9")
    assert oracles.version_mismatch("transformers") == (
        "written against transformers 5.23.0, found 9.9.9: run tools/bootstrap.sh"
    )
    monkeypatch.setenv("SPEECHLOBES_ORACLE_DRIFT", "1")
    assert oracles.version_mismatch("transformers") is None
    with pytest.raises(KeyError, match="no release recorded"):
        monkeypatch.delenv("SPEECHLOBES_ORACLE_DRIFT")
        oracles.version_mismatch("numpy")
