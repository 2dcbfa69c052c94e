"""Floor requests: the queue, one holder at a time, speaking time, flooding."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from rooms import attendance, floor
from rooms.errors import Conflict, Forbidden
from rooms.models import Role, Site, User, utcnow
from rooms.procedure import RateLimited
from rooms.procedure_models import AgendaItem, AttendanceStatus, FloorRequest, FloorStatus
from tests.rooms.conftest import Demo
from tests.sql_statements import statements


async def test_queue_grant_end_and_speaking_totals(demo: Demo) -> None:
    t0 = utcnow()
    async with demo.db.session() as s:
        for name in ("daibieu", "daibieu2"):
            await attendance.check_in(s, demo.meeting_id, demo.users[name],
                                      AttendanceStatus.in_person)
    async with demo.db.session() as s:
        state = await demo.locked(s)
        d1, d2, op = [await demo.access(s, n) for n in ("daibieu", "daibieu2", "kythuat")]
        with pytest.raises(Conflict):
            await floor.request_floor(s, state, demo.users["daibieu3"], d1.role, False)  # not here
        r1 = await floor.request_floor(s, state, d1.user, d1.role, False, t0)
        with pytest.raises(Conflict):
            await floor.request_floor(s, state, d1.user, d1.role, False, t0)
        r2 = await floor.request_floor(s, state, d2.user, d2.role, False, t0)
        with pytest.raises(Forbidden):
            await floor.request_floor(s, state, d2.user, d2.role, True, t0)
        r3 = await floor.request_floor(s, state, op.user, op.role, True, t0)
        view = await floor.floor_view(s, state)
        assert [q["id"] for q in view["queue"]] == [r1.id, r2.id, r3.id]
        assert view["queue"][2]["for_site"] and view["queue"][2]["site"] == "Điểm cầu Phường Đồng Phú"
        await floor.grant(s, state, r1.id, 120, t0)  # type: ignore[arg-type]
        _, ended = await floor.grant(s, state, r3.id, None, t0 + timedelta(seconds=75))  # type: ignore[arg-type]
        assert ended is not None and ended.id == r1.id and ended.spoken_seconds == 75
        await floor.skip(s, state, r2.id)  # type: ignore[arg-type]
        with pytest.raises(Conflict):
            await floor.grant(s, state, r2.id)  # type: ignore[arg-type]  # skipped
        done = await floor.end_floor(s, state, t0 + timedelta(seconds=105))
        assert done.status == FloorStatus.done and done.spoken_seconds == 30
        with pytest.raises(Conflict):
            await floor.end_floor(s, state)
        totals = (await floor.floor_view(s, state))["totals"]
        assert totals["people"] == [{"user_id": d1.user.id, "name": "Lê Minh Tuấn", "seconds": 75}]
        # A person in the room counts for their site too; the site's own turn counts for it.
        assert {x["name"]: x["seconds"] for x in totals["sites"]} == {
            "Phòng họp UBND thành phố": 75, "Điểm cầu Phường Đồng Phú": 30}


async def test_flooding_is_rate_limited(demo: Demo) -> None:
    async with demo.db.session() as s:
        await attendance.check_in(s, demo.meeting_id, demo.users["daibieu"],
                                  AttendanceStatus.online)
    async with demo.db.session() as s:
        state = await demo.locked(s)
        d1 = await demo.access(s, "daibieu")
        for _ in range(floor.RATE_LIMIT):
            r = await floor.request_floor(s, state, d1.user, d1.role, False)
            await floor.withdraw(s, state, d1.user, r.id)  # type: ignore[arg-type]
        with pytest.raises(RateLimited):
            await floor.request_floor(s, state, d1.user, d1.role, False)


async def test_the_floor_view_names_any_number_of_people_in_one_query(demo: Demo) -> None:
    """Pushed on every floor change (at every cascade node): 20 people waiting and 20 who
    spoke, with a site each and the item, are read and named in one query, the requests
    joined with their people, sites, items and origin marks (it read the requests twice
    and each person once: 40; then once and once per table: up to five)."""
    async with demo.db.session() as s:
        people = [User(username=f"nguoi{n}", full_name=f"Người số {n}", password_hash="!",
                       role=Role.delegate) for n in range(40)]
        s.add_all(people)
        site = (await s.exec(select(Site))).first()
        item = AgendaItem(meeting_id=demo.meeting_id, position=1, title="Báo cáo")
        s.add(item)
        await s.flush()
        assert site is not None
        for n, person in enumerate(people):
            s.add(FloorRequest(meeting_id=demo.meeting_id, user_id=person.id,  # type: ignore[arg-type]
                               status=FloorStatus.queued if n < 20 else FloorStatus.done,
                               site_id=site.id, agenda_item_id=item.id, spoken_seconds=n))
    async with demo.db.session() as s:
        state = await demo.locked(s)
        with statements(demo.db) as seen:
            view = await floor.floor_view(s, state)
    assert [q["name"] for q in view["queue"]] == [f"Người số {n}" for n in range(20)]
    assert {p["name"] for p in view["totals"]["people"]} == {f"Người số {n}"
                                                            for n in range(20, 40)}
    assert view["queue"][0]["site"] == site.name and view["queue"][0]["item"] == "Báo cáo"
    assert [q for q in seen if q.lstrip().upper().startswith("SELECT")] == \
        seen.reading("floorrequest"), seen
    assert len(seen.reading("floorrequest")) == 1, seen


async def test_a_request_to_speak_reads_the_persons_requests_once(demo: Demo) -> None:
    """On the way of every delegate's request to the chair (a ward's, then its trip up the
    cascade): the rate limit and "already in the queue" in one read of the person's
    requests (two before), between the attendance read and the insert."""
    async with demo.db.session() as s:
        await attendance.check_in(s, demo.meeting_id, demo.users["daibieu"],
                                  AttendanceStatus.in_person)
    async with demo.db.session() as s:
        state = await demo.locked(s)
        d1 = await demo.access(s, "daibieu")
        first = await floor.request_floor(s, state, d1.user, d1.role, False)
        await floor.withdraw(s, state, d1.user, first.id)  # type: ignore[arg-type]
        await s.flush()
        with statements(demo.db) as seen:
            again = await floor.request_floor(s, state, d1.user, d1.role, False)
        assert again.status == FloorStatus.queued
        assert len(seen.reading("floorrequest")) == 1, seen
        assert len(seen) == 3, seen  # attendance, the person's requests, the insert
        with pytest.raises(Conflict, match="already in the queue"):
            await floor.request_floor(s, state, d1.user, d1.role, False)
