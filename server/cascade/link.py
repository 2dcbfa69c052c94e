"""Cascade node links: a child node (ward, city) keeps one signaling link to its
parent (city, province) and relays meetings' media over media/link.py.

Signaling is socket.io on the namespace ``/node``:

* The child connects with ``auth = {"unit", "token", "path"}``. ``token`` is
  ``<unix time>.<hex HMAC-SHA256(secret, "<unit>|<unix time>")>`` (the secret
  itself never crosses the wire; TLS in production). ``path`` is the child's
  own unit.
* The parent refuses, with a logged reason and no state change: an unknown
  unit, a revoked or wrong credential, a stale token, a child whose unit is
  on the parent's own path to the root (a loop in configured parents), or a
  unit that already has a live link.
* ``hello`` (child -> parent) returns the parent's path to the root; the
  child refuses a parent whose path contains itself.
* ``join`` {meeting} (child -> parent): both ends create their link end for
  that meeting (a `media.link.LinkEnd` in each router).
* ``link`` {meeting, op, data} (either way, with an ack): one request of the
  media link protocol (catalog / pull / offer / release), answered by the
  other end's `LinkEnd.handle`.
* ``ping`` (child -> parent): round-trip time for the admin view.

* ``meetings`` / ``headcounts`` (child -> parent): what the parent offers this child;
  the child's subtree's attendance per meeting (within the seats each meeting allots it).

Every event on ``/node`` goes through one dispatcher (`NodeCascade._dispatch`, and
`ParentLink._on_link` on the child's side): a strict schema per event (`NodeSchema`), then
the child's scope, checked against the invitations at the moment the event arrives: every
meeting key a payload names (fields typed `MeetingKey`) must be a live meeting that invites
the child now (`MeetingDirectory.out_of_scope`). Acknowledgements are
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message"}}``; a
refused event changes nothing, and a withdrawn invitation also removes the child's link end
for that meeting.

Every request from a child goes through a token bucket; a link that floods is
refused event by event, and disconnected once it keeps flooding. A parent's
requests to a child have a timeout (LinkLimits.request_timeout_s), so a slow
child never blocks the parent. The child reconnects with backoff (0.25 s
doubling, capped at 1 s) and, once connected, rejoins its meetings and
re-pulls what its subscribers were watching.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar

import aiohttp
import socketio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from media import SFU
from media.errors import NotFoundError
from media.link import MAX_CATALOG, MAX_IDS, Cascade, LinkEnd, LinkLimits
from media.link_transport import LinkTransport
from media.ratelimit import TokenBucket
from media.transport import WebRtcTransport
from media.types import Direction
from server.core.settings import NodeConfigError, NodeSettings

log = logging.getLogger(__name__)

NAMESPACE = "/node"
TOKEN_MAX_SKEW_S = 120
MAX_MEETINGS_PER_LINK = 256
FLOOD_STRIKES = 50  # refused events before a flooding link is dropped
PING_INTERVAL_S = 2.0  # RTT and meeting directory refresh, child -> parent
SCOPE_SWEEP_S = 2.0  # how soon a withdrawn invitation closes a joined meeting's link end
LOGGED_REFUSALS = 20  # per link, then every 1000th: a hostile child cannot flood the log
MAX_SDP_CHARS = 512_000
# What a token is, before any arithmetic: "<unix time>.<64 hex digits>", ASCII only
# (hmac.compare_digest raises TypeError on a non-ASCII str, int() accepts other scripts'
# digits and "1_000").
TOKEN = re.compile(r"[0-9]{1,12}\.[0-9a-f]{64}", re.ASCII)


def make_token(unit: str, secret: str, now: float | None = None) -> str:
    stamp = int(time.time() if now is None else now)
    mac = hmac.new(secret.encode(), f"{unit}|{stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


def check_token(unit: str, token: Any, secret: str, now: float | None = None) -> str | None:
    """None if valid, else the reason. Never raises, whatever `token` is."""
    if not isinstance(token, str) or len(token) > 80 or not TOKEN.fullmatch(token):
        return "malformed token"
    stamp_text, _, mac = token.partition(".")
    stamp = int(stamp_text)
    if abs((time.time() if now is None else now) - stamp) > TOKEN_MAX_SKEW_S:
        return "stale token (check the clocks)"
    want = hmac.new(secret.encode(), f"{unit}|{stamp}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want.encode(), mac.encode()):
        return "wrong credential"
    return None


def _shown(value: Any) -> str:
    """A client-sent value as it may appear in a log line or the admin view: bounded."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


# -- /node payloads ------------------------------------------------------------------------

class NodeError(Exception):
    """A /node event refused: acknowledged ``{"ok": false, "error": {"code", "message"}}``,
    changing nothing."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _Scoped:
    """Marks a field holding a meeting key: the dispatcher checks every such value against
    the child's invitations before the handler runs."""


SCOPED = _Scoped()
# "<owner node unit>/<owner's meeting id>" (units as rooms.meeting_nodes.UNIT).
MeetingKey = Annotated[str, Field(min_length=3, max_length=84,
                                  pattern=r"^[\w:.\-]{1,64}/[0-9]{1,18}$"), SCOPED]
_KEY_NAMES = frozenset({"meeting", "meetings", "key", "keys", "meeting_id"})


class NodeSchema(BaseModel):
    """Base of every /node payload: unknown fields and wrong types are errors (as
    server/core/realtime.py's EventSchema), and `meeting_keys()` finds every meeting it names."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def meeting_keys(self) -> set[str]:
        found: set[str] = set()
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if SCOPED in info.metadata:
                found.add(value)
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, NodeSchema):
                    found |= item.meeting_keys()
        return found

    @classmethod
    def check_scoped(cls) -> None:
        """Registration-time guard: a field named like a meeting must be a MeetingKey, so a
        new event cannot name a meeting the dispatcher would not check."""
        for name, info in cls.model_fields.items():
            if name in _KEY_NAMES and SCOPED not in info.metadata:
                raise TypeError(f"{cls.__name__}.{name} names a meeting: type it MeetingKey")
            for arg in getattr(info.annotation, "__args__", ()) + (info.annotation,):
                if isinstance(arg, type) and issubclass(arg, NodeSchema):
                    arg.check_scoped()


class Empty(NodeSchema):
    """``hello``, ``meetings``: no fields."""


class Ping(NodeSchema):
    rtt_ms: float | None = Field(default=None, ge=0, le=60_000)


class Join(NodeSchema):
    meeting: MeetingKey


class HeadcountEntry(NodeSchema):
    key: MeetingKey
    members: int = Field(ge=0, le=10_000)
    present: int = Field(ge=0, le=10_000)

    @model_validator(mode="after")
    def _present_within_members(self) -> HeadcountEntry:
        if self.present > self.members:
            raise ValueError("present must not exceed members")
        return self


class Headcounts(NodeSchema):
    """The child's complete report: one entry per meeting, each meeting once."""

    counts: list[HeadcountEntry] = Field(max_length=500)

    @model_validator(mode="after")
    def _each_meeting_once(self) -> Headcounts:
        if len({c.key for c in self.counts}) != len(self.counts):
            raise ValueError("a meeting is reported more than once")
        return self


# The media link's requests (media/link.py), checked here before LinkEnd.handle sees them.
_Id = Annotated[str, Field(min_length=1, max_length=128)]


class _CatalogData(NodeSchema):
    producers: list[dict[str, Any]] = Field(max_length=MAX_CATALOG)
    peers: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_CATALOG)


class _IdsData(NodeSchema):
    ids: list[_Id] = Field(max_length=MAX_IDS)


class _OfferedConsumer(NodeSchema):
    mid: str = Field(min_length=1, max_length=32)
    producer_id: _Id
    producer_peer_id: _Id
    source: str = Field(min_length=1, max_length=32)


class _OfferData(NodeSchema):
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    consumers: list[_OfferedConsumer] = Field(max_length=MAX_CATALOG)


class _ControlData(NodeSchema):
    action: Literal["lock", "allow", "mute-all", "floor"]
    producer_id: _Id | None = None
    holder: dict[str, Any] | None = None


_LINK_DATA: dict[str, type[NodeSchema]] = {
    "catalog": _CatalogData, "pull": _IdsData, "release": _IdsData, "offer": _OfferData,
    "reset": Empty, "control": _ControlData}


class LinkRequest(NodeSchema):
    """``link``: one media link request; `data` as that op's schema requires."""

    meeting: MeetingKey
    op: Literal["catalog", "pull", "offer", "release", "reset", "control"]
    data: dict[str, Any]

    @model_validator(mode="after")
    def _data_fits_op(self) -> LinkRequest:
        _LINK_DATA[self.op].model_validate_json(json.dumps(self.data))
        return self


P = TypeVar("P", bound=NodeSchema)


def _ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def _validate(schema: type[P], data: Any) -> P:
    """`data` checked as the JSON it arrived as (strict types); NodeError if it is not."""
    try:
        text = json.dumps(data if data is not None else {})
    except (TypeError, ValueError, RecursionError):
        raise NodeError("invalid", "payload: not JSON (binary or circular)") from None
    try:
        return schema.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise NodeError("invalid", f"{where}: {first['msg']}"[:200]) from None


def _unwrap(reply: Any) -> dict[str, Any]:
    """The other end's acknowledgement of a `link` request, as LinkEnd.request wants it:
    the result, or ``{"error": message}``."""
    if isinstance(reply, dict) and reply.get("ok") is True and isinstance(reply.get("result"),
                                                                          dict):
        return reply["result"]  # type: ignore[no-any-return]
    error = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return {"error": f"{error.get('code')}: {error['message']}"}
    return {"error": "malformed reply"}


def _result(reply: Any, what: str) -> Any:
    """The result of a parent's acknowledgement; ConnectionError if it refused."""
    if isinstance(reply, dict) and reply.get("ok") is True:
        return reply.get("result")
    raise ConnectionError(f"parent refused {what}: {_shown(reply)}")


@dataclass(frozen=True)
class _NodeEvent(Generic[P]):
    schema: type[P]
    handler: Callable[[ChildLink, P], Awaitable[Any]]


@dataclass
class ChildLink:
    sid: str
    unit: str
    bucket: TokenBucket
    transport: LinkTransport  # the link's one WebRTC transport, for all its meetings
    meetings: set[str] = field(default_factory=set)
    strikes: int = 0
    refused: int = 0  # events refused (schema, scope, limits)
    rtt_ms: float | None = None
    connected_at: float = field(default_factory=time.time)


class MeetingDirectory:
    """Which meetings a link may carry. A meeting's link key is
    ``"<owner node unit>/<owner's meeting id>"`` on every node. The server's directory
    (server/cascade/meetings.py) reads them from the database. This base offers nothing and
    lets a child act on nothing; `OpenDirectory` (tests, benchmarks) lets it act on any."""

    async def router_for(self, key: str) -> str | None:
        """The local router id of a meeting a child asks to join; None if unknown here."""
        return None

    async def out_of_scope(self, child: str, keys: set[str]) -> set[str]:
        """Of `keys`, those the child `child` may not act on now: not a live meeting here,
        or one that does not invite it (any more)."""
        return set(keys)

    async def offered(self, child: str) -> list[dict[str, Any]]:
        """Meetings this node offers the child `child`: ``{"key", "title", ...}``."""
        return []

    async def mirror(self, offered: list[dict[str, Any]]) -> None:
        """The parent's offered meetings, to mirror locally."""

    async def headcounts(self) -> list[dict[str, Any]]:
        """Attendance of this node's subtree per mirrored meeting, for the parent:
        ``{"key", "members", "present"}``."""
        return []

    async def report(self, child: str, counts: list[HeadcountEntry]) -> None:
        """A child's complete headcounts (``[]``: it left, forget them), all within its
        scope already; NodeError (changing nothing) if they break the rule."""


class OpenDirectory(MeetingDirectory):
    """Tests and benchmarks without a database: a key is a router of the same name, and
    every child may act on every meeting."""

    async def router_for(self, key: str) -> str | None:
        return key

    async def out_of_scope(self, child: str, keys: set[str]) -> set[str]:
        return set()


class NodeCascade:
    """The cascade of one node: its meetings' link ends, its children (as a
    parent) and its link to its parent (as a child)."""

    def __init__(self, settings: NodeSettings, sfu: SFU, limits: LinkLimits | None = None,
                 child_rate_per_s: float = 200.0, child_burst: float = 400.0,
                 directory: MeetingDirectory | None = None) -> None:
        self.settings = settings
        self.sfu = sfu
        self.limits = limits or LinkLimits()
        self.directory = directory or MeetingDirectory()
        self.cascades: dict[str, Cascade] = {}  # link key -> cascade
        self.routers: dict[str, str] = {}  # link key -> local router id (default: the key)
        self._joins: set[asyncio.Future[None]] = set()
        self._disconnects: set[asyncio.Future[None]] = set()
        self.credentials: dict[str, str] = dict(settings.children)
        self.children: dict[str, ChildLink] = {}  # sid -> link
        self.path: list[str] = [settings.unit]  # to the root, learned from the parent
        self.refusals: list[str] = []
        self._rate = (child_rate_per_s, child_burst)
        self.sio: socketio.AsyncServer | None = None
        self.parent: ParentLink | None = None
        self.events: dict[str, _NodeEvent[Any]] = {}
        self._sweeper: asyncio.Future[None] | None = None

    # -- meetings ------------------------------------------------------------------
    def cascade(self, meeting: str) -> Cascade:
        found = self.cascades.get(meeting)
        if found is None or found.router.closed:
            router = self.sfu.router(self.routers.get(meeting, meeting))
            found = self.cascades[meeting] = Cascade(router, self.settings.unit, self.limits)
        return found

    def owns(self, key: str) -> bool:
        return key.startswith(f"{self.settings.unit}/")

    def open(self, key: str, router_id: str) -> Cascade:
        """The cascade of a local meeting; a meeting owned upstream is also joined on
        the parent link (in the background: a child never waits on its parent here)."""
        self.routers[key] = router_id
        cascade = self.cascade(key)
        parent = self.parent
        if parent is not None and not self.owns(key) and key not in parent.meetings:
            task = asyncio.ensure_future(parent.join(key))
            self._joins.add(task)
            task.add_done_callback(self._joined)
        return cascade

    def _joined(self, task: asyncio.Future[None]) -> None:
        self._joins.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cascade: joining upstream failed (retried on reconnect): %s",
                        task.exception())

    async def close(self) -> None:
        for task in list(self._joins):
            task.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self.parent is not None:
            await self.parent.stop()
        for cascade in list(self.cascades.values()):
            await cascade.close()

    # -- admin --------------------------------------------------------------------------
    def rotate(self, unit: str, secret: str) -> None:
        """New credential for a child unit; its live link must reconnect with it."""
        if len(secret) < 16:
            raise NodeConfigError("a node secret needs 16+ characters")
        self.credentials[unit] = secret
        self._drop_unit(unit, "credential rotated")

    def revoke(self, unit: str) -> None:
        self.credentials.pop(unit, None)
        self._drop_unit(unit, "credential revoked")

    def _drop_sid(self, sid: str, reason: str) -> None:
        link = self.children.get(sid)
        if link is not None and self.sio is not None:
            log.warning("cascade: dropping link of %s: %s", link.unit, reason)
            self._disconnect(sid)

    def _disconnect(self, sid: str) -> None:
        assert self.sio is not None
        task = asyncio.ensure_future(self.sio.disconnect(sid, namespace=NAMESPACE))
        self._disconnects.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._disconnects.discard)

    def _drop_unit(self, unit: str, reason: str) -> None:
        for link in list(self.children.values()):
            if link.unit == unit and self.sio is not None:
                log.warning("cascade: dropping link of %s: %s", unit, reason)
                self._disconnect(link.sid)

    def view(self) -> dict[str, Any]:
        """Admin view: this node, its parent link and child links with RTT,
        bitrate and the streams each carries."""
        def streams(name: str) -> dict[str, Any]:
            carried: dict[str, Any] = {"imported": 0, "exported": 0, "bitrate_in_bps": 0,
                                       "bitrate_out_bps": 0}
            transports: dict[int, WebRtcTransport] = {}  # of the link, all meetings
            halves: set[str] = set()
            for cascade in self.cascades.values():
                end = cascade.links.get(name)
                if end is None or end.closed:
                    continue
                carried["imported"] += len(end.imported)
                carried["exported"] += len(end.exported())
                try:
                    peer = cascade.router.peer(end.peer_id)
                except NotFoundError:
                    continue
                for direction, half in ((Direction.SEND, "import"), (Direction.RECV, "export")):
                    transport = peer.transport(direction)
                    if transport is not None and not transport.closed:
                        transports[id(transport)] = transport
                        halves.add(half)
            for transport in transports.values():
                stats = transport.stats()
                carried["bitrate_in_bps"] += stats.bitrate_in_bps
                carried["bitrate_out_bps"] += stats.bitrate_out_bps
            # One ICE/DTLS/SRTP transport per link carries every meeting both ways.
            carried["media_transports"] = len(transports)
            carried["dtls_handshakes"] = sum(t.handshakes for t in transports.values())
            carried["directions"] = sorted(halves)
            return carried

        parent = None
        if self.parent is not None:
            parent = {"url": self.settings.parent_url, "unit": self.parent.parent_unit,
                      "state": self.parent.state, "rtt_ms": self.parent.rtt_ms,
                      "reconnects": self.parent.reconnects,
                      **(streams(self.parent.parent_unit) if self.parent.parent_unit else {})}
        children = [{"unit": c.unit, "state": "connected", "rtt_ms": c.rtt_ms,
                     "meetings": sorted(c.meetings), **streams(c.unit)}
                    for c in self.children.values()]
        known = sorted(set(self.credentials) - {c.unit for c in self.children.values()})
        children += [{"unit": u, "state": "disconnected"} for u in known]
        return {"unit": self.settings.unit, "path": self.path, "parent": parent,
                "children": children, "refusals": self.refusals[-20:]}

    # -- parent side: the /node namespace ----------------------------------------------------
    def attach(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        sio.on("connect", self._on_connect, namespace=NAMESPACE)
        sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        self._event("hello", Empty, self._on_hello)
        self._event("ping", Ping, self._on_ping)
        self._event("meetings", Empty, self._on_meetings)
        self._event("join", Join, self._on_join)
        self._event("link", LinkRequest, self._on_link)
        self._event("headcounts", Headcounts, self._on_headcounts)

    def _event(self, name: str, schema: type[P],
               handler: Callable[[ChildLink, P], Awaitable[Any]]) -> None:
        """Every /node event is registered here, so every one goes through `_dispatch`."""
        assert self.sio is not None
        schema.check_scoped()
        self.events[name] = _NodeEvent(schema, handler)

        async def dispatch(sid: str, data: Any = None) -> dict[str, Any]:
            return await self._dispatch(name, sid, data)
        self.sio.on(name, dispatch, namespace=NAMESPACE)

    async def _dispatch(self, name: str, sid: str, data: Any) -> dict[str, Any]:
        """The one path of a child's event: linked? within its budget? a valid payload?
        every meeting it names invites the child now? Then the handler; else an error
        acknowledgement, and nothing changed."""
        event = self.events[name]
        link = self.children.get(sid)
        try:
            if link is None:
                raise NodeError("not_authenticated", "this connection is not a linked node")
            if not link.bucket.take():
                link.strikes += 1
                if link.strikes == FLOOD_STRIKES:
                    self._drop_sid(sid, "keeps flooding events")
                raise NodeError("rate_limited", "rate limit exceeded; slow down")
            payload = _validate(event.schema, data)
            keys = payload.meeting_keys()
            outside = await self.directory.out_of_scope(link.unit, keys) if keys else set()
            if outside:
                for key in outside & link.meetings:  # an invitation withdrawn since the join
                    await self._leave(link, key, "no longer invited")
                raise NodeError("not_found", f"meeting {_shown(min(outside))} is not offered "
                                             f"to {link.unit}")
            return _ok(await event.handler(link, payload))
        except NodeError as exc:
            self._note_refusal(link, name, exc)
            return _error(exc.code, exc.message)
        except Exception:
            log.exception("cascade: /node event %s from %s failed", name,
                          link.unit if link else sid)
            return _error("internal", "internal error; the event was not applied")

    def _note_refusal(self, link: ChildLink | None, name: str, exc: NodeError) -> None:
        """Logged (bounded per link) and kept for the admin view."""
        if link is None:
            return
        link.refused += 1
        message = f"refused {name} from {link.unit}: {exc.code}: {exc.message}"
        if link.refused <= LOGGED_REFUSALS or link.refused % 1000 == 0:
            log.warning("cascade: %s (%d refused on this link)", message, link.refused)
        if exc.code != "rate_limited":
            self.refusals = (self.refusals + [message])[-50:]

    async def _leave(self, link: ChildLink, key: str, reason: str) -> None:
        """The child may no longer act on this meeting: drop its link end here."""
        link.meetings.discard(key)
        cascade = self.cascades.get(key)
        if cascade is not None and link.unit in cascade.links:
            log.warning("cascade: closing %s's link end of %s: %s", link.unit, key, reason)
            await cascade.remove_link(link.unit)

    async def sweep_scope(self) -> None:
        """Close child link ends of meetings that no longer invite the child (or ended):
        media already flowing stops, not only the next request."""
        for link in list(self.children.values()):
            if link.meetings:
                for key in await self.directory.out_of_scope(link.unit, set(link.meetings)):
                    await self._leave(link, key, "no longer invited")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SCOPE_SWEEP_S)
            try:
                await self.sweep_scope()
            except Exception:
                log.exception("cascade: checking child links' meetings failed")

    def _refuse(self, reason: str, unit: Any = None) -> None:
        message = f"refused node link from {_shown(unit)}: {reason}"
        log.warning("cascade: %s", message)
        self.refusals = (self.refusals + [message])[-50:]
        raise socketio.exceptions.ConnectionRefusedError(reason)

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            self._check_credentials(auth)
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception:  # never a hanging connection, whatever was sent
            log.exception("cascade: checking a node's credentials failed")
            self._refuse("internal error")
        unit = auth["unit"]
        transport = LinkTransport(self.sfu.config, self.sfu.certificate, parent=True,
                                  on_failed=lambda: self._drop_sid(sid, "media transport lost"))
        self.children[sid] = ChildLink(sid, unit, TokenBucket(*self._rate), transport)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep_forever())
        log.info("cascade: child %s linked", unit)

    def _check_credentials(self, auth: Any) -> None:
        """Refuses (ConnectionRefusedError, logged once) unless `auth` is a live child's."""
        if not isinstance(auth, dict):
            self._refuse("no credentials")
        unit, token = auth.get("unit"), auth.get("token")
        if not isinstance(unit, str) or not unit:
            self._refuse("no unit", unit)
        secret = self.credentials.get(unit)
        if secret is None:
            self._refuse("unit is not a child of this node (or was revoked)", unit)
        assert secret is not None
        reason = check_token(unit, token, secret)
        if reason is not None:
            self._refuse(reason, unit)
        if unit in self.path:
            self._refuse(f"loop: {unit} is on this node's path to the root {self.path}", unit)
        if any(c.unit == unit for c in self.children.values()):
            self._refuse("this unit already has a live link", unit)

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        link = self.children.pop(sid, None)
        if link is None:
            return
        log.info("cascade: child %s unlinked", link.unit)
        try:
            await self.directory.report(link.unit, [])  # its people are not here any more
        except Exception:
            log.exception("cascade: forgetting %s's headcounts failed", link.unit)
        for meeting in link.meetings:
            cascade = self.cascades.get(meeting)
            if cascade is not None:
                await cascade.remove_link(link.unit)
        await link.transport.close()

    async def _on_hello(self, link: ChildLink, payload: Empty) -> dict[str, Any]:
        return {"unit": self.settings.unit, "path": self.path}

    async def _on_ping(self, link: ChildLink, payload: Ping) -> dict[str, Any]:
        if payload.rtt_ms is not None:
            link.rtt_ms = payload.rtt_ms  # as the child measured it on its last ping
        return {"t": time.time()}

    async def _on_meetings(self, link: ChildLink, payload: Empty) -> dict[str, Any]:
        return {"meetings": await self.directory.offered(link.unit)}

    async def _on_headcounts(self, link: ChildLink, payload: Headcounts) -> dict[str, Any]:
        await self.directory.report(link.unit, list(payload.counts))
        return {"accepted": len(payload.counts)}

    async def _on_join(self, link: ChildLink, payload: Join) -> dict[str, Any]:
        meeting = payload.meeting
        if meeting not in link.meetings and len(link.meetings) >= MAX_MEETINGS_PER_LINK:
            raise NodeError("too_many", f"at most {MAX_MEETINGS_PER_LINK} meetings per link")
        router_id = await self.directory.router_for(meeting)
        if router_id is None:
            raise NodeError("not_found", f"meeting {meeting} is not live here")
        cascade = self.open(meeting, router_id)
        end = cascade.links.get(link.unit)
        if end is None or end.closed:
            cascade.add_link(link.unit, self._child_request(link.sid, meeting),
                             transport=link.transport)
        link.meetings.add(meeting)
        return {"meeting": meeting}

    def _child_request(self, sid: str, meeting: str) -> Any:
        async def request(op: str, data: dict[str, Any]) -> dict[str, Any]:
            assert self.sio is not None
            try:
                reply = await self.sio.call("link", {"meeting": meeting, "op": op, "data": data},
                                            to=sid, namespace=NAMESPACE,
                                            timeout=self.limits.request_timeout_s)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError) as exc:
                raise ConnectionError(f"child link: {exc}") from None
            return _unwrap(reply)
        return request

    async def _on_link(self, link: ChildLink, payload: LinkRequest) -> dict[str, Any]:
        return await _link_op(self.cascades, link.unit, link.meetings, payload)

    # -- child side ----------------------------------------------------------------------------
    def start_parent_link(self) -> ParentLink | None:
        if not self.settings.parent_url or not self.settings.secret:
            return None
        self.parent = ParentLink(self)
        self.parent.start()
        return self.parent


async def _link_op(cascades: dict[str, Cascade], name: str, joined: set[str],
                   payload: LinkRequest) -> dict[str, Any]:
    """A validated `link` request for a meeting, to that meeting's link end."""
    if payload.meeting not in joined:
        raise NodeError("not_joined", f"meeting {payload.meeting} was not joined on this link")
    cascade = cascades.get(payload.meeting)
    end: LinkEnd | None = cascade.links.get(name) if cascade else None
    if end is None or end.closed:
        raise NodeError("not_joined", f"no link end for meeting {payload.meeting}")
    reply = await end.handle(payload.op, payload.data)
    if "error" in reply:
        raise NodeError("link_refused", str(reply["error"])[:200])
    return reply


class ParentLink:
    """The child's link to its parent: reconnects with backoff, then resyncs."""

    def __init__(self, node: NodeCascade) -> None:
        self.node = node
        self.state = "idle"
        self.parent_unit: str | None = None
        self.rtt_ms: float | None = None
        self.reconnects = 0
        self.meetings: set[str] = set()  # meetings this node relays upstream
        self._reported: list[dict[str, Any]] | None = None  # headcounts the parent has
        self._refused: Any = None  # the parent's last refusal of them, logged once
        self._task: asyncio.Future[None] | None = None
        self._client: socketio.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        # The link's one WebRTC transport (a new one per connection), for all meetings.
        self.transport: LinkTransport | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.disconnect()
        await self._teardown()
        if self._session is not None:
            await self._session.close()
        self.state = "stopped"

    def _http(self) -> aiohttp.ClientSession | None:
        """An HTTP session trusting HOPSO_PARENT_CA (else engine.io's default: system CAs)."""
        ca = self.node.settings.parent_ca
        if ca is not None and self._session is None:
            context = ssl.create_default_context(cafile=str(ca))
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        return self._session

    async def wait_connected(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def join(self, meeting: str) -> None:
        """Relay this meeting upstream (now, and after every reconnect)."""
        self.meetings.add(meeting)
        if self._connected.is_set():
            await self._join(meeting)

    async def _run(self) -> None:
        delay = 0.25
        settings = self.node.settings
        assert settings.parent_url and settings.secret
        while True:
            client = socketio.AsyncClient(reconnection=False, http_session=self._http())
            client.on("link", self._on_link, namespace=NAMESPACE)
            client.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
            client.on("connect_error", self._on_connect_error, namespace=NAMESPACE)
            self._client = client
            self._lost.clear()
            self.transport = LinkTransport(self.node.sfu.config, self.node.sfu.certificate,
                                           parent=False, on_failed=self._media_lost)
            self.state = "connecting"
            try:
                await client.connect(
                    settings.parent_url, namespaces=[NAMESPACE], transports=["websocket"],
                    auth={"unit": settings.unit, "token": make_token(settings.unit,
                                                                     settings.secret)},
                    wait_timeout=3)
                await self._resync(client)
            except (socketio.exceptions.ConnectionError, ConnectionError,
                    TimeoutError, socketio.exceptions.SocketIOError) as exc:
                self.state = f"retrying: {exc}"
                log.info("cascade: parent link to %s failed: %s", settings.parent_url, exc)
                await self._drop(client)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.25
            self.state = "connected"
            self._connected.set()
            pinger = asyncio.ensure_future(self._ping(client))
            await self._lost.wait()
            pinger.cancel()
            self.state = "disconnected"
            self.reconnects += 1
            await self._drop(client)

    async def _drop(self, client: socketio.AsyncClient) -> None:
        self._connected.clear()
        try:
            await client.disconnect()
        except Exception as exc:  # noqa: BLE001 - a dead socket may fail to close
            log.debug("cascade: closing the parent socket: %s", exc)
        await self._teardown()

    async def _teardown(self) -> None:
        """Link down: local media goes on; the meetings' cascades remember what
        was imported and re-pull it when the parent's catalog offers it again."""
        unit = self.parent_unit
        if unit is not None:
            for cascade in self.node.cascades.values():
                await cascade.remove_link(unit)
        if self.transport is not None:
            await self.transport.close()

    def _media_lost(self) -> None:
        """The link's media transport failed: start the whole link again."""
        log.warning("cascade: media transport to the parent lost; reconnecting")
        self._lost.set()

    async def _on_disconnect(self, *_: Any) -> None:
        self._lost.set()

    async def _on_connect_error(self, data: Any = None) -> None:
        log.warning("cascade: cannot link to parent %s: %s",
                    self.node.settings.parent_url, data)

    async def _resync(self, client: socketio.AsyncClient) -> None:
        hello = _result(await client.call("hello", {}, namespace=NAMESPACE, timeout=5), "hello")
        if not isinstance(hello, dict) or not isinstance(hello.get("path"), list):
            raise ConnectionError(f"parent answered hello with {_shown(hello)}")
        path = [str(u) for u in hello["path"]]
        if self.node.settings.unit in path:
            log.error("cascade: loop: parent path %s contains this node", path)
            raise ConnectionError("loop in configured parents")
        self.parent_unit = str(hello.get("unit"))
        self.node.path = [self.node.settings.unit, *path]
        self._reported = None  # a new connection: the parent forgot them
        await self._sync_meetings(client)
        await self._send_headcounts(client)
        for meeting in sorted(self.meetings):
            await self._join(meeting)

    async def _join(self, meeting: str) -> None:
        client, unit = self._client, self.parent_unit
        assert client is not None and unit is not None
        cascade = self.node.cascade(meeting)
        end = cascade.links.get(unit)
        if end is None or end.closed:
            end = cascade.add_link(unit, self._parent_request(client, meeting), push=False,
                                   upstream=True, transport=self.transport)
        reply = await client.call("join", {"meeting": meeting}, namespace=NAMESPACE, timeout=5)
        _result(reply, f"join {meeting}")
        end.push_catalog()

    def _parent_request(self, client: socketio.AsyncClient, meeting: str) -> Any:
        async def request(op: str, data: dict[str, Any]) -> dict[str, Any]:
            try:
                reply = await client.call("link", {"meeting": meeting, "op": op, "data": data},
                                          namespace=NAMESPACE,
                                          timeout=self.node.limits.request_timeout_s)
            except (socketio.exceptions.TimeoutError,
                    socketio.exceptions.SocketIOError) as exc:
                raise ConnectionError(f"parent link: {exc}") from None
            return _unwrap(reply)
        return request

    async def _on_link(self, data: Any = None) -> dict[str, Any]:
        """The parent's `link` request: the same schema; its scope is what we joined."""
        try:
            if self.parent_unit is None:
                raise NodeError("not_joined", "not linked")
            payload = _validate(LinkRequest, data)
            return _ok(await _link_op(self.node.cascades, self.parent_unit, self.meetings,
                                      payload))
        except NodeError as exc:
            log.warning("cascade: refused the parent's link request: %s: %s", exc.code,
                        exc.message)
            return _error(exc.code, exc.message)
        except Exception:
            log.exception("cascade: the parent's link request failed")
            return _error("internal", "internal error; the request was not applied")

    async def _ping(self, client: socketio.AsyncClient) -> None:
        """RTT, and the parent's meetings to mirror, every PING_INTERVAL_S."""
        while True:
            started = time.monotonic()
            try:
                await client.call("ping", {"rtt_ms": self.rtt_ms}, namespace=NAMESPACE,
                                  timeout=5)
                self.rtt_ms = round((time.monotonic() - started) * 1000, 2)
                await self._sync_meetings(client)
                await self._send_headcounts(client)
            except Exception:  # noqa: BLE001 - the disconnect handler decides
                self.rtt_ms = None
            await asyncio.sleep(PING_INTERVAL_S)

    async def _send_headcounts(self, client: socketio.AsyncClient) -> None:
        counts = await self.node.directory.headcounts()
        if counts != self._reported:
            reply = await client.call("headcounts", {"counts": counts}, namespace=NAMESPACE,
                                      timeout=5)
            if isinstance(reply, dict) and reply.get("ok") is True:
                self._reported, self._refused = counts, None
            elif reply != self._refused:  # e.g. more members than the seats allotted here
                log.warning("cascade: the parent refused our headcounts: %s", _shown(reply))
                self._refused = reply  # sent again at the next ping; logged once

    async def _sync_meetings(self, client: socketio.AsyncClient) -> None:
        reply = _result(await client.call("meetings", {}, namespace=NAMESPACE, timeout=5),
                        "meetings")
        if isinstance(reply, dict) and isinstance(reply.get("meetings"), list):
            await self.node.directory.mirror(reply["meetings"])

