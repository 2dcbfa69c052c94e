"""The outbox of reports towards a meeting's owner (server/cascade/reports.py): its states
change without losing a concurrent change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.util import await_only

from rooms.cascade_models import CascadeReport
from rooms.db import Database
from server.cascade.reports import Reports
from server.cascade.topics import Entry, Topics


async def _unused(*_: Any) -> Any:
    raise AssertionError("not used by the outbox's own states")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    url = str(request.getfixturevalue("migrated_postgres_url"))
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    if database.is_sqlite:  # only the outbox's table (PostgreSQL's copy is migrated)
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda sync: CascadeReport.__table__.create(sync))  # type: ignore[attr-defined]
    yield database
    await database.close()


async def _state(db: Database, report_id: str) -> tuple[str, str | None]:
    async with db.session() as s:
        row = await s.get(CascadeReport, await _n(db, report_id))
        assert row is not None
        return row.state, row.reason


async def _n(db: Database, report_id: str) -> int:
    from sqlmodel import select
    async with db.session() as s:
        row = (await s.exec(select(CascadeReport).where(CascadeReport.id == report_id))).one()
        assert row.n is not None
        return row.n


async def test_a_refusal_coming_down_while_the_parent_answers_stored_is_kept(
        db: Database) -> None:
    """The parent (the city) answers "stored" while the owner's refusal of the same report
    comes down the journal and commits in between: the report stays refused with its reason,
    never "delivered" (it was overwritten when `settle` read the row, then wrote it)."""
    reports = Reports(db, "ward", Topics(), _unused, _unused)
    async with db.session() as s:
        s.add(CascadeReport(id="r1", key="k", origin="ward", topic="ink.op", data="{}"))
    refusal = Entry("k", 7, "report.refused",
                    {"id": "r1", "code": "forbidden", "message": "not this meeting's"})
    fired = False

    def refusal_lands_first(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal fired
        if not fired and statement.lstrip().upper().startswith("UPDATE"):
            fired = True  # before settle's write: the journal's refusal commits
            await_only(reports.refused_here(refusal))

    event.listen(db.engine.sync_engine, "before_cursor_execute", refusal_lands_first)
    try:
        await reports.settle([{"id": "r1", "state": "stored"}])
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", refusal_lands_first)
    assert fired
    assert await _state(db, "r1") == ("refused", "forbidden: not this meeting's")


async def test_settle_takes_only_pending_rows_and_ignores_what_is_not_an_id(
        db: Database) -> None:
    reports = Reports(db, "ward", Topics(), _unused, _unused)
    async with db.session() as s:
        for report_id in ("a", "b", "c"):
            s.add(CascadeReport(id=report_id, key="k", origin="ward", topic="ink.op",
                                data="{}"))
    await reports.settle([{"id": "a", "state": "applied"},
                          {"id": "b", "state": "refused",
                           "error": {"code": "not_open", "message": "vote closed"}},
                          {"id": ["c"], "state": "applied"}, {"state": "stored"},
                          {"id": "nobody", "state": "applied"}])
    # A later answer for a settled row changes nothing.
    await reports.settle([{"id": "b", "state": "applied"}, {"id": "a", "state": "refused"}])
    assert await _state(db, "a") == ("delivered", None)
    assert await _state(db, "b") == ("refused", "not_open: vote closed")
    assert await _state(db, "c") == ("pending", None)
    assert await reports.state_of("b") == "refused: not_open: vote closed"
