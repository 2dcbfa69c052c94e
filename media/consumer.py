"""Consumer: one producer forwarded to one subscriber."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable

from . import rtcp
from .fanout import LegField
from .producer import Producer
from .rtp import ForwardPacket, StreamRewriter
from .stats import ConsumerStats, RateMeter
from .transport import WebRtcTransport
from .types import CloseReason, ConsumerInfo, Kind, Source


class Consumer:
    """Rewrites a producer's packets for one subscriber and repairs its losses.

    The consumer has its own SSRC, payload type, sequence and timestamp space
    (`StreamRewriter`). Video starts, and restarts after a pause or a change of
    source, at a keyframe; until one arrives it asks the producer for one
    (rate limited there). It only sends once the subscriber's answer accepted
    it and its transport is connected (`active`).
    """

    def __init__(self, *, peer_id: str, producer: Producer, transport: WebRtcTransport,
                 mid: str, pt: int, rtx_pt: int | None, ssrc: int, rtx_ssrc: int,
                 stream_id: str, on_close: Callable[[Consumer, CloseReason], None]) -> None:
        self.id = uuid.uuid4().hex
        self.peer_id = peer_id
        self.producer = producer
        self.kind = producer.kind
        self.mid = mid
        self._rewriter = StreamRewriter(producer.codec.clock_rate)
        self.leg = self._rewriter.leg  # what the C fan-out reads (media/fanout.py)
        self.leg.path = transport.leg_path.cdata
        self.pt = pt
        self.rtx_pt = rtx_pt  # offered; None after the answer if not accepted
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.stream_id = stream_id
        self.active = False
        self.answered = False
        self.paused = False
        self.closed = False
        self.remb_bps: int | None = None
        self.remb_time = 0.0
        self._transport = transport
        self._on_close = on_close
        self._video = producer.kind is Kind.VIDEO
        self._clock_rate = producer.codec.clock_rate
        self._rtx_seq = self._rewriter.out_highest ^ 0x5A5A
        self._sr_sent: OrderedDict[int, float] = OrderedDict()  # LSR -> send time
        self.retransmissions_sent = 0
        self.nacks_received = 0
        self.keyframe_requests_received = 0
        self.packets_lost = 0
        self.fraction_lost = 0.0
        self.jitter_ms = 0.0
        self.rtt_ms: float | None = None
        self._rate = RateMeter()

    # State the C fan-out shares, kept in the leg (media/fanout.py).
    pt = LegField("pt", int)
    ssrc = LegField("ssrc", int)
    _sending = LegField("sending", bool)  # active and not paused
    packets_sent = LegField("packets_sent", int)
    payload_bytes = LegField("payload_bytes", int)
    packets_dropped = LegField("packets_dropped", int)

    # -- data path: what hop_forward hands back, and the reference of what it does ------
    def send(self, fp: ForwardPacket, now: float) -> None:
        if not self._sending:
            return
        rw = self._rewriter
        if rw.epoch != fp.epoch:  # first packet, resumed, or new source
            if self._video and not fp.keyframe:
                self.producer.request_keyframe(now, count_suppressed=False)
                self.packets_dropped += 1
                return
            rw.sync(fp, now)
        mapped = rw.map(fp, now)
        if mapped is None:
            return
        if self._transport.forward_rtp(fp.marker | self.pt, mapped[0], mapped[1], self.ssrc,
                                       fp.tail):
            self.packets_sent += 1
            self.payload_bytes += fp.payload_size
        else:
            self.packets_dropped += 1

    def resync(self) -> None:
        """Restart at the next keyframe (video) or packet (audio), seq continuous."""
        self._rewriter.epoch = None

    # -- feedback from the subscriber ---------------------------------------------------
    def on_nack(self, lost: Iterable[int], now: float) -> None:
        """Retransmit from the producer's history: RTX if negotiated, else as is."""
        self.nacks_received += 1
        history = self.producer.history
        rewriter = self._rewriter
        if history is None or not self.active:
            return
        for seq in lost:
            source = rewriter.source_seq(seq & 0xFFFF)
            if source is None:
                continue
            fp = history.get(source, now)
            if fp is None or fp.epoch != rewriter.epoch:
                continue
            ts = rewriter.out_ts(fp.ts)
            if self.rtx_pt is not None:
                data = fp.build_rtx(self.rtx_pt, self._rtx_seq, ts, self.rtx_ssrc, seq & 0xFFFF)
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            else:
                data = fp.build(self.pt, seq & 0xFFFF, ts, self.ssrc)
            if self._transport.send_rtp(data):
                self.retransmissions_sent += 1

    def on_keyframe_request(self, now: float) -> None:
        self.keyframe_requests_received += 1
        self.producer.request_keyframe(now)

    def on_remb(self, bitrate: int, now: float) -> None:
        self.remb_bps = bitrate
        self.remb_time = now

    def on_receiver_report(self, block: rtcp.RtcpReceiverInfo, now: float) -> None:
        self.fraction_lost = block.fraction_lost / 256
        self.packets_lost = block.packets_lost
        self.jitter_ms = round(block.jitter * 1000 / self._clock_rate, 3)
        sent = self._sr_sent.get(block.lsr) if block.lsr else None
        if sent is not None:
            rtt = now - sent - block.dlsr / 65536
            if rtt >= 0:
                self.rtt_ms = round(rtt * 1000, 3)

    def sender_report(self, now: float) -> rtcp.RtcpSrPacket | None:
        """SR in this consumer's RTP clock; NTP from the publisher's SR if any.

        Using the publisher's NTP clock for both its audio and its video
        keeps the subscriber's lip sync right whatever our clock says.
        """
        rewriter = self._rewriter
        if self.packets_sent == 0 or rewriter.last_time is None:
            return None
        sr = self.producer.last_sr
        if sr is not None and sr.epoch == rewriter.epoch:
            elapsed = now - sr.local
            ntp = sr.ntp + int(elapsed * (1 << 32))
            rtp_ts = rewriter.out_ts(sr.rtp_ts + int(elapsed * self._clock_rate))
        else:
            ntp = rtcp.ntp_now()
            rtp_ts = (rewriter.last_ts
                      + int((now - rewriter.last_time) * self._clock_rate)) & 0xFFFFFFFF
        self._sr_sent[rtcp.ntp_middle(ntp)] = now
        while len(self._sr_sent) > 8:
            self._sr_sent.popitem(last=False)
        return rtcp.RtcpSrPacket(ssrc=self.ssrc, sender_info=rtcp.RtcpSenderInfo(
            ntp_timestamp=ntp & 0xFFFFFFFFFFFFFFFF, rtp_timestamp=rtp_ts,
            packet_count=self.packets_sent & 0xFFFFFFFF,
            octet_count=self.payload_bytes & 0xFFFFFFFF))

    # -- lifecycle ---------------------------------------------------------------------------
    def apply_answer(self, pt: int, rtx_pt: int | None, nack: bool) -> None:
        self.pt = pt
        self.rtx_pt = rtx_pt if nack else None
        self.answered = True

    def set_active(self, active: bool) -> None:
        self.active = active and self.answered and not self.closed
        self._sending = self.active and not self.paused

    def pause(self) -> None:
        self.paused = True
        self._sending = False

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._sending = self.active
            self.resync()

    def close(self, reason: CloseReason) -> None:
        """Idempotent; detaches from the producer and tells the owner."""
        if self.closed:
            return
        self.closed = True
        self.active = self._sending = False
        self.producer.remove_consumer(self)
        self._on_close(self, reason)

    def sample_rate(self, now: float) -> None:
        self._rate.sample(self.payload_bytes, now)

    def info(self) -> ConsumerInfo:
        return ConsumerInfo(id=self.id, mid=self.mid, producer_id=self.producer.id,
                            producer_peer_id=self.producer.peer_id, kind=self.kind,
                            source=self.producer.source, stream_id=self.stream_id)

    def stats(self) -> ConsumerStats:
        return ConsumerStats(
            id=self.id, peer_id=self.peer_id, producer_id=self.producer.id,
            kind=self.kind.value, ssrc=self.ssrc, active=self.active, paused=self.paused,
            packets_sent=self.packets_sent, bytes_sent=self.payload_bytes,
            bitrate_bps=self._rate.bps, packets_dropped=self.packets_dropped,
            retransmissions_sent=self.retransmissions_sent,
            nacks_received=self.nacks_received,
            keyframe_requests_received=self.keyframe_requests_received,
            packets_lost=self.packets_lost, fraction_lost=self.fraction_lost,
            jitter_ms=self.jitter_ms, rtt_ms=self.rtt_ms, remb_bps=self.remb_bps)


def stream_id_for(peer_id: str, source: Source) -> str:
    """msid stream id: a peer's mic and camera share one (browsers lip-sync a
    stream); screen share and its audio get another."""
    suffix = "screen" if source in (Source.SCREEN, Source.SCREEN_AUDIO) else "av"
    return f"{peer_id}-{suffix}"
