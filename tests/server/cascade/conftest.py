"""Fixtures of the cascade's store tests (the journal, the outbox)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An async database URL on each engine: a SQLite file of the test's own, or the migrated
    PostgreSQL database (its tables already made)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cascade.db'}"
    url = str(request.getfixturevalue("migrated_postgres_url"))
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)
