"""Domain fixtures: a migrated, demo-seeded database on SQLite and PostgreSQL, no server."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import meetings
from rooms.db import Database
from rooms.demo import DEMO_MEETING
from rooms.meetings import MeetingAccess
from rooms.models import Meeting, MeetingStatus, User
from rooms.procedure import lock
from rooms.procedure_models import ProcedureState
from rooms.users import find_user
from server.core.bootstrap import seed_demo
from server.core.migrate import upgrade
from server.core.passwords import password_hasher
from server.core.settings import Settings
from tests.conftest import seeded_sqlite, sqlite_file


@dataclass
class Demo:
    db: Database
    meeting_id: int
    users: dict[str, User]

    async def access(self, s: AsyncSession, username: str) -> MeetingAccess:
        return await meetings.require(s, self.users[username], self.meeting_id)

    async def locked(self, s: AsyncSession) -> ProcedureState:
        return await lock(s, self.meeting_id)


@pytest.fixture
async def demo(tmp_path: Path, harness_database_url: str | None) -> AsyncIterator[Demo]:
    """The Quảng Bình demo with its meeting open: on a copy of the session's seeded database
    (tests/conftest.py; migrating and seeding each test's took 0.3-1.9 s), which upgrade
    leaves as it is and seed_demo gives fresh passwords."""
    settings = Settings(data_dir=tmp_path / "data", database_url=harness_database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if harness_database_url is None:
        shutil.copyfile(seeded_sqlite(), sqlite_file(settings))
    db = Database(settings.sqlalchemy_url)
    await upgrade(db)
    await seed_demo(db, password_hasher(fast=True))
    async with db.session() as s:
        meeting = (await s.exec(select(Meeting).where(Meeting.title == DEMO_MEETING))).one()
        await meetings.advance_status(s, meeting, MeetingStatus.open)
        users = {}
        for name in ("chutri", "thuky", "daibieu", "daibieu2", "daibieu3", "kythuat", "quantri"):
            user = await find_user(s, name)
            assert user is not None
            users[name] = user
    yield Demo(db, meeting.id, users)  # type: ignore[arg-type]
    await db.close()
