"""Backpressure at an intermediate node (server/cascade/reports.py, `Reports._room`): one
flooding child is refused `busy` at its own share of the outbox while its siblings' reports
are still taken; the node-wide bound still protects the disk."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import SQLModel

import server.cascade.reports as reports_module
from rooms.db import Database
from rooms.models import Meeting, MeetingStatus, Unit, UnitKind
from server.cascade.reports import Reports
from server.cascade.schemas import NodeSchema
from server.cascade.topics import Topic, Topics

KEY = "province/7"  # a meeting of the node above: the city stores and passes reports on


class Note(NodeSchema):
    n: int


async def _unused(*_: Any) -> Any:
    raise AssertionError("not used when passing reports on")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    if database.is_sqlite:  # the tables a report passing on reads (PostgreSQL's are migrated)
        tables = [SQLModel.metadata.tables[name]
                  for name in ("unit", "user", "meeting", "cascadereport")]
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=tables))
    yield database
    await database.close()


async def _city(db: Database) -> Reports:
    async with db.session() as s:
        unit = Unit(name="City", kind=UnitKind.city)
        s.add(unit)
        await s.flush()
        assert unit.id is not None
        meeting = Meeting(title="Mirrored", unit_id=unit.id, status=MeetingStatus.open,
                          starts_at=datetime.now(UTC), cascade_key=KEY)
        s.add(meeting)
        await s.commit()
        meeting_id = meeting.id

    async def meeting_of(_: str) -> int | None:
        return meeting_id
    return _reports(db, meeting_of)


def _reports(db: Database, meeting_of: Any) -> Reports:
    topics = Topics()
    topics.register(Topic("test.note", Note, "up", receive=_unused))
    return Reports(db, "city", topics, meeting_of, _unused)


async def _send(reports: Reports, child: str, report_id: str) -> str:
    outcome = await reports.receive(child, {"id": report_id, "meeting": KEY, "origin": child,
                                            "topic": "test.note", "data": {"n": 1}})
    if outcome["state"] == "refused":
        return str(outcome["error"]["code"])
    return str(outcome["state"])


def _lines(caplog: pytest.LogCaptureFixture, *words: str) -> int:
    return sum(1 for r in caplog.records
               if r.name == reports_module.__name__ and all(w in r.getMessage() for w in words))


async def test_a_flooding_child_is_refused_busy_while_its_siblings_reports_are_stored(
        db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The city's parent takes nothing (its link down). Ward 1 floods: past its share (2
    here) its reports are refused `busy` and nothing of them is stored here (ward 1 keeps
    them), while ward 2's are still stored; at the node-wide bound (5 here; the city's own
    reports count too) every child is refused. The busy and taking-again lines come once per
    change; counted from the outbox again (a restart) each child's share is still its own."""
    monkeypatch.setattr(reports_module, "MAX_HELD", 5)
    monkeypatch.setattr(reports_module, "MAX_HELD_PER_CHILD", 2)
    monkeypatch.setattr(reports_module, "RECOUNT_S", 3600.0)  # counted once, then increments
    caplog.set_level(logging.INFO, logger=reports_module.__name__)
    city = await _city(db)

    assert [await _send(city, "w1", f"a{i}") for i in range(1, 5)] == \
        ["stored", "stored", "busy", "busy"]
    assert await city.state_of("a2") == "pending"
    assert await city.state_of("a3") is None  # not taken: still ward 1's to send again
    assert _lines(caplog, "w1", "refused busy") == 1
    assert await _send(city, "w2", "b1") == "stored"  # one child does not stop another
    assert await _send(city, "w2", "b2") == "stored"
    assert await _send(city, "w2", "b3") == "busy"  # ward 2 at its own share

    monkeypatch.setattr(reports_module, "RECOUNT_S", 0.0)  # counted again at every report
    await city.store(KEY, "test.note", {"n": 0})  # the city's own: 5 held, node-wide bound
    assert await _send(city, "w3", "c1") == "busy"
    assert await _send(city, "w3", "c2") == "busy"
    assert await city.state_of("c1") is None
    assert _lines(caplog, "children's reports refused busy") == 1

    await city.settle([{"id": "b1", "state": "stored"}, {"id": "b2", "state": "stored"}])
    assert await _send(city, "w3", "c1") == "stored"  # 3 held: under the node-wide bound
    assert await _send(city, "w1", "a3") == "busy"  # still at its own share
    await city.settle([{"id": "a1", "state": "stored"}])
    assert await _send(city, "w1", "a3") == "stored"
    assert _lines(caplog, "taking children's again") == 1
    assert _lines(caplog, "w1", "taking its reports again") == 1
    assert _lines(caplog, "w1", "refused busy") == 1  # one line for its whole stretch
    assert _lines(caplog, "children's reports refused busy") == 1

    restarted = _reports(db, city.meeting_of)  # each child's share counted from the outbox
    assert await _send(restarted, "w1", "a4") == "busy"  # a2, a3 held for ward 1
    assert await _send(restarted, "w2", "b3") == "stored"
    assert await _send(restarted, "w3", "c2") == "busy"  # a2 a3 b3 c1 and its own: 5
