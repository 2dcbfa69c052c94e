"""The app's live video conference: the SFU and a registry of rooms, one per meeting with
live state (server/conference/room.py), and the tasks that deliver their pushes and stats.

One `MediaHub` per app (``app[MEDIA]``), created in the conference's setup and started and
closed in its lifespan. A meeting's router id is ``str(meeting_id)``. The SFU's listener
hands each event to its meeting's room, inline; rooms only put typed pushes in the outbox
(server/conference/outbox.py), which one task delivers to socket.io in order. A room lives
from its meeting's first media activity until the meeting closes (`MeetingClosed`, from the
meetings feature through the app's bus). docs/protocol.md, section "Media (socket.io)", is
the wire contract.

Everything here is in-process: all clients of one meeting must reach the same process
(the SFU cannot span processes). On a cascade node, rooms are `CascadedRoom`s
(server/cascade/room.py, chosen by server/cascade/node.py through `use_rooms`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import socketio
from aiohttp import web

from media import SFU, MediaConfig, MediaError, MediaEvent, Peer, Router
from rooms.models import MeetingRole, Site, User
from server.conference.config import MediaFailure
from server.conference.local_room import LocalRoom
from server.conference.member import MediaMember, not_joined
from server.conference.metrics import MediaMetrics
from server.conference.outbox import OfferDue, Outbox, Push, RouterIdle, ToConnection, ToMeeting
from server.conference.room import Room
from server.conference.views import offer_dict
from server.core.realtime import meeting_room

log = logging.getLogger(__name__)

RoomFactory = Callable[[int, SFU, Outbox], Room]


class MediaHub:
    """Per-app media state; every method runs on the app's event loop."""

    def __init__(self, app: web.Application, config: MediaConfig, metrics: MediaMetrics,
                 stats_interval_s: float = 2.0) -> None:
        self.app = app
        self.sfu = SFU(config)
        self.metrics = metrics
        self.stats_interval_s = stats_interval_s
        self.outbox = Outbox()
        self.rooms: dict[int, Room] = {}  # meeting id -> its room
        self._new_room: RoomFactory = LocalRoom
        self._tasks: list[asyncio.Task[None]] = []
        self._remove_listener = self.sfu.add_listener(self._on_event)

    @property
    def sio(self) -> socketio.AsyncServer:
        from server.core import keys

        return self.app[keys.SIO]

    def use_rooms(self, factory: RoomFactory) -> None:
        """Which `Room` a meeting gets (a cascade node's, server/cascade/node.py); called at
        setup, before any room exists."""
        assert not self.rooms, "rooms exist already"
        self._new_room = factory

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self.outbox.drain(self._deliver), name="media-pump"),
                       asyncio.create_task(self._ticker(), name="media-stats")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._remove_listener()
        await self.sfu.close()

    # -- the registry ---------------------------------------------------------------------
    def room(self, meeting_id: int) -> Room:
        """The meeting's room, created on first use."""
        room = self.rooms.get(meeting_id)
        if room is None:
            room = self.rooms[meeting_id] = self._new_room(meeting_id, self.sfu, self.outbox)
        return room

    def find(self, meeting_id: int) -> Room | None:
        """The meeting's room if it has one (reads never create one)."""
        return self.rooms.get(meeting_id)

    async def close_room(self, meeting_id: int) -> None:
        """The meeting closed (`MeetingClosed`, server/conference/feature.py): its room
        closes (members told ``meeting-closed``, the router and everything in it closed,
        locks, floor and removals dropped) and is forgotten."""
        room = self.rooms.get(meeting_id)
        if room is None:
            return
        try:
            await room.close()
        finally:
            if self.rooms.get(meeting_id) is room:
                del self.rooms[meeting_id]

    def router(self, meeting_id: int) -> Router | None:
        room = self.find(meeting_id)
        return room.router if room is not None else None

    def member(self, sid: str) -> MediaMember | None:
        """This connection's media session, in whichever meeting (at most one)."""
        for room in self.rooms.values():
            member = room.members.get(sid)
            if member is not None:
                return member
        return None

    @property
    def members(self) -> dict[str, MediaMember]:
        """Every connection's media session, by sid (a view for metrics and tests)."""
        return {sid: m for room in self.rooms.values() for sid, m in room.members.items()}

    def peer(self, member: MediaMember) -> Peer:
        room = self.find(member.meeting_id)
        if room is None:
            raise not_joined()
        return room.peer(member)

    # -- members ----------------------------------------------------------------------
    async def add_member(self, sid: str, meeting_id: int, user: User, role: MeetingRole,
                         site: Site | None) -> MediaMember:
        """A new peer for this connection; a previous one of the same connection closes."""
        old = self.member(sid)
        if old is not None:
            old_room = self.rooms[old.meeting_id]
            del old_room.members[sid]
            await old_room.close_member(old, "replaced")
        return await self.room(meeting_id).add_member(sid, user, role, site)

    async def close_member(self, member: MediaMember, reason: str | None = None) -> None:
        """Close a member's peer; `reason` (if given) is what its client is told."""
        room = self.find(member.meeting_id)
        if room is not None:
            await room.close_member(member, reason)

    async def disconnect(self, sid: str) -> None:
        member = self.member(sid)
        if member is not None:
            await self.close_member(member)

    def meeting_stats(self, meeting_id: int) -> dict[str, object]:
        room = self.find(meeting_id)
        if room is None:
            return {"meeting_id": meeting_id, "active_speaker_peer_id": None, "peers": []}
        return room.snapshot()

    # -- events from the SFU and other features --------------------------------------------
    def _on_event(self, event: MediaEvent) -> None:
        """Inline on the loop: never blocks; the room puts its pushes in the outbox."""
        try:
            meeting_id = int(event.router_id)
        except ValueError:
            return
        self.room(meeting_id).on_event(event)

    def floor_changed(self, meeting_id: int, speaking: int | None, name: str | None = None,
                      site: str | None = None) -> None:
        """The procedure's floor queue moved (`FloorChanged`, server/conference/feature.py):
        the speaker becomes everyone's main view."""
        self.room(meeting_id).floor_changed(speaking, name, site)

    # -- delivery ---------------------------------------------------------------------------
    async def _deliver(self, push: Push) -> None:
        match push:
            case ToMeeting(meeting_id, event, data):
                await self.sio.emit(event, {"meeting_id": meeting_id, **data},
                                    room=meeting_room(meeting_id))
            case ToConnection(sid, event, data):
                await self.sio.emit(event, data, to=sid)
            case OfferDue(meeting_id, peer_id):
                await self._send_offer(meeting_id, peer_id)
            case RouterIdle(meeting_id):
                # The last one left: free the meeting's router. The room (locks, floor,
                # removals) stays while the meeting is open: someone may come back.
                room = self.find(meeting_id)
                if room is not None:
                    await room.release_router_if_idle()

    async def _send_offer(self, meeting_id: int, peer_id: str) -> None:
        room = self.find(meeting_id)
        member = room.by_peer.get(peer_id) if room is not None else None
        if room is None or member is None:
            return
        try:
            offer = await room.peer(member).offer()
        except (MediaFailure, MediaError):
            return  # closed meanwhile
        if offer is not None:
            await self.sio.emit("media:offer", {"meeting_id": meeting_id,
                                                "offer": offer_dict(offer)}, to=member.sid)

    # -- stats ----------------------------------------------------------------------------
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval_s)
            try:
                self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("media: stats tick failed")

    def _tick(self) -> None:
        for router in self.sfu.routers:  # a router may live before its room (a node link)
            try:
                self.room(int(router.id))
            except ValueError:
                continue
        for room in list(self.rooms.values()):
            for push in room.tick(self.metrics):
                self.outbox.put(push)
