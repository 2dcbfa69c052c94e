"""Fixtures of the documents server tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def convert_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where office.py makes its per-conversion temp dirs during the test (to inspect them)."""
    root = tmp_path / "convert-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root
