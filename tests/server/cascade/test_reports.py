"""The outbox of reports towards a meeting's owner (server/cascade/reports.py): its states
change without losing a concurrent change."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.util import await_only

from rooms.cascade_models import CascadeReport
from rooms.db import Database
from server.cascade.reports import RETRY_FIRST_S, Reports
from server.cascade.topic.vote_schemas import VoteTallyData
from server.cascade.topics import Entry, Topic, Topics


async def _unused(*_: Any) -> Any:
    raise AssertionError("not used by the outbox's own states")


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


async def test_a_report_held_back_for_now_is_superseded_by_a_newer_snapshot(
        db: Database) -> None:
    """Two snapshots of vote 1 both refused for now (not_yet), then a third of vote 2: when
    they are due again only the newest of vote 1 and the one of vote 2 go; the older of
    vote 1 is settled "superseded" (sent again, the owner would refuse it as stale)."""
    topics = Topics()
    topics.register(Topic("vote.tally", VoteTallyData, "up", receive=_unused,
                          supersedes=lambda data: data.get("vote")))
    reports = Reports(db, "ward", topics, _unused, _unused)
    async with db.session() as s:
        for report_id, vote in (("a", 1), ("b", 1), ("c", 2)):
            s.add(CascadeReport(id=report_id, key="k", origin="ward", topic="vote.tally",
                                data=json.dumps({"vote": vote})))
        await s.commit()
    refusal = {"state": "refused", "error": {"code": "not_yet", "message": "not open here"}}
    await reports.settle([{"id": i, **refusal} for i in ("a", "b", "c")])
    assert [r.id for r in await reports.pending()] == []  # held back: their time is not yet
    assert await _state(db, "a") == ("pending", None)
    await asyncio.sleep(RETRY_FIRST_S + 0.1)
    assert [r.id for r in await reports.pending()] == ["b", "c"]
    assert await _state(db, "a") == ("superseded", "by b")


async def test_a_held_back_report_the_owner_refuses_through_the_journal_leaves_the_hold(
        db: Database) -> None:
    """The city refused two of the ward's reports for now (not_yet): both are held back.
    The owner then refuses one of them (the city had stored it; its answer was lost) and
    the journal's `report.refused` tells the ward: that report is refused and no longer
    held back (it stayed in the hold for ever, one entry per such report); the other is
    still held and goes again when its time comes."""
    reports = Reports(db, "ward", Topics(), _unused, _unused)
    async with db.session() as s:
        for report_id in ("a", "b"):
            s.add(CascadeReport(id=report_id, key="k", origin="ward", topic="ink.op",
                                data="{}"))
        await s.commit()
    refusal = {"state": "refused", "error": {"code": "not_yet", "message": "not here yet"}}
    await reports.settle([{"id": i, **refusal} for i in ("a", "b")])
    assert reports.held_back() == 2
    await reports.refused_here(Entry("k", 9, "report.refused", {
        "id": "a", "origin": "ward", "code": "late", "message": "the vote closed"}))
    assert await reports.state_of("a") == "refused: late: the vote closed"
    assert reports.held_back() == 1
    await asyncio.sleep(RETRY_FIRST_S + 0.1)
    assert [r.id for r in await reports.pending()] == ["b"]
    assert reports.held_back() == 1  # "b" is held until the parent answers it


async def test_nothing_overtakes_a_report_the_parent_refused_busy(db: Database) -> None:
    """A `busy` parent takes nothing now: the reports after one it refused so wait behind it
    (sent later, they would overtake it); one refused `not_yet` (what it names is not at the
    parent yet) holds back only itself."""
    reports = Reports(db, "ward", Topics(), _unused, _unused)
    async with db.session() as s:
        for report_id in ("a", "b", "c"):
            s.add(CascadeReport(id=report_id, key="k", origin="ward", topic="ink.op",
                                data="{}"))
        await s.commit()
    await reports.settle([{"id": "b", "state": "refused",
                           "error": {"code": "busy", "message": "3 reports wait here"}}])
    assert [r.id for r in await reports.pending()] == ["a"]
    await asyncio.sleep(RETRY_FIRST_S + 0.1)
    assert [r.id for r in await reports.pending()] == ["a", "b", "c"]
    await reports.settle([{"id": "b", "state": "refused",
                           "error": {"code": "not_yet", "message": "vote 1 is not open here"}}])
    assert [r.id for r in await reports.pending()] == ["a", "c"]


async def test_reports_held_back_at_the_head_of_the_outbox_do_not_stop_those_behind_them(
        db: Database) -> None:
    """The outbox is read a bounded number of rows at a time (here 3; the parent link reads
    250): as many reports held back for now (not_yet) at its head as that bound stopped
    every report behind them, which never went up while those waited. The read goes past
    them; a report behind one refused `busy` still waits behind it."""
    reports = Reports(db, "ward", Topics(), _unused, _unused)
    ids = ["a", "b", "c", "d", "e", "f"]
    async with db.session() as s:
        for report_id in ids:
            s.add(CascadeReport(id=report_id, key="k", origin="ward", topic="ink.op",
                                data="{}"))
        await s.commit()
    not_yet = {"state": "refused", "error": {"code": "not_yet", "message": "not here yet"}}
    await reports.settle([{"id": i, **not_yet} for i in ("a", "b", "c")])
    assert [r.id for r in await reports.pending(limit=3)] == ["d", "e", "f"]
    assert [r.id for r in await reports.pending(limit=2)] == ["d", "e"]
    await reports.settle([{"id": "e", "state": "refused",
                           "error": {"code": "busy", "message": "3 reports wait here"}}])
    assert [r.id for r in await reports.pending(limit=3)] == ["d"]
    await asyncio.sleep(RETRY_FIRST_S + 0.1)
    assert [r.id for r in await reports.pending(limit=3)] == ["a", "b", "c"]
    assert [r.id for r in await reports.pending(limit=10)] == ids
