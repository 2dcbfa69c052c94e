"""Fails loudly when aiortc/aioice change what media.aiortc_seam relies on."""

from __future__ import annotations

import inspect

import aioice
import aioice.ice
import aiortc
from aioice import Connection
from aiortc import RTCCertificate, RTCDtlsTransport, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtp import RtcpPacket, RtcpRrPacket

from media import aiortc_seam as seam
from media.rtp import RTP_HEADER
from testkit.aiortc_clients import wait_for

from .conftest import make_config
from .transport_pair import connected_pair


def test_versions_are_pinned() -> None:
    assert aiortc.__version__.startswith(seam.SUPPORTED_AIORTC), aiortc.__version__
    assert aioice.__version__.startswith(seam.SUPPORTED_AIOICE), aioice.__version__


class _IceStub:
    role = "controlled"

    async def _recv(self) -> bytes:
        raise ConnectionError

    async def _send(self, data: bytes) -> None:
        raise ConnectionError


async def test_every_private_attribute_exists() -> None:
    dtls = RTCDtlsTransport(_IceStub(), [RTCCertificate.generateCertificate()])  # type: ignore[arg-type]
    conn = Connection(ice_controlling=False)
    owners = {
        "aiortc.RTCDtlsTransport": RTCDtlsTransport,
        "aiortc.RTCDtlsTransport instance": dtls,
        "aioice.Connection": Connection,
        "aioice.Connection instance": conn,
        "aiortc.RTCRtpSender": RTCRtpSender,
        "aiortc.RTCRtpTransceiver": RTCRtpTransceiver,
    }
    for owner, name in seam.PRIVATE_ATTRIBUTES:
        if owner in owners:
            assert hasattr(owners[owner], name), f"{owner}.{name} is gone"
    assert isinstance(conn._nominated, dict) and isinstance(conn._local_candidates, list)
    assert list(inspect.signature(conn.get_component_candidates).parameters)[:2] == [
        "component", "addresses"]
    # The overridden hooks keep their signatures and are still what aiortc calls.
    assert list(inspect.signature(RTCDtlsTransport._handle_rtp_data).parameters) == [
        "self", "data", "arrival_time_ms"]
    assert list(inspect.signature(RTCDtlsTransport._handle_rtcp_data).parameters) == [
        "self", "data"]
    source = inspect.getsource(RTCDtlsTransport._recv_next)
    for call in ("self._handle_rtp_data(", "self._handle_rtcp_data(", "self.transport._recv()"):
        assert call in source, call
    assert "self.transport._send(" in inspect.getsource(RTCDtlsTransport._write_ssl)
    assert "self.transport.role" in inspect.getsource(RTCDtlsTransport.start)
    pair_source = inspect.getsource(aioice.ice.CandidatePair)
    assert "self.protocol" in pair_source and "def remote_addr" in pair_source
    assert "transport: asyncio.DatagramTransport" in inspect.getsource(aioice.ice.StunProtocol)
    # Non-STUN datagrams reach Connection.data_received(data, component) (SeamConnection).
    assert list(inspect.signature(Connection.data_received).parameters) == [
        "self", "data", "component"]
    assert "self.receiver.data_received(data, self.local_candidate.component)" in inspect.getsource(
        aioice.ice.StunProtocol.datagram_received)
    # Client side (testkit): a PLI/FIR still reaches the sender's _send_keyframe, and an
    # m-line index can still be cleared.
    assert "self._send_keyframe()" in inspect.getsource(RTCRtpSender)
    assert "self._ssl.get_selected_srtp_profile()" in inspect.getsource(RTCDtlsTransport)
    assert list(inspect.signature(RTCRtpTransceiver._set_mline_index).parameters) == [
        "self", "idx"]
    await conn.close()


async def test_seam_carries_rtp_and_rtcp_both_ways() -> None:
    """Behavioural check of every seam function over a real loopback link."""
    server, srec, client, crec = await connected_pair(make_config())
    try:
        for t in (server, client):
            assert all(c.host == "127.0.0.1" for c in t.local_ice().candidates)
        rtp = RTP_HEADER.pack(0x80, 96, 1, 2, 3) + b"payload"
        assert server.send_rtp(rtp)
        client.send_rtcp(bytes(RtcpRrPacket(ssrc=42)))
        await wait_for(lambda: crec.rtp and srec.rtcp, 2)
        assert crec.rtp == [rtp]  # SRTP protected by one side, unprotected by the other
        assert isinstance(srec.rtcp[0], RtcpRrPacket) and srec.rtcp[0].ssrc == 42
        assert RtcpPacket  # parser used by the transport
    finally:
        await server.close()
        await client.close()


async def test_incoming_srtp_skips_aiortcs_receive_loop_once_dtls_is_up() -> None:
    server, srec, client, _ = await connected_pair(make_config())
    assert server._dtls is not None
    via_aiortc: list[bytes] = []
    server._dtls.on_rtp = server._dtls.on_rtcp = via_aiortc.append
    try:
        rtp = RTP_HEADER.pack(0x80, 96, 1, 2, 3) + b"payload"
        assert client.send_rtp(rtp)
        client.send_rtcp(bytes(RtcpRrPacket(ssrc=42)))
        await wait_for(lambda: srec.rtp and srec.rtcp, 2)
        assert srec.rtp == [rtp] and via_aiortc == []
        # A replayed or damaged packet is dropped, counted, and harms nothing.
        assert server._srtp_in is not None
        assert server._on_srtp(b"\x80\x60" + bytes(40))
        await wait_for(lambda: server._srtp_in is not None and server._srtp_in.errors == 1, 1)
        assert srec.rtp == [rtp]
    finally:
        await server.close()
        await client.close()
