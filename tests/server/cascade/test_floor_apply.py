"""A mirror applies the owner's floor (server/cascade/topic/floor_apply.py): on every change
of the owner's floor at every node of the tree, so its statements are counted here
(tests/sql_statements.py): a fixed handful whatever the number of requests, in one commit
that also stores the journal entry and marks it applied; nothing read under SQLite's writer
lock; the view pushed to the node's tablets the same as the one read from the database."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.util import await_only
from sqlmodel import col, select

from rooms import floor, procedure
from rooms.cascade_models import CascadeEntry
from rooms.models import Site, utcnow
from rooms.procedure_models import AgendaItem, FloorRequest, FloorStatus
from rooms.remote_floor import CascadeRef, FloorOrigin
from rooms.users import find_user
from server.cascade.schemas import validate
from server.cascade.state import MeetingState
from server.cascade.topic import floor as cascade_floor
from server.cascade.topic.floor import STATE, CascadeFloor
from server.cascade.topic.floor_apply import apply_owners_floor
from server.cascade.topic.floor_schemas import FloorStateData
from server.cascade.topics import Entry
from server.core import keys
from testkit.province import until
from tests.conftest import Harness
from tests.server.cascade.mirror import ward_mirror
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.documents_support import Listener
from tests.sql_statements import COMMIT, Statements, statements

PEOPLE = 30
KEY = "province/1"


def _items(n: int) -> list[dict[str, Any]]:
    """n queued requests of the province's people, as the owner journals them."""
    return [{"id": i + 1, "origin": "province", "remote": i + 1, "user": i + 1,
             "name": f"Người số {i}", "status": "queued",
             "requested_at": utcnow().isoformat()} for i in range(n)]


async def _applied_again(h: Harness) -> tuple[Statements, int]:
    """The owner's floor of PEOPLE requests applied at a mirror, then again with one
    request withdrawn by a mirror that did not apply the first (started since): the
    statements of the second apply, and the meeting."""
    meeting_id = await demo_meeting_id(h)
    mirror = CascadeFloor(h.server.app, None)  # type: ignore[arg-type]  # no state used
    items = _items(PEOPLE)
    await mirror.apply_state(meeting_id, Entry(KEY, 1, STATE,
                                               {"holder": None, "requests": items}))
    items[0] = {**items[0], "status": "withdrawn"}
    mirror = CascadeFloor(h.server.app, None)  # type: ignore[arg-type]
    with statements(h.server.app[keys.DB]) as seen:
        await mirror.apply_state(meeting_id, Entry(KEY, 2, STATE,
                                                   {"holder": None, "requests": items}))
    return seen, meeting_id


async def test_a_mirror_applies_the_owners_floor_with_a_fixed_number_of_reads(
        hopso_sqlite: Harness) -> None:
    """The owner's floor applied again at a mirror (a change of one request's status among
    PEOPLE): two reads, the meeting's requests with their people, sites, items and origins
    (and the procedure's seq), then this node's marks; the view pushed to its tablets is
    built from them, not read again (before: the requests read twice, and the marks, the
    hold, the seq and the view's names and origins apart: seven reads)."""
    seen, meeting_id = await _applied_again(hopso_sqlite)
    reads = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2, reads
    assert len(seen.reading("floorrequest")) == 0  # joined from procedurestate
    async with hopso_sqlite.server.app[keys.DB].session() as s:
        waiting = (await s.exec(select(FloorRequest).where(
            FloorRequest.meeting_id == meeting_id,
            FloorRequest.status == FloorStatus.queued))).all()
    assert len(waiting) == PEOPLE - 1


async def test_a_mirror_applies_the_owners_floor_reading_nothing_under_the_writer_lock(
        hopso_sqlite: Harness) -> None:
    """From procedure.lock's UPDATE (SQLite's writer lock) to the commit, the apply only
    writes: the rows, marks and hold are read before it (seven reads were made under the
    lock, while the node's journal, outbox and delegates waited for it)."""
    seen, _ = await _applied_again(hopso_sqlite)
    locked = seen.locked("UPDATE procedurestate")
    assert locked and locked[-1].startswith("UPDATE floorrequest"), locked
    assert not [q for q in locked if q.lstrip().upper().startswith("SELECT")], locked


async def test_a_mirror_reads_again_under_the_lock_when_another_process_changed_the_floor(
        hopso_sqlite: Harness) -> None:
    """What the apply read before procedure.lock is read again under it when the meeting's
    seq moved by more than its own change: here another process made this node's copy of
    the owner's request 99 in between, and the apply uses that copy (with what it read
    before, it would have made a second one)."""
    meeting_id = await demo_meeting_id(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    async with db.session() as s:
        person = await find_user(s, "daibieu3")
        assert person is not None and person.id is not None
        person_id: int = person.id
        await procedure.lock(s, meeting_id)  # the meeting's procedure state exists
        await s.commit()
    other_process_done = False

    async def another_process() -> None:
        async with db.session() as s:
            await procedure.lock(s, meeting_id)
            row = FloorRequest(meeting_id=meeting_id, user_id=person_id,
                               status=FloorStatus.queued)
            s.add(row)
            await s.flush()
            s.add(FloorOrigin(request_id=row.id, origin="province", remote_id=99))  # type: ignore[arg-type]
            s.add(CascadeRef(meeting_id=meeting_id, ref="copy:99", local_id=row.id))  # type: ignore[arg-type]

    def just_before_the_lock(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal other_process_done
        if not other_process_done and statement.startswith("UPDATE procedurestate"):
            other_process_done = True
            await_only(another_process())
    mirror = CascadeFloor(hopso_sqlite.server.app, None)  # type: ignore[arg-type]  # no state used
    item = {"id": 99, "origin": "province", "remote": 99, "user": 5, "name": "Hoàng Văn Nam",
            "status": "queued", "requested_at": utcnow().isoformat()}
    event.listen(db.engine.sync_engine, "before_cursor_execute", just_before_the_lock)
    try:
        await mirror.apply_state(meeting_id, Entry(KEY, 1, STATE,
                                                   {"holder": None, "requests": [item]}))
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", just_before_the_lock)
    assert other_process_done
    async with db.session() as s:
        copies = (await s.exec(select(FloorOrigin).where(FloorOrigin.remote_id == 99))).all()
    assert len(copies) == 1, copies


async def _mirror(h: Harness) -> tuple[MeetingState, int]:
    """The demo meeting as the ward's mirror of the province's meeting KEY, its journal and
    floor topic as a cascade node installs them."""
    meeting_id = await demo_meeting_id(h)
    app = h.server.app
    state = await ward_mirror(app, meeting_id, KEY)
    cascade_floor.install(app, state)
    return state, meeting_id


async def _ingest(state: MeetingState, seq: int, data: dict[str, Any]) -> None:
    await state.journal.ingest(KEY, [{"seq": seq, "topic": STATE, "data": data}])
    await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= seq), 10,
                f"entry {seq} applied")
    await asyncio.sleep(0.2)  # anything that follows it (marks, checks) done too


async def test_a_mirror_stores_applies_and_marks_a_change_of_the_owners_floor_in_one_commit(
        hopso_sqlite: Harness) -> None:
    """A change of the owner's floor, from the push to the node's tablets: three statements
    and one commit at the mirror, whatever the number of requests (the lock, the changed
    request, the entry stored and marked; the floor it applied last is still what the
    procedure's seq says: no read); a new request of another node's person adds its copy
    (the person, the request, its origin and ref). Before: two reads more; before that, the
    entry stored, applied and marked in three commits, with seven reads."""
    state, meeting_id = await _mirror(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    items = _items(PEOPLE)
    await _ingest(state, 1, {"holder": None, "requests": items[:-1]})
    with statements(db) as new:
        await _ingest(state, 2, {"holder": None, "requests": items})
    items[0] = {**items[0], "status": "withdrawn"}
    with statements(db) as changed:
        await _ingest(state, 3, {"holder": None, "requests": items})
    assert changed.count(COMMIT) == 1, changed
    assert len([q for q in changed if q != COMMIT]) == 3, changed  # no read: below
    assert new.count(COMMIT) == 1, new
    assert len([q for q in new if q != COMMIT]) <= 9, new
    async with db.session() as s:
        stored = (await s.exec(select(CascadeEntry).where(CascadeEntry.key == KEY))).all()
        waiting = (await s.exec(select(FloorRequest).where(
            FloorRequest.meeting_id == meeting_id,
            FloorRequest.status == FloorStatus.queued))).all()
    assert [(e.seq, e.applied) for e in stored] == [(1, True), (2, True), (3, True)]
    assert len(waiting) == PEOPLE - 1


async def test_the_view_a_mirror_pushes_is_the_one_its_database_gives(
        hopso_sqlite: Harness) -> None:
    """Built from what was applied: the holder, the queue with this node's own people (a
    site, an item) and other nodes' (their origin marks), the speaking totals; the same as
    rooms.floor.floor_view reads after the commit."""
    meeting_id = await demo_meeting_id(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    async with db.session() as s:
        site = (await s.exec(select(Site))).first()
        people = [await find_user(s, name) for name in ("daibieu", "daibieu2")]
        assert site is not None and all(p is not None and p.id for p in people)
        state = await procedure.lock(s, meeting_id)
        item = AgendaItem(meeting_id=meeting_id, position=1, title="Kế hoạch năm 2026")
        s.add(item)
        await s.flush()
        own = [FloorRequest(meeting_id=meeting_id, user_id=p.id, site_id=site.id,  # type: ignore[union-attr,arg-type]
                            agenda_item_id=item.id, status=FloorStatus.queued)
               for p in people]
        s.add_all(own)
        await s.commit()
    t0 = utcnow()
    mine = [{"id": 100 + n, "origin": "ward", "remote": r.id, "user": r.user_id,
             "name": "x", "site": site.name, "status": "queued",
             "requested_at": r.requested_at.isoformat()} for n, r in enumerate(own)]
    mine[0] |= {"status": "done", "granted_at": t0.isoformat(), "ended_at": t0.isoformat(),
                "spoken_seconds": 42}
    mine[1] |= {"status": "speaking", "granted_at": t0.isoformat(), "limit_seconds": 120}
    others = _items(3)
    others[2] |= {"site": "Điểm cầu Phường Hải Thành", "unit": "Phường Hải Thành",
                  "origin": "city"}
    data = validate(FloorStateData, {"holder": 101, "requests": [*mine, *others]})
    async with db.session() as s:
        _, (event_name, pushed), _ = await apply_owners_floor(s, meeting_id, "ward", data,
                                                              None)
    async with db.session() as s:
        state = await procedure.read_state(s, meeting_id)
        read = await floor.floor_view(s, state)
    assert event_name == "floor:changed"
    assert pushed == read
    assert pushed["holder"]["id"] == own[1].id and len(pushed["queue"]) == 3
    assert pushed["queue"][2]["origin"] == "city" and pushed["totals"]["people"]


async def test_a_mirror_behind_applies_only_the_newest_floor_state(
        hopso_sqlite: Harness) -> None:
    """Three changes of the owner's floor queued at once at a mirror (a node behind): each
    lists every request the one before did, so only the newest is applied, in one commit
    that stores all three entries marked applied (before: three applies, three commits);
    a journal started afresh on the same database (the node restarted) has all three and
    nothing to apply again."""
    state, meeting_id = await _mirror(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    items = _items(PEOPLE)
    await _ingest(state, 1, {"holder": None, "requests": items[:-1]})
    pushes = []
    for seq, status in ((2, "skipped"), (3, "queued"), (4, "done")):
        items[0] = {**items[0], "status": status}
        pushes.append({"seq": seq, "topic": STATE,
                       "data": {"holder": None, "requests": list(items)}})
    with statements(db) as seen:
        await state.journal.ingest(KEY, pushes)
        await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= 4), 10, "4")
        await until(lambda: asyncio.sleep(0, not state.journal._marking), 10, "stored")
    assert seen.count(COMMIT) == 1, seen
    assert len([q for q in seen if q.startswith("UPDATE procedurestate")]) == 1, seen
    async with db.session() as s:
        stored = (await s.exec(select(CascadeEntry).where(CascadeEntry.key == KEY))).all()
        rows = (await s.exec(select(FloorRequest, FloorOrigin).join(
            FloorOrigin, col(FloorOrigin.request_id) == col(FloorRequest.id)).where(
            FloorRequest.meeting_id == meeting_id))).all()
    assert [(e.seq, e.applied) for e in stored] == [(n, True) for n in (1, 2, 3, 4)]
    by_owner = {origin.remote_id: row.status for row, origin in rows}
    assert len(by_owner) == PEOPLE and by_owner[1] == FloorStatus.done, by_owner
    restarted = MeetingState(db, "ward", state.journal.push, set)
    assert await restarted.journal.last(KEY) == 4
    assert await restarted.journal.apply_pending() == 0


async def test_an_older_floor_state_listing_a_request_the_newer_does_not_is_applied(
        hopso_sqlite: Harness) -> None:
    """The owner journals only its latest requests (MAX_JOURNALED, within an entry's size):
    a request that finished in one change and is no longer listed in the next was told
    only in the first, so a mirror behind applies both (the first is not covered)."""
    state, meeting_id = await _mirror(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    items = _items(3)
    await _ingest(state, 1, {"holder": None, "requests": items})
    done = [{**items[0], "status": "done"}, *items[1:]]
    with statements(db) as seen:
        await state.journal.ingest(KEY, [
            {"seq": 2, "topic": STATE, "data": {"holder": None, "requests": done}},
            {"seq": 3, "topic": STATE, "data": {"holder": None, "requests": done[1:]}}])
        await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= 3), 10, "3")
        await until(lambda: asyncio.sleep(0, not state.journal._marking), 10, "stored")
    assert len([q for q in seen if q.startswith("UPDATE procedurestate")]) == 2, seen
    async with db.session() as s:
        finished = (await s.exec(select(FloorOrigin.remote_id).join(
            FloorRequest, col(FloorOrigin.request_id) == col(FloorRequest.id)).where(
            FloorRequest.meeting_id == meeting_id,
            FloorRequest.status == FloorStatus.done))).all()
    assert list(finished) == [1]


async def test_a_mirror_reads_its_floor_again_when_something_else_changed_the_procedure(
        hopso_sqlite: Harness) -> None:
    """The floor a mirror applied last is used by its next apply, reading nothing, only
    while the meeting's procedure seq moved by that apply alone: a request of this node's
    own delegate made in between (its own procedure change) makes the next apply read the
    floor again (under the lock), and the view it pushes has that request."""
    state, meeting_id = await _mirror(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    items = _items(4)
    await _ingest(state, 1, {"holder": None, "requests": items})
    items[0] = {**items[0], "status": "skipped"}
    with statements(db) as warm:
        await _ingest(state, 2, {"holder": None, "requests": items})
    assert not [q for q in warm if q.lstrip().upper().startswith("SELECT")], warm
    async with db.session() as s:
        person = await find_user(s, "daibieu")
        assert person is not None
        await procedure.lock(s, meeting_id)
        s.add(FloorRequest(meeting_id=meeting_id, user_id=person.id,  # type: ignore[arg-type]
                           status=FloorStatus.queued))
    tablet = await Listener.open(hopso_sqlite, await hopso_sqlite.login("daibieu2"),
                                 meeting_id)
    items[1] = {**items[1], "status": "skipped"}
    with statements(db) as cold:
        await _ingest(state, 3, {"holder": None, "requests": items})
    reads = [q for q in cold if q.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2, reads
    pushed = await tablet.wait_for("floor:changed", lambda v: len(v["queue"]) == 3)
    assert [r["name"] for r in pushed["queue"]] == [
        *(i["name"] for i in items[2:]), person.full_name], pushed["queue"]
