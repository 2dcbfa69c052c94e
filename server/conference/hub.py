"""The app's live video conference state: the SFU, who is in which meeting's media, chair
locks, the floor, and pushing the SFU's events to socket.io.

One `MediaHub` per app (``app[MEDIA]``), created and closed in the conference's lifespan.
A meeting's router id is ``str(meeting_id)``. A peer is one socket.io connection (a person on
two devices is two peers); its id is random and its ``app_data`` carries the person
(``user_id``, ``name``, ``site_id``, ``site``, ``role``). The SFU's listener only queues;
one pump task turns events into socket.io emits, in order. docs/protocol.md, section
"Media (socket.io)", is the wire contract.

Everything here is in-process: all clients of one meeting must reach the same process
(the SFU cannot span processes). On a cascade node, `cascade` (server/cascade/media.py)
adds other nodes' producers and sends chair controls and the floor down the tree.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import select

from media import (
    SFU,
    ActiveSpeakerChanged,
    ClosedError,
    ConsumerClosed,
    IceServer,
    Kind,
    MediaConfig,
    MediaError,
    MediaEvent,
    NegotiationError,
    NotFoundError,
    Peer,
    PeerClosed,
    PeerStats,
    ProducerAdded,
    ProducerClosed,
    ProducerInfo,
    ProducerPaused,
    RenegotiationNeeded,
    Router,
    SdpError,
    ServerOffer,
    TransportStateChanged,
    UnsupportedCodecError,
)
from media.ratelimit import TokenBucket
from rooms.errors import Conflict, DomainError, Forbidden, NotFound
from rooms.models import Meeting, MeetingRole, MeetingStatus, Site, User
from server.cascade.media import HubCascades, mute_all_targets, relayed
from server.conference.keys import MEDIA
from server.core.realtime import meeting_room
from server.core.settings import Settings
from server.procedure.events import FloorChanged

log = logging.getLogger(__name__)

# Bounds on what one connection may ask for.
MAX_PEERS_PER_USER = 4  # devices one person may have in a meeting's media
MAX_SUBSCRIBE_IDS = 64  # producer ids in one media:subscribe
MAX_ACTIVE_CONSUMERS = 96  # consumers a peer holds at once
# No lifetime cap any more: closed consumers' m-sections are recycled (media/subscribing.py).
SUBSCRIBE_BURST, SUBSCRIBE_PER_S = 10.0, 2.0  # token bucket per peer
MAX_SDP_BYTES = 192 * 1024
# m-sections of one SDP: a recv offer holds the live consumers plus closed ones whose
# rejection the client has not answered yet (reused after that), so room for twice the
# live cap; more makes media:subscribe fail with too_many.
MAX_MEDIA_SECTIONS = 2 * MAX_ACTIVE_CONSUMERS + 8
STATUS_CHECK_S = 10.0  # how often live routers' meetings are checked to still be open
STATS_ROLES = frozenset({MeetingRole.chair, MeetingRole.secretary})
KINDS = ("audio", "video")


class MediaFailure(DomainError):
    """A media operation that cannot be done; its code names why (see MEDIA_ERROR_CODES)."""

    code, status = "media_error", 409


MEDIA_ERROR_CODES: tuple[tuple[type[MediaError], str], ...] = (
    (UnsupportedCodecError, "unsupported_codec"),  # before SdpError, its base
    (SdpError, "bad_sdp"),
    (NegotiationError, "negotiation"),
    (NotFoundError, "not_found"),
    (ClosedError, "closed"),
    (MediaError, "media_error"),
)


def media_failure(exc: MediaError) -> MediaFailure:
    """The error ack for an SFU error: a stable code and the SFU's message."""
    code = next(c for kind, c in MEDIA_ERROR_CODES if isinstance(exc, kind))
    return MediaFailure(str(exc) or type(exc).__name__, code=code)


@dataclass
class MediaMember:
    """One connection's media session in one meeting."""

    sid: str
    meeting_id: int
    peer_id: str
    user_id: int
    name: str
    role: MeetingRole
    site_id: int | None
    site: str | None
    subscribes: TokenBucket = field(
        default_factory=lambda: TokenBucket(SUBSCRIBE_PER_S, SUBSCRIBE_BURST))

    def app_data(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "name": self.name, "site_id": self.site_id,
                "site": self.site, "role": self.role.value}

    def peer_dict(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, **self.app_data()}


@dataclass
class MediaMetrics:
    forwarded_packets: Counter
    forwarded_bytes: Counter
    received_packets: Counter
    dropped_packets: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> MediaMetrics:
        return cls(
            forwarded_packets=Counter("hopso_media_forwarded_packets_total",
                                      "RTP packets the SFU sent to subscribers",
                                      registry=registry),
            forwarded_bytes=Counter("hopso_media_forwarded_bytes_total",
                                    "RTP payload bytes the SFU sent to subscribers",
                                    registry=registry),
            received_packets=Counter("hopso_media_received_packets_total",
                                     "RTP packets the SFU received from publishers",
                                     registry=registry),
            dropped_packets=Counter("hopso_media_dropped_packets_total",
                                    "RTP packets not forwarded (slow subscriber, waiting "
                                    "for a keyframe)", registry=registry),
        )


class MediaCollector(Collector):
    """Gauges read from the live SFU at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterable[GaugeMetricFamily]:
        hub = self._app.get(MEDIA)
        routers = hub.sfu.routers if hub is not None else []
        peers = sum(len(r.peers) for r in routers)
        producers = GaugeMetricFamily("hopso_media_producers", "Live media producers",
                                      labels=["kind"])
        counts = {k: 0 for k in KINDS}
        consumers = 0
        for router in routers:
            for info in router.producers():
                counts[info.kind.value] += 1
            consumers += sum(len(p.consumers) for p in router.peers)
        for kind, n in counts.items():
            producers.add_metric([kind], n)
        yield GaugeMetricFamily("hopso_media_routers", "Meetings with live media",
                                value=len(routers))
        yield GaugeMetricFamily("hopso_media_peers", "Connections in a meeting's media",
                                value=peers)
        yield producers
        yield GaugeMetricFamily("hopso_media_consumers", "Live media consumers",
                                value=consumers)


def media_config(settings: Settings) -> MediaConfig:
    """MediaConfig from Settings (tests shorten the timings: Settings.media_timings)."""
    return MediaConfig(
        ice_addresses=tuple(settings.ice_addresses),
        announced_address=settings.announced_address,
        ice_servers=tuple(IceServer((url,)) for url in settings.ice_servers),
        ice_timeout_s=settings.media_timings.ice_timeout_s,
        rtcp_interval_s=settings.media_timings.rtcp_interval_s,
        max_sdp_bytes=MAX_SDP_BYTES,
        max_media_sections=MAX_MEDIA_SECTIONS,
    )


def offer_dict(offer: ServerOffer | None) -> dict[str, Any] | None:
    if offer is None:
        return None
    return {"sdp": offer.sdp, "consumers": [
        {"id": c.id, "mid": c.mid, "producer_id": c.producer_id,
         "producer_peer_id": c.producer_peer_id, "kind": c.kind.value,
         "source": c.source.value, "stream_id": c.stream_id} for c in offer.consumers]}


def summarize(stats: PeerStats) -> dict[str, Any]:
    """The numbers a chair needs about one connection, and a quality level."""
    states = {t.direction: t.state for t in stats.transports}
    up_loss = max((p.fraction_lost for p in stats.producers), default=0.0)
    down_loss = max((c.fraction_lost for c in stats.consumers), default=0.0)
    rtts = [c.rtt_ms for c in stats.consumers if c.rtt_ms is not None]
    jitter = max([p.jitter_ms for p in stats.producers if p.kind == "audio"]
                 + [c.jitter_ms for c in stats.consumers if c.kind == "audio"], default=0.0)
    summary: dict[str, Any] = {
        "send_state": states.get("send"), "recv_state": states.get("recv"),
        "bitrate_in_bps": sum(p.bitrate_bps for p in stats.producers),
        "bitrate_out_bps": sum(c.bitrate_bps for c in stats.consumers),
        "loss_up": round(up_loss, 4), "loss_down": round(down_loss, 4),
        "packets_lost_up": sum(p.packets_lost for p in stats.producers),
        "packets_lost_down": sum(c.packets_lost for c in stats.consumers),
        "rtt_ms": round(max(rtts), 1) if rtts else None,
        "jitter_ms": round(jitter, 1),
        "received_packets": sum(p.packets_received for p in stats.producers),
        "forwarded_packets": sum(c.packets_sent for c in stats.consumers),
        "dropped_packets": sum(t.packets_dropped for t in stats.transports)
        + sum(c.packets_dropped for c in stats.consumers),
    }
    summary["quality"] = quality(summary)
    return summary


def quality(s: dict[str, Any]) -> str:
    """good / fair / poor from loss, RTT and jitter; `connecting` before any transport is up."""
    if "connected" not in (s["send_state"], s["recv_state"]):
        return "connecting"
    loss, rtt, jitter = max(s["loss_up"], s["loss_down"]), s["rtt_ms"] or 0.0, s["jitter_ms"]
    if loss >= 0.08 or rtt > 500 or jitter > 80:
        return "poor"
    if loss >= 0.02 or rtt > 250 or jitter > 40:
        return "fair"
    return "good"


class MediaHub:
    """Per-app media state; every method runs on the app's event loop."""

    def __init__(self, app: web.Application, config: MediaConfig, metrics: MediaMetrics,
                 stats_interval_s: float = 2.0) -> None:
        self.app = app
        self.sfu = SFU(config)
        self.metrics = metrics
        self.stats_interval_s = stats_interval_s
        self.status_check_s = STATUS_CHECK_S
        self.members: dict[str, MediaMember] = {}  # sid -> member
        self.by_peer: dict[str, MediaMember] = {}  # peer id -> member
        # Chair locks: meeting -> user -> kinds ("audio"/"video") the owner may not resume.
        self.locks: dict[int, dict[int, set[str]]] = {}
        # A muted site: people joining later from it are locked too.
        self.site_locks: dict[int, dict[int, set[str]]] = {}
        self.paused_by: dict[str, str] = {}  # producer id -> "self" | "chair"
        self.floor: dict[int, dict[str, Any]] = {}  # meeting -> holder
        self.banned: dict[int, set[int]] = {}  # meeting -> users removed by the chair
        self.quality: dict[int, dict[str, str]] = {}  # meeting -> peer -> last level pushed
        self._close_reasons: dict[str, str] = {}  # peer id -> reason told to its client
        self._counted: dict[str, tuple[int, int, int]] = {}  # consumer id -> sent, bytes, dropped
        self._received: dict[str, int] = {}  # producer id -> packets received
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cascade: HubCascades | None = None  # on a cascade node (server/cascade/node.py)
        self._tasks: list[asyncio.Task[None]] = []
        self._remove_listener = self.sfu.add_listener(self._on_event)

    @property
    def sio(self) -> socketio.AsyncServer:
        from server.core import keys

        return self.app[keys.SIO]

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._pump(), name="media-pump"),
                       asyncio.create_task(self._ticker(), name="media-stats")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._remove_listener()
        await self.sfu.close()

    # -- members ----------------------------------------------------------------------
    def router(self, meeting_id: int) -> Router | None:
        try:
            return self.sfu.get_router(str(meeting_id))
        except NotFoundError:
            return None

    def peer(self, member: MediaMember) -> Peer:
        router = self.router(member.meeting_id)
        if router is None:
            raise MediaFailure("your media session has ended; join again", code="not_joined")
        try:
            return router.peer(member.peer_id)
        except NotFoundError:
            raise MediaFailure("your media session has ended; join again",
                               code="not_joined") from None

    def members_of(self, meeting_id: int) -> list[MediaMember]:
        return [m for m in self.members.values() if m.meeting_id == meeting_id]

    async def add_member(self, sid: str, meeting_id: int, user: User, role: MeetingRole,
                         site: Site | None) -> MediaMember:
        """A new peer for this connection; a previous one of the same connection closes."""
        assert user.id is not None
        old = self.members.pop(sid, None)
        if old is not None:
            await self.close_member(old, "replaced")
        member = MediaMember(sid=sid, meeting_id=meeting_id,
                             peer_id="p" + secrets.token_hex(6), user_id=user.id,
                             name=user.full_name, role=role,
                             site_id=site.id if site else None, site=site.name if site else None)
        router = self.sfu.router(str(meeting_id))
        router.add_peer(member.peer_id, member.app_data())
        if self.cascade is not None:
            await self.cascade.joined(meeting_id)
        self.members[sid] = member
        self.by_peer[member.peer_id] = member
        if member.site_id is not None:
            for kind in self.site_locks.get(meeting_id, {}).get(member.site_id, set()):
                self.locks.setdefault(meeting_id, {}).setdefault(member.user_id, set()).add(kind)
        self._put("room", (meeting_id, "media:peer-joined", {"peer": member.peer_dict()}))
        return member

    async def close_member(self, member: MediaMember, reason: str | None = None) -> None:
        """Close a member's peer; `reason` (if given) is what its client is told."""
        if reason is not None:
            self._close_reasons[member.peer_id] = reason
        router = self.router(member.meeting_id)
        if router is None:
            self._forget(member)
            return
        try:
            await router.close_peer(member.peer_id)
        except NotFoundError:
            self._forget(member)

    async def disconnect(self, sid: str) -> None:
        member = self.members.get(sid)
        if member is not None:
            await self.close_member(member)

    def _forget(self, member: MediaMember) -> None:
        if self.members.get(member.sid) is member:
            del self.members[member.sid]
        if self.by_peer.get(member.peer_id) is member:
            del self.by_peer[member.peer_id]
        self.quality.get(member.meeting_id, {}).pop(member.peer_id, None)

    # -- views ------------------------------------------------------------------------
    def producer_dict(self, meeting_id: int, info: ProducerInfo) -> dict[str, Any]:
        data: dict[str, Any] = {"id": info.id, "peer_id": info.peer_id,
                                "kind": info.kind.value, "source": info.source.value,
                                "codec": info.codec, "paused": info.paused}
        data.update({k: info.app_data.get(k) for k in
                     ("user_id", "name", "site_id", "site", "role")})
        data["paused_by"] = self.paused_by.get(info.id) if info.paused else None
        data["locked"] = self.is_locked(meeting_id, data["user_id"], info.kind.value)
        return data

    def producers(self, meeting_id: int) -> list[dict[str, Any]]:
        router = self.router(meeting_id)
        if router is None:
            return []
        local = [self.producer_dict(meeting_id, p) for p in router.producers()
                 if not relayed(p.app_data)]
        return local + (self.cascade.producers(meeting_id) if self.cascade else [])

    async def ensure_producers(self, meeting_id: int, producer_ids: list[str]) -> None:
        """Make producers subscribable here: local ones exist; remote ones are pulled over
        their link. Unknown ids are NotFound, and nothing is pulled then."""
        router = self.router(meeting_id)
        known = {p.id for p in router.producers()} if router else set()
        remote = self.cascade.entries(meeting_id) if self.cascade else {}
        missing = [pid for pid in producer_ids if pid not in known and pid not in remote]
        if missing:
            raise NotFound(f"producer {missing[0]} not found in this meeting")
        if self.cascade is not None:
            await self.cascade.pull(meeting_id, [p for p in producer_ids if p not in known])


    def peers(self, meeting_id: int) -> list[dict[str, Any]]:
        """Everyone in the meeting's media: here, and (on a cascade node) elsewhere."""
        remote = self.cascade.peers(meeting_id) if self.cascade else []
        return [m.peer_dict() for m in self.members_of(meeting_id)] + remote

    def locks_view(self, meeting_id: int) -> list[dict[str, Any]]:
        return [{"user_id": uid, "kinds": sorted(kinds)}
                for uid, kinds in self.locks.get(meeting_id, {}).items() if kinds]

    def active_speaker(self, meeting_id: int) -> dict[str, Any] | None:
        router = self.router(meeting_id)
        producer_id = router.active_speaker if router else None
        if router is None or producer_id is None:
            return None
        info = next((p for p in router.producers() if p.id == producer_id), None)
        if info is None:
            return None
        return {"peer_id": info.peer_id, "producer_id": info.id,
                "user_id": info.app_data.get("user_id")}

    # -- chair locks ----------------------------------------------------------------------
    def is_locked(self, meeting_id: int, user_id: int | None, kind: str) -> bool:
        return user_id is not None and kind in self.locks.get(meeting_id, {}).get(user_id, ())

    def lock(self, meeting_id: int, user_ids: Iterable[int], kind: str) -> list[str]:
        """Chair mute / stop video: pause the users' producers of `kind`; their owners cannot
        resume them (nor new ones they publish) until `allow`. Returns producer ids paused."""
        users = set(user_ids)
        for uid in users:
            self.locks.setdefault(meeting_id, {}).setdefault(uid, set()).add(kind)
            self._put("room", (meeting_id, "media:lock",
                               {"user_id": uid, "kind": kind, "locked": True}))
        router = self.router(meeting_id)
        paused: list[str] = []
        if router is None:
            return paused
        for info in router.producers():
            if info.kind.value == kind and info.app_data.get("user_id") in users:
                self._chair_pause(router, info)
                paused.append(info.id)
        return paused

    def _chair_pause(self, router: Router, info: ProducerInfo) -> None:
        was = self.paused_by.get(info.id)
        self.paused_by[info.id] = "chair"
        if info.paused and was != "chair":  # self-muted already: no SFU event, tell everyone
            self._put("room", (int(router.id), "media:producer-paused", {
                "producer_id": info.id, "peer_id": info.peer_id, "paused": True,
                "paused_by": "chair"}))
        router.pause_producer(info.id)

    def allow(self, meeting_id: int, user_ids: Iterable[int], kind: str) -> list[int]:
        """Lift chair locks: the owners may resume (they are not unmuted by force)."""
        lifted = []
        for uid in set(user_ids):
            kinds = self.locks.get(meeting_id, {}).get(uid)
            if kinds and kind in kinds:
                kinds.discard(kind)
                lifted.append(uid)
                self._put("room", (meeting_id, "media:lock",
                                   {"user_id": uid, "kind": kind, "locked": False}))
        return lifted

    def site_users(self, meeting_id: int, site_id: int) -> set[int]:
        return {m.user_id for m in self.members_of(meeting_id) if m.site_id == site_id}

    def lock_site(self, meeting_id: int, site_id: int, kind: str) -> tuple[set[int], list[str]]:
        self.site_locks.setdefault(meeting_id, {}).setdefault(site_id, set()).add(kind)
        users = self.site_users(meeting_id, site_id)
        return users, self.lock(meeting_id, users, kind)

    def allow_site(self, meeting_id: int, site_id: int, kind: str) -> list[int]:
        self.site_locks.get(meeting_id, {}).get(site_id, set()).discard(kind)
        return self.allow(meeting_id, self.site_users(meeting_id, site_id), kind)

    # -- own mute -----------------------------------------------------------------------
    def self_pause(self, member: MediaMember, producer_id: str, paused: bool) -> dict[str, Any]:
        router = self.router(member.meeting_id)
        info = next((p for p in router.producers() if p.id == producer_id), None) \
            if router else None
        if router is None or info is None:
            raise NotFound(f"producer {producer_id} not found in this meeting")
        if info.peer_id != member.peer_id:
            raise Forbidden("you can only mute or unmute your own producers")
        if paused:
            if not info.paused:
                self.paused_by[producer_id] = "self"
                router.pause_producer(producer_id)
        else:
            if self.is_locked(member.meeting_id, member.user_id, info.kind.value):
                raise Conflict("the chair muted you; wait until the chair allows you to speak"
                               if info.kind is Kind.AUDIO else
                               "the chair stopped your video; wait until the chair allows it",
                               code="muted_by_chair")
            if info.paused:
                self.paused_by.pop(producer_id, None)
                router.resume_producer(producer_id)
        return {"producer_id": producer_id, "paused": paused}

    # -- floor ----------------------------------------------------------------------------
    def set_floor(self, meeting_id: int, user_id: int | None, name: str | None = None,
                  site: str | None = None) -> dict[str, Any] | None:
        """The floor holder's camera is everyone's main view; their microphone lock lifts."""
        if user_id is None:
            self.floor.pop(meeting_id, None)
            holder = None
        else:
            present = [m for m in self.members_of(meeting_id) if m.user_id == user_id]
            if present and name is None:
                name, site = present[0].name, present[0].site
            holder = {"user_id": user_id, "name": name, "site": site,
                      "peer_ids": [m.peer_id for m in present]}
            self.floor[meeting_id] = holder
            self.allow(meeting_id, [user_id], "audio")
        self.to_room(meeting_id, "media:floor", {"holder": holder})
        if self.cascade is not None:
            self.cascade.floor_down(meeting_id, holder)
        return holder

    # -- chair controls aimed at one producer, or at everyone --------------------------------
    async def chair_producer(self, meeting_id: int, producer_id: str, lock: bool
                             ) -> dict[str, Any]:
        """Chair mute/allow of one producer's publisher, wherever in the tree below they
        are: a local person is locked here; a remote one on their own node."""
        if self.cascade is not None:
            done = await self.cascade.chair_producer(meeting_id, producer_id, lock)
            if done is not None:
                return done
        router = self.router(meeting_id)
        info = next((p for p in router.producers() if p.id == producer_id), None) \
            if router else None
        if info is None:
            raise NotFound(f"producer {producer_id} not found in this meeting")
        uid = int(info.app_data["user_id"])
        (self.lock if lock else self.allow)(meeting_id, [uid], info.kind.value)
        return {"user_ids": [uid]}

    async def mute_all(self, meeting_id: int) -> dict[str, Any]:
        """Lock every microphone but the chairs', here and on every node below."""
        done = await self.cascade.mute_all(meeting_id) if self.cascade else None
        return done if done is not None else self.mute_all_here(meeting_id)

    def mute_all_here(self, meeting_id: int) -> dict[str, Any]:
        users = mute_all_targets(self, meeting_id)
        return {"user_ids": sorted(users), "producer_ids": self.lock(meeting_id, users, "audio")}

    async def on_floor_changed(self, event: FloorChanged) -> None:
        """The procedure's floor queue moved (subscribed in server/conference/feature.py)."""
        current = self.floor.get(event.meeting_id)
        if (current or {}).get("user_id") == event.speaking:
            return
        self.set_floor(event.meeting_id, event.speaking, event.name, event.site)

    # -- the SFU's events -> socket.io ------------------------------------------------------
    def _put(self, kind: str, item: Any) -> None:
        self._queue.put_nowait((kind, item))

    def to_room(self, meeting_id: int, name: str, data: dict[str, Any]) -> None:
        """Push to the meeting's channel, in order with the SFU's events."""
        self._put("room", (meeting_id, name, data))

    def _on_event(self, event: MediaEvent) -> None:
        """Inline on the loop: never blocks; the pump emits."""
        try:
            meeting_id = int(event.router_id)
        except ValueError:
            return
        if self.cascade is not None and self.cascade.is_remote(meeting_id, event):
            self.cascade.sync(meeting_id)  # imported/released/paused relays: catalogs decide
        elif isinstance(event, ProducerAdded):
            info = event.producer
            router = self.router(meeting_id)
            if router is not None and self.is_locked(meeting_id, info.app_data.get("user_id"),
                                                     info.kind.value):
                self.paused_by[info.id] = "chair"
                router.pause_producer(info.id)
                info = dataclasses.replace(info, paused=True)
            self._put("room", (meeting_id, "media:producer-added",
                               {"producer": self.producer_dict(meeting_id, info)}))
        elif isinstance(event, ProducerClosed):
            self.paused_by.pop(event.producer_id, None)
            self._received.pop(event.producer_id, None)
            self._put("room", (meeting_id, "media:producer-closed", {
                "producer_id": event.producer_id, "peer_id": event.peer_id,
                "kind": event.kind.value, "source": event.source.value,
                "reason": event.reason.value}))
        elif isinstance(event, ProducerPaused):
            by = self.paused_by.get(event.producer_id) if event.paused else None
            if not event.paused:
                self.paused_by.pop(event.producer_id, None)
            self._put("room", (meeting_id, "media:producer-paused", {
                "producer_id": event.producer_id, "peer_id": event.peer_id,
                "paused": event.paused, "paused_by": by}))
        elif isinstance(event, RenegotiationNeeded):
            self._put("offer", event.peer_id)
        elif isinstance(event, ActiveSpeakerChanged):
            member = self.by_peer.get(event.peer_id or "")
            self._put("room", (meeting_id, "media:active-speaker", {
                "peer_id": event.peer_id, "producer_id": event.producer_id,
                "user_id": member.user_id if member else None}))
        elif isinstance(event, TransportStateChanged):
            self._to_peer(event.peer_id, "media:transport", {
                "direction": event.direction.value, "state": event.state.value})
        elif isinstance(event, ConsumerClosed):
            self._to_peer(event.peer_id, "media:consumer-closed", {
                "consumer_id": event.consumer_id, "producer_id": event.producer_id,
                "reason": event.reason.value})
        elif isinstance(event, PeerClosed):
            self._peer_closed(meeting_id, event)

    def _to_peer(self, peer_id: str, name: str, data: dict[str, Any]) -> None:
        member = self.by_peer.get(peer_id)
        if member is not None:
            self._put("sid", (member.sid, name, {"meeting_id": member.meeting_id, **data}))

    def _peer_closed(self, meeting_id: int, event: PeerClosed) -> None:
        member = self.by_peer.get(event.peer_id)
        told = self._close_reasons.pop(event.peer_id, None)
        if member is not None:
            self._forget(member)
            reason = told or (None if event.reason.value == "requested" else event.reason.value)
            if reason is not None:
                self._put("sid", (member.sid, "media:closed", {
                    "meeting_id": meeting_id, "peer_id": event.peer_id, "reason": reason}))
        self._put("room", (meeting_id, "media:peer-closed", {
            "peer_id": event.peer_id, "user_id": member.user_id if member else None,
            "reason": told or event.reason.value}))
        self._put("gc", meeting_id)

    async def _pump(self) -> None:
        while True:
            kind, item = await self._queue.get()
            try:
                await self._deliver(kind, item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("media: delivering %s %r failed", kind, item)

    async def _deliver(self, kind: str, item: Any) -> None:
        if kind == "room":
            meeting_id, name, data = item
            await self.sio.emit(name, {"meeting_id": meeting_id, **data},
                                room=meeting_room(meeting_id))
        elif kind == "sid":
            sid, name, data = item
            await self.sio.emit(name, data, to=sid)
        elif kind == "offer":
            member = self.by_peer.get(item)
            if member is None:
                return
            try:
                offer = await self.peer(member).offer()
            except (MediaFailure, MediaError):
                return  # closed meanwhile
            if offer is not None:
                await self.sio.emit("media:offer", {"meeting_id": member.meeting_id,
                                                    "offer": offer_dict(offer)}, to=member.sid)
        elif kind == "gc":
            router = self.router(item)
            if router is not None and not router.peers:
                # The last one left: free the meeting's router. Locks, floor and removals
                # are kept while the meeting is open (someone may come back).
                await router.close()

    # -- stats ----------------------------------------------------------------------------
    def meeting_stats(self, meeting_id: int) -> dict[str, Any]:
        router = self.router(meeting_id)
        if router is None:
            return {"meeting_id": meeting_id, "active_speaker_peer_id": None, "peers": []}
        stats = router.stats()
        peers = []
        for ps in stats.peers:
            member = self.by_peer.get(ps.id)
            entry: dict[str, Any] = {"peer_id": ps.id,
                                     **(member.app_data() if member else {})}
            entry.update(summarize(ps))
            entry["transports"] = [dataclasses.asdict(t) for t in ps.transports]
            entry["producers"] = [dataclasses.asdict(p) for p in ps.producers]
            entry["consumers"] = [dataclasses.asdict(c) for c in ps.consumers]
            peers.append(entry)
        return {"meeting_id": meeting_id, "active_speaker_peer_id": stats.active_speaker_peer_id,
                "peers": peers}

    def _count(self, router: Router) -> None:
        """Prometheus counters from the SFU's cumulative numbers (deltas per sample)."""
        m = self.metrics
        for peer in router.peers:
            for consumer in peer.consumers:
                s = consumer.stats()
                last = self._counted.get(s.id, (0, 0, 0))
                now = (s.packets_sent, s.bytes_sent, s.packets_dropped)
                m.forwarded_packets.inc(max(0, now[0] - last[0]))
                m.forwarded_bytes.inc(max(0, now[1] - last[1]))
                m.dropped_packets.inc(max(0, now[2] - last[2]))
                self._counted[s.id] = now
            for producer in peer.producers:
                received = producer.stats().packets_received
                m.received_packets.inc(max(0, received - self._received.get(producer.id, 0)))
                self._received[producer.id] = received

    async def _ticker(self) -> None:
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(self.stats_interval_s)
            try:
                await self._tick()
                if time.monotonic() - last_check >= self.status_check_s:
                    last_check = time.monotonic()
                    await self._close_ended_meetings()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("media: stats tick failed")

    async def _tick(self) -> None:
        live: set[str] = set()
        for router in self.sfu.routers:
            self._count(router)
            live.update(c.id for p in router.peers for c in p.consumers)
            meeting_id = int(router.id)
            data = self.meeting_stats(meeting_id)
            levels = {p["peer_id"]: p["quality"] for p in data["peers"]}
            if levels != self.quality.get(meeting_id):
                self.quality[meeting_id] = levels
                await self.sio.emit("media:quality", {"meeting_id": meeting_id,
                                                      "peers": levels},
                                    room=meeting_room(meeting_id))
            for member in self.members_of(meeting_id):
                if member.role in STATS_ROLES:
                    await self.sio.emit("media:stats", data, to=member.sid)
        for gone in set(self._counted) - live:
            del self._counted[gone]

    async def _close_ended_meetings(self) -> None:
        from server.core import keys

        ids = [int(r.id) for r in self.sfu.routers]
        if not ids:
            return
        async with self.app[keys.DB].session() as s:
            rows = await s.exec(select(Meeting).where(Meeting.id.in_(ids)))  # type: ignore[union-attr]
            still_open = {m.id for m in rows.all() if m.status == MeetingStatus.open}
        for meeting_id in ids:
            if meeting_id not in still_open:
                for member in self.members_of(meeting_id):
                    self._close_reasons[member.peer_id] = "meeting-closed"
                router = self.router(meeting_id)
                if router is not None:
                    await router.close()
                self._forget_meeting(meeting_id)

    def _forget_meeting(self, meeting_id: int) -> None:
        for table in (self.locks, self.site_locks, self.floor, self.quality, self.banned):
            table.pop(meeting_id, None)
        if self.cascade is not None:
            self.cascade.forget(meeting_id)

