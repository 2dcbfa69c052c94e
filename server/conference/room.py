"""One live meeting's video conference: a `Room` owns everything about it.

Ownership, as media/'s own objects (docs/media.md): the hub (server/conference/hub.py) owns
one room per meeting with live state; a room owns its members (one per socket.io
connection in the meeting's media), their chair locks and site locks, who paused which
producer, the floor holder, the people the chair removed, the last quality levels pushed
and its share of the media counters; the meeting's `Router` (id ``str(meeting_id)``) is
the room's while it lives. `close()` is idempotent: it tells every member's client why
(``meeting-closed``), closes the router (which closes its peers, their transports,
producers and consumers) and drops the room's state.

Over ~400 lines for a reason: one class whose operations all read and write the same
members and router; its parts with state of their own are their own modules (locks.py,
room_stats.py, outbox.py, member.py), and the room without a cascade is local_room.py.

The router comes and goes within a room's life: it is created by the first join and freed
when its last peer leaves (`release_router_if_idle`), while locks, the floor and removals
stay until the meeting closes (someone may come back).

`Room` is the interface the hub and the socket handlers use; `LocalRoom` (local_room.py) is
a meeting held on this node only; `server/cascade/room.py`'s `CascadedRoom` adds other nodes' producers
and people and sends chair controls and the floor down the tree: both implement the
abstract methods under "the rest of the tree".
"""

from __future__ import annotations

import dataclasses
import secrets
from abc import ABC, abstractmethod
from typing import Any

from media import (
    SFU,
    ActiveSpeakerChanged,
    CloseOnce,
    ConsumerClosed,
    DownlinkChanged,
    Kind,
    MediaEvent,
    NotFoundError,
    Peer,
    PeerClosed,
    ProducerAdded,
    ProducerClosed,
    ProducerInfo,
    ProducerPaused,
    RenegotiationNeeded,
    Router,
    TransportStateChanged,
    relayed,
)
from rooms.errors import Conflict, Forbidden, NotFound
from rooms.models import MeetingRole, Site, User
from rooms.permissions import MEETING_PERMISSIONS, Action
from server.conference.locks import ChairLocks
from server.conference.member import MediaMember, not_joined
from server.conference.metrics import MediaMetrics
from server.conference.outbox import (
    OfferDue,
    Outbox,
    Push,
    RouterIdle,
    ToConnection,
    ToMeeting,
)
from server.conference.room_stats import STATS_ROLES, RoomStats


class Room(ABC):
    """A meeting's media; every method runs on the app's event loop."""

    def __init__(self, meeting_id: int, sfu: SFU, outbox: Outbox) -> None:
        self.id = meeting_id
        self.sfu = sfu
        self.outbox = outbox
        self.members: dict[str, MediaMember] = {}  # sid -> member
        self.by_peer: dict[str, MediaMember] = {}  # peer id -> member
        self.locks = ChairLocks(lambda: self.router, self._push)
        self.floor: dict[str, Any] | None = None  # the holder
        self.banned: set[int] = set()  # users the chair removed
        self.stats = RoomStats(meeting_id)
        self.close_reasons: dict[str, str] = {}  # peer id -> reason told to its client
        self._closing = CloseOnce()

    @property
    def closed(self) -> bool:
        return self._closing.started

    @property
    def router(self) -> Router | None:
        try:
            return self.sfu.get_router(str(self.id))
        except NotFoundError:
            return None

    def peer(self, member: MediaMember) -> Peer:
        router = self.router
        if router is None:
            raise not_joined()
        try:
            return router.peer(member.peer_id)
        except NotFoundError:
            raise not_joined() from None

    def _push(self, event: str, data: dict[str, Any]) -> None:
        self.outbox.put(ToMeeting(self.id, event, data))

    # -- members ----------------------------------------------------------------------
    async def add_member(self, sid: str, user: User, role: MeetingRole,
                         site: Site | None) -> MediaMember:
        """A new peer in the meeting's router for this connection."""
        assert user.id is not None
        member = MediaMember(sid=sid, meeting_id=self.id,
                             peer_id="p" + secrets.token_hex(6), user_id=user.id,
                             name=user.full_name, role=role,
                             site_id=site.id if site else None, site=site.name if site else None)
        self.sfu.router(str(self.id)).add_peer(member.peer_id, member.app_data())
        await self.joined()
        self.members[sid] = member
        self.by_peer[member.peer_id] = member
        self._floor_first()
        self.locks.joined(member.user_id, member.site_id)
        self._push("media:peer-joined", {"peer": member.peer_dict()})
        return member

    async def close_member(self, member: MediaMember, reason: str | None = None) -> None:
        """Close a member's peer; `reason` (if given) is what its client is told."""
        if reason is not None:
            self.close_reasons[member.peer_id] = reason
        router = self.router
        if router is None:
            self._forget(member)
            return
        try:
            await router.close_peer(member.peer_id)
        except NotFoundError:
            self._forget(member)

    def _forget(self, member: MediaMember) -> None:
        if self.members.get(member.sid) is member:
            del self.members[member.sid]
        if self.by_peer.get(member.peer_id) is member:
            del self.by_peer[member.peer_id]
        self.stats.peer_left(member.peer_id)

    def devices_of(self, user_id: int, besides_sid: str) -> list[MediaMember]:
        return [m for m in self.members.values() if m.user_id == user_id and m.sid != besides_sid]

    # -- removals -------------------------------------------------------------------------
    def is_banned(self, user_id: int | None) -> bool:
        return user_id in self.banned

    async def remove(self, user_id: int) -> list[str]:
        """The chair removes a person from the meeting's video: their peers close, and they
        may not join again until readmitted. Returns the closed peers' ids."""
        self.banned.add(user_id)
        gone = [m for m in list(self.members.values()) if m.user_id == user_id]
        for member in gone:
            await self.close_member(member, "removed")
        return [m.peer_id for m in gone]

    def readmit(self, user_id: int) -> None:
        self.banned.discard(user_id)

    # -- views ------------------------------------------------------------------------
    def producer_dict(self, info: ProducerInfo) -> dict[str, Any]:
        data: dict[str, Any] = {"id": info.id, "peer_id": info.peer_id,
                                "kind": info.kind.value, "source": info.source.value,
                                "codec": info.codec, "paused": info.paused}
        data.update({k: info.app_data.get(k) for k in
                     ("user_id", "name", "site_id", "site", "role")})
        data["paused_by"] = self.locks.paused_by.get(info.id) if info.paused else None
        data["locked"] = self.locks.is_locked(data["user_id"], info.kind.value)
        return data

    def producers(self) -> list[dict[str, Any]]:
        router = self.router
        if router is None:
            return []
        return [self.producer_dict(p) for p in router.producers()
                if not relayed(p.app_data)] + self.remote_producers()

    async def ensure_producers(self, producer_ids: list[str]) -> None:
        """Make producers subscribable here: local ones exist; remote ones are pulled over
        their link. Unknown ids are NotFound, and nothing is pulled then."""
        router = self.router
        known = {p.id for p in router.producers()} if router else set()
        remote = self.remote_entries()
        missing = [pid for pid in producer_ids if pid not in known and pid not in remote]
        if missing:
            raise NotFound(f"producer {missing[0]} not found in this meeting")
        await self.pull([p for p in producer_ids if p not in known])

    def peers(self) -> list[dict[str, Any]]:
        """Everyone in the meeting's media: here, and (on a cascade node) elsewhere."""
        return [m.peer_dict() for m in self.members.values()] + self.remote_peers()

    def active_speaker(self) -> dict[str, Any] | None:
        router = self.router
        producer_id = router.active_speaker if router else None
        if router is None or producer_id is None:
            return None
        info = next((p for p in router.producers() if p.id == producer_id), None)
        if info is None:
            return None
        return {"peer_id": info.peer_id, "producer_id": info.id,
                "user_id": info.app_data.get("user_id")}

    def local_producer(self, producer_id: Any) -> ProducerInfo | None:
        """A producer published on this node (not one relayed from another)."""
        router = self.router
        return next((p for p in router.producers() if p.id == producer_id
                     and not relayed(p.app_data)), None) if router else None

    # -- chair controls (the locks themselves: server/conference/locks.py) ---------------
    def site_users(self, site_id: int) -> set[int]:
        return {m.user_id for m in self.members.values() if m.site_id == site_id}

    def site_present(self, site_id: int) -> bool:
        return any(m.site_id == site_id for m in self.members.values())

    def lock_site(self, site_id: int, kind: str) -> tuple[set[int], list[str]]:
        users = self.site_users(site_id)
        return users, self.locks.lock_site(site_id, users, kind)

    def allow_site(self, site_id: int, kind: str) -> list[int]:
        return self.locks.allow_site(site_id, self.site_users(site_id), kind)

    async def chair_producer(self, producer_id: str, lock: bool) -> dict[str, Any]:
        """Chair mute/allow of one producer's publisher, wherever in the tree below they
        are: a local person is locked here; a remote one on their own node."""
        done = await self.chair_remote_producer(producer_id, lock)
        if done is not None:
            return done
        router = self.router
        info = next((p for p in router.producers() if p.id == producer_id), None) \
            if router else None
        if info is None:
            raise NotFound(f"producer {producer_id} not found in this meeting")
        uid = int(info.app_data["user_id"])
        (self.locks.lock if lock else self.locks.allow)([uid], info.kind.value)
        return {"user_ids": [uid]}

    async def mute_all(self) -> dict[str, Any]:
        """Lock every microphone but the chairs', here and on every node below."""
        done = await self.mute_all_below()
        return done if done is not None else self.mute_all_here()

    def mute_all_here(self) -> dict[str, Any]:
        users = {m.user_id for m in self.members.values()
                 if Action.chair_media not in MEETING_PERMISSIONS[m.role]}
        return {"user_ids": sorted(users), "producer_ids": self.locks.lock(users, "audio")}

    # -- own mute -----------------------------------------------------------------------
    def self_pause(self, member: MediaMember, producer_id: str, paused: bool) -> dict[str, Any]:
        router = self.router
        info = next((p for p in router.producers() if p.id == producer_id), None) \
            if router else None
        if router is None or info is None:
            raise NotFound(f"producer {producer_id} not found in this meeting")
        if info.peer_id != member.peer_id:
            raise Forbidden("you can only mute or unmute your own producers")
        if paused:
            if not info.paused:
                self.locks.paused_by[producer_id] = "self"
                router.pause_producer(producer_id)
        else:
            if self.locks.is_locked(member.user_id, info.kind.value):
                raise Conflict("the chair muted you; wait until the chair allows you to speak"
                               if info.kind is Kind.AUDIO else
                               "the chair stopped your video; wait until the chair allows it",
                               code="muted_by_chair")
            if info.paused:
                self.locks.paused_by.pop(producer_id, None)
                router.resume_producer(producer_id)
        return {"producer_id": producer_id, "paused": paused}

    # -- floor ----------------------------------------------------------------------------
    def set_floor(self, user_id: int | None, name: str | None = None,
                  site: str | None = None, announce: bool = True) -> dict[str, Any] | None:
        """The floor holder's camera is everyone's main view; their microphone lock lifts.
        `announce`: push media:floor to the meeting (the nodes below are told regardless)."""
        if user_id is None:
            self.floor = holder = None
        else:
            present = [m for m in self.members.values() if m.user_id == user_id]
            if present and name is None:
                name, site = present[0].name, present[0].site
            holder = {"user_id": user_id, "name": name, "site": site,
                      "peer_ids": [m.peer_id for m in present]}
            self.floor = holder
            self.locks.allow([user_id], "audio")
        if announce:
            self._push("media:floor", {"holder": holder})
        self._floor_first()
        self.floor_down(holder)
        return holder

    def _floor_first(self) -> None:
        """The floor holder's video first in every subscriber's bandwidth allocation."""
        router, floor = self.router, self.floor
        if router is None:
            return
        peers = set(floor["peer_ids"]) if floor else set()
        if floor and floor["user_id"] is not None:
            peers |= {m.peer_id for m in self.members.values()
                      if m.user_id == floor["user_id"]}
        router.priority_peers = frozenset(peers)

    def floor_changed(self, user_id: int | None, name: str | None, site: str | None) -> None:
        """The procedure's floor queue moved (in any process: FloorChanged crosses over
        Redis): the speaker becomes the main view. Only a room with members here pushes it:
        the process holding the meeting's media names their peers; another's push, with no
        peers, would race it to the same clients (socket.io's Redis manager). Who joins
        later gets the floor in media:join's answer."""
        if (self.floor or {}).get("user_id") != user_id:
            self.set_floor(user_id, name, site, announce=bool(self.members))

    # -- the SFU's events -----------------------------------------------------------------
    def on_event(self, event: MediaEvent) -> None:
        """Inline on the loop (the SFU's listener): never blocks; pushes go to the outbox."""
        if self.is_remote(event):
            self.sync()  # imported/released/paused relays: the catalogs decide
        elif isinstance(event, ProducerAdded):
            info = event.producer
            router = self.router
            if router is not None and self.locks.is_locked(info.app_data.get("user_id"),
                                                           info.kind.value):
                self.locks.paused_by[info.id] = "chair"
                router.pause_producer(info.id)
                info = dataclasses.replace(info, paused=True)
            self._push("media:producer-added", {"producer": self.producer_dict(info)})
        elif isinstance(event, ProducerClosed):
            self.locks.paused_by.pop(event.producer_id, None)
            self.stats.producer_closed(event.producer_id)
            self._push("media:producer-closed", {
                "producer_id": event.producer_id, "peer_id": event.peer_id,
                "kind": event.kind.value, "source": event.source.value,
                "reason": event.reason.value})
        elif isinstance(event, ProducerPaused):
            by = self.locks.paused_by.get(event.producer_id) if event.paused else None
            if not event.paused:
                self.locks.paused_by.pop(event.producer_id, None)
            self._push("media:producer-paused", {
                "producer_id": event.producer_id, "peer_id": event.peer_id,
                "paused": event.paused, "paused_by": by})
        elif isinstance(event, RenegotiationNeeded):
            self.outbox.put(OfferDue(self.id, event.peer_id))
        elif isinstance(event, ActiveSpeakerChanged):
            member = self.by_peer.get(event.peer_id or "")
            self._push("media:active-speaker", {
                "peer_id": event.peer_id, "producer_id": event.producer_id,
                "user_id": member.user_id if member else None})
        elif isinstance(event, TransportStateChanged):
            self._to_peer(event.peer_id, "media:transport", {
                "direction": event.direction.value, "state": event.state.value})
        elif isinstance(event, DownlinkChanged):  # audio only below the floor, and back
            self._to_peer(event.peer_id, "media:downlink", {
                "video_off": event.video_off, "estimate_bps": event.estimate_bps})
        elif isinstance(event, ConsumerClosed):
            self._to_peer(event.peer_id, "media:consumer-closed", {
                "consumer_id": event.consumer_id, "producer_id": event.producer_id,
                "reason": event.reason.value})
        elif isinstance(event, PeerClosed):
            self._peer_closed(event)

    def _to_peer(self, peer_id: str, name: str, data: dict[str, Any]) -> None:
        member = self.by_peer.get(peer_id)
        if member is not None:
            self.outbox.put(ToConnection(member.sid, name, {"meeting_id": self.id, **data}))

    def _peer_closed(self, event: PeerClosed) -> None:
        member = self.by_peer.get(event.peer_id)
        told = self.close_reasons.pop(event.peer_id, None)
        if member is not None:
            self._forget(member)
            reason = told or (None if event.reason.value == "requested" else event.reason.value)
            if reason is not None:
                self.outbox.put(ToConnection(member.sid, "media:closed", {
                    "meeting_id": self.id, "peer_id": event.peer_id, "reason": reason}))
        self._push("media:peer-closed", {
            "peer_id": event.peer_id, "user_id": member.user_id if member else None,
            "reason": told or event.reason.value})
        self.outbox.put(RouterIdle(self.id))

    async def release_router_if_idle(self) -> None:
        router = self.router
        if router is not None and not router.peers:
            await router.close()

    # -- stats (server/conference/room_stats.py) -------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        def person(peer_id: str) -> dict[str, Any]:
            member = self.by_peer.get(peer_id)
            return member.app_data() if member else {}
        return self.stats.snapshot(self.router, person)

    def tick(self, metrics: MediaMetrics) -> list[Push]:
        """Every stats interval (while the router lives): feed the counters; the quality
        levels to the meeting when they changed; all numbers to its chairs and secretaries."""
        router = self.router
        self.stats.count(router, metrics)
        if router is None:
            return []
        data = self.snapshot()
        levels = self.stats.changed_levels(data)
        pushes: list[Push] = [] if levels is None else [
            ToMeeting(self.id, "media:quality", {"peers": levels})]
        return pushes + [ToConnection(m.sid, "media:stats", data)
                         for m in self.members.values() if m.role in STATS_ROLES]

    # -- closing ----------------------------------------------------------------------------
    async def close(self, reason: str = "meeting-closed") -> None:
        """Idempotent; concurrent callers wait for the same teardown. Every member's client
        is told `reason`; the router closes (peers, transports, producers, consumers); the
        room's locks, floor, removals and quality levels are dropped."""
        await self._closing.run(lambda: self._close_owned(reason))

    async def _close_owned(self, reason: str) -> None:
        for member in self.members.values():
            self.close_reasons[member.peer_id] = reason
        router = self.router
        if router is not None:
            await router.close()
        self.locks.clear()
        self.floor = None
        self.stats.quality.clear()
        self.banned.clear()
        self.closed_hook()

    # -- the rest of the tree: LocalRoom has none, CascadedRoom (server/cascade/room.py) -----
    @abstractmethod
    async def joined(self) -> None:
        """A local participant joined the meeting's media."""

    @abstractmethod
    def remote_entries(self) -> dict[str, dict[str, Any]]:
        """Producers of other nodes this meeting's clients may subscribe to, by id."""

    @abstractmethod
    def remote_producers(self) -> list[dict[str, Any]]:
        """Those producers as clients see them (``remote: true``, no local ids)."""

    @abstractmethod
    def remote_peers(self) -> list[dict[str, Any]]:
        """People in the meeting's media at other nodes."""

    @abstractmethod
    async def pull(self, producer_ids: list[str]) -> None:
        """Bring remote producers among `producer_ids` here (local ones exist already)."""

    @abstractmethod
    def is_remote(self, event: MediaEvent) -> bool:
        """An SFU event about a relayed producer: catalogs, not the router, speak for it."""

    @abstractmethod
    def sync(self) -> None:
        """Tell clients what changed among remote producers and people."""

    @abstractmethod
    async def chair_remote_producer(self, producer_id: str, lock: bool
                                    ) -> dict[str, Any] | None:
        """Lock/allow the publisher of a remote producer on their node; None: not remote."""

    @abstractmethod
    async def mute_all_below(self) -> dict[str, Any] | None:
        """Mute-all on every node below; None: this meeting spans no other node."""

    @abstractmethod
    def give_floor_to_peer(self, peer_id: str) -> dict[str, Any]:
        """The floor to a person at a node below, known by their peer id."""

    @abstractmethod
    def floor_down(self, holder: dict[str, Any] | None) -> None:
        """Send the floor holder to the nodes below."""

    @abstractmethod
    def closed_hook(self) -> None:
        """The room closed: drop what the rest of the tree kept for it."""

