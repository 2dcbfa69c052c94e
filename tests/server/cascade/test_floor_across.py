"""Floor requests across three in-process nodes (province <- city <- ward): a ward
delegate's request reaches the province chair's queue marked with their node, site and
unit; the chair's grant, timer, end and speaking totals are the same at the city and the
ward, where the speaker's own request is the one speaking."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from rooms import meeting_nodes
from rooms.models import MeetingMember, MeetingRole, Role, Site, User, utcnow
from rooms.procedure_models import FloorRequest, FloorStatus
from rooms.remote_floor import CascadeRef, FloorOrigin
from rooms.users import find_user
from server.cascade.schemas import NodeError, validate
from server.cascade.topic.floor import (
    REQUEST,
    WITHDRAW,
    CascadeFloor,
    FloorStateData,
    floor_state,
)
from server.cascade.topics import MAX_DATA_BYTES, encode
from server.core import keys
from tests.conftest import Harness
from tests.server.cascade.test_votes_across import province_room, ward_delegates
from tests.server.cascade.tree import cascaded_meeting, state, tree
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.procedure_helpers import join
from tests.sql_statements import statements


async def test_a_ward_delegates_request_reaches_the_province_chair_and_the_grant_every_node(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, key, city_id, ward_id = await cascaded_meeting(t)
        chair, _, _ = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)
        city_secretary = await join(t.city, "thuky", city_id)
        speaker = ward["daibieu"]

        started = time.monotonic()
        asked = await speaker.ok("floor:request", {"meeting_id": ward_id})
        queued = await chair.wait_for("floor:changed", lambda e: any(
            q.get("origin") == "ward" for q in e["queue"]), 10)
        took_ms = (time.monotonic() - started) * 1000
        (entry,) = [q for q in queued["queue"] if q.get("origin") == "ward"]
        assert entry["name"] == "Lê Minh Tuấn" and entry["unit"]
        assert entry["remote_id"] == asked["request_id"]  # its id at the ward
        print(f"floor request ward tablet -> province chair's queue: {took_ms:.0f} ms")

        await chair.ok("floor:grant", {"meeting_id": meeting_id, "request_id": entry["id"],
                                       "limit_seconds": 120})
        mine = await speaker.wait_for("floor:changed", lambda e: e["holder"] is not None, 10)
        assert mine["holder"]["id"] == asked["request_id"]  # their own request, speaking
        assert mine["holder"]["user_id"] == speaker.http.user["id"]
        assert mine["holder"]["limit_seconds"] == 120
        at_city = await city_secretary.wait_for("floor:changed",
                                                lambda e: e["holder"] is not None, 10)
        assert at_city["holder"]["name"] == "Lê Minh Tuấn"
        assert at_city["holder"]["origin"] == "ward"
        assert at_city["holder"]["granted_at"] == mine["holder"]["granted_at"]

        await chair.ok("floor:end", {"meeting_id": meeting_id})
        done = await speaker.wait_for("floor:changed", lambda e: e["holder"] is None
                                      and e["totals"]["people"], 10)
        assert [p["name"] for p in done["totals"]["people"]] == ["Lê Minh Tuấn"]

        # A request withdrawn at the ward leaves the province's queue.
        other = ward["daibieu2"]
        second = await other.ok("floor:request", {"meeting_id": ward_id})
        await chair.wait_for("floor:changed", lambda e: any(
            q["name"] == "Phạm Thị Hoa" for q in e["queue"]), 10)
        await other.ok("floor:withdraw", {"meeting_id": ward_id,
                                          "request_id": second["request_id"]})
        await chair.wait_for("floor:changed", lambda e: e["queue"] == [], 10)
        assert key


async def test_the_province_checks_a_ward_requests_nodes_once_on_its_way_to_the_chair(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The meeting's invited nodes are read once for a ward's request to speak (its origin,
    by Reports.receive; the city it came through was the dispatcher's scope check), and once
    more to journal the new floor down; the receiver read them again before."""
    async with tree(tmp_path) as t:
        _, meeting_id, key, _, _ = await cascaded_meeting(t)
        chair, _, _ = await province_room(t, meeting_id)
        reads: list[asyncio.Task[object] | None] = []
        node_seats = meeting_nodes.node_seats

        async def counted(*args: object) -> dict[str, int]:
            reads.append(asyncio.current_task())
            return await node_seats(*args)  # type: ignore[arg-type]
        monkeypatch.setattr(meeting_nodes, "node_seats", counted)
        ask = {"request": 7, "user": 4, "name": "Lê Minh Tuấn", "site": "", "unit": ""}
        outcome = await state(t.province).reports.receive("city", {
            "id": "f" * 32, "meeting": key, "origin": "ward", "topic": "floor.request",
            "data": ask})
        assert outcome["state"] == "applied", outcome
        await chair.wait_for("floor:changed", lambda e: any(
            q.get("origin") == "ward" for q in e["queue"]), 10)
        mine = [task for task in reads if task is asyncio.current_task()]
        assert len(mine) == 2, len(mine)


async def test_bad_floor_reports_and_state_are_refused(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, key, _, _ = await cascaded_meeting(t)
        await province_room(t, meeting_id)
        owner = state(t.province).reports
        ask = {"request": 3, "user": 4, "name": "Người lạ", "site": "", "unit": ""}
        outcomes = [await owner.receive("city", {"id": f"{n:032x}", "meeting": key,
                                                 "origin": origin, "topic": topic,
                                                 "data": data})
                    for n, (origin, topic, data) in enumerate([
                        ("ward:khac", "floor.request", ask),  # a node not invited
                        ("city", "floor.request", {**ask, "name": ""}),  # malformed
                        ("city", "floor.request", {**ask, "extra": 1}),
                        ("city", "floor.withdraw", {"request": 99}),  # never asked
                        ("city", "floor.state", {"requests": []})])]  # a down topic
        assert [o["state"] for o in outcomes] == ["refused"] * 5
        for bad in ({"requests": [{"id": 1}]}, {"holder": 0, "requests": []}):
            try:
                validate(FloorStateData, bad)
            except NodeError as exc:
                assert exc.code == "invalid"
            else:
                raise AssertionError(f"accepted {bad}")


async def test_a_ward_chair_holds_requests_for_a_local_discussion_then_escalates(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        chair, _, _ = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)
        ward_chair = ward["daibieu"]  # presides over the ward's room (set in its database:
        # a mirror has no one who scheduled it, to grant the chair role through the API)
        async with t.ward.server.app[keys.DB].session() as s:
            member = (await s.exec(select(MeetingMember).where(
                MeetingMember.meeting_id == ward_id,
                MeetingMember.user_id == ward_chair.http.user["id"]))).one()
            member.role = MeetingRole.chair
            s.add(member)
            await s.commit()
        assert await chair.error("floor:hold", {"meeting_id": meeting_id, "hold": True}) \
            == "not_mirrored"
        assert (await ward_chair.ok("floor:hold", {"meeting_id": ward_id, "hold": True})
                )["hold"] is True

        other = ward["daibieu2"]
        first = await other.ok("floor:request", {"meeting_id": ward_id})
        await ward_chair.wait_for("floor:changed", lambda e: len(e["queue"]) == 1, 10)
        await asyncio.sleep(0.5)  # kept at the ward: the province's queue stays empty
        assert not any(q.get("origin") == "ward" for e in chair.heard.get("floor:changed", [])
                       for q in e["queue"])
        # A local discussion: the ward's chair gives the floor here.
        await ward_chair.ok("floor:grant", {"meeting_id": ward_id,
                                            "request_id": first["request_id"]})
        await other.wait_for("floor:changed", lambda e: e["holder"] is not None, 10)
        await ward_chair.ok("floor:end", {"meeting_id": ward_id})
        # Then one request goes up on the ward chair's word.
        second = await other.ok("floor:request", {"meeting_id": ward_id})
        await ward_chair.ok("floor:escalate", {"meeting_id": ward_id,
                                               "request_id": second["request_id"]})
        await chair.wait_for("floor:changed", lambda e: any(
            q.get("origin") == "ward" for q in e["queue"]), 10)


async def test_a_long_meetings_floor_state_stays_within_an_entry(hopso_sqlite: Harness) -> None:
    """300 finished turns of people with long names: the journaled floor keeps what is
    waiting and the latest turns, within the 64 kB an entry may carry."""
    meeting_id = await demo_meeting_id(hopso_sqlite)
    async with hopso_sqlite.server.app[keys.DB].session() as s:
        chair = await find_user(s, "chutri")
        assert chair is not None and chair.id is not None
        chair.full_name = "Nguyễn Văn Một Cái Tên Rất Dài Của Đại Biểu Hội Đồng " * 3
        s.add(chair)
        for n in range(300):
            s.add(FloorRequest(meeting_id=meeting_id, user_id=chair.id,
                               status=FloorStatus.done if n < 299 else FloorStatus.queued,
                               granted_at=utcnow(), ended_at=utcnow(), spoken_seconds=n))
        await s.commit()
        data = await floor_state(s, meeting_id, "province")
    assert len(encode(data)) <= MAX_DATA_BYTES
    assert data["requests"][-1]["status"] == "queued"  # what waits is always there
    assert 50 < len(data["requests"]) < 300
    validate(FloorStateData, data)


PEOPLE = 30


async def _many_requests(h: Harness, meeting_id: int) -> None:
    """PEOPLE people of this node, each with a request (every other one at a site)."""
    async with h.server.app[keys.DB].session() as s:
        site = (await s.exec(select(Site))).first()
        assert site is not None
        people = [User(username=f"nguoi{n}", full_name=f"Người số {n}", password_hash="!",
                       role=Role.delegate, unit_id=site.unit_id) for n in range(PEOPLE)]
        s.add_all(people)
        await s.flush()
        for n, person in enumerate(people):
            s.add(FloorRequest(meeting_id=meeting_id, user_id=person.id,  # type: ignore[arg-type]
                               site_id=site.id if n % 2 else None,
                               status=FloorStatus.queued if n < 10 else FloorStatus.done))


async def test_the_owners_floor_is_journaled_in_one_read(hopso_sqlite: Harness) -> None:
    """On every change of the owner's floor: its latest requests with their people, sites,
    units and origin marks, and the holder, in one read whatever their number (one or two
    reads per request before, then one per table: six)."""
    meeting_id = await demo_meeting_id(hopso_sqlite)
    await _many_requests(hopso_sqlite, meeting_id)
    db = hopso_sqlite.server.app[keys.DB]
    async with db.session() as s:
        with statements(db) as seen:
            data = await floor_state(s, meeting_id, "province")
    people = [r for r in data["requests"] if r["name"].startswith("Người số")]
    assert len(people) == PEOPLE and all(r["unit"] for r in people)
    assert [bool(r["site"]) for r in people] == [bool(n % 2) for n in range(PEOPLE)]
    assert len([q for q in seen if q.lstrip().upper().startswith("SELECT")]) == 1, seen


async def test_a_mirror_checks_for_requests_to_send_up_after_its_own_changes_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Applying the owner's floor makes no request of a mirror's people: no escalation
    check follows it (it ran at every mirror on every change of the owner's floor, holding
    the mirror's escalation lock and database while a delegate there asked to speak),
    unless the mirror's last check failed: a request whose check failed still goes up at
    the next change, the owner's too."""
    checks: list[str] = []
    failing: set[str] = set()
    to_escalate = CascadeFloor._to_escalate

    async def counted(self: CascadeFloor, *args: Any) -> Any:
        checks.append(self.unit)
        if self.unit in failing:
            failing.discard(self.unit)
            raise OSError("the outbox's disk, once")
        return await to_escalate(self, *args)
    monkeypatch.setattr(CascadeFloor, "_to_escalate", counted)
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        chair, delegate, _ = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)
        await ward["daibieu"].ok("floor:request", {"meeting_id": ward_id})
        await chair.wait_for("floor:changed", lambda e: any(
            q.get("origin") == "ward" for q in e["queue"]), 10)
        assert "ward" in checks  # its own change

        def province_asks(e: dict[str, Any]) -> bool:
            return any(q.get("origin") == "province" for q in e["queue"])
        await asyncio.sleep(0.5)  # the owner's floor with the request applied everywhere
        checks.clear()
        asked = await delegate.ok("floor:request", {"meeting_id": meeting_id})
        await ward["daibieu2"].wait_for("floor:changed", province_asks, 10)
        await asyncio.sleep(0.3)
        assert checks == [], checks  # applied at the city and the ward: nothing to check

        failing.add("ward")  # the ward's check of its next request fails ...
        await ward["daibieu2"].ok("floor:request", {"meeting_id": ward_id})
        await asyncio.sleep(0.5)
        assert "ward" not in failing
        assert not any(q["name"] == "Phạm Thị Hoa" for e in chair.heard["floor:changed"]
                       for q in e["queue"])
        # ... and the owner's next change, applied at the ward, has it checked again.
        await delegate.ok("floor:withdraw", {"meeting_id": meeting_id,
                                             "request_id": asked["request_id"]})
        await chair.wait_for("floor:changed", lambda e: any(
            q["name"] == "Phạm Thị Hoa" and q.get("origin") == "ward" for q in e["queue"]), 10)


async def test_a_mirror_finds_what_to_send_up_in_two_reads(hopso_sqlite: Harness) -> None:
    """On the way of a delegate's request to the owner's chair, the mirror's escalation
    check: its people's requests (not copies of other nodes') with their people, sites and
    units, and its marks, one read each (three before, seven for one new request before
    that)."""
    meeting_id = await demo_meeting_id(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    async with db.session() as s:
        site = (await s.exec(select(Site))).first()
        people = [await find_user(s, name) for name in ("daibieu", "daibieu2", "daibieu3")]
        assert site is not None
        ids = [p.id for p in people if p is not None and p.id is not None]
        assert len(ids) == 3
        new = [FloorRequest(meeting_id=meeting_id, user_id=ids[0], site_id=site.id,
                            status=FloorStatus.queued),
               FloorRequest(meeting_id=meeting_id, user_id=ids[1], status=FloorStatus.queued),
               FloorRequest(meeting_id=meeting_id, user_id=ids[2],
                            status=FloorStatus.withdrawn),  # sent up before: withdrawn now
               FloorRequest(meeting_id=meeting_id, user_id=ids[2],
                            status=FloorStatus.queued)]  # a copy of another node's request
        s.add_all(new)
        await s.flush()
        s.add(CascadeRef(meeting_id=meeting_id, ref=f"esc:{new[2].id}", local_id=1))
        s.add(FloorOrigin(request_id=new[3].id, origin="province", remote_id=9))  # type: ignore[arg-type]
    mirror = CascadeFloor(hopso_sqlite.server.app, None)  # type: ignore[arg-type]  # no state used
    async with db.session() as s:
        with statements(db) as seen:
            todo = await mirror._to_escalate(s, meeting_id)
    assert [(topic, data["request"]) for topic, data in todo] == [
        (REQUEST, new[0].id), (REQUEST, new[1].id), (WITHDRAW, new[2].id)]
    first = todo[0][1]
    assert first["name"] == "Lê Minh Tuấn" and first["site"] == site.name and first["unit"]
    assert todo[1][1]["site"] == ""
    assert len([q for q in seen if q.lstrip().upper().startswith("SELECT")]) == 2, seen
