"""requirements/: the lock that scripts/setup.sh installs covers pyproject.toml, pins releases
its ranges allow, and carries a hash for each (docs/operations.md, "Reproducible installs")."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENTRY = re.compile(r"(?m)^([A-Za-z0-9_.-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)")


def locked(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    entries = {canonicalize_name(n): v for n, v, _ in ENTRY.findall(text)}
    pins = re.findall(r"(?m)^[A-Za-z0-9_.-]+==", text)
    assert len(pins) == len(entries), f"{name}: a pinned package without its hashes"
    return entries


@pytest.mark.parametrize("lock, extras", [("lock.txt", ()), ("lock-test.txt", ("test",))])
def test_the_lock_pins_every_requirement_within_its_range(lock: str, extras: tuple[str, ...]
                                                          ) -> None:
    pins = locked(lock)
    wanted = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        wanted += PYPROJECT["project"]["optional-dependencies"][extra]
    wanted += PYPROJECT["build-system"]["requires"]  # setup.sh builds without isolation
    for text in [*wanted, "pip"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} has no {name}: run bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside {requirement.specifier}: "
            "run bash scripts/lock.sh")


def test_both_locks_agree_on_every_shared_package() -> None:
    server, test = locked("lock.txt"), locked("lock-test.txt")
    assert set(server) <= set(test)
    assert {n: v for n, v in server.items() if test[n] != v} == {}


def test_setup_installs_from_the_lock_only() -> None:
    setup = (ROOT / "scripts/setup.sh").read_text()
    installs = [line.strip() for line in setup.splitlines() if "pip install" in line
                and not line.lstrip().startswith("#")]
    assert installs == ['.venv/bin/python -m pip install -q --require-hashes -r "$lock"',
                        ".venv/bin/python -m pip install -q --no-deps --no-build-isolation -e ."]
