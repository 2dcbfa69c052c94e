"""One WebRTC transport: ICE + DTLS + SRTP, packets in and out as bytes."""

from __future__ import annotations

import array
import asyncio
import fcntl
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from aioice import Candidate
from aiortc import RTCCertificate, RTCDtlsFingerprint
from aiortc.rtp import AnyRtcpPacket, is_rtcp

from . import aiortc_seam as seam
from . import rtcp
from .closing import CloseOnce
from .config import MediaConfig
from .errors import NegotiationError, RtcpError
from .fanout import FanOut, LegPath
from .ice import IceLink, IceParameters
from .rtp import FIRST_BYTE
from .srtp import SrtpIn, SrtpOut
from .stats import RateMeter, TransportStats
from .twcc import feedback_in
from .types import CloseReason, Direction, TransportState

SIOCGSTAMP = 0x8906  # linux/sockios.h: the kernel's receive time of the last datagram read


def kernel_receive_time(fd: int, timeval: array.array[int]) -> float:
    """The kernel's receive time (wall clock) of the datagram last read from socket `fd`
    (SIOCGSTAMP, into `timeval`, two longs); now if it has none (the first call turns the
    socket's timestamps on) or `fd` is not a socket."""
    try:
        fcntl.ioctl(fd, SIOCGSTAMP, timeval, True)
    except OSError:
        return time.time()
    return timeval[0] + timeval[1] * 1e-6


logger = logging.getLogger(__name__)


class TransportHandler(Protocol):
    """The owner of a transport (Publishing or Subscribing) implements this."""

    def on_rtp(self, transport: WebRtcTransport, data: bytes, now: float) -> None: ...

    def on_rtcp(self, transport: WebRtcTransport, packets: list[AnyRtcpPacket],
                now: float) -> None: ...

    def on_rtcp_tick(self, transport: WebRtcTransport, now: float) -> None: ...

    def on_state(self, transport: WebRtcTransport, state: TransportState,
                 reason: CloseReason | None) -> None: ...


def random_ssrc() -> int:
    return random.randint(1, 0xFFFFFFFF)


class WebRtcTransport:
    """Gather, connect, then send/receive RTP and RTCP as bytes.

    Sending is synchronous (protect + sendto), so forwarding one packet to many
    consumers never yields to the event loop. Forwarded media is sent by the C
    fan-out (media/fanout.py) on a dup of the nominated socket, described by
    `leg_path`; what it hands back goes through `forward_rtp` (header fields +
    the shared tail, see media/srtp.py); retransmissions and other whole
    packets through `send_rtp`. While the socket's user-space buffer is over
    the configured bound, or the kernel refuses the C fan-out, RTP is
    dropped rather than queued.
    """

    def __init__(self, direction: Direction, config: MediaConfig,
                 certificate: RTCCertificate, handler: TransportHandler,
                 controlling: bool | None = None, dtls_role: str | None = None) -> None:
        """`controlling` / `dtls_role` fix the ICE and DTLS roles whatever the SDP
        says (a cascade link's one transport, media/link_transport.py); by default
        the offerer controls ICE and the DTLS role comes from the answer."""
        self.direction = direction
        self.shared = controlling is not None  # both directions (a node link)
        self.dtls_role = dtls_role
        self.handshakes = 0  # DTLS handshakes completed (one per ICE session)
        self.state = TransportState.NEW
        self.rtcp_ssrc = random_ssrc()  # sender SSRC of our RTCP
        self.cname = uuid.uuid4().hex[:16]
        self._config = config
        self._certificate = certificate
        self._handler = handler
        # The offerer controls ICE: the client on send, the server on recv.
        if controlling is None:
            controlling = direction is Direction.RECV
        self._ice = IceLink(config.ice_addresses, config.announced_address,
                            controlling=controlling)
        self.leg_path = LegPath()  # the C fan-out's view of this transport (media/fanout.py)
        # A subscriber's transport-wide feedback, raw (media/bwe.py): set by Subscribing
        # when transport-cc is negotiated, called per RTPFB FMT 15 packet received.
        self.feedback_sink: Callable[[bytes, float], None] | None = None
        self._ice.on_path = self._on_path
        self._ice.on_srtp = self._on_srtp
        self._dtls: seam.SeamDtlsTransport | None = None
        self._srtp: SrtpOut | None = None  # both set once DTLS is connected
        self._srtp_in: SrtpIn | None = None
        self._received: list[bytes] = []  # read from the socket, to handle in one go
        # Kernel receive times (wall clock, SIOCGSTAMP), for a publisher's transport-wide
        # feedback (media/twcc.py): `kernel_arrival` is the RTP datagram being handled's.
        self.kernel_stamps = False
        self.kernel_arrival = 0.0
        self._stamps: list[float] = []
        self._stamp_fd = -1  # a dup of the nominated socket
        self._timeval = array.array("q", (0, 0))  # struct timeval, written in place
        # Fan-outs with packets waiting while those are handled (media/fanout.py).
        self.rx_batch: list[FanOut] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._closing = CloseOnce()
        self._started = False
        self._remote: tuple[str, str] | None = None  # ICE credentials started with
        self._restart_task: asyncio.Future[None] | None = None
        self._buffer_limit = config.send_buffer_limit_bytes
        self._congested_since: float | None = None
        # counters (the C fan-out keeps its own in leg_path; the properties add them)
        self._packets_sent = 0
        self._bytes_sent = 0
        self.packets_received = 0
        self.bytes_received = 0
        self._packets_dropped = 0
        self._rate_out = RateMeter()
        self._rate_in = RateMeter()

    # -- setup -------------------------------------------------------------------
    async def prepare(self) -> None:
        """Gather candidates; the transport can then be described in SDP."""
        await self._ice.gather()
        self._dtls = seam.SeamDtlsTransport(self._ice, self._certificate,
                                            self._on_rtp, self._on_rtcp)
        self._dtls.on("statechange", self._on_dtls_state)

    def local_ice(self) -> IceParameters:
        return self._ice.local_parameters()

    def fingerprints(self) -> list[RTCDtlsFingerprint]:
        return self._certificate.getFingerprints()

    @property
    def started(self) -> bool:
        return self._started

    def start(self, remote: IceParameters, fingerprints: list[RTCDtlsFingerprint],
              dtls_role: str) -> None:
        """Connect in the background; the state changes tell the outcome."""
        if self._started or self._closing.started:
            return
        self._started = True
        self._remote = (remote.ufrag, remote.pwd)
        self._spawn(self._connect(remote, fingerprints, self.dtls_role or dtls_role))

    def check_shared_remote(self, remote: IceParameters) -> None:
        """A shared (node link) transport is described the same way by every SDP."""
        if self.shared and self._started and (remote.ufrag, remote.pwd) != self._remote:
            raise NegotiationError("the SDP describes another ICE session than the link's "
                                   "one transport")

    async def add_remote_candidate(self, candidate: Candidate | None) -> None:
        await self._ice.add_remote_candidate(candidate)

    async def restart_ice_local(self) -> None:
        """New local ICE credentials and candidates, to signal to the client."""
        if self.state is not TransportState.CONNECTED:
            raise NegotiationError(f"cannot restart ICE of a {self.state.value} transport")
        await self._ice.restart_local()

    @property
    def ice_restarting(self) -> bool:
        return self._ice.restarting

    def complete_restart(self, remote: IceParameters) -> None:
        """Connect the restarted ICE agent in the background (once)."""
        if self._restart_task is None or self._restart_task.done():
            self._restart_task = self._spawn(self._restart(remote))

    # -- data path -----------------------------------------------------------------
    @property
    def packets_sent(self) -> int:
        return self._packets_sent + int(self.leg_path.cdata.packets_sent)

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent + int(self.leg_path.cdata.bytes_sent)

    @property
    def packets_dropped(self) -> int:
        path = self.leg_path.cdata
        return self._packets_dropped + int(path.packets_dropped + path.srtp_errors)

    @property
    def fast_path(self) -> bool:
        """Whether the C fan-out sends this transport's forwarded packets; False
        sends them through `forward_rtp` (e.g. to intercept them in tests)."""
        return self.leg_path.enabled

    @fast_path.setter
    def fast_path(self, enabled: bool) -> None:
        self.leg_path.set_enabled(enabled)

    def _set_srtp(self, out: SrtpOut | None, incoming: SrtpIn | None) -> None:
        """The keys are ready (DTLS connected) or gone (closing); the C fan-out follows."""
        self._srtp, self._srtp_in = out, incoming
        self.leg_path.set_srtp(0 if out is None else out.context_address)

    def _on_path(self, path: tuple[seam.UdpTransport, tuple[str, int]] | None) -> None:
        fd = seam.socket_fd(path[0]) if path is not None else None
        if path is None or fd is None:
            self.leg_path.clear()
        else:
            self.leg_path.set_socket(fd, path[1])
        self._close_stamp_fd()
        if fd is not None:
            self._stamp_fd = os.dup(fd)

    def _close_stamp_fd(self) -> None:
        if self._stamp_fd >= 0:
            os.close(self._stamp_fd)
            self._stamp_fd = -1

    def _kernel_time(self) -> float:
        """When the kernel received the datagram just read from the nominated socket (wall
        clock), unaffected by how late our loop read it; now if it cannot say (the first
        datagrams: the first call turns the socket's timestamps on)."""
        return kernel_receive_time(self._stamp_fd, self._timeval)

    def forward_rtp(self, b1: int, seq: int, ts: int, ssrc: int, tail: bytes) -> bool:
        """Send header (FIRST_BYTE, b1, seq, ts, ssrc) + `tail`; False if dropped.

        The hot path of forwarding (once per packet per consumer): the header
        is packed straight into this leg's SRTP buffer, protected in place and
        written to the nominated socket.
        """
        path = self._ice.path
        srtp = self._srtp
        if path is None or srtp is None:
            return False
        sock = path[0]
        if sock.get_write_buffer_size() > self._buffer_limit:
            return self._congested()
        out = srtp.rtp(FIRST_BYTE, b1, seq, ts, ssrc, tail)
        if out is None:
            self._packets_dropped += 1
            return False
        sock.sendto(out, path[1])
        self._packets_sent += 1
        self._bytes_sent += len(out)
        return True

    def send_rtp(self, data: bytes) -> bool:
        """Protect and send one whole RTP packet; False if dropped."""
        path = self._ice.path
        srtp = self._srtp
        if path is None or srtp is None:
            return False
        sock = path[0]
        if sock.get_write_buffer_size() > self._buffer_limit:
            return self._congested()
        out = srtp.protect(data)
        if out is None:
            self._packets_dropped += 1
            return False
        sock.sendto(out, path[1])
        self._packets_sent += 1
        self._bytes_sent += len(out)
        return True

    def send_rtcp(self, data: bytes) -> None:
        srtp = self._srtp
        if srtp is None:
            return
        out = srtp.protect_rtcp(data)
        if out is not None and self._ice.send_now(out):
            self._packets_sent += 1
            self._bytes_sent += len(out)

    def _congested(self) -> bool:
        self._packets_dropped += 1
        if self._congested_since is None:
            self._congested_since = time.monotonic()
        return False

    # -- teardown ----------------------------------------------------------------------
    async def close(self) -> None:
        """Idempotent; concurrent callers all wait for the same teardown: stops its tasks,
        DTLS (and so SRTP), ICE and the C fan-out's legs."""
        await self._closing.run(self._close_owned)

    async def _close_owned(self) -> None:
        self.state = TransportState.CLOSED
        self._set_srtp(None, None)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._dtls is not None:
            await seam.stop_dtls(self._dtls)
            self._dtls.remove_all_listeners()
        await self._ice.close()
        self.leg_path.clear()
        self._close_stamp_fd()

    @property
    def closed(self) -> bool:
        return self._closing.started

    def stats(self) -> TransportStats:
        return TransportStats(
            direction="both" if self.shared else self.direction.value,
            state=self.state.value,
            packets_sent=self.packets_sent, bytes_sent=self.bytes_sent,
            packets_received=self.packets_received, bytes_received=self.bytes_received,
            bitrate_out_bps=self._rate_out.bps, bitrate_in_bps=self._rate_in.bps,
            packets_dropped=self.packets_dropped,
            send_buffer_bytes=self._ice.buffered_bytes())

    @property
    def local_port(self) -> int | None:
        return self._ice.local_port

    # -- internals ---------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set_state(self, state: TransportState, reason: CloseReason | None = None) -> None:
        if self._closing.started or state is self.state:
            return
        self.state = state
        try:
            self._handler.on_state(self, state, reason)
        except Exception:
            logger.exception("transport state handler failed")

    async def _connect(self, remote: IceParameters, fingerprints: list[RTCDtlsFingerprint],
                       dtls_role: str) -> None:
        assert self._dtls is not None
        self._set_state(TransportState.CONNECTING)
        try:
            async with asyncio.timeout(self._config.ice_timeout_s):
                await self._ice.connect(remote)
                seam.set_dtls_role(self._dtls, dtls_role)
                await seam.start_dtls(self._dtls, fingerprints)
        except TimeoutError:
            self._set_state(TransportState.FAILED, CloseReason.ICE_TIMEOUT)
            return
        except ConnectionError:
            self._set_state(TransportState.FAILED, CloseReason.TRANSPORT_FAILED)
            return
        if self._dtls.state != "connected":
            self._set_state(TransportState.FAILED, CloseReason.TRANSPORT_FAILED)
            return
        self._set_srtp(SrtpOut(seam.srtp_tx_session(self._dtls)),
                       SrtpIn(seam.srtp_rx_session(self._dtls)))
        self.handshakes += 1
        self._set_state(TransportState.CONNECTED)
        self._spawn(self._run_rtcp())

    async def _restart(self, remote: IceParameters) -> None:
        try:
            async with asyncio.timeout(self._config.ice_timeout_s):
                await self._ice.complete_restart(remote)
        except (TimeoutError, ConnectionError):
            # The old path keeps working if it still can; consent decides.
            logger.info("ICE restart of %s transport failed", self.direction.value)

    def _on_dtls_state(self) -> None:
        assert self._dtls is not None
        if self._dtls.state in ("closed", "failed") and self.state is TransportState.CONNECTED:
            self._set_state(TransportState.CLOSED, CloseReason.TRANSPORT_CLOSED)

    def _on_srtp(self, data: bytes) -> bool:
        """An SRTP/SRTCP datagram straight from the socket; False before DTLS is up
        (it then queues for aiortc's receive loop, which drops it). What the socket
        delivers in one go is handled together, right after (`_handle_received`)."""
        if self._srtp_in is None:
            return False
        self._received.append(data)
        # A publisher's transport-wide feedback (media/twcc.py) reports the kernel's receive
        # time of each datagram: a loop late to read must not look like a queue.
        if self.kernel_stamps:
            self._stamps.append(self._kernel_time())
        if len(self._received) == 1:
            asyncio.get_running_loop().call_soon(self._handle_received)
        return True

    def _handle_received(self) -> None:
        received, self._received = self._received, []
        stamps, self._stamps = self._stamps, []
        if len(stamps) != len(received):  # turned on mid-batch: none for this one
            stamps = []
        srtp = self._srtp_in
        if srtp is None:
            return
        batch: list[FanOut] = []
        if len(received) > 1:  # a lone packet goes out at once, without the batch's upkeep
            self.rx_batch = batch
        try:  # a callback of the loop: never let one packet's bug lose the others
            for i, data in enumerate(received):
                try:
                    if is_rtcp(data):
                        plain = srtp.unprotect_rtcp(data)
                        if plain is not None:
                            self._on_rtcp(plain)
                    else:
                        plain = srtp.unprotect(data)
                        if plain is not None:
                            if stamps:
                                self.kernel_arrival = stamps[i]
                            self._on_rtp(plain)
                except Exception:
                    logger.exception("handling an incoming packet failed")
        finally:
            self.rx_batch = None
            now = time.monotonic()
            for fanout in batch:
                fanout.flush(now)

    def _on_rtp(self, data: bytes) -> None:
        self.packets_received += 1
        self.bytes_received += len(data)
        self._handler.on_rtp(self, data, time.monotonic())

    def _on_rtcp(self, data: bytes) -> None:
        self.packets_received += 1
        self.bytes_received += len(data)
        now = time.monotonic()
        sink = self.feedback_sink
        if sink is not None:
            # Before aiortc's parser, which keeps no FCI of a transport-wide feedback and
            # refuses the whole compound packet when one is padded (its RTPFB parser wants
            # a multiple of 4 bytes after the padding), as Chrome's often are.
            for raw in feedback_in(data):
                sink(raw, now)
        try:
            packets = rtcp.parse_rtcp(data)
        except RtcpError:
            return
        self._handler.on_rtcp(self, packets, now)

    async def _run_rtcp(self) -> None:
        interval = self._config.rtcp_interval_s
        while True:
            # RFC 3550: randomise the interval over [0.5, 1.5] times its value.
            await asyncio.sleep(interval * (0.5 + random.random()))
            now = time.monotonic()
            self._rate_out.sample(self.bytes_sent, now)
            self._rate_in.sample(self.bytes_received, now)
            timeout = self._config.slow_consumer_timeout_s
            # Congested: asyncio/uvloop queue our sends in user space, or the kernel
            # refuses the C fan-out's (EAGAIN) and keeps refusing.
            blocked = self.leg_path.unblock_if_idle(now, 2 * interval)
            if ((self._congested_since is not None
                    and self._ice.buffered_bytes() > self._buffer_limit
                    and now - self._congested_since > timeout)
                    or (blocked is not None and blocked > timeout)):
                self._set_state(TransportState.FAILED, CloseReason.SLOW_CONSUMER)
                return
            if self._ice.buffered_bytes() <= self._buffer_limit:
                self._congested_since = None
            try:
                self._handler.on_rtcp_tick(self, now)
            except Exception:
                logger.exception("RTCP tick failed")
