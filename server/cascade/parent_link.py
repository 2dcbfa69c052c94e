"""The child's side of a node link: one socket.io connection to the parent's ``/node``
namespace (server/cascade/link.py describes the protocol), reconnected with backoff (0.25 s
doubling, capped at 1 s); once connected it rejoins this node's meetings, mirrors the
parent's offered meetings and reports headcounts every PING_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import socketio

from media import LinkTransport
from server.cascade.dispatch import link_op
from server.cascade.schemas import (
    NAMESPACE,
    LinkRequest,
    NodeError,
    ack_error,
    ack_ok,
    parent_result,
    shown,
    unwrap,
    validate,
)
from server.cascade.tokens import make_token

if TYPE_CHECKING:
    from server.cascade.link import NodeCascade

log = logging.getLogger(__name__)

PING_INTERVAL_S = 2.0  # RTT and meeting directory refresh, child -> parent


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
            self.transport = self.node.sfu.link_transport(parent=False,
                                                          on_failed=self._media_lost)
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
        hello = parent_result(await client.call("hello", {}, namespace=NAMESPACE, timeout=5),
                              "hello")
        if not isinstance(hello, dict) or not isinstance(hello.get("path"), list):
            raise ConnectionError(f"parent answered hello with {shown(hello)}")
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
        parent_result(reply, f"join {meeting}")
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
            return unwrap(reply)
        return request

    async def _on_link(self, data: Any = None) -> dict[str, Any]:
        """The parent's `link` request: the same schema; its scope is what we joined."""
        try:
            if self.parent_unit is None:
                raise NodeError("not_joined", "not linked")
            payload = validate(LinkRequest, data)
            return ack_ok(await link_op(self.node.cascades, self.parent_unit, self.meetings,
                                      payload))
        except NodeError as exc:
            log.warning("cascade: refused the parent's link request: %s: %s", exc.code,
                        exc.message)
            return ack_error(exc.code, exc.message)
        except Exception:
            log.exception("cascade: the parent's link request failed")
            return ack_error("internal", "internal error; the request was not applied")

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
                log.warning("cascade: the parent refused our headcounts: %s", shown(reply))
                self._refused = reply  # sent again at the next ping; logged once

    async def _sync_meetings(self, client: socketio.AsyncClient) -> None:
        reply = parent_result(await client.call("meetings", {}, namespace=NAMESPACE,
                                                timeout=5), "meetings")
        if isinstance(reply, dict) and isinstance(reply.get("meetings"), list):
            await self.node.directory.mirror(reply["meetings"])


