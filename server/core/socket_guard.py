"""The socket.io server every namespace runs on, holding what no handler should have to
remember, checked before any handler runs (docs/security.md (Socket events)):

* a frame is one event name and at most one payload; names the library reserves for its
  own handlers (``connect``, ``disconnect``, ...) and names no handler was registered for
  are refused, on every namespace;
* budgets: token buckets per connection and per principal (a user, bound by the namespace's
  connect handler; else the connection itself), refused as ``rate_limited``;
* bounded work: at most ``in_flight`` handlers of one connection run at once, at most
  ``queued`` more wait in order; beyond that the event is refused, never a new task;
* a connection whose events keep being refused is dropped (one log line) and its principal
  may not reconnect for a while; so is one that stops reading what it is sent;
* an event whose JSON does not decode (syntax, a 5,000-digit integer, nesting past the
  recursion limit) is answered `invalid`; any other packet that does not decode, at the
  socket.io or the Engine.IO level, drops the connection (one log line, no traceback).

Refusals are answered in the common shape ``{"ok": false, "error": {"code", "message"}}``.
python-socketio has no hook for this, so `GuardedServer` overrides the methods every packet
passes through (in: ``_handle_eio_connect``, ``_handle_eio_message``, ``_handle_event``,
``_trigger_event``; out: ``_send_packet``, ``_send_eio_packet``) and gives Engine.IO its own
socket and websocket classes; tests/server/core/test_socket_guard.py fails if a library upgrade
bypasses them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from engineio import async_socket
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet
from socketio.base_client import BaseClient
from socketio.base_server import BaseServer

from media import TokenBucket
from server.core.settings import SocketLimits

log = logging.getLogger(__name__)

# Handler names python-socketio gives a meaning of its own, on either side ("*" is the
# catch-all), taken from the library so that a name it adds is refused too.
RESERVED_EVENTS = frozenset(BaseServer.reserved_events) | frozenset(
    BaseClient.reserved_events) | {"*"}
MAX_ARGS = 1  # every Hopso event carries at most one payload
_SWEEP_EVERY_S = 30.0
# What decoding untrusted bytes may raise (json: ValueError, RecursionError; base64: ValueError).
_UNDECODABLE = (ValueError, TypeError, KeyError, IndexError, RecursionError)

# (namespace, event or None for a frame without a usable name, outcome)
OutcomeHook = Callable[[str, str | None, str], None]


def error_ack(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def refused(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """A refused connection: socket.io's CONNECT_ERROR carries `message` and `data`, so the
    client's `connect_error` gets `{"message": message, "data": {"code", "message"}}`,
    the common error shape in `data`."""
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code, "message": message})


class MalformedPacket(ValueError):
    """A socket.io packet that does not decode (bad JSON, absurd numbers or nesting)."""


@dataclass(frozen=True)
class Undecodable:
    """The data of an event whose JSON did not decode: the event is answered `invalid`
    (its ack id was read before the JSON), the connection stays."""

    reason: str


class _TolerantJson:
    """The JSON codec of our packets: what the standard library refuses to decode (syntax,
    integers over 4,300 digits, nesting past the recursion limit) becomes Undecodable."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        try:
            return json.loads(text, **kwargs)
        except (ValueError, RecursionError) as exc:
            return Undecodable(f"{type(exc).__name__}: {str(exc)[:80]}")


class _Packet(packet.Packet):
    """The library's packet, decoded with _TolerantJson; any other decoding error, or
    undecodable JSON in a packet that is not an event, comes out as MalformedPacket."""

    json = _TolerantJson

    def decode(self, encoded_packet: Any) -> Any:
        try:
            attachments = super().decode(encoded_packet)
        except (ValueError, TypeError, RecursionError) as exc:
            raise MalformedPacket(f"{type(exc).__name__}: {str(exc)[:120]}") from None
        if isinstance(self.data, Undecodable) and self.packet_type not in (
                packet.EVENT, packet.BINARY_EVENT):
            raise MalformedPacket(self.data.reason)
        return attachments

    def add_attachment(self, attachment: Any) -> Any:
        try:
            return super().add_attachment(attachment)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            raise MalformedPacket(f"{type(exc).__name__}: {str(exc)[:120]}") from None


class _EioSocket(async_socket.AsyncSocket):
    """Engine.IO's socket (the layer under socket.io), refusing what is not an Engine.IO
    packet: the library logs a traceback per unknown packet type (its log line indexes the
    type's name) and per undecodable polling body, and goes on. The server swaps each new
    socket to this class before it reads anything (`GuardedServer._handle_eio_connect`)."""

    guard: GuardedServer

    async def receive(self, pkt: eio_packet.Packet) -> None:
        if not 0 <= pkt.packet_type < len(eio_packet.packet_names):
            self.guard._drop(self.sid, f"not an Engine.IO packet (type {pkt.packet_type!r})")
            return
        await super().receive(pkt)

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        try:
            await super().handle_post_request(environ)
        except _UNDECODABLE as exc:  # the body did not decode
            self.guard._drop(self.sid, f"malformed polling payload: {str(exc)[:80]!r}")


class _WebSocket(eio_aiohttp.WebSocket):
    """Engine.IO's aiohttp websocket, ending the connection on a frame that is not an
    Engine.IO packet: the library decodes frames (JSON included, e.g. `4[[[...`) outside any
    error handling, so one such frame was a traceback."""

    async def wait(self) -> Any:
        data = await super().wait()
        try:
            eio_packet.Packet(encoded_packet=data)  # cheap: events ("42...") are not parsed
        except _UNDECODABLE as exc:
            log.warning("socket connection from %s dropped: not an Engine.IO packet (%s)",
                        getattr(self.environ.get("aiohttp.request"), "remote", "?"),
                        f"{type(exc).__name__}: {str(exc)[:80]!r}")
            raise OSError("not an Engine.IO packet") from None  # Engine.IO's reader ends
        return data


@dataclass
class _Principal:
    """Who is behind connections (a user): their shared budget and flood penalty."""

    bucket: TokenBucket
    connections: int = 0
    blocked_until: float = 0.0
    idle_since: float = 0.0


@dataclass
class _Pending:
    eio_sid: str
    ack_id: int | None
    event: str
    args: list[Any]


@dataclass
class _Connection:
    key: str  # the principal's
    principal: _Principal
    bucket: TokenBucket | None  # None: a namespace without budgets (in-flight bound only)
    strikes: TokenBucket
    in_flight: int
    queued: int
    pending: deque[_Pending] = field(default_factory=deque)
    running: int = 0
    closed: bool = False


class GuardedServer(socketio.AsyncServer):
    """socketio.AsyncServer with the guard described in this module's docstring."""

    def __init__(self, limits: SocketLimits, *, budgeted: frozenset[str] = frozenset({"/"}),
                 **kwargs: Any) -> None:
        super().__init__(serializer=_Packet, **kwargs)
        # This server's own copy of Engine.IO's driver table: only its websockets change.
        self.eio._async = {**self.eio._async, "websocket": _WebSocket}
        self.limits = limits
        self.budgeted = budgeted  # namespaces whose events spend the token buckets
        self.on_outcome: OutcomeHook | None = None
        self._connections: dict[tuple[str, str], _Connection] = {}
        self._principals: dict[str, _Principal] = {}
        self._cut: set[str] = set()  # engine.io sessions being dropped
        self._tasks: set[asyncio.Task[None]] = set()
        self._swept = time.monotonic()

    # -- principals ------------------------------------------------------------------------
    def bind(self, sid: str, principal: str, namespace: str = "/") -> None:
        """Count this connection's events against `principal` too (e.g. "user:7"); call it
        from the namespace's connect handler once the client is authenticated."""
        self._forget(namespace, sid)
        self._connections[(namespace, sid)] = self._new_connection(namespace, principal)

    def blocked_for(self, principal: str) -> float:
        """Seconds `principal` must still wait after being dropped for flooding (0: none).
        Connect handlers refuse a connection meanwhile."""
        found = self._principals.get(principal)
        return max(0.0, found.blocked_until - time.monotonic()) if found else 0.0

    def _new_connection(self, namespace: str, key: str) -> _Connection:
        limits, now = self.limits, time.monotonic()
        if now - self._swept > _SWEEP_EVERY_S:
            self._sweep(now)
        principal = self._principals.get(key)
        if principal is None:
            principal = self._principals[key] = _Principal(
                TokenBucket(limits.user_rate_per_s, limits.user_burst))
        principal.connections += 1
        bucket = (TokenBucket(limits.rate_per_s, limits.burst)
                  if namespace in self.budgeted else None)
        strikes = TokenBucket(limits.flood_strikes / limits.flood_window_s, limits.flood_strikes)
        if bucket is None:
            return _Connection(key, principal, None, strikes, limits.link_in_flight,
                               limits.link_queued)
        return _Connection(key, principal, bucket, strikes, limits.in_flight, limits.queued)

    def _sweep(self, now: float) -> None:
        """Forget principals without connections once their budget would be full again and
        their penalty is over (until then a reconnect does not buy a fresh budget)."""
        self._swept = now
        refill_s = self.limits.user_burst / self.limits.user_rate_per_s
        for key, p in list(self._principals.items()):
            if p.connections == 0 and now > max(p.blocked_until, p.idle_since + refill_s):
                del self._principals[key]

    def _forget(self, namespace: str, sid: str) -> None:
        conn = self._connections.pop((namespace, sid), None)
        if conn is not None:
            conn.closed = True
            conn.pending.clear()
            conn.principal.connections -= 1
            conn.principal.idle_since = time.monotonic()

    # -- incoming packets ---------------------------------------------------------------------
    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None and type(sock) is async_socket.AsyncSocket:
            sock.__class__ = _EioSocket  # before it reads its first packet
            sock.guard = self
        return await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if eio_sid in self._cut:
            return  # dropped: what it had in flight on the wire is ignored
        try:
            await super()._handle_eio_message(eio_sid, data)
        except ValueError as exc:  # MalformedPacket, or the library's own protocol checks
            self._drop(eio_sid, f"malformed packet: {str(exc)[:120]!r}")  # one line

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None,
                            data: Any) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return
        conn = self._connections.get((namespace, sid))
        if conn is None:  # a namespace that binds no principal: the connection is its own
            conn = self._connections[(namespace, sid)] = self._new_connection(
                namespace, f"{namespace}#{sid}")
        if conn.closed:
            return
        name = data[0] if isinstance(data, list) and data and isinstance(data[0], str) \
            else None
        known = name if name is not None and name in self.handlers.get(namespace, {}) \
            and name not in RESERVED_EVENTS else None
        if conn.bucket is not None and not (conn.bucket.take() and conn.principal.bucket.take()):
            await self._refuse(eio_sid, namespace, conn, id, known, "too many events: "
                               f"at most {self.limits.rate_per_s:g} a second per connection "
                               f"and {self.limits.user_rate_per_s:g} per user")
            return
        problem = _frame_problem(data, name, known)
        if problem is not None:
            self._count(namespace, known, "invalid")
            await self._answer(eio_sid, namespace, id, error_ack("invalid", problem))
            return
        assert known is not None
        item = _Pending(eio_sid, id, known, data[1:])
        if conn.running < conn.in_flight:
            conn.running += 1
            task = asyncio.ensure_future(self._work(namespace, sid, conn, item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif len(conn.pending) < conn.queued:
            conn.pending.append(item)
        else:
            await self._refuse(eio_sid, namespace, conn, id, known,
                               f"too many events waiting: at most {conn.in_flight} run and "
                               f"{conn.queued} wait per connection")

    async def _work(self, namespace: str, sid: str, conn: _Connection, item: _Pending) -> None:
        """One of the connection's at most `in_flight` workers: runs `item`, then whatever
        waits, in arrival order."""
        try:
            while True:
                await self._run(namespace, sid, item)
                if conn.closed or not conn.pending:
                    return
                item = conn.pending.popleft()
        finally:
            conn.running -= 1

    async def _run(self, namespace: str, sid: str, item: _Pending) -> None:
        try:
            result = await self._trigger_event(item.event, namespace, sid, *item.args)
        except Exception:  # a handler's bug: answered, so the client does not hang
            log.exception("socket event %s [%s] failed", item.event, namespace)
            result = error_ack("internal", "internal error; the event was not applied")
        if item.ack_id is None or result is self.not_handled:
            return
        data = [] if result is None else list(result) if isinstance(result, tuple) else [result]
        await self._send_packet(item.eio_sid, self.packet_class(
            packet.ACK, namespace=namespace, id=item.ack_id, data=data))

    async def _trigger_event(self, event: str, namespace: str, *args: Any) -> Any:
        if event == "connect":
            try:
                return await super()._trigger_event(event, namespace, *args)
            except (socketio.exceptions.ConnectionRefusedError, ConnectionRefusedError):
                raise
            except Exception:  # a bug in a connect handler: refuse rather than hang
                log.exception("socket.io connect handler [%s] failed", namespace)
                raise refused("internal", "internal error; the connection was refused") from None
        try:
            return await super()._trigger_event(event, namespace, *args)
        finally:
            if event == "disconnect" and args:  # only the library fires it now
                self._forget(namespace, args[0])

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        try:
            await super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            self._cut.discard(eio_sid)

    # -- outgoing packets ------------------------------------------------------------------
    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        if not self._backlogged(eio_sid):
            await super()._send_packet(eio_sid, pkt)

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        if not self._backlogged(eio_sid):
            await super()._send_eio_packet(eio_sid, eio_pkt)

    def _backlogged(self, eio_sid: str) -> bool:
        """Engine.IO queues what a client has not taken yet, without bound: a client that
        stops reading is dropped once `outgoing` packets wait for it (pushes to the others
        never wait for it: sending only appends to each client's own queue)."""
        if eio_sid in self._cut:
            return True
        sock = self.eio.sockets.get(eio_sid)
        waiting = sock.queue.qsize() if sock is not None else 0
        if waiting < self.limits.outgoing:
            return False
        self._drop(eio_sid, f"too slow: {waiting} packets waiting to be sent to it")
        return True

    # -- refusing, answering, dropping -----------------------------------------------------
    async def _refuse(self, eio_sid: str, namespace: str, conn: _Connection,
                      ack_id: int | None, event: str | None, message: str) -> None:
        self._count(namespace, event, "rate_limited")
        if not conn.strikes.take():
            conn.principal.blocked_until = time.monotonic() + self.limits.flood_cooldown_s
            conn.closed = True
            conn.pending.clear()
            self._drop(eio_sid, f"flooding: {self.limits.flood_strikes} events refused within "
                                f"{self.limits.flood_window_s:g} s ({conn.key})")
            return
        await self._answer(eio_sid, namespace, ack_id, error_ack("rate_limited", message))

    async def _answer(self, eio_sid: str, namespace: str, ack_id: int | None,
                      ack: dict[str, Any]) -> None:
        if ack_id is not None:
            await self._send_packet(eio_sid, self.packet_class(
                packet.ACK, namespace=namespace, id=ack_id, data=[ack]))

    def _count(self, namespace: str, event: str | None, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(namespace, event, outcome)

    def _drop(self, eio_sid: str, reason: str) -> None:
        """Close the client's whole connection, now. One log line, whatever it sends next."""
        if eio_sid in self._cut:
            return
        self._cut.add(eio_sid)
        log.warning("socket connection %s dropped: %s", eio_sid, reason)
        request = (self.environ.get(eio_sid) or {}).get("aiohttp.request")
        transport = getattr(request, "transport", None)
        if request is not None and transport is not None \
                and request.headers.get("Upgrade", "").lower() == "websocket":
            # Cut the TCP connection: a flooder need not read (nor obey) a close frame.
            # Engine.IO then sees the socket end and runs every namespace's disconnect.
            transport.abort()
            return
        task = asyncio.ensure_future(self._close_polling(eio_sid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_polling(self, eio_sid: str) -> None:
        try:
            # Bounded: closing waits for the client to fetch its queued packets.
            await asyncio.wait_for(self.eio.disconnect(eio_sid), timeout=5)
        except TimeoutError:
            pass


def _frame_problem(data: Any, name: str | None, known: str | None) -> str | None:
    """Why an EVENT frame is not one this server handles, or None."""
    if isinstance(data, Undecodable):
        return f"undecodable JSON ({data.reason})"
    if name is None:
        return "an event is [name, payload]: the name must be a string"
    if name in RESERVED_EVENTS:
        return f"{name!r} is a reserved name, not an event"
    if known is None:
        return f"unknown event {name[:64]!r}"
    if len(data) - 1 > MAX_ARGS:
        return f"an event carries one payload, not {len(data) - 1}"
    return None


def create_sio(redis_url: str | None, limits: SocketLimits) -> GuardedServer:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    # cors_allowed_origins=None keeps python-socketio's same-origin check (no cross-site sockets).
    return GuardedServer(limits, async_mode="aiohttp", client_manager=manager,
                         max_http_buffer_size=1_000_000, ping_timeout=20)
