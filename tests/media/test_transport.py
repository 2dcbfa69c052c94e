from __future__ import annotations

import asyncio

from aiortc import RTCCertificate

from media.ice import IceParameters
from media.rtp import RTP_HEADER
from media.transport import WebRtcTransport
from media.types import CloseReason, Direction, TransportState
from testkit.aiortc_clients import wait_for

from .conftest import make_config
from .transport_pair import Recorder, connected_pair

RTP = RTP_HEADER.pack(0x80, 96, 1, 2, 3) + b"x" * 100


async def test_candidates_use_configured_and_announced_addresses() -> None:
    transport = WebRtcTransport(Direction.SEND, make_config(announced_address="203.0.113.7"),
                                RTCCertificate.generateCertificate(), Recorder())
    await transport.prepare()
    try:
        ice = transport.local_ice()
        assert [c.host for c in ice.candidates] == ["203.0.113.7"]
        assert transport._ice._conn is not None  # bound on loopback, announced otherwise
        assert [c.host for c in transport._ice._conn.local_candidates] == ["127.0.0.1"]
    finally:
        await transport.close()


async def test_ice_restart_keeps_dtls_and_moves_the_path() -> None:
    server, srec, client, crec = await connected_pair(make_config())
    try:
        old_ports = (server.local_port, client.local_port)
        old_ufrag = server.local_ice().ufrag
        await server.restart_ice_local()
        await client.restart_ice_local()
        assert server.local_ice().ufrag != old_ufrag
        server.complete_restart(client.local_ice())
        client.complete_restart(server.local_ice())
        await wait_for(lambda: (server.local_port, client.local_port) != old_ports
                       and not server.ice_restarting and not client.ice_restarting, 5)
        assert server.local_port != old_ports[0] and client.local_port != old_ports[1]
        server.send_rtp(RTP)
        await wait_for(lambda: crec.rtp == [RTP], 2)  # same SRTP session, new path
        assert server.state is TransportState.CONNECTED
        assert [s for s, _ in srec.states] == [TransportState.CONNECTING,
                                                TransportState.CONNECTED]
    finally:
        await server.close()
        await client.close()


async def test_ice_timeout_fails_the_transport() -> None:
    rec = Recorder()
    transport = WebRtcTransport(Direction.SEND, make_config(ice_timeout_s=0.3),
                                RTCCertificate.generateCertificate(), rec)
    await transport.prepare()
    try:
        transport.start(IceParameters("nobody", "nobodynobodynobodynobody"), [], "client")
        await wait_for(lambda: transport.state is TransportState.FAILED, 3)
        assert rec.states[-1] == (TransportState.FAILED, CloseReason.ICE_TIMEOUT)
        assert not transport.send_rtp(RTP)
    finally:
        await transport.close()


async def test_slow_consumer_drops_then_fails() -> None:
    config = make_config(rtcp_interval_s=0.1, slow_consumer_timeout_s=0.3)
    server, srec, client, crec = await connected_pair(config)
    try:
        assert server._ice.path is not None
        _, addr = server._ice.path

        written: list[bytes] = []

        class Clogged:  # the kernel buffer is full: asyncio queues in user space
            def get_write_buffer_size(self) -> int:
                return 10**9

            def sendto(self, data: bytes, addr: object) -> None:
                written.append(data)

            def get_extra_info(self, name: str, default: object = None) -> object:
                return default  # no socket: the C fan-out hands packets back

            def is_closing(self) -> bool:
                return False

        server._ice.path = (Clogged(), addr)  # type: ignore[assignment]
        assert not server.send_rtp(RTP) and server.packets_dropped == 1
        await wait_for(lambda: server.state is TransportState.FAILED, 3)
        assert srec.states[-1] == (TransportState.FAILED, CloseReason.SLOW_CONSUMER)
        assert crec.rtp == []
        assert all(192 <= d[1] <= 223 for d in written)  # only (small) RTCP was queued
    finally:
        await server.close()
        await client.close()


async def test_close_is_idempotent_and_leaves_no_tasks() -> None:
    before = asyncio.all_tasks()
    server, _, client, _ = await connected_pair(make_config())
    await asyncio.gather(server.close(), server.close(), client.close())
    await server.close()
    assert server.closed and server.state is TransportState.CLOSED
    await asyncio.sleep(0.05)
    assert asyncio.all_tasks() == before
