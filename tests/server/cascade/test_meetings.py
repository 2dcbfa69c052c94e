"""server/cascade/meetings.py: meeting keys a child node names are parsed like every id, and
checked against the child's invitations in one read; what a parent offers a child is read
in one statement."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from rooms import audit, meeting_nodes
from rooms.db import Database
from rooms.meeting_state import MeetingAudit
from rooms.models import Meeting, MeetingStatus
from rooms.remote_floor import ref_put
from server.cascade.meetings import REOPENED, DbDirectory
from server.core import keys
from tests.conftest import Harness
from tests.server.core.test_realtime import demo_meeting_id
from tests.sql_statements import COMMIT, statements


async def test_a_key_with_odd_digits_or_a_huge_id_names_no_meeting(
        hopso: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """"¹".isdigit() is true and int("¹") raises; 10**17 overflows PostgreSQL's INTEGER."""
    directory = DbDirectory(hopso.server.app[keys.DB], "province")
    meeting_id = await demo_meeting_id(hopso)
    assert await directory.router_for(f"province/{meeting_id}") is not None
    for number in ("¹", "١", "１", str(2**31), str(10**17), "", "-1"):
        assert await directory.router_for(f"province/{number}") is None
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def inviting_the_city(hopso: Harness) -> tuple[Database, DbDirectory, int, str, str]:
    """The province's directory, its demo meeting inviting the city (3 seats): the meeting's
    key and the key of a meeting that does not exist."""
    db = hopso.server.app[keys.DB]
    directory = DbDirectory(db, "province")
    meeting_id = await demo_meeting_id(hopso)
    async with db.session() as s:
        await meeting_nodes.set_invited_nodes(s, meeting_id, ["city"], {"city": 3})
        await s.commit()
    return db, directory, meeting_id, f"province/{meeting_id}", f"province/{meeting_id + 1000}"


async def test_a_childs_event_is_checked_against_its_invitations_in_one_read(
        hopso: Harness) -> None:
    """At every event a child sends (the dispatcher's scope): the live meetings it names
    joined with its invitations, one read (two before); a meeting that does not invite it,
    or not live here, is out of its scope."""
    db, directory, _, mine, other = await inviting_the_city(hopso)
    with statements(db) as seen:
        outside = await directory.out_of_scope("city", {mine, other})
    assert outside == {other}
    assert len([q for q in seen if q != COMMIT]) == 1, seen
    assert await directory.out_of_scope("ward", {mine}) == {mine}


async def test_what_a_parent_offers_a_child_is_read_in_one_statement(hopso: Harness) -> None:
    """Every child asks for it every 2 s: the live meetings inviting it, each with every node
    it invites and their seats, and how many times its owner reopened it (an own meeting: its
    chain's reopens; a mirror: the count it followed), in one read whatever their number
    (before: two, and two per meeting). Not offered: a closed meeting, one not inviting it."""
    db = hopso.server.app[keys.DB]
    directory = DbDirectory(db, "province")
    first = await demo_meeting_id(hopso)
    async with db.session() as s:
        demo = await s.get(Meeting, first)
        assert demo is not None and demo.id is not None
        made = [Meeting(title=f"Họp {n}", unit_id=demo.unit_id, status=status,
                        starts_at=demo.starts_at + timedelta(days=n), cascade_key=key)
                for n, status, key in ((1, MeetingStatus.open, "up/9"),
                                       (2, MeetingStatus.scheduled, None),
                                       (3, MeetingStatus.closed, None),
                                       (4, MeetingStatus.open, None))]
        s.add_all(made)
        await s.flush()
        ids = [m.id for m in made]
        assert all(ids)
        for meeting_id, nodes in ((first, {"city": 3, "ward:a": 1}), (ids[0], {"city": 2}),
                                  (ids[1], {"city": 0, "ward:b": 4}), (ids[2], {"city": 1}),
                                  (ids[3], {"ward:a": 1})):
            await meeting_nodes.set_invited_nodes(s, meeting_id, sorted(nodes), nodes)  # type: ignore[arg-type]
        await audit.record(s, first, None, MeetingAudit.reopened, {"reopened": 1})
        await audit.record(s, first, None, MeetingAudit.reopened, {"reopened": 2})
        await ref_put(s, ids[0], REOPENED, 5)  # type: ignore[arg-type]
        await s.commit()
    with statements(db) as seen:
        offered = await directory.offered("city")
    assert len([q for q in seen if q != COMMIT]) == 1, seen
    assert [(m["key"], m["nodes"], m["seats"], m["reopened"], m["status"]) for m in offered] \
        == [(f"province/{first}", ["city", "ward:a"], {"city": 3, "ward:a": 1}, 2,
             demo.status.value),
            ("up/9", ["city"], {"city": 2}, 5, "open"),
            (f"province/{ids[1]}", ["city", "ward:b"], {"city": 0, "ward:b": 4}, 0,
             "scheduled")]
    assert offered[1]["title"] == "Họp 1"
    assert offered[1]["starts_at"] == (demo.starts_at + timedelta(days=1)).isoformat()


async def test_an_ended_meeting_stays_in_a_childs_reach_for_reports_only_if_it_invites_it(
        hopso: Harness) -> None:
    """A meeting that ended is out of every child's scope, but the reports a child made
    before its end may still name it (`ended_inviting`): only if the meeting invites that
    child; a live meeting, one that does not exist, one not inviting it: not."""
    db, directory, meeting_id, mine, other = await inviting_the_city(hopso)
    assert await directory.ended_inviting("city", {mine, other}) == set()  # live
    async with db.session() as s:
        meeting = await s.get(Meeting, meeting_id)
        assert meeting is not None
        meeting.status = MeetingStatus.closed
        s.add(meeting)
        await s.commit()
    assert await directory.out_of_scope("city", {mine}) == {mine}
    assert await directory.ended_inviting("city", {mine, other, "elsewhere/3"}) == {mine}
    assert await directory.ended_inviting("ward:a", {mine}) == set()


async def test_the_scope_sweep_checks_every_child_in_one_read(hopso: Harness) -> None:
    """Every 2 s the parent checks what each linked child follows against its invitations
    (a city: 15 wards): one read for all of them (one per child before), each child's keys
    judged against its own invitations."""
    db = hopso.server.app[keys.DB]
    directory = DbDirectory(db, "province")
    meeting_id = await demo_meeting_id(hopso)
    async with db.session() as s:
        await meeting_nodes.set_invited_nodes(s, meeting_id, ["city", "ward:a"],
                                              {"city": 3, "ward:a": 1})
        await s.commit()
    mine, other, foreign = (f"province/{meeting_id}", f"province/{meeting_id + 1000}",
                            "elsewhere/3")
    asked = {"city": {mine, other}, "ward:a": {mine}, "ward:b": {mine, foreign}}
    with statements(db) as seen:
        outside = await directory.out_of_scope_each(asked)
    assert outside == {"city": {other}, "ward:a": set(), "ward:b": {mine, foreign}}
    assert len([q for q in seen if q != COMMIT]) == 1, seen
    assert outside == {child: await directory.out_of_scope(child, keys)
                       for child, keys in asked.items()}
