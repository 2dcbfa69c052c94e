"""The one module that touches aiortc and aioice internals.

We keep aiortc for DTLS, SRTP and SDP syntax and aioice for ICE, and do RTP
and RTCP ourselves. Everything below that is not public API is listed in
PRIVATE_ATTRIBUTES and asserted by tests/media/test_aiortc_seam.py, so an
upgrade fails loudly in one place. Nothing name-mangled is used.

- Incoming SRTP/SRTCP skips aiortc's receive loop: aioice hands every
  non-STUN datagram to `Connection.data_received`, which a subclass
  (`SeamConnection`) gives to the transport first; once DTLS is up it is
  unprotected in place with the DTLS transport's `_rx_srtp` session (through
  media/srtp.py) and handled at once, without aioice's queue, a task switch
  per packet, or a datetime per packet. DTLS records, and anything before the
  keys exist, take aiortc's loop, which calls `_handle_rtp_data` /
  `_handle_rtcp_data` with decrypted bytes; a subclass takes those too,
  before aiortc's RtpRouter (which would parse every packet into an object
  and route by SSRC/PT).
- Sending bypasses `RTCDtlsTransport._send_rtp` (a coroutine per packet):
  we SRTP-protect with its `_tx_srtp` session (through media/srtp.py, which
  calls libsrtp on that session's context) and write to the socket of
  aioice's nominated pair directly, not through aioice's `Connection.send`.
- The DTLS role is set with `_set_role`, as RTCPeerConnection does.
- RTCDtlsTransport only needs `role`, `_recv()` and `_send()` from its ICE
  transport; we hand it our restartable `IceLink` instead of RTCIceTransport.
- aioice gathers host candidates on every interface except loopback; we
  gather on configured addresses with `get_component_candidates` and mark
  gathering done through its private flags.
- Client side, for test and benchmark clients only (testkit/, bench/): a
  sender's keyframe requests routed to a pre-encoded track
  (`RTCRtpSender._send_keyframe`), a recycled m-line taken from the old
  transceiver (`RTCRtpTransceiver._get_mline_index` / `_set_mline_index`), the
  nominated pair's protocol for a client reading the socket itself, and the
  negotiated SRTP profile (`RTCDtlsTransport._ssl`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import aioice
import aiortc
from aioice import Connection
from aiortc import (
    RTCCertificate,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpSender,
)
from pylibsrtp import Session

SUPPORTED_AIORTC = "1.16."
SUPPORTED_AIOICE = "0.13."

if not aiortc.__version__.startswith(SUPPORTED_AIORTC):  # pragma: no cover
    raise ImportError(
        f"media.aiortc_seam supports aiortc {SUPPORTED_AIORTC}x, found {aiortc.__version__}; "
        "re-check PRIVATE_ATTRIBUTES and run tests/media/test_aiortc_seam.py")
if not aioice.__version__.startswith(SUPPORTED_AIOICE):  # pragma: no cover
    raise ImportError(
        f"media.aiortc_seam supports aioice {SUPPORTED_AIOICE}x, found {aioice.__version__}")

# (owner, attribute): every non-public name this module relies on.
PRIVATE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("aiortc.RTCDtlsTransport", "_handle_rtp_data"),  # overridden
    ("aiortc.RTCDtlsTransport", "_handle_rtcp_data"),  # overridden
    ("aiortc.RTCDtlsTransport", "_set_role"),
    ("aiortc.RTCDtlsTransport instance", "_tx_srtp"),
    ("aiortc.RTCDtlsTransport instance", "_rx_srtp"),
    ("aiortc.RTCDtlsTransport instance", "_task"),
    ("aiortc.RTCDtlsTransport instance", "_transport"),  # reads .role/_recv/_send
    ("aioice.Connection", "data_received"),  # overridden: called for non-STUN datagrams
    ("aioice.Connection instance", "_local_candidates"),
    ("aioice.Connection instance", "_local_candidates_start"),
    ("aioice.Connection instance", "_local_candidates_end"),
    ("aioice.Connection instance", "_nominated"),
    ("aioice CandidatePair", "protocol.transport"),
    ("aioice CandidatePair", "remote_addr"),
    ("aiortc.RTCDtlsTransport instance", "_ssl"),  # client side (bench)
    ("aiortc.RTCRtpSender", "_send_keyframe"),  # client side (testkit)
    ("aiortc.RTCRtpTransceiver", "_get_mline_index"),  # client side (testkit)
    ("aiortc.RTCRtpTransceiver", "_set_mline_index"),  # client side (testkit)
)


class IceTransportLike(Protocol):
    """What RTCDtlsTransport uses of its ICE transport."""

    @property
    def role(self) -> str: ...

    async def _recv(self) -> bytes: ...

    async def _send(self, data: bytes) -> None: ...


class SeamDtlsTransport(RTCDtlsTransport):
    """DTLS/SRTP transport handing decrypted packets to plain callbacks."""

    def __init__(
        self,
        ice: IceTransportLike,
        certificate: RTCCertificate,
        on_rtp: Callable[[bytes], None],
        on_rtcp: Callable[[bytes], None],
    ) -> None:
        super().__init__(cast(Any, ice), [certificate])
        self.on_rtp = on_rtp
        self.on_rtcp = on_rtcp

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        self.on_rtp(data)
        # aiortc's receive loop drains a whole frame burst without yielding; one fan-out can
        # take milliseconds, so give other transports and tasks a turn between packets.
        await asyncio.sleep(0)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self.on_rtcp(data)


class SeamConnection(Connection):
    """aioice's connection, offering each SRTP/SRTCP datagram to `on_srtp` first
    (True: handled; False: it goes to aioice's queue, read by DTLS)."""

    on_srtp: Callable[[bytes], bool] | None = None

    def data_received(self, data: bytes, component: int) -> None:
        if not data:
            # A zero-length datagram, from anyone (aioice takes datagrams from any address):
            # nothing for SRTP or DTLS, and aiortc's DTLS loop dies on one (data[0]).
            return
        handler = self.on_srtp
        if handler is not None and 127 < data[0] < 192 and handler(data):
            return
        super().data_received(data, component)


def set_dtls_role(dtls: RTCDtlsTransport, role: str) -> None:
    """role: "client" (we send ClientHello) or "server"."""
    assert role in ("client", "server")
    dtls._set_role(role)


def srtp_tx_session(dtls: RTCDtlsTransport) -> Session:
    """The outgoing SRTP session of a connected DTLS transport (see media/srtp.py)."""
    session = dtls._tx_srtp
    if session is None:
        raise ConnectionError("SRTP is not set up")
    return cast(Session, session)


def srtp_rx_session(dtls: RTCDtlsTransport) -> Session:
    """The incoming SRTP session of a connected DTLS transport."""
    session = dtls._rx_srtp
    if session is None:
        raise ConnectionError("SRTP is not set up")
    return cast(Session, session)


async def start_dtls(dtls: RTCDtlsTransport, fingerprints: list[Any]) -> None:
    await dtls.start(RTCDtlsParameters(fingerprints=fingerprints))


async def stop_dtls(dtls: RTCDtlsTransport) -> None:
    """Stop DTLS and wait for its receive task, which stop() only cancels."""
    task = dtls._task
    await dtls.stop()
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task])


async def gather_host_candidates(conn: Connection, addresses: Sequence[str]) -> None:
    """Gather host candidates on exactly `addresses` (loopback allowed)."""
    conn._local_candidates_start = True
    candidates = await conn.get_component_candidates(component=1, addresses=list(addresses))
    conn._local_candidates += candidates
    conn._local_candidates_end = True


class UdpTransport(Protocol):
    """What we use of the nominated pair's asyncio/uvloop datagram transport
    (get_write_buffer_size exists on both; typeshed's DatagramTransport lacks it)."""

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def is_closing(self) -> bool: ...


def nominated_socket(conn: Connection) -> tuple[UdpTransport, tuple[str, int]] | None:
    """The UDP transport and remote address aioice nominated, if any."""
    pair = conn._nominated.get(1)
    if pair is None:
        return None
    return cast(UdpTransport, pair.protocol.transport), pair.remote_addr


def socket_fd(transport: UdpTransport) -> int | None:
    """The file descriptor of a nominated pair's datagram transport (uvloop or asyncio)."""
    sock = transport.get_extra_info("socket")
    fd = sock.fileno() if sock is not None else -1
    return fd if fd >= 0 else None


# --- client side: test and benchmark clients (testkit/, bench/) ------------------------------


def nominated_protocol(conn: Connection) -> asyncio.DatagramProtocol | None:
    """The datagram protocol (aioice's StunProtocol) of the pair aioice nominated, if any: a
    client that reads the socket itself hands it every datagram that is not SRTP."""
    pair = conn._nominated.get(1)
    return None if pair is None else cast(asyncio.DatagramProtocol, pair.protocol)


def srtp_profile(dtls: RTCDtlsTransport) -> str:
    """The SRTP protection profile DTLS negotiated ("unknown" before the handshake)."""
    ssl = dtls._ssl
    if ssl is None:
        return "unknown"
    profile = ssl.get_selected_srtp_profile()
    return profile.decode() if isinstance(profile, bytes) else str(profile)


def route_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """aiortc answers a PLI/FIR by telling its own encoder to make a keyframe
    (`_send_keyframe`); a client sending pre-encoded media hands it to its track instead."""
    sender._send_keyframe = request  # type: ignore[method-assign]


def forget_recycled_mlines(pc: RTCPeerConnection, mids: Sequence[str | None]) -> None:
    """Detach each old transceiver from an m-line the offer (whose mids, in m-line order, are
    `mids`) recycles: same index, new mid. aiortc 1.16 never drops a transceiver, and its
    setLocalDescription maps m-line i to the *first* transceiver whose m-line index is i and
    gives it that m-line's mid: the old (stopped) transceiver would take the new mid and
    shadow the new one, and with another kind its answer would not match the offer."""
    for transceiver in pc.getTransceivers():
        index = transceiver._get_mline_index()
        if index is not None and index < len(mids) and transceiver.mid not in (None,
                                                                             mids[index]):
            transceiver._set_mline_index(None)  # type: ignore[arg-type]
