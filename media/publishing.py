"""The send side of a peer: the client offers, the server answers; producers."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket

from . import rtcp, sdp
from .codecs import codec_info
from .errors import MediaError, NegotiationError, SdpError
from .producer import Producer
from .recv_stream import RecvStream
from .rtp import InPacket, find_mid, parse_rtp
from .transport import WebRtcTransport
from .twcc import TwccRecorder, transport_seq
from .types import (
    CloseReason,
    Direction,
    Kind,
    ProducerOrigin,
    PublishResult,
    Source,
    TransportState,
)

if TYPE_CHECKING:
    from .peer import Peer

MAX_LEARNED_SSRCS = 64
MAX_RELAYED_LAYERS = 3  # as a publisher's simulcast (simulcast_sdp.py)
Route = tuple[Producer, RecvStream, bool]  # the producer, its stream (layer), is RTX
SOURCES = {Kind.AUDIO: (Source.MIC, Source.SCREEN_AUDIO),
           Kind.VIDEO: (Source.CAMERA, Source.SCREEN)}


class Publishing:
    """Owns the send transport, its producers and the SSRC -> producer routes.

    Implements TransportHandler for the send transport: RTP in, RTCP
    (SR) in, receiver reports / REMB / NACK / PLI out.
    """

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._router = peer.router
        self._config = peer.router.config
        self.transport: WebRtcTransport | None = None
        self._remote: sdp.RemoteTransport | None = None
        self._role = "client"  # our DTLS role, fixed by the first answer
        self._session_id = random.getrandbits(62)
        self._version = 0
        self.producers: dict[str, Producer] = {}
        self._by_mid: dict[str, Producer] = {}
        self._routes: dict[int, Route] = {}  # ssrc -> (producer, its stream, is_rtx)
        self._retired: set[int] = set()  # SSRCs never to learn again (closed, replaced)
        self._layer_mids: dict[str, RecvStream] = {}  # relayed simulcast: mid -> its layer
        self._mid_ext = 0
        self._rid_ext = 0
        self._repaired_rid_ext = 0
        # Transport-wide feedback (media/twcc.py): the negotiated extension id, the arrivals,
        # the timer of the next report (armed by a packet, so an idle publisher costs none).
        self._twcc_ext = 0
        self.twcc: TwccRecorder | None = None
        self._twcc_timer: asyncio.TimerHandle | None = None

    async def publish(self, offer_sdp: str, sources: Mapping[str, Source | str],
                      origins: Mapping[str, ProducerOrigin]) -> PublishResult:
        offer = sdp.parse_publish_offer(offer_sdp, self._config)
        chosen = self._sources(offer, sources)
        layers = {m.mid: taken_layers(m, chosen[m.mid]) for m in offer.media if m.rids}
        staying = {m.mid for m in offer.media if m.sending}
        relayed_layers = {(self._by_mid[mid].id, s.rid) for mid, s in self._layer_mids.items()
                          if mid in staying}
        for mid, origin in origins.items():
            if origin.rids and (len(origin.rids) > MAX_RELAYED_LAYERS
                                or origin.rid not in origin.rids):
                raise MediaError(f"mid {mid}: a relayed layer's rid must be one of its rids")
            if origin.rids and mid not in self._layer_mids:
                if (origin.id, origin.rid) in relayed_layers:
                    raise MediaError(f"mid {mid}: layer {origin.rid} of {origin.id} is "
                                     "relayed on another section already")
                relayed_layers.add((origin.id, origin.rid))
            if origin.rids and origin.id in self.producers:
                continue  # another layer of a simulcast producer relayed to us
            if mid not in self._by_mid and origin.id in {p.id for p in self._router.producers()}:
                raise MediaError(f"producer {origin.id} already exists in router "
                                 f"{self._router.id}")
        transport, restart = self.transport, False
        if transport is not None:
            transport.check_shared_remote(offer.transport.ice)
            restart = self._check_reoffer(offer) and not transport.shared
            if restart:
                await transport.restart_ice_local()
                self._peer.check_open()  # closed while we waited?
        else:
            transport = await self._peer.new_transport(Direction.SEND, self)
            transport.check_shared_remote(offer.transport.ice)
            self._role = transport.dtls_role or (
                "server" if offer.transport.setup == "client" else "client")
        self._version += 1
        answer = sdp.build_publish_answer(offer, transport.local_ice(), transport.fingerprints(),
                                          self._session_id, self._version, self._role, layers)
        # Nothing below can fail: the router only sees complete changes.
        self.transport = transport
        self._remote = offer.transport
        self._mid_ext = offer.mid_ext_id
        self._rid_ext, self._repaired_rid_ext = offer.rid_ext_id, offer.repaired_rid_ext_id
        # Never on a cascade link's transport: its offers come from our own nodes, without it.
        self._twcc_ext = 0 if transport.shared else offer.twcc_ext_id
        if self._twcc_ext and self.twcc is None:
            self.twcc = TwccRecorder(time.time())  # kernel receive times: wall clock
            transport.kernel_stamps = True
        sending = {m.mid for m in offer.media if m.sending}
        removed = []
        for mid, producer in list(self._by_mid.items()):
            if mid not in sending and not producer.closed:
                removed.append(producer.id)
                producer.close(CloseReason.UNPUBLISHED)
        added = []
        for media in offer.media:
            if not media.sending:
                continue
            relay = origins.get(media.mid)
            if media.mid in self._by_mid:  # the client may have restarted it with new SSRCs
                self._route(self._by_mid[media.mid], media, self._layer_mids.get(media.mid))
            elif relay is not None and relay.rids and relay.id in self.producers:
                self._relayed_layer(self.producers[relay.id], media, relay)
            else:
                added.append(self._new_producer(
                    transport, offer, media, chosen[media.mid], relay,
                    relay.rids if relay is not None and relay.rids
                    else layers.get(media.mid, ())))
        if not transport.started:
            transport.start(offer.transport.ice, offer.transport.fingerprints, self._role)
        elif restart:
            transport.complete_restart(offer.transport.ice)
        for producer in added:
            self._router.producer_added(producer)
        return PublishResult(answer, [p.info() for p in added], removed)

    def _sources(self, offer: sdp.PublishOffer,
                 sources: Mapping[str, Source | str]) -> dict[str, Source]:
        kinds = {m.mid: m.kind for m in offer.media}
        unknown = set(sources) - set(kinds)
        if unknown:
            raise SdpError(f"sources name unknown mids: {sorted(unknown)}")
        chosen = {}
        for mid, kind in kinds.items():
            try:
                source = Source(sources.get(mid, Source.default_for(kind)))
            except ValueError:
                raise MediaError(f"unknown source {sources[mid]!r} for mid {mid}") from None
            if source not in SOURCES[kind]:
                raise MediaError(f"source {source.value} does not fit a {kind.value} track")
            chosen[mid] = source
        return chosen

    def _check_reoffer(self, offer: sdp.PublishOffer) -> bool:
        """Validate a re-offer against the live session; True if ICE restarts."""
        assert self._remote is not None
        ours = {(f.algorithm.lower(), f.value.upper()) for f in self._remote.fingerprints}
        theirs = {(f.algorithm.lower(), f.value.upper()) for f in offer.transport.fingerprints}
        if not ours & theirs:
            raise NegotiationError("the DTLS fingerprint changed; create a new peer")
        for media in offer.media:
            producer = self._by_mid.get(media.mid)
            if producer is not None and media.sending and (
                    media.codec.payloadType != producer.pt
                    or codec_info(media.codec) != producer.codec):
                raise NegotiationError(f"mid {media.mid} changed codec while publishing")
            if producer is not None and media.sending and media.mid not in self._layer_mids \
                    and tuple(
                    s.rid for s in producer.streams if s.rid is not None) != taken_layers(
                    media, producer.source):
                raise NegotiationError(f"mid {media.mid} changed its simulcast layers while "
                                       "publishing")
        return offer.transport.ice.ufrag != self._remote.ice.ufrag

    def _new_producer(self, transport: WebRtcTransport, offer: sdp.PublishOffer,
                      media: sdp.PublishedMedia, source: Source,
                      origin: ProducerOrigin | None = None,
                      rids: tuple[str, ...] = ()) -> Producer:
        feedback = {(f.type, f.parameter) for f in media.feedback}
        producer = Producer(
            peer_id=self._peer.id, transport=transport, mid=media.mid, kind=media.kind,
            source=source, codec=codec_info(media.codec), pt=media.codec.payloadType or 0,
            rtx_pt=media.rtx.payloadType if media.rtx else None, ssrc=media.ssrc,
            rtx_ssrc=media.rtx_ssrc, config=self._config,
            max_bitrate_bps=self._router.max_bitrate_bps, nack=("nack", None) in feedback,
            remb=("goog-remb", None) in feedback, audio_level_ext=offer.audio_level_ext_id,
            app_data=dict(self._peer.app_data), on_audio_level=self._router.audio_level,
            on_close=self._producer_closed, rids=rids)
        if origin is not None:  # relayed from another node: keep its identity
            producer.id, producer.peer_id = origin.id, origin.peer_id
            producer.app_data = {**producer.app_data, **origin.app_data}
        self.producers[producer.id] = producer
        self._by_mid[media.mid] = producer
        if origin is not None and origin.rids:
            self._relayed_layer(producer, media, origin)
        else:
            self._route(producer, media)
        return producer

    def _relayed_layer(self, producer: Producer, media: sdp.PublishedMedia,
                       origin: ProducerOrigin) -> None:
        """One layer of a simulcast producer relayed over a cascade link, on its own
        m-section: its SSRCs come from the SDP (no rid extension crosses a link)."""
        stream = producer.stream_for_rid(origin.rid or "")
        assert stream is not None  # checked in publish()
        self._by_mid[media.mid] = producer
        self._layer_mids[media.mid] = stream
        self._route(producer, media, stream)

    def _route(self, producer: Producer, media: sdp.PublishedMedia,
               stream: RecvStream | None = None) -> None:
        if stream is None:
            if producer.simulcast:
                return  # its SSRCs are learnt from the rid extension of their first packets
            stream = producer.streams[0]
        elif stream.ssrc is None:  # a relayed layer: bound from the SDP
            stream.ssrc = media.ssrc
            stream.rtx_ssrc = media.rtx_ssrc
        for ssrc, is_rtx in ((media.ssrc, False), (media.rtx_ssrc, True)):
            if ssrc is not None and ssrc not in self._routes:
                self._retired.discard(ssrc)
                self._routes[ssrc] = (producer, stream, is_rtx)

    def _producer_closed(self, producer: Producer, reason: CloseReason) -> None:
        self.producers.pop(producer.id, None)
        for mid in [m for m, p in self._by_mid.items() if p is producer]:
            del self._by_mid[mid]
            self._layer_mids.pop(mid, None)
        for ssrc, route in list(self._routes.items()):
            if route[0] is producer:
                del self._routes[ssrc]
                # The client may keep sending a while: never hand it to another.
                self._retired.add(ssrc)
        self._router.producer_closed(producer, reason)

    def has_ssrc(self, ssrc: int) -> bool:
        """A producer of ours receives this SSRC (cascade link demultiplexing)."""
        return ssrc in self._routes

    # -- TransportHandler ------------------------------------------------------------
    def on_rtp(self, transport: WebRtcTransport, data: bytes, now: float) -> None:
        pkt = parse_rtp(data)
        if pkt is None:
            return
        if self._twcc_ext:  # every packet that has it, whatever it routes to (padding too)
            seq = transport_seq(pkt.ext_profile, pkt.ext, self._twcc_ext)
            if seq is not None and self.twcc is not None:
                self.twcc.record(seq, transport.kernel_arrival or time.time(), pkt.ssrc)
                if self._twcc_timer is None:
                    self._twcc_timer = asyncio.get_running_loop().call_later(
                        self._config.twcc_interval_s, self._send_twcc)
        route = self._routes.get(pkt.ssrc)
        if route is None:
            route = self._learn(pkt)
            if route is None:
                return
        producer, stream, is_rtx = route
        if is_rtx:
            producer.receive_rtx(pkt, now, stream)
        elif pkt.pt == producer.pt:
            if producer.simulcast:
                producer.receive_rtp(pkt, now, stream=stream)
            else:  # (pkt, now) only: bench/cascade_node.py hooks this call's signature
                producer.receive_rtp(pkt, now)

    def _learn(self, pkt: InPacket) -> Route | None:
        """Route an unsignalled SSRC by mid extension, else (no mid
        extension negotiated) by a payload type only one producer uses; to a simulcast
        layer by its rid (RTX: repaired rid) extension."""
        if len(self._routes) >= MAX_LEARNED_SSRCS or pkt.ssrc in self._retired:
            return None
        if self._mid_ext:
            producer = self._by_mid.get(find_mid(pkt, self._mid_ext) or "")
        else:
            matches = [p for p in self.producers.values() if pkt.pt in (p.pt, p.rtx_pt)]
            producer = matches[0] if len(matches) == 1 else None
        if producer is None:
            return None
        is_rtx = pkt.pt == producer.rtx_pt
        if not is_rtx and pkt.pt != producer.pt:
            return None
        stream = self._layer(producer, pkt, is_rtx)
        if stream is None:
            return None
        for ssrc, route in list(self._routes.items()):
            if route[1] is stream and route[2] == is_rtx:
                del self._routes[ssrc]
                self._retired.add(ssrc)  # late packets must not flip it back
        if is_rtx:
            stream.rtx_ssrc = pkt.ssrc
        self._routes[pkt.ssrc] = (producer, stream, is_rtx)
        return producer, stream, is_rtx

    def _layer(self, producer: Producer, pkt: InPacket, is_rtx: bool) -> RecvStream | None:
        """The stream an unknown SSRC belongs to; counts what cannot be bound."""
        if not producer.simulcast:
            return producer.streams[0]
        rid = None
        if is_rtx and self._repaired_rid_ext:
            rid = find_mid(pkt, self._repaired_rid_ext)
        if rid is None and self._rid_ext:
            rid = find_mid(pkt, self._rid_ext)
        if rid is None:  # the browser stopped naming it, or never did
            producer.unbound_packets += 1
            return None
        stream = producer.stream_for_rid(rid)
        if stream is None:
            producer.unknown_rid_packets += 1
        return stream

    def on_rtcp(self, transport: WebRtcTransport, packets: list[AnyRtcpPacket],
                now: float) -> None:
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                route = self._routes.get(packet.ssrc)
                if route is not None and not route[2]:
                    route[0].on_sender_report(packet, now, route[1])

    def _send_twcc(self) -> None:
        """Report the arrivals since the last report; re-armed by the next packet."""
        self._twcc_timer = None
        transport, twcc = self.transport, self.twcc
        if transport is None or twcc is None or transport.closed:
            return
        for packet in twcc.feedback(transport.rtcp_ssrc):
            # In a compound packet after an empty RR, as every feedback of ours (rtcp.py).
            transport.send_rtcp(rtcp.empty_rr(transport.rtcp_ssrc) + packet)

    def on_rtcp_tick(self, transport: WebRtcTransport, now: float) -> None:
        producers = list(self.producers.values())
        blocks = [b for p in producers for b in p.receiver_reports(now)]
        data = rtcp.build_receiver_reports(transport.rtcp_ssrc, blocks)
        for producer in producers:
            producer.sample_rate(now)
            remb = producer.remb(now)
            if remb is not None:
                data += remb
        if data:
            transport.send_rtcp(data)

    def on_state(self, transport: WebRtcTransport, state: TransportState,
                 reason: CloseReason | None) -> None:
        self._peer.transport_state(transport, state, reason)

    def close_producers(self, reason: CloseReason) -> None:
        if self._twcc_timer is not None:
            self._twcc_timer.cancel()
            self._twcc_timer = None
        for producer in list(self.producers.values()):
            producer.close(reason)


def taken_layers(media: sdp.PublishedMedia, source: Source) -> tuple[str, ...]:
    """The simulcast layers the answer takes: all offered for a camera; a screen share
    stays one high-resolution layer (the last, highest, rid)."""
    if not media.rids:
        return ()
    return media.rids if source is not Source.SCREEN else media.rids[-1:]
