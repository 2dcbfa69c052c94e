"""One WebRTC transport per cascade link (node pair), shared by every meeting.

A node link carries many meetings' media both ways. Each meeting still has its
own link peer (``link:<node>``) in its router, with the usual publishing half
(imports: the other end offers, we answer) and subscribing half (exports: we
offer), but both halves of every meeting's link peer use the *same*
`WebRtcTransport`: one ICE session, one DTLS handshake, one SRTP context per
link end.

* **Fixed roles**, so nothing depends on who offers a meeting's SDP and there is
  no glare on the transport: the parent end is ICE-controlling and the DTLS
  client, the child controlled and the DTLS server. Every SDP either end writes
  on the link carries the same ICE ufrag/pwd, candidates and fingerprint; the
  transport is started once, from the first remote description.
* **Demultiplexing.** Incoming RTP goes to the meeting whose publishing half
  has a route for its SSRC (link SDPs always signal SSRCs, so nothing is learned
  from packets). RTCP is handed to every attached half, each acting only on the
  SSRCs it owns (SR by sender SSRC, RR blocks / NACK / PLI / FIR / REMB by media
  SSRC), so feedback reaches exactly the meeting it concerns.
* **Unique SSRCs per link.** An exporter picks its consumers' SSRCs avoiding
  every SSRC in use on the link (all meetings, both directions:
  `ssrc_in_use`).
* **Lifetime.** Closing one meeting's link peer detaches its halves; the
  transport stays. `close()` (the node link went down) closes the transport;
  a transport that fails or closes under the link tells every attached peer
  (they close, as with a lost link) and calls `on_failed`, with which the
  server drops the signaling link so both ends start again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Protocol

from aiortc import RTCCertificate
from aiortc.rtp import AnyRtcpPacket

from .config import MediaConfig
from .errors import ClosedError
from .transport import TransportHandler, WebRtcTransport
from .types import CloseReason, Direction, TransportState

logger = logging.getLogger(__name__)


class LinkHalf(TransportHandler, Protocol):
    """A link peer's publishing or subscribing half."""

    def has_ssrc(self, ssrc: int) -> bool: ...


class LinkTransport:
    """The one transport of a node link end; a TransportHandler that
    demultiplexes to the attached meetings' publishing/subscribing halves."""

    def __init__(self, config: MediaConfig, certificate: RTCCertificate, parent: bool,
                 on_failed: Callable[[], None] | None = None) -> None:
        """`parent`: this end is the parent node (ICE-controlling, DTLS client)."""
        self._config = config
        self._certificate = certificate
        self.parent = parent
        self.on_failed = on_failed
        self.transport: WebRtcTransport | None = None
        self._lock = asyncio.Lock()
        self._imports: list[LinkHalf] = []  # publishing halves: RTP comes in to them
        self._exports: list[LinkHalf] = []  # subscribing halves
        self._rtp_routes: dict[int, LinkHalf] = {}  # cache: SSRC -> publishing half
        self.unrouted = 0  # RTP packets no meeting claimed
        self.transports_created = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def attached(self) -> int:
        return len(self._imports) + len(self._exports)

    async def attach(self, direction: Direction, half: LinkHalf) -> WebRtcTransport:
        """The shared transport (prepared on first use) for a meeting's half:
        SEND = its publishing (imports), RECV = its subscribing (exports)."""
        async with self._lock:
            if self._closed:
                raise ClosedError("the link transport is closed")
            transport = self.transport
            if transport is None:
                transport = WebRtcTransport(
                    Direction.SEND, self._config, self._certificate, self,
                    controlling=self.parent, dtls_role="client" if self.parent else "server")
                try:
                    await transport.prepare()
                except BaseException:
                    await transport.close()
                    raise
                self.transport = transport
                self.transports_created += 1
            elif transport.closed or transport.state in (TransportState.FAILED,
                                                         TransportState.CLOSED):
                raise ClosedError("the link transport failed")
        (self._imports if direction is Direction.SEND else self._exports).append(half)
        return transport

    def detach(self, half: LinkHalf) -> None:
        for halves in (self._imports, self._exports):
            if half in halves:
                halves.remove(half)
        for ssrc, owner in list(self._rtp_routes.items()):
            if owner is half:
                del self._rtp_routes[ssrc]

    def ssrc_in_use(self, ssrc: int) -> bool:
        """On this link, in any meeting, either direction."""
        return any(h.has_ssrc(ssrc) for h in (*self._imports, *self._exports))

    async def close(self) -> None:
        self._closed = True
        transport = self.transport
        halves = [*self._imports, *self._exports]
        self._imports, self._exports, self._rtp_routes = [], [], {}
        if transport is not None:
            for half in halves:  # the peers close as on a lost link
                try:
                    half.on_state(transport, TransportState.CLOSED,
                                  CloseReason.TRANSPORT_CLOSED)
                except Exception:
                    logger.exception("link transport: state handler failed")
            await transport.close()

    def stats(self) -> dict[str, object]:
        transport = self.transport
        return {"transports": 0 if transport is None else 1,
                "created": self.transports_created,
                "handshakes": 0 if transport is None else transport.handshakes,
                "meetings_attached": self.attached,
                "unrouted_rtp": self.unrouted,
                "transport": None if transport is None else asdict(transport.stats())}

    # -- TransportHandler ------------------------------------------------------------
    def on_rtp(self, transport: WebRtcTransport, data: bytes, now: float) -> None:
        if len(data) < 12:
            return
        ssrc = int.from_bytes(data[8:12], "big")
        half = self._rtp_routes.get(ssrc)
        if half is None or not half.has_ssrc(ssrc):
            half = next((h for h in self._imports if h.has_ssrc(ssrc)), None)
            if half is None:
                self._rtp_routes.pop(ssrc, None)
                self.unrouted += 1
                return
            self._rtp_routes[ssrc] = half
        half.on_rtp(transport, data, now)

    def on_rtcp(self, transport: WebRtcTransport, packets: list[AnyRtcpPacket],
                now: float) -> None:
        # Each half acts only on the SSRCs it owns, and SSRCs are unique on the link.
        for half in (*self._imports, *self._exports):
            half.on_rtcp(transport, packets, now)

    def on_rtcp_tick(self, transport: WebRtcTransport, now: float) -> None:
        for half in (*self._imports, *self._exports):
            try:
                half.on_rtcp_tick(transport, now)
            except Exception:
                logger.exception("link transport: RTCP tick failed")

    def on_state(self, transport: WebRtcTransport, state: TransportState,
                 reason: CloseReason | None) -> None:
        for half in (*self._imports, *self._exports):
            half.on_state(transport, state, reason)
        if state in (TransportState.FAILED, TransportState.CLOSED) and not self._closed:
            logger.warning("cascade link transport %s (%s)", state.value,
                           reason.value if reason else "")
            if self.on_failed is not None:
                self.on_failed()
