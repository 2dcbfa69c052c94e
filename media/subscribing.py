"""The receive side of a peer: the server offers, the client answers; consumers.

The server re-offers whenever its consumers change. One offer is out at a
time: changes made meanwhile go into the next one, which set_answer()
returns.

m-sections are recycled as mediasoup does (JSEP section 5.2.2): a closed
consumer's m-section is rejected (port 0, out of the BUNDLE group) in the
next offer, and once the client has answered an offer that rejected it, a new
consumer takes that index with a new mid. Mids are never reused. The first
m-section carries the BUNDLE transport, so it is only made inactive, never
rejected. The SDP is thus bounded by the live consumers plus the rejected
sections not reused yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
)

from . import rtcp, sdp, twcc
from .allocator import Allocation, Allocator, Priority, VideoDemand, Want
from .bwe import GccEstimator, HistoryStats, SendHistory
from .consumer import Consumer, stream_id_for
from .errors import LimitError, NegotiationError, NotFoundError, RtcpError
from .events import ConsumerClosed, RenegotiationNeeded
from .probe import Prober, ProbeStats
from .producer import Producer
from .rtp import EXT_TRANSPORT_CC
from .rtx_budget import RtxBudget, RtxStats
from .transport import WebRtcTransport, random_ssrc
from .types import (
    CloseReason,
    CodecInfo,
    ConsumerInfo,
    Direction,
    Kind,
    ServerOffer,
    Source,
    TransportState,
)

if TYPE_CHECKING:
    from .peer import Peer


# The longest a lower layer's keyframe waits for the bottleneck's queue to drain after a fall.
# The wait is part of the freeze, and the drain counted (what was numbered and not reported)
# includes what an overflowing queue drops: 0.35-0.39 s counted on a 300 kbit/s link whose
# queue holds 0.2 s. Shorter is safe: a queue of B seconds, full at the fall and fed nothing
# since, holds at most B - hold when the keyframe comes, so a keyframe that crosses the link
# within the hold (up to 9 kB at 300 kbit/s; a 320x180 one is 3-8 kB) overflows no queue.
MAX_KEYFRAME_HOLD_S = 0.25


class SignalingState(enum.Enum):
    STABLE = "stable"
    HAVE_LOCAL_OFFER = "have-local-offer"


@dataclass
class _Slot:
    """One m-section index of the receive transport."""

    section: sdp.OfferSection  # what the next offer says at this index
    consumer: Consumer | None
    offered: bool = False  # `section` has been in an offer
    reusable: bool = False  # rejected, and the client answered an offer rejecting it
    previous: sdp.OfferSection | None = None  # the rejected section a consumer not yet
    #                                           offered took over (restored if it closes)


@dataclass
class _PendingOffer:
    sections: list[sdp.OfferSection]
    slots: list[_Slot]  # parallel to sections: what each index held when offered
    consumers: list[Consumer | None]
    ice_restart: bool


class _PayloadTypes:
    """Payload types of a receive transport: unique per codec config (BUNDLE)."""

    def __init__(self) -> None:
        self._by_codec: dict[CodecInfo, tuple[int, int | None]] = {}
        self._free = itertools.chain(range(96, 128), range(35, 64))

    def get(self, codec: CodecInfo) -> tuple[int, int | None]:
        if codec not in self._by_codec:
            pt = next(self._free)
            rtx = next(self._free) if codec.kind is Kind.VIDEO else None
            self._by_codec[codec] = (pt, rtx)
        return self._by_codec[codec]


class Subscribing:
    """Owns the receive transport, its consumers and the offer/answer state."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._router = peer.router
        self._config = peer.router.config
        self.transport: WebRtcTransport | None = None
        self._remote: sdp.RemoteTransport | None = None
        self.signaling = SignalingState.STABLE
        self._pending: _PendingOffer | None = None
        self._dirty = False
        self._slots: list[_Slot] = []
        self._next_mid = 0
        self._pts = _PayloadTypes()
        self._session_id = random.getrandbits(62)
        self._version = 0
        self.consumers: dict[str, Consumer] = {}
        self._by_ssrc: dict[int, Consumer] = {}
        # Fed always; applied if config.bandwidth_allocation.
        self.allocator = Allocator(startup_grace_s=self._config.allocation_startup_grace_s)
        self.allocation: Allocation | None = None
        self.wants: dict[str, Want] = {}  # consumer id -> what the client's tile needs
        # Transport-cc negotiated (MediaConfig.subscriber_transport_cc, media/bwe.py): the
        # transport's numbered packets, and the estimate from the feedback on them.
        self.send_history: SendHistory | None = None
        self.bwe: GccEstimator | None = None
        # NACKs are answered within a share of the downlink (media/rtx_budget.py); not on a
        # cascade link's half, whose losses every subscriber below would inherit.
        self.rtx_budget = RtxBudget()
        self.prober: Prober | None = None  # padding probes before a raise (media/probe.py)

    async def subscribe(self, producer_ids: tuple[str, ...], layers: bool = False
                        ) -> tuple[list[ConsumerInfo], ServerOffer | None]:
        producers = [self._router.get_producer(pid) for pid in producer_ids]
        if layers:
            return await self._subscribe_layers(producers)
        wanted = {p.id for p in producers} - {c.producer.id for c in self.consumers.values()}
        needed = self.sections_needed(len(wanted))
        if needed > self._config.max_media_sections:
            raise LimitError(f"the receive transport would need {needed} m-sections, the "
                             f"limit is {self._config.max_media_sections}; answer the "
                             "pending offer or unsubscribe first")
        if self.transport is None:
            self.transport = await self._peer.new_transport(Direction.RECV, self)
        infos = []
        for producer in producers:
            if producer.closed:
                raise NotFoundError(f"producer {producer.id} closed meanwhile")
            existing = next((c for c in self.consumers.values() if c.producer is producer),
                            None)
            infos.append((existing or self._new_consumer(self.transport, producer)).info())
        return infos, self.offer()

    async def _subscribe_layers(self, producers: list[Producer]
                                ) -> tuple[list[ConsumerInfo], ServerOffer | None]:
        """A cascade link's export: one consumer per (producer, spatial layer), each
        pinned to its layer; a single-layer producer gets one consumer as usual."""
        pairs = [(p, i if p.simulcast else None) for p in producers
                 for i in range(len(p.streams))]
        have = {(c.producer.id, c.preferred_spatial) for c in self.consumers.values()}
        missing = [(p, i) for p, i in pairs if (p.id, i) not in have]
        needed = self.sections_needed(len(missing))
        if needed > self._config.max_media_sections:
            raise LimitError(f"the receive transport would need {needed} m-sections, the "
                             f"limit is {self._config.max_media_sections}")
        if self.transport is None:
            self.transport = await self._peer.new_transport(Direction.RECV, self)
        now = time.monotonic()
        for producer, layer in missing:
            if producer.closed:
                raise NotFoundError(f"producer {producer.id} closed meanwhile")
            consumer = self._new_consumer(self.transport, producer)
            if layer is not None:
                consumer.set_preferred_layers(layer, None, now)
        ids = {p.id for p in producers}
        return [c.info() for c in self.consumers.values() if c.producer.id in ids], self.offer()

    def _new_consumer(self, transport: WebRtcTransport, producer: Producer) -> Consumer:
        pt, rtx_pt = self._pts.get(producer.codec)
        ssrc, rtx_ssrc = self._unique_ssrc(), self._unique_ssrc()
        mid = str(self._next_mid)
        self._next_mid += 1
        stream_id = stream_id_for(producer.peer_id, producer.source)
        consumer = Consumer(peer_id=self._peer.id, producer=producer, transport=transport,
                            mid=mid, pt=pt, rtx_pt=rtx_pt, ssrc=ssrc, rtx_ssrc=rtx_ssrc,
                            stream_id=stream_id, on_close=self._consumer_closed)
        section = sdp.OfferSection(mid, producer.kind, producer.codec, pt, rtx_pt, True,
                                   ssrc, rtx_ssrc, stream_id, producer.id)
        slot = next((s for s in self._slots if s.reusable), None)
        if slot is None:
            self._slots.append(_Slot(section, consumer))
        else:  # recycle: same index, new mid
            slot.previous, slot.section, slot.consumer = slot.section, section, consumer
            slot.offered = slot.reusable = False
        self.consumers[consumer.id] = consumer
        self._by_ssrc[ssrc] = consumer
        producer.add_consumer(consumer)
        if self._peer.link_transport is None:
            consumer.rtx_budget = self.rtx_budget
        if self.allocating:
            consumer.allocated_layer = 0  # start low; the allocator raises it
            consumer.update_layers(time.monotonic())
        self._dirty = True
        return consumer

    @property
    def allocating(self) -> bool:
        """Whether the allocator applies here: configured, and not a cascade link's half (a
        node link carries what the other node's subscribers need, chosen there)."""
        return self._config.bandwidth_allocation and self._peer.link_transport is None

    def sections_needed(self, new_consumers: int) -> int:
        """m-sections of the receive SDP once `new_consumers` more consumers exist
        (they take reusable rejected sections first)."""
        reusable = sum(1 for s in self._slots if s.reusable)
        return len(self._slots) + max(0, new_consumers - reusable)

    def _unique_ssrc(self) -> int:
        used = {s.section.ssrc for s in self._slots} | {s.section.rtx_ssrc for s in self._slots}
        shared = self._peer.link_transport  # a node link: unique over all its meetings
        while (ssrc := random_ssrc()) in used or (shared is not None
                                                  and shared.ssrc_in_use(ssrc)):
            pass
        return ssrc

    def has_ssrc(self, ssrc: int) -> bool:
        """One of our m-sections sends this SSRC (cascade link demultiplexing)."""
        return any(ssrc in (s.section.ssrc, s.section.rtx_ssrc) for s in self._slots)

    def consumer(self, consumer_id: str) -> Consumer:
        consumer = self.consumers.get(consumer_id)
        if consumer is None:
            raise NotFoundError(f"no consumer {consumer_id} on peer {self._peer.id}")
        return consumer

    def _consumer_closed(self, consumer: Consumer, reason: CloseReason) -> None:
        self.consumers.pop(consumer.id, None)
        self._by_ssrc.pop(consumer.ssrc, None)
        self.wants.pop(consumer.id, None)
        renegotiate = False
        for index, slot in enumerate(self._slots):
            if slot.consumer is consumer:
                slot.consumer = None
                if slot.offered:  # the first section carries BUNDLE: never rejected
                    slot.section = dataclasses.replace(slot.section, active=False,
                                                       rejected=index > 0)
                    renegotiate = True
                elif slot.previous is not None:  # recycled but never offered: undo
                    slot.section, slot.previous = slot.previous, None
                    slot.offered = slot.reusable = True
                else:  # appended and never offered: the client never saw it
                    self._slots.remove(slot)
                break
        self._dirty = self._dirty or renegotiate
        router, peer_id = self._router, self._peer.id
        router.emit(ConsumerClosed(router.id, peer_id, consumer.id, consumer.producer.id,
                                   reason))
        if renegotiate and not self._peer.closed:
            router.emit(RenegotiationNeeded(router.id, peer_id))

    def offer(self) -> ServerOffer | None:
        """A new offer if anything changed and no offer is out."""
        transport = self.transport
        if transport is None or self._pending is not None or not self._dirty:
            return None
        sections = [slot.section for slot in self._slots]
        self._version += 1
        text = sdp.build_recv_offer(sections, transport.local_ice(), transport.fingerprints(),
                                    transport.cname, self._session_id, self._version,
                                    transport_cc=self._offers_transport_cc)
        self._pending = _PendingOffer(sections, list(self._slots),
                                      [slot.consumer for slot in self._slots],
                                      transport.ice_restarting)
        for slot in self._slots:
            slot.offered, slot.previous = True, None
        self.signaling = SignalingState.HAVE_LOCAL_OFFER
        self._dirty = False
        return ServerOffer(text, [s.consumer.info() for s in self._slots if s.consumer])

    def set_answer(self, answer_sdp: str) -> ServerOffer | None:
        pending, transport = self._pending, self.transport
        if pending is None or transport is None:
            raise NegotiationError("no server offer is waiting for an answer")
        answer = sdp.parse_recv_answer(answer_sdp, pending.sections, self._config)
        transport.check_shared_remote(answer.transport.ice)
        if self._remote is not None:
            old = {f.value.upper() for f in self._remote.fingerprints}
            if not old & {f.value.upper() for f in answer.transport.fingerprints}:
                raise NegotiationError("the DTLS fingerprint changed; create a new peer")
        self._pending = None
        self.signaling = SignalingState.STABLE
        if not transport.started:
            role = "server" if answer.transport.setup == "client" else "client"
            transport.start(answer.transport.ice, answer.transport.fingerprints, role)
        elif pending.ice_restart:
            transport.complete_restart(answer.transport.ice)
        self._remote = answer.transport
        connected = transport.state is TransportState.CONNECTED
        for slot, section, consumer in zip(pending.slots, pending.sections, pending.consumers):
            if section.rejected and slot.section is section:
                slot.reusable = True  # the client's current description rejects it
            if consumer is None or consumer.closed or consumer.answered:
                continue
            media = answer.media.get(section.mid)
            if media is None or not media.accepted:
                consumer.close(CloseReason.REJECTED)
                continue
            consumer.apply_answer(media.pt, media.rtx_pt, media.nack)
            if media.transport_cc and self._offers_transport_cc:
                self._number(transport)
                consumer.leg.twcc = 1  # its packets get transport-wide sequence numbers
            consumer.set_active(connected)
        return self.offer()

    async def restart_ice(self) -> ServerOffer | None:
        if self.transport is None:
            return None
        await self.transport.restart_ice_local()
        self._peer.check_open()  # closed while we waited?
        self._dirty = True
        return self.offer()

    # -- transport-wide feedback (media/bwe.py) -----------------------------------------
    @property
    def _offers_transport_cc(self) -> bool:
        """Configured, and not a cascade link's half (its halves are never allocated)."""
        return self._config.subscriber_transport_cc and self._peer.link_transport is None

    def _number(self, transport: WebRtcTransport) -> None:
        """Number this transport's video packets, read the feedback on them (once)."""
        if self.send_history is not None:
            return
        transport.leg_path.set_twcc(EXT_TRANSPORT_CC)
        self.send_history = SendHistory(transport.leg_path.twcc)
        self.bwe = GccEstimator(max_bps=max(self._config.max_bitrate_bps * 8, 10_000_000))
        self.prober = Prober(self.send_history, self.bwe, self._pad, self.bwe.max_bps)
        self.allocator.padding_probes = True  # probe, do not try (media/allocator.py)
        transport.feedback_sink = self._on_transport_feedback

    def _pad(self, padding: int, now: float) -> int | None:
        """One padding packet for a probe, on the first video consumer that can carry it."""
        for consumer in self.consumers.values():
            if consumer.kind is Kind.VIDEO \
                    and (size := consumer.send_padding(padding, now)) is not None:
                return size
        return None

    def _on_transport_feedback(self, packet: bytes, now: float) -> None:
        """One RTPFB FMT 15 packet: the estimate, which is this transport's (REMB no more)."""
        history, bwe = self.send_history, self.bwe
        if history is None or bwe is None:
            return
        try:
            feedback = twcc.parse_feedback(packet)
        except twcc.FeedbackError:
            history.malformed += 1
            return
        results = history.results(feedback)
        if not results:
            return
        falls = bwe.falls
        estimate = int(bwe.on_feedback(results, int(now * 1_000_000)))
        if bwe.falls != falls and self.allocating:  # the link fell (media/link_fall.py)
            self.allocator.on_fall(now)
            self._hold_keyframes(history.unreported_bytes() * 8 / max(bwe.fall_bps, 1.0), now)
        if self.prober is not None:
            self.prober.on_feedback(results, now)
        if self.allocator.on_remb(estimate, now) and self.allocating and self._falls(estimate):
            self._allocate(now)  # a falling estimate is acted on at once, as a REMB's

    def _hold_keyframes(self, drain_s: float, now: float) -> None:
        """The link fell (media/link_fall.py): what is on its way drains in `drain_s`; the
        keyframes of the layers the allocation now lowers to are asked for after that (the
        old layer is no longer sent meanwhile: `Consumer.shedding`). Asked for earlier by
        what a request to the low layer takes to bring a keyframe (`RecvStream.
        keyframe_latency_s`, the least of the recent ones, at most half the hold), so that
        it reaches the link as the queue has drained, not that much after."""
        hold = min(drain_s, MAX_KEYFRAME_HOLD_S)
        loop = asyncio.get_running_loop()
        for consumer in self.consumers.values():
            if consumer.kind is Kind.VIDEO:
                latency = consumer.producer.streams[0].keyframe_latency_s or 0.0
                ask_in = hold - min(latency, hold / 2)
                consumer.keyframe_hold_until = now + ask_in
                loop.call_later(ask_in, self._release_keyframes)

    def _release_keyframes(self) -> None:
        now = time.monotonic()
        for consumer in list(self.consumers.values()):
            if consumer.keyframe_hold_until <= now:
                consumer.request_held_keyframe(now)

    def feedback_stats(self) -> HistoryStats:
        """Transport-wide feedback on what this transport sent (all zero: not negotiated)."""
        return HistoryStats() if self.send_history is None else self.send_history.stats()

    def probe_stats(self) -> ProbeStats:
        """Its padding probes (all zero: transport-cc not negotiated)."""
        return ProbeStats() if self.prober is None else ProbeStats(**vars(self.prober.stats))

    # -- TransportHandler ------------------------------------------------------------
    def on_rtp(self, transport: WebRtcTransport, data: bytes, now: float) -> None:
        pass  # clients send no media on their receive transport

    def on_rtcp(self, transport: WebRtcTransport, packets: list[AnyRtcpPacket],
                now: float) -> None:
        by_ssrc = self._by_ssrc
        for packet in packets:
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                video_loss: float | None = None
                for block in packet.reports:
                    if (consumer := by_ssrc.get(block.ssrc)) is not None:
                        consumer.on_receiver_report(block, now)
                        if consumer.kind is Kind.VIDEO and not consumer.allocated_off:
                            video_loss = max(video_loss or 0.0, consumer.fraction_lost)
                if video_loss is not None and self.allocating \
                        and self.allocator.on_loss(video_loss, now):
                    self._allocate(now)  # heavy loss is acted on at once, like a falling REMB
            elif isinstance(packet, RtcpRtpfbPacket):
                consumer = by_ssrc.get(packet.media_ssrc)
                if consumer is not None and packet.fmt == RTCP_RTPFB_NACK:
                    consumer.on_nack(packet.lost, now)
            elif isinstance(packet, RtcpPsfbPacket):
                self._on_psfb(packet, now)

    def _on_psfb(self, packet: RtcpPsfbPacket, now: float) -> None:
        by_ssrc = self._by_ssrc
        if packet.fmt == RTCP_PSFB_PLI:
            if (consumer := by_ssrc.get(packet.media_ssrc)) is not None:
                consumer.on_keyframe_request(now)
        elif packet.fmt == RTCP_PSFB_FIR:
            for ssrc in rtcp.fir_ssrcs(packet):
                if (consumer := by_ssrc.get(ssrc)) is not None:
                    consumer.on_keyframe_request(now)
        elif packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = rtcp.remb(packet.fci)
            except RtcpError:
                return
            # One estimate per transport (REMB names the SSRCs it covers: all of ours); with
            # transport-cc the estimate is ours (media/bwe.py) and a REMB only informs.
            if self.bwe is None and any(ssrc in by_ssrc for ssrc in ssrcs) \
                    and self.allocator.on_remb(bitrate, now) \
                    and self.allocating and self._falls(bitrate):
                self._allocate(now)  # a falling estimate is acted on at once, not next tick
            for ssrc in ssrcs:
                if (consumer := by_ssrc.get(ssrc)) is not None:
                    consumer.on_remb(bitrate, now)

    def on_rtcp_tick(self, transport: WebRtcTransport, now: float) -> None:
        reports = []
        for consumer in list(self.consumers.values()):
            consumer.sample_rate(now)
            consumer.update_layers(now)  # simulcast: a layer started or stopped
        self.rtx_budget.set_basis(self._rtx_basis(now), now)
        if self.allocating:
            self._allocate(now)
        for consumer in list(self.consumers.values()):
            if consumer.active and (sr := consumer.sender_report(now)) is not None:
                reports.append(sr)
        for packet in rtcp.build_sender_reports(reports, transport.cname):
            transport.send_rtcp(packet)

    def _rtx_basis(self, now: float) -> int | None:
        """What the retransmission budget is a share of: the downlink estimate, or without
        one (no feedback yet, or none fresh) what this transport sends."""
        estimate = self.allocator.estimate(now)
        if estimate is not None:
            return estimate
        sent = sum(c.bitrate_bps for c in self.consumers.values())
        return sent or None

    def retransmission_stats(self) -> RtxStats:
        """NACKed packets resent and refused on this transport (media/rtx_budget.py)."""
        return RtxStats(**vars(self.rtx_budget.stats))

    def _falls(self, bitrate: int) -> bool:
        """Whether a new estimate is a fall from the one the last allocation used (the
        receiver saw congestion: Chrome sends a REMB at once when its estimate drops)."""
        last = self.allocation.estimate_bps if self.allocation is not None else None
        return last is not None and bitrate < last * self.allocator.probe_fall

    def _allocate(self, now: float) -> None:
        """Share the downlink estimate out (media/allocator.py) and apply it."""
        speaker = self._router.active_speaker
        speaker_peer = None
        if speaker is not None:
            try:
                speaker_peer = self._router.get_producer(speaker).peer_id
            except NotFoundError:
                pass
        videos = []
        for consumer in self.consumers.values():
            producer = consumer.producer
            if consumer.kind is Kind.AUDIO:
                continue  # never paused, and not in the estimate (REMB covers video only)
            first = producer.peer_id == speaker_peer \
                or producer.peer_id in self._router.priority_peers
            priority = (Priority.SPEAKER if first
                        else Priority.SCREEN if producer.source is Source.SCREEN
                        else Priority.OTHER)
            videos.append(VideoDemand(consumer.id, priority,
                                      tuple(s.rate.bps for s in producer.streams),
                                      self.wants.get(consumer.id, Want.HIGH),
                                      consumer.temporal_layers))
        allocation = self.allocator.allocate(videos, now)
        previous, self.allocation = self.allocation, allocation
        if self.prober is not None and allocation.probe_bps is not None:
            self.prober.request(allocation.probe_bps, now)
        for consumer_id, layer in allocation.layers.items():
            self.consumers[consumer_id].set_allocation(layer, now,
                                                       allocation.temporal.get(consumer_id))
        was_off = previous is not None and previous.video_off  # video starts on: not news
        if was_off != allocation.video_off:
            self._peer.bandwidth_changed(allocation)

    def on_state(self, transport: WebRtcTransport, state: TransportState,
                 reason: CloseReason | None) -> None:
        if state is TransportState.CONNECTED:
            for consumer in self.consumers.values():
                consumer.set_active(True)
        self._peer.transport_state(transport, state, reason)

    def close_consumers(self, reason: CloseReason) -> None:
        for consumer in list(self.consumers.values()):
            consumer.close(reason)
