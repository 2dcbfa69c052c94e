"""Two WebRtcTransports connected back to back on loopback."""

from __future__ import annotations

from aiortc import RTCCertificate
from aiortc.rtp import AnyRtcpPacket

from media import MediaConfig
from media.transport import WebRtcTransport
from media.types import CloseReason, Direction, TransportState
from testkit.aiortc_clients import wait_for


class Recorder:
    """TransportHandler that records everything."""

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[AnyRtcpPacket] = []
        self.states: list[tuple[TransportState, CloseReason | None]] = []
        self.ticks = 0

    def on_rtp(self, transport: WebRtcTransport, data: bytes, now: float) -> None:
        self.rtp.append(data)

    def on_rtcp(self, transport: WebRtcTransport, packets: list[AnyRtcpPacket],
                now: float) -> None:
        self.rtcp.extend(packets)

    def on_rtcp_tick(self, transport: WebRtcTransport, now: float) -> None:
        self.ticks += 1

    def on_state(self, transport: WebRtcTransport, state: TransportState,
                 reason: CloseReason | None) -> None:
        self.states.append((state, reason))


async def connected_pair(config: MediaConfig) -> tuple[WebRtcTransport, Recorder,
                                                        WebRtcTransport, Recorder]:
    """`server` offers (controlling, DTLS server); `client` answers."""
    srec, crec = Recorder(), Recorder()
    server = WebRtcTransport(Direction.RECV, config, RTCCertificate.generateCertificate(), srec)
    client = WebRtcTransport(Direction.SEND, config, RTCCertificate.generateCertificate(), crec)
    await server.prepare()
    await client.prepare()
    server.start(client.local_ice(), client.fingerprints(), "server")
    client.start(server.local_ice(), server.fingerprints(), "client")
    await wait_for(lambda: server.state is TransportState.CONNECTED
                   and client.state is TransportState.CONNECTED, 5)
    return server, srec, client, crec
