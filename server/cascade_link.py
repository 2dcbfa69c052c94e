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
* ``ping`` (either way): round-trip time for the admin view.

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
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio

from media import SFU
from media.errors import NotFoundError
from media.link import Cascade, LinkEnd, LinkLimits
from media.link_transport import LinkTransport
from media.ratelimit import TokenBucket
from media.transport import WebRtcTransport
from media.types import Direction
from server.settings import NodeConfigError, NodeSettings

log = logging.getLogger(__name__)

NAMESPACE = "/node"
TOKEN_MAX_SKEW_S = 120
MAX_MEETINGS_PER_LINK = 256
FLOOD_STRIKES = 50  # refused events before a flooding link is dropped
PING_INTERVAL_S = 2.0  # RTT and meeting directory refresh, child -> parent


def make_token(unit: str, secret: str, now: float | None = None) -> str:
    stamp = int(time.time() if now is None else now)
    mac = hmac.new(secret.encode(), f"{unit}|{stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


def check_token(unit: str, token: Any, secret: str, now: float | None = None) -> str | None:
    """None if valid, else the reason."""
    if not isinstance(token, str) or "." not in token:
        return "malformed token"
    stamp_text, _, mac = token.partition(".")
    try:
        stamp = int(stamp_text)
    except ValueError:
        return "malformed token"
    if abs((time.time() if now is None else now) - stamp) > TOKEN_MAX_SKEW_S:
        return "stale token (check the clocks)"
    want = hmac.new(secret.encode(), f"{unit}|{stamp}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, mac):
        return "wrong credential"
    return None


@dataclass
class ChildLink:
    sid: str
    unit: str
    bucket: TokenBucket
    transport: LinkTransport  # the link's one WebRTC transport, for all its meetings
    meetings: set[str] = field(default_factory=set)
    strikes: int = 0
    rtt_ms: float | None = None
    connected_at: float = field(default_factory=time.time)


class MeetingDirectory:
    """Which meetings a link may carry. A meeting's link key is
    ``"<owner node unit>/<owner's meeting id>"`` on every node. This default (tests,
    benchmarks) maps a key to a router of the same name and offers no meetings; the
    server's (server/node_meetings.py) reads them from the database."""

    async def router_for(self, key: str) -> str | None:
        """The local router id of a meeting a child asks to join; None if unknown here."""
        return key

    async def offered(self, child: str) -> list[dict[str, Any]]:
        """Meetings this node offers the child `child`: ``{"key", "title", ...}``."""
        return []

    async def mirror(self, offered: list[dict[str, Any]]) -> None:
        """The parent's offered meetings, to mirror locally."""

    async def headcounts(self) -> list[dict[str, Any]]:
        """Attendance of this node's subtree per mirrored meeting, for the parent:
        ``{"key", "members", "present"}``."""
        return []

    async def report(self, child: str, counts: list[dict[str, Any]]) -> None:
        """A child's complete headcounts (``[]``: it left, forget them)."""


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
        self.credentials: dict[str, str] = dict(settings.children)
        self.children: dict[str, ChildLink] = {}  # sid -> link
        self.path: list[str] = [settings.unit]  # to the root, learned from the parent
        self.refusals: list[str] = []
        self._rate = (child_rate_per_s, child_burst)
        self.sio: socketio.AsyncServer | None = None
        self.parent: ParentLink | None = None

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
            asyncio.ensure_future(self.sio.disconnect(sid, namespace=NAMESPACE))

    def _drop_unit(self, unit: str, reason: str) -> None:
        for link in list(self.children.values()):
            if link.unit == unit and self.sio is not None:
                log.warning("cascade: dropping link of %s: %s", unit, reason)
                asyncio.ensure_future(self.sio.disconnect(link.sid, namespace=NAMESPACE))

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
        sio.on("hello", self._on_hello, namespace=NAMESPACE)
        sio.on("join", self._on_join, namespace=NAMESPACE)
        sio.on("link", self._on_link, namespace=NAMESPACE)
        sio.on("ping", self._on_ping, namespace=NAMESPACE)
        sio.on("meetings", self._on_meetings, namespace=NAMESPACE)
        sio.on("headcounts", self._on_headcounts, namespace=NAMESPACE)

    def _refuse(self, reason: str, unit: Any = None) -> None:
        message = f"refused node link from {unit!r}: {reason}"
        log.warning("cascade: %s", message)
        self.refusals = (self.refusals + [message])[-50:]
        raise socketio.exceptions.ConnectionRefusedError(reason)

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
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
        transport = LinkTransport(self.sfu.config, self.sfu.certificate, parent=True,
                                  on_failed=lambda: self._drop_sid(sid, "media transport lost"))
        self.children[sid] = ChildLink(sid, unit, TokenBucket(*self._rate), transport)
        log.info("cascade: child %s linked", unit)

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        link = self.children.pop(sid, None)
        if link is None:
            return
        log.info("cascade: child %s unlinked", link.unit)
        await self.directory.report(link.unit, [])  # its people are not here any more
        for meeting in link.meetings:
            cascade = self.cascades.get(meeting)
            if cascade is not None:
                await cascade.remove_link(link.unit)
        await link.transport.close()

    def _child(self, sid: str) -> ChildLink | None:
        link = self.children.get(sid)
        if link is None:
            return None
        if not link.bucket.take():
            link.strikes += 1
            log.warning("cascade: child %s floods events (strike %d)", link.unit, link.strikes)
            if link.strikes >= FLOOD_STRIKES and self.sio is not None:
                asyncio.ensure_future(self.sio.disconnect(sid, namespace=NAMESPACE))
            return None
        return link

    async def _on_hello(self, sid: str, data: Any = None) -> dict[str, Any]:
        if self._child(sid) is None:
            return {"error": "refused"}
        return {"unit": self.settings.unit, "path": self.path}

    async def _on_ping(self, sid: str, data: Any = None) -> dict[str, Any]:
        link = self.children.get(sid)
        rtt = data.get("rtt_ms") if isinstance(data, dict) else None
        if link is not None and isinstance(rtt, (int, float)) and 0 <= rtt <= 60_000:
            link.rtt_ms = float(rtt)  # as the child measured it on its last ping
        return {"t": time.time()}

    async def _on_meetings(self, sid: str, data: Any = None) -> dict[str, Any]:
        link = self._child(sid)
        if link is None:
            return {"error": "refused"}
        return {"meetings": await self.directory.offered(link.unit)}

    async def _on_headcounts(self, sid: str, data: Any = None) -> dict[str, Any]:
        link = self._child(sid)
        counts = data.get("counts") if isinstance(data, dict) else None
        if link is None or not isinstance(counts, list):
            return {"error": "refused" if link is None else "counts must be a list"}
        await self.directory.report(link.unit, counts)
        return {"ok": True}

    async def _on_join(self, sid: str, data: Any = None) -> dict[str, Any]:
        link = self._child(sid)
        if link is None:
            return {"error": "refused"}
        meeting = data.get("meeting") if isinstance(data, dict) else None
        if not isinstance(meeting, str) or not meeting or len(meeting) > 64:
            return {"error": "meeting must be a short string"}
        if meeting not in link.meetings and len(link.meetings) >= MAX_MEETINGS_PER_LINK:
            return {"error": "too many meetings on this link"}
        router_id = await self.directory.router_for(meeting)
        if router_id is None:
            log.warning("cascade: child %s asked for unknown meeting %r", link.unit, meeting)
            return {"error": "unknown meeting"}
        cascade = self.open(meeting, router_id)
        end = cascade.links.get(link.unit)
        if end is None or end.closed:
            cascade.add_link(link.unit, self._child_request(sid, meeting),
                             transport=link.transport)
        link.meetings.add(meeting)
        return {"ok": True}

    def _child_request(self, sid: str, meeting: str) -> Any:
        async def request(op: str, data: dict[str, Any]) -> dict[str, Any]:
            assert self.sio is not None
            try:
                reply = await self.sio.call("link", {"meeting": meeting, "op": op, "data": data},
                                            to=sid, namespace=NAMESPACE,
                                            timeout=self.limits.request_timeout_s)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError) as exc:
                raise ConnectionError(f"child link: {exc}") from None
            return reply if isinstance(reply, dict) else {"error": "malformed reply"}
        return request

    async def _on_link(self, sid: str, data: Any = None) -> dict[str, Any]:
        link = self._child(sid)
        if link is None:
            return {"error": "rate limit exceeded"}
        return await _dispatch(self.cascades, link.unit, link.meetings, data)

    # -- child side ----------------------------------------------------------------------------
    def start_parent_link(self) -> ParentLink | None:
        if not self.settings.parent_url or not self.settings.secret:
            return None
        self.parent = ParentLink(self)
        self.parent.start()
        return self.parent


async def _dispatch(cascades: dict[str, Cascade], name: str, meetings: set[str],
                    data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {"error": "payload must be an object"}
    meeting, op = data.get("meeting"), data.get("op")
    if not isinstance(meeting, str) or meeting not in meetings:
        return {"error": "meeting was not joined on this link"}
    cascade = cascades.get(meeting)
    end: LinkEnd | None = cascade.links.get(name) if cascade else None
    if end is None or end.closed or not isinstance(op, str):
        return {"error": "no link end for this meeting"}
    return await end.handle(op, data.get("data"))


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
        hello = await client.call("hello", {}, namespace=NAMESPACE, timeout=5)
        if not isinstance(hello, dict) or not isinstance(hello.get("path"), list):
            raise ConnectionError(f"parent refused hello: {hello!r}")
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
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise ConnectionError(f"parent refused join {meeting}: {reply!r}")
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
            return reply if isinstance(reply, dict) else {"error": "malformed reply"}
        return request

    async def _on_link(self, data: Any = None) -> dict[str, Any]:
        if self.parent_unit is None:
            return {"error": "not linked"}
        return await _dispatch(self.node.cascades, self.parent_unit, self.meetings, data)

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
            await client.call("headcounts", {"counts": counts}, namespace=NAMESPACE, timeout=5)
            self._reported = counts

    async def _sync_meetings(self, client: socketio.AsyncClient) -> None:
        reply = await client.call("meetings", {}, namespace=NAMESPACE, timeout=5)
        if isinstance(reply, dict) and isinstance(reply.get("meetings"), list):
            await self.node.directory.mirror(reply["meetings"])

