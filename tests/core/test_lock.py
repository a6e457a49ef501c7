"""`requirements.lock` pins what `pyproject.toml` asks for: an edit to one without `make lock`
fails here rather than installing something else in CI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)", re.MULTILINE)


def _pins() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    return {canonicalize_name(m["name"]): m["version"] for m in PIN.finditer(text)}


def _wanted() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The client distribution (clients/python) is installed beside the server without its
    # dependencies (`make install`): they must come from the lock too.
    client = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"] + client["dependencies"]
    return [Requirement(line) for line in lines]


def test_every_dependency_is_pinned_within_its_range_with_hashes() -> None:
    pins = _pins()
    problems = []
    for requirement in _wanted():
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement.name}: not in requirements.lock")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement.name}=={pinned} outside {requirement.specifier}")
    assert problems == [], "run `make lock`: " + "; ".join(problems)
    text = (ROOT / "requirements.lock").read_text()
    assert text.count("==") <= text.count("--hash=sha256:")  # every pin carries its hashes


def test_pins_hold_the_known_security_fixes() -> None:
    pins = _pins()
    assert Requirement("waitress>=3.0.1").specifier.contains(pins["waitress"])
    assert Requirement("cryptography>=42.0.4").specifier.contains(pins["cryptography"])
