"""A node's copy of a meeting's journal (server/cascade/journal.py), for a topic whose
applier stores its entries in its own commit (`Topic.keeps`): stored, applied and marked in
that one commit; stored by the journal when the applier wrote nothing or failed; after a
crash before that commit, the entry is pulled again and whatever was stored after it is
applied after it, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import col, select

from rooms.cascade_models import CascadeEntry
from rooms.db import Database
from server.cascade.journal import Journal
from server.cascade.schemas import NodeSchema
from server.cascade.topics import Entry, Topic, Topics
from testkit.province import until
from tests.sql_statements import COMMIT, statements

KEY = "province/1"
KEEPS, PLAIN = "t.keeps", "t.plain"


class Data(NodeSchema):
    n: int = 0


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    if database.is_sqlite:  # only the journal's table (PostgreSQL's copy is migrated)
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda sync: CascadeEntry.__table__.create(sync))  # type: ignore[attr-defined]
    else:
        async with database.session() as s:
            for row in (await s.exec(select(CascadeEntry))).all():
                await s.delete(row)
            await s.commit()
    yield database
    await database.close()


class Node:
    """A journal with two topics: one whose applier keeps its entries, one that does not;
    `fail` makes the keeping applier raise after adding the entry to its transaction."""

    def __init__(self, db: Database) -> None:
        self.db, self.fail = db, False
        self.applied: list[int] = []
        topics = Topics()
        topics.register(Topic(KEEPS, Data, "down", apply=self.keeping, keeps=True))
        topics.register(Topic(PLAIN, Data, "down", apply=self.plain))

        async def nowhere(*_: Any) -> None:
            return None

        async def meeting_of(_: str) -> int:
            return 1
        self.journal = Journal(db, topics, nowhere, meeting_of)

    async def keeping(self, _: int, entry: Entry) -> None:
        async with self.db.session() as s:
            if entry.keep is not None:
                await entry.keep(s)
            if self.fail:
                raise OSError("the applier's write failed")
            self.applied.append(entry.seq)
            await s.commit()

    async def plain(self, _: int, entry: Entry) -> None:
        self.applied.append(entry.seq)

    async def take(self, *entries: tuple[int, str]) -> None:
        await self.journal.ingest(KEY, [{"seq": seq, "topic": topic, "data": {"n": seq}}
                                        for seq, topic in entries])
        top = entries[-1][0]
        await until(lambda: _true(self.journal.applied(KEY) >= top), 10, f"#{top} applied")


async def _true(value: bool) -> bool:
    return value


async def _stored(db: Database) -> list[tuple[int, bool]]:
    async with db.session() as s:
        rows = (await s.exec(select(CascadeEntry).where(CascadeEntry.key == KEY)
                             .order_by(col(CascadeEntry.seq)))).all()
    return [(r.seq, r.applied) for r in rows]


async def test_an_entry_of_a_topic_that_keeps_is_stored_applied_and_marked_in_one_commit(
        db: Database) -> None:
    node = Node(db)
    assert await node.journal.last(KEY) == 0  # read once, at the first entry
    with statements(db) as seen:
        await node.take((1, KEEPS))
    assert seen.count(COMMIT) == 1, seen
    assert len([q for q in seen if q != COMMIT]) == 1, seen  # the entry's upsert
    assert await _stored(db) == [(1, True)]
    assert node.applied == [1]


async def test_an_entry_whose_applier_fails_is_stored_by_the_journal_which_goes_on(
        db: Database) -> None:
    node = Node(db)
    node.fail = True
    await node.take((1, KEEPS))
    node.fail = False
    await node.take((2, KEEPS), (3, PLAIN))
    await until(lambda: _true(len(node.journal._marking) == 0), 5, "marks done")
    assert await _stored(db) == [(1, True), (2, True), (3, True)]
    assert node.applied == [2, 3]
    assert await node.journal.last(KEY) == 3


async def test_after_a_crash_before_its_appliers_commit_an_entry_is_pulled_again_first(
        db: Database) -> None:
    """Entry 2 (a topic that keeps) was not stored when the node stopped; entry 3 (stored at
    once) was, not applied yet. At start-up the journal says it has up to 1 (it pulls from
    there), offers its children nothing past 1, applies nothing past 1; the entries pulled
    again are applied in order, 3 stored once."""
    async with db.session() as s:
        s.add(CascadeEntry(key=KEY, seq=1, topic=KEEPS, data='{"n":1}', applied=True))
        s.add(CascadeEntry(key=KEY, seq=3, topic=PLAIN, data='{"n":3}', applied=False))
        await s.commit()
    node = Node(db)
    assert await node.journal.last(KEY) == 1
    assert await node.journal.since(KEY, 0) == ([{"seq": 1, "topic": KEEPS,
                                                  "data": {"n": 1}}], False)
    assert await node.journal.apply_pending() == 0
    await node.take((2, KEEPS), (3, PLAIN))
    await until(lambda: _true(len(node.journal._marking) == 0), 5, "marks done")
    assert node.applied == [2, 3]
    assert await _stored(db) == [(1, True), (2, True), (3, True)]
    assert [e["seq"] for e in (await node.journal.since(KEY, 0))[0]] == [1, 2, 3]
