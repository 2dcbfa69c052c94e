"""socket.io events of the video conference: one schema and one small handler per event.

Every event names its meeting and is access-checked with `rooms.meetings.require`; events
about one's own media also need a media session of this connection in that meeting
(`media:join`). SFU errors become error acks with a stable code (see
`server.conference.config.MEDIA_ERROR_CODES`). docs/protocol.md, "Media (socket.io)", lists payloads,
results, pushed events and codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, model_validator
from sqlmodel import select

from media import Peer, ServerOffer
from rooms import meetings
from rooms.errors import Conflict, Forbidden, Invalid, NotFound
from rooms.meetings import MeetingAccess
from rooms.models import MeetingMember, MeetingStatus, Site, User
from rooms.permissions import MEETING_PERMISSIONS, Action
from server.conference.config import (
    MAX_ACTIVE_CONSUMERS,
    MAX_PEERS_PER_USER,
    MAX_SDP_BYTES,
    MAX_SUBSCRIBE_IDS,
)
from server.conference.hub import MediaHub
from server.conference.keys import MEDIA
from server.conference.member import MediaMember
from server.conference.turn import client_ice_servers
from server.conference.views import offer_dict
from server.core import keys
from server.core.auth import current_user
from server.core.http_util import int_id
from server.core.realtime import EventContext, EventSchema, Realtime, meeting_room

SourceName = Literal["mic", "camera", "screen", "screen-audio"]
KindName = Literal["audio", "video"]
Id = Field(min_length=1, max_length=64)


class MeetingRef(EventSchema):
    meeting_id: int


class Publish(EventSchema):
    meeting_id: int
    sdp: str = Field(min_length=1, max_length=MAX_SDP_BYTES)
    sources: dict[str, SourceName] | None = Field(default=None, max_length=32)


class Subscribe(EventSchema):
    meeting_id: int
    producer_ids: list[str] = Field(min_length=1, max_length=MAX_SUBSCRIBE_IDS)


class ConsumerRef(EventSchema):
    meeting_id: int
    consumer_id: str = Id


class ProducerRef(EventSchema):
    meeting_id: int
    producer_id: str = Id


class Layers(EventSchema):
    """The layer a tile needs of a producer this connection subscribes to."""

    meeting_id: int
    producer_id: str = Id
    want: Literal["high", "low", "off"]


class Answer(EventSchema):
    meeting_id: int
    sdp: str = Field(min_length=1, max_length=MAX_SDP_BYTES)


class ChairTarget(EventSchema):
    """Exactly one of a person (`user_id`), a site (`site_id`) or the publisher of a
    producer (`producer_id`: how a person at another cascade node is targeted; `kind`
    is then the producer's)."""

    meeting_id: int
    user_id: int | None = None
    site_id: int | None = None
    producer_id: str | None = Field(default=None, min_length=1, max_length=128)
    kind: KindName = "audio"

    @model_validator(mode="after")
    def _one_target(self) -> ChairTarget:
        if [self.user_id, self.site_id, self.producer_id].count(None) != 2:
            raise ValueError("give exactly one of user_id, site_id or producer_id")
        return self


class UserRef(EventSchema):
    meeting_id: int
    user_id: int


class FloorRef(EventSchema):
    """`user_id` (None: nobody holds the floor), or `peer_id` for a person at a node below."""

    meeting_id: int
    user_id: int | None = None
    peer_id: str | None = Field(default=None, min_length=1, max_length=64)


def _hub(ctx: EventContext) -> MediaHub:
    return ctx.app[MEDIA]


async def _access(ctx: EventContext, meeting_id: int, action: Action) -> MeetingAccess:
    """`require` in a short session. A connection that is no longer a member loses its peer."""
    async with ctx.db.session() as s:
        try:
            return await meetings.require(s, ctx.user, meeting_id, action)
        except NotFound:
            member = _hub(ctx).member(ctx.sid)
            if member is not None and member.meeting_id == meeting_id:
                await _hub(ctx).close_member(member, "removed")
            raise


async def _member(ctx: EventContext, meeting_id: int,
                  action: Action = Action.view) -> MediaMember:
    await _access(ctx, meeting_id, action)
    member = _hub(ctx).member(ctx.sid)
    if member is None or member.meeting_id != meeting_id:
        raise Conflict("join this meeting's media first (media:join)", code="not_joined")
    return member


async def _renegotiate(ctx: EventContext, meeting_id: int,
                       step: Callable[[Peer], Awaitable[ServerOffer | None]]) -> dict[str, Any]:
    """A step on the member's own peer that may end in a new offer: acked with that offer."""
    member = await _member(ctx, meeting_id)
    return {"offer": offer_dict(await step(_hub(ctx).peer(member)))}


async def _site_of(ctx: EventContext, user: User) -> Site | None:
    async with ctx.db.session() as s:
        if user.site_id is not None:
            return await s.get(Site, user.site_id)
        if user.unit_id is None:
            return None
        rows = await s.exec(select(Site).where(Site.unit_id == user.unit_id,
                                               Site.active)
                            .order_by(Site.id))  # type: ignore[arg-type]
        return rows.first()


def register(rt: Realtime) -> None:
    _register_session(rt)
    _register_negotiation(rt)
    _register_own_controls(rt)
    _register_chair(rt)
    rt.on_disconnect(lambda sid: rt.app[MEDIA].disconnect(sid))


def _register_session(rt: Realtime) -> None:
    @rt.on("media:config", MeetingRef)
    async def config(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        access = await _access(ctx, p.meeting_id, Action.view)
        return _config(ctx, access)

    @rt.on("media:join", MeetingRef)
    async def join(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        access = await _access(ctx, p.meeting_id, Action.view)
        hub = _hub(ctx)
        if access.meeting.status != MeetingStatus.open:
            raise Conflict("the video conference runs while the meeting is open",
                           code="meeting_not_open")
        room = hub.find(p.meeting_id)
        if room is not None and room.is_banned(ctx.user.id):
            raise Forbidden("the chair removed you from this meeting's video; ask the chair "
                            "to let you back", code="removed")
        assert ctx.user.id is not None
        mine = room.devices_of(ctx.user.id, ctx.sid) if room is not None else []
        if len(mine) >= MAX_PEERS_PER_USER:
            raise Conflict(f"you are in this meeting's video on {len(mine)} devices already; "
                           "leave on one first", code="too_many")
        site = await _site_of(ctx, ctx.user)
        member = await hub.add_member(ctx.sid, p.meeting_id, ctx.user, access.role, site)
        await ctx.sio.enter_room(ctx.sid, meeting_room(p.meeting_id))
        room = hub.room(p.meeting_id)
        return {**_config(ctx, access), "peer_id": member.peer_id, "me": member.peer_dict(),
                "peers": room.peers(), "producers": room.producers(),
                "locks": room.locks.view(), "floor": room.floor,
                "active_speaker": room.active_speaker()}

    @rt.on("media:leave", MeetingRef)
    async def leave(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        member = await _member(ctx, p.meeting_id)
        await _hub(ctx).close_member(member)
        return {"left": True}

    @rt.on("media:producers", MeetingRef)
    async def producers(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        await _member(ctx, p.meeting_id)
        room = _hub(ctx).room(p.meeting_id)
        return {"producers": room.producers(), "peers": room.peers()}


def _config(ctx: EventContext, access: MeetingAccess) -> dict[str, Any]:
    allowed = MEETING_PERMISSIONS[access.role]
    assert ctx.user.id is not None
    # iceServers per user: turn:/turns: URLs carry this user's time-limited credential.
    rtc = {**_hub(ctx).sfu.client_configuration(),
           "iceServers": client_ice_servers(ctx.app[keys.SETTINGS], ctx.user.id)}
    return {"rtc_configuration": rtc,
            "role": access.role.value,
            "can_publish": Action.publish_media in allowed,
            "can_chair": Action.chair_media in allowed,
            "can_see_stats": Action.manage in allowed,
            "limits": {"max_sdp_bytes": MAX_SDP_BYTES, "max_subscribe_ids": MAX_SUBSCRIBE_IDS,
                       "max_active_consumers": MAX_ACTIVE_CONSUMERS}}


def _register_negotiation(rt: Realtime) -> None:
    @rt.on("media:publish", Publish)
    async def publish(ctx: EventContext, p: Publish) -> dict[str, Any]:
        member = await _member(ctx, p.meeting_id, Action.publish_media)
        hub = _hub(ctx)
        result = await hub.peer(member).publish(p.sdp, p.sources)
        added = {info.id for info in result.added}
        return {"sdp": result.sdp, "removed": result.removed,
                "added": [d for d in hub.room(p.meeting_id).producers() if d["id"] in added]}

    @rt.on("media:subscribe", Subscribe)
    async def subscribe(ctx: EventContext, p: Subscribe) -> dict[str, Any]:
        hub = _hub(ctx)
        early = hub.member(ctx.sid)  # rate limited before any database work
        if early is not None and early.meeting_id == p.meeting_id and not early.subscribes.take():
            raise Conflict("too many subscribe requests; batch producer ids and retry in a "
                           "second", code="rate_limited")
        member = await _member(ctx, p.meeting_id)
        peer = hub.peer(member)
        ids = list(dict.fromkeys(p.producer_ids))
        await hub.room(member.meeting_id).ensure_producers(ids)  # pulls remote ones over a link
        consumed = {c.producer.id for c in peer.consumers}
        new = [pid for pid in ids if pid not in consumed]
        if len(peer.consumers) + len(new) > MAX_ACTIVE_CONSUMERS:
            raise Conflict(f"at most {MAX_ACTIVE_CONSUMERS} streams at once; unsubscribe some "
                           "first", code="too_many")
        if peer.media_sections_needed(len(new)) > peer.router.config.max_media_sections:
            raise Conflict("too many closed streams are still being renegotiated; answer "
                           "the pending offer and retry", code="too_many")
        subscription = await peer.subscribe(*ids)
        return {"consumers": [
            {"id": c.id, "mid": c.mid, "producer_id": c.producer_id,
             "producer_peer_id": c.producer_peer_id, "kind": c.kind.value,
             "source": c.source.value, "stream_id": c.stream_id}
            for c in subscription.consumers], "offer": offer_dict(subscription.offer)}

    @rt.on("media:unsubscribe", ConsumerRef)
    async def unsubscribe(ctx: EventContext, p: ConsumerRef) -> dict[str, Any]:
        return await _renegotiate(ctx, p.meeting_id, lambda peer: peer.unsubscribe(p.consumer_id))

    @rt.on("media:layers", Layers)
    async def layers(ctx: EventContext, p: Layers) -> dict[str, Any]:
        member = await _member(ctx, p.meeting_id)
        peer = _hub(ctx).peer(member)
        consumer = next((c for c in peer.consumers if c.producer.id == p.producer_id
                         and not c.closed), None)
        if consumer is None:
            raise NotFound(f"no consumer of producer {p.producer_id}")
        peer.set_wanted_layer(consumer.id, p.want)
        return {"producer_id": p.producer_id, "want": p.want}

    @rt.on("media:answer", Answer)
    async def answer(ctx: EventContext, p: Answer) -> dict[str, Any]:
        return await _renegotiate(ctx, p.meeting_id, lambda peer: peer.set_answer(p.sdp))

    @rt.on("media:restart-ice", MeetingRef)
    async def restart_ice(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        return await _renegotiate(ctx, p.meeting_id, lambda peer: peer.restart_ice())


def _register_own_controls(rt: Realtime) -> None:
    @rt.on("media:mute", ProducerRef)
    async def mute(ctx: EventContext, p: ProducerRef) -> dict[str, Any]:
        member = await _member(ctx, p.meeting_id)
        return _hub(ctx).room(p.meeting_id).self_pause(member, p.producer_id, True)

    @rt.on("media:unmute", ProducerRef)
    async def unmute(ctx: EventContext, p: ProducerRef) -> dict[str, Any]:
        member = await _member(ctx, p.meeting_id, Action.publish_media)
        return _hub(ctx).room(p.meeting_id).self_pause(member, p.producer_id, False)


async def _check_target(ctx: EventContext, meeting_id: int, user_id: int | None,
                        site_id: int | None) -> None:
    """A chair may target members of the meeting and its invited sites only."""
    async with ctx.db.session() as s:
        if user_id is not None:
            user = await s.get(User, user_id)
            if user is None or await meetings.role_in_meeting(s, user, meeting_id) is None:
                raise NotFound(f"user {user_id} is not a member of this meeting")
        elif site_id is not None:
            rows = await s.exec(select(MeetingMember).where(
                MeetingMember.meeting_id == meeting_id, MeetingMember.site_id == site_id))
            room = _hub(ctx).find(meeting_id)
            present = room is not None and room.site_present(site_id)
            if rows.first() is None and not present:
                raise NotFound(f"site {site_id} is not in this meeting")


def _register_chair(rt: Realtime) -> None:
    @rt.on("media:chair-mute", ChairTarget)
    async def chair_mute(ctx: EventContext, p: ChairTarget) -> dict[str, Any]:
        await _access(ctx, p.meeting_id, Action.chair_media)
        room = _hub(ctx).room(p.meeting_id)
        if p.producer_id is not None:
            return await room.chair_producer(p.producer_id, lock=True)
        await _check_target(ctx, p.meeting_id, p.user_id, p.site_id)
        if p.user_id is not None:
            users, paused = {p.user_id}, room.locks.lock([p.user_id], p.kind)
        else:
            assert p.site_id is not None
            users, paused = room.lock_site(p.site_id, p.kind)
        return {"kind": p.kind, "user_ids": sorted(users), "producer_ids": paused}

    @rt.on("media:chair-allow", ChairTarget)
    async def chair_allow(ctx: EventContext, p: ChairTarget) -> dict[str, Any]:
        await _access(ctx, p.meeting_id, Action.chair_media)
        room = _hub(ctx).room(p.meeting_id)
        if p.producer_id is not None:
            return await room.chair_producer(p.producer_id, lock=False)
        if p.user_id is not None:
            lifted = room.locks.allow([p.user_id], p.kind)
        else:
            assert p.site_id is not None
            lifted = room.allow_site(p.site_id, p.kind)
        return {"kind": p.kind, "user_ids": sorted(lifted)}

    @rt.on("media:mute-all", MeetingRef)
    async def mute_all(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        await _access(ctx, p.meeting_id, Action.chair_media)
        return {"kind": "audio", **await _hub(ctx).room(p.meeting_id).mute_all()}

    @rt.on("media:floor", FloorRef)
    async def give_floor(ctx: EventContext, p: FloorRef) -> dict[str, Any]:
        await _access(ctx, p.meeting_id, Action.chair_media)
        room = _hub(ctx).room(p.meeting_id)
        if p.peer_id is not None:
            return {"holder": room.give_floor_to_peer(p.peer_id)}
        if p.user_id is not None:
            await _check_target(ctx, p.meeting_id, p.user_id, None)
        return {"holder": room.set_floor(p.user_id)}

    @rt.on("media:remove", UserRef)
    async def remove(ctx: EventContext, p: UserRef) -> dict[str, Any]:
        await _access(ctx, p.meeting_id, Action.chair_media)
        if p.user_id == ctx.user.id:
            raise Invalid("you cannot remove yourself; use media:leave")
        await _check_target(ctx, p.meeting_id, p.user_id, None)
        peer_ids = await _hub(ctx).room(p.meeting_id).remove(p.user_id)
        return {"user_id": p.user_id, "peer_ids": peer_ids}

    @rt.on("media:readmit", UserRef)
    async def readmit(ctx: EventContext, p: UserRef) -> dict[str, Any]:
        await _access(ctx, p.meeting_id, Action.chair_media)
        room = _hub(ctx).find(p.meeting_id)
        if room is not None:
            room.readmit(p.user_id)
        return {"user_id": p.user_id}


# --- REST: GET /api/meetings/{id}/media/stats -------------------------------------------

routes = web.RouteTableDef()


@routes.get("/api/meetings/{meeting_id}/media/stats")
async def media_stats(request: web.Request) -> web.Response:
    """Per-connection media statistics of a meeting: chair and secretary only."""
    user = current_user(request)
    meeting_id = int_id(request, "meeting_id")
    async with request.app[keys.DB].session() as s:
        await meetings.require(s, user, meeting_id, Action.manage)
    return web.json_response(request.app[MEDIA].meeting_stats(meeting_id))

