"""A minimal subscriber without aiortc's RTCPeerConnection: our own transport
in the client's role, answering server offers and counting RTP per SSRC.
Cheap enough to run many of them (benchmarks) and it can restart ICE."""

from __future__ import annotations

from collections import Counter

from aiortc import RTCCertificate, RTCIceCandidate, RTCIceParameters
from aiortc.rtcdtlstransport import RTCDtlsParameters
from aiortc.rtp import AnyRtcpPacket
from aiortc.sdp import SessionDescription

from media import MediaConfig, Peer, ServerOffer
from media.rtp import RTP_HEADER
from media.sdp import parse, remote_transport
from media.transport import WebRtcTransport
from media.types import CloseReason, Direction, TransportState

_CERT = RTCCertificate.generateCertificate()


class RawSubscriber:
    def __init__(self, peer: Peer, config: MediaConfig) -> None:
        self.peer = peer
        self.config = config
        # SEND direction = ICE controlled, as an answerer is.
        self.transport = WebRtcTransport(Direction.SEND, config, _CERT, self)
        self.packets: Counter[int] = Counter()
        self._prepared = False
        self._remote_ufrag: str | None = None

    async def apply(self, offer: ServerOffer | None) -> None:
        while offer is not None:
            offer = await self.peer.set_answer(await self.answer(offer))

    async def answer(self, offer: ServerOffer) -> str:
        if not self._prepared:
            await self.transport.prepare()
            self._prepared = True
        session = parse(offer.sdp, self.config)
        remote = session.media[0]
        assert remote.ice is not None and remote.dtls is not None
        restart = self._remote_ufrag not in (None, remote.ice.usernameFragment)
        if restart:
            await self.transport.restart_ice_local()
        ice = self.transport.local_ice()
        for media in session.media:
            media.direction = "recvonly" if media.direction == "sendonly" else "inactive"
            media.ssrc, media.ssrc_group, media.msid = [], [], None
            media.ice = RTCIceParameters(usernameFragment=ice.ufrag, password=ice.pwd)
            media.ice_candidates = [RTCIceCandidate(
                component=1, foundation=c.foundation, ip=c.host, port=c.port,
                priority=c.priority, protocol="udp", type=c.type) for c in ice.candidates]
            media.dtls = RTCDtlsParameters(fingerprints=self.transport.fingerprints(),
                                           role="client")
        session.type = "answer"
        server = SessionDescription.parse(offer.sdp)
        theirs = remote_transport(server, server.media)
        if not self.transport.started:
            self.transport.start(theirs.ice, theirs.fingerprints, "client")
        elif restart:
            self.transport.complete_restart(theirs.ice)
        self._remote_ufrag = remote.ice.usernameFragment
        return str(session)

    @property
    def connected(self) -> bool:
        return self.transport.state is TransportState.CONNECTED

    # TransportHandler
    def on_rtp(self, transport: WebRtcTransport, data: bytes, now: float) -> None:
        self.packets[RTP_HEADER.unpack_from(data, 0)[4]] += 1

    def on_rtcp(self, transport: WebRtcTransport, packets: list[AnyRtcpPacket],
                now: float) -> None:
        pass

    def on_rtcp_tick(self, transport: WebRtcTransport, now: float) -> None:
        pass

    def on_state(self, transport: WebRtcTransport, state: TransportState,
                 reason: CloseReason | None) -> None:
        pass

    async def close(self) -> None:
        await self.transport.close()
