"""server/conference/room.py and hub.py without sockets: a room owns its meeting's media
state and its close() cascades; the hub is a registry of rooms that close on
the meeting. Peers here never negotiate, so no transport is ever created."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from media import SFU, MediaConfig
from rooms.models import MeetingRole, Role, Site, User
from server.conference.hub import MediaHub
from server.conference.local_room import LocalRoom
from server.conference.metrics import MediaMetrics
from server.conference.outbox import Outbox, Push, RouterIdle, ToConnection, ToMeeting

MEETING = 7


def person(user_id: int, name: str, site_id: int | None = None) -> User:
    return User(id=user_id, username=f"u{user_id}", full_name=name, password_hash="-",
                role=Role.delegate, site_id=site_id)


def drained(outbox: Outbox) -> list[Push]:
    pushes: list[Push] = []
    queue = outbox._queue  # what the room put, with no task delivering it
    while not queue.empty():
        pushes.append(queue.get_nowait())
    return pushes


@pytest.fixture
async def sfu() -> AsyncIterator[SFU]:
    sfu = SFU(MediaConfig(ice_addresses=("127.0.0.1",)))
    yield sfu
    await sfu.close()


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


async def test_closing_a_room_tells_every_member_and_closes_its_router(
        sfu: SFU, outbox: Outbox) -> None:
    room = LocalRoom(MEETING, sfu, outbox)
    sfu.add_listener(room.on_event)
    chair = await room.add_member("sid-chair", person(1, "Chủ trì"), MeetingRole.chair, None)
    delegate = await room.add_member("sid-d", person(2, "Đại biểu"), MeetingRole.delegate, None)
    room.locks.lock([2], "audio")
    await room.remove(3)
    room.set_floor(1)
    assert room.router is not None and len(room.router.peers) == 2
    drained(outbox)

    await asyncio.gather(room.close(), room.close())  # concurrent callers share one teardown
    await room.close()

    assert room.closed and room.router is None and sfu.routers == []
    assert room.members == {} and room.by_peer == {}
    assert room.locks.view() == [] and room.floor is None and not room.is_banned(3)
    pushes = drained(outbox)
    told = {p.sid: p.data for p in pushes if isinstance(p, ToConnection)}
    assert told == {m.sid: {"meeting_id": MEETING, "peer_id": m.peer_id,
                            "reason": "meeting-closed"} for m in (chair, delegate)}
    left = [p.data for p in pushes if isinstance(p, ToMeeting) and p.event == "media:peer-closed"]
    assert sorted(d["user_id"] for d in left) == [1, 2]
    assert {d["reason"] for d in left} == {"meeting-closed"}


async def test_a_muted_site_locks_who_joins_from_it_later(sfu: SFU, outbox: Outbox) -> None:
    room = LocalRoom(MEETING, sfu, outbox)
    site = Site(id=4, name="Phường 1", unit_id=1)
    await room.add_member("a", person(1, "A", site_id=4), MeetingRole.delegate, site)
    users, paused = room.lock_site(4, "video")
    assert users == {1} and paused == []  # nothing published yet
    await room.add_member("b", person(2, "B", site_id=4), MeetingRole.delegate, site)
    assert room.locks.view() == [{"user_id": 1, "kinds": ["video"]},
                                 {"user_id": 2, "kinds": ["video"]}]
    assert sorted(room.allow_site(4, "video")) == [1, 2]
    locks = [p.data for p in drained(outbox) if isinstance(p, ToMeeting)
             and p.event == "media:lock"]
    assert [d["locked"] for d in locks] == [True, False, False]  # b was locked silently
    await room.close()


async def test_the_last_peer_leaving_frees_the_router_but_keeps_the_room(
        sfu: SFU, outbox: Outbox) -> None:
    room = LocalRoom(MEETING, sfu, outbox)
    sfu.add_listener(room.on_event)
    member = await room.add_member("a", person(1, "A"), MeetingRole.delegate, None)
    room.locks.lock([1], "audio")
    await room.close_member(member)
    assert RouterIdle(MEETING) in drained(outbox)
    await room.release_router_if_idle()
    assert room.router is None and not room.closed
    assert room.locks.is_locked(1, "audio")  # kept while the meeting is open
    await room.close()


async def test_the_hub_closes_a_room_and_forgets_it() -> None:
    hub = MediaHub(web.Application(), MediaConfig(ice_addresses=("127.0.0.1",)),
                   MediaMetrics.create(CollectorRegistry()))
    try:
        member = await hub.add_member("a", MEETING, person(1, "A"), MeetingRole.delegate, None)
        other = await hub.add_member("b", MEETING + 1, person(2, "B"), MeetingRole.delegate,
                                     None)
        assert hub.member("a") is member and set(hub.members) == {"a", "b"}
        await hub.close_room(MEETING)
        await hub.close_room(MEETING)  # idempotent
        assert hub.find(MEETING) is None and hub.router(MEETING) is None
        assert hub.member("a") is None and hub.member("b") is other
        assert hub.router(MEETING + 1) is not None

        # A connection joining another meeting leaves the first one's media.
        moved = await hub.add_member("b", MEETING + 2, person(2, "B"), MeetingRole.delegate,
                                     None)
        assert hub.member("b") is moved
        room = hub.find(MEETING + 1)
        assert room is not None and room.members == {}
    finally:
        await hub.close()
