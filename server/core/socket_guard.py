"""The socket.io server every namespace runs on, holding what no handler should have to
remember, checked before any handler runs (docs/security.md (Socket events)):

* a frame is one event name and at most one payload; names the library reserves for its
  own handlers (``connect``, ``disconnect``, ...) and names no handler was registered for
  are refused, on every namespace;
* budgets: token buckets per connection and per principal (a user, bound by the namespace's
  connect handler; else the connection itself), refused as ``rate_limited``
  (kept in server/core/socket_budgets.py);
* bounded work: at most ``in_flight`` handlers of one connection run at once, at most
  ``queued`` more wait in order; beyond that the event is refused, never a new task;
* a connection whose events keep being refused is dropped (one log line) and its principal
  may not reconnect for a while; so is one that stops reading what it is sent;
* an event whose JSON does not decode (syntax, a 5,000-digit integer, nesting past the
  recursion limit) is answered `invalid`; any other packet that does not decode, at the
  socket.io or the Engine.IO level, drops the connection (one log line, no traceback;
  the decoding classes are in server/core/socket_wire.py).

Refusals are answered in the common shape ``{"ok": false, "error": {"code", "message"}}``.
python-socketio has no hook for this, so `GuardedServer` overrides the methods every packet
passes through (in: ``_handle_eio_connect``, ``_handle_eio_message``, ``_handle_event``,
``_trigger_event``; out: ``_send_packet``, ``_send_eio_packet``) and gives Engine.IO its own
socket and websocket classes; tests/server/core/test_socket_guard.py fails if a library upgrade
bypasses them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import socketio
from engineio import async_socket
from socketio import packet
from socketio.base_client import BaseClient
from socketio.base_server import BaseServer

from server.core.settings import SocketLimits
from server.core.socket_budgets import Budgets, Connection, Pending
from server.core.socket_wire import (
    DROPPED,
    GuardedEioSocket,
    GuardedPacket,
    GuardedWebSocket,
    Undecodable,
)

log = logging.getLogger(__name__)

# Handler names python-socketio gives a meaning of its own, on either side ("*" is the
# catch-all), taken from the library so that a name it adds is refused too.
RESERVED_EVENTS = frozenset(BaseServer.reserved_events) | frozenset(
    BaseClient.reserved_events) | {"*"}
MAX_ARGS = 1  # every Hopso event carries at most one payload

# (namespace, event or None for a frame without a usable name, outcome)
OutcomeHook = Callable[[str, str | None, str], None]


def error_ack(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def refused(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """A refused connection: socket.io's CONNECT_ERROR carries `message` and `data`, so the
    client's `connect_error` gets `{"message": message, "data": {"code", "message"}}`,
    the common error shape in `data`."""
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code, "message": message})


class GuardedServer(socketio.AsyncServer):
    """socketio.AsyncServer with the guard described in this module's docstring."""

    def __init__(self, limits: SocketLimits, *, budgeted: frozenset[str] = frozenset({"/"}),
                 **kwargs: Any) -> None:
        super().__init__(serializer=GuardedPacket, **kwargs)
        # This server's own copy of Engine.IO's driver table: only its websockets change.
        self.eio._async = {**self.eio._async, "websocket": GuardedWebSocket}
        self.limits = limits
        self.budgets = Budgets(limits, budgeted)  # `budgeted`: namespaces spending the buckets
        self.on_outcome: OutcomeHook | None = None
        self._cut: set[str] = set()  # engine.io sessions being dropped
        self._tasks: set[asyncio.Task[None]] = set()

    # -- principals ------------------------------------------------------------------------
    def bind(self, sid: str, principal: str, namespace: str = "/") -> None:
        """Count this connection's events against `principal` too (e.g. "user:7"); call it
        from the namespace's connect handler once the client is authenticated."""
        self.budgets.bind(namespace, sid, principal)

    def blocked_for(self, principal: str) -> float:
        """Seconds `principal` must still wait after being dropped for flooding (0: none).
        Connect handlers refuse a connection meanwhile."""
        return self.budgets.blocked_for(principal)

    # -- incoming packets ---------------------------------------------------------------------
    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None and type(sock) is async_socket.AsyncSocket:
            sock.__class__ = GuardedEioSocket  # before it reads its first packet
            sock.drop = self._drop
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
        conn = self.budgets.connection(namespace, sid)
        if conn.closed:
            return
        name = data[0] if isinstance(data, list) and data and isinstance(data[0], str) \
            else None
        known = name if name is not None and name in self.handlers.get(namespace, {}) \
            and name not in RESERVED_EVENTS else None
        if not conn.spend():
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
        item = Pending(eio_sid, id, known, data[1:])
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

    async def _work(self, namespace: str, sid: str, conn: Connection, item: Pending) -> None:
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

    async def _run(self, namespace: str, sid: str, item: Pending) -> None:
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
                self.budgets.forget(namespace, args[0])

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
    async def _refuse(self, eio_sid: str, namespace: str, conn: Connection,
                      ack_id: int | None, event: str | None, message: str) -> None:
        self._count(namespace, event, "rate_limited")
        if not conn.strike(self.limits.flood_cooldown_s):
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
            request[DROPPED] = True  # and what was read before is not read on
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
