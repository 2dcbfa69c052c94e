"""Decoding untrusted socket.io and Engine.IO frames without tracebacks: the packet, socket and
websocket classes the guard (server/core/socket_guard.py) gives python-socketio and Engine.IO.

An event whose JSON does not decode (syntax, a 5,000-digit integer, nesting past the
recursion limit) comes out as `Undecodable` data, which the guard answers `invalid`; any other
packet that does not decode raises `MalformedPacket` or is handed to the guard's `drop`, which
ends the connection with one log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engineio import async_socket
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet

log = logging.getLogger(__name__)

# What decoding untrusted bytes may raise (json: ValueError, RecursionError; base64: ValueError).
_UNDECODABLE = (ValueError, TypeError, KeyError, IndexError, RecursionError)
# Set on the aiohttp request of a websocket connection the guard dropped: its reader stops.
DROPPED = "hopso.socket_dropped"


class MalformedPacket(ValueError):
    """A socket.io packet that does not decode (bad JSON, absurd numbers or nesting)."""


@dataclass(frozen=True)
class Undecodable:
    """The data of an event whose JSON did not decode: the event is answered `invalid`
    (its ack id was read before the JSON), the connection stays."""

    reason: str


class TolerantJson:
    """The JSON codec of our packets: what the standard library refuses to decode (syntax,
    integers over 4,300 digits, nesting past the recursion limit) becomes Undecodable."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        try:
            return json.loads(text, **kwargs)
        except (ValueError, RecursionError) as exc:
            return Undecodable(f"{type(exc).__name__}: {str(exc)[:80]}")


class GuardedPacket(packet.Packet):
    """The library's packet, decoded with TolerantJson; any other decoding error, or
    undecodable JSON in a packet that is not an event, comes out as MalformedPacket."""

    json = TolerantJson

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


class GuardedEioSocket(async_socket.AsyncSocket):
    """Engine.IO's socket (the layer under socket.io), refusing what is not an Engine.IO
    packet: the library logs a traceback per unknown packet type (its log line indexes the
    type's name) and per undecodable polling body, and goes on. The server swaps each new
    socket to this class before it reads anything (`GuardedServer._handle_eio_connect`) and
    gives it the guard's `drop`."""

    drop: Callable[[str, str], None]  # (Engine.IO sid, reason): end the whole connection

    async def receive(self, pkt: eio_packet.Packet) -> None:
        if not 0 <= pkt.packet_type < len(eio_packet.packet_names):
            self.drop(self.sid, f"not an Engine.IO packet (type {pkt.packet_type!r})")
            return
        await super().receive(pkt)

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        try:
            await super().handle_post_request(environ)
        except _UNDECODABLE as exc:  # the body did not decode
            self.drop(self.sid, f"malformed polling payload: {str(exc)[:80]!r}")


class GuardedWebSocket(eio_aiohttp.WebSocket):
    """Engine.IO's aiohttp websocket, ending the connection on a frame that is not an
    Engine.IO packet: the library decodes frames (JSON included, e.g. `4[[[...`) outside any
    error handling, so one such frame was a traceback."""

    async def wait(self) -> Any:
        # A dropped connection's frames already read off the wire (a flooder's thousands)
        # are not decoded one by one: each was a loop step ahead of everyone else's events.
        request = self.environ.get("aiohttp.request")
        if request is not None and request.get(DROPPED):
            raise OSError("dropped")  # Engine.IO's reader ends
        data = await super().wait()
        try:
            eio_packet.Packet(encoded_packet=data)  # cheap: events ("42...") are not parsed
        except _UNDECODABLE as exc:
            log.warning("socket connection from %s dropped: not an Engine.IO packet (%s)",
                        getattr(self.environ.get("aiohttp.request"), "remote", "?"),
                        f"{type(exc).__name__}: {str(exc)[:80]!r}")
            raise OSError("not an Engine.IO packet") from None  # Engine.IO's reader ends
        return data
