"""Producer: one incoming track, fanned out to its consumers."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import rtcp
from .codecs import keyframe_detector
from .config import MediaConfig
from .history import PacketHistory
from .recv_stream import RecvStream, SenderReportRef
from .rtp import (
    EXT_BLOCK_LEN,
    SILENCE_DBOV,
    ForwardPacket,
    InPacket,
    abs_send_time,
    audio_ext_block,
    audio_level,
    video_ext_block,
)
from .stats import ProducerStats
from .transport import WebRtcTransport
from .types import CloseReason, CodecInfo, Kind, ProducerInfo, Source
from .vp8 import parse_descriptor

if TYPE_CHECKING:
    from .consumer import Consumer

logger = logging.getLogger(__name__)

__all__ = ["Producer", "SenderReportRef"]

NEVER_SENT_S = 5.0  # an announced layer silent this long after the first packet is counted
REMB_FRESH_S = 5.0  # consumers' REMB older than this no longer counts


class Producer:
    """An incoming track from a publisher (audio, camera or screen).

    Its RTP arrives on one stream (`RecvStream`), or one per spatial layer for a simulcast
    camera (`rids`, low to high). Packets are handled synchronously: the stream's
    statistics and loss detection (NACK upstream), history, keyframe detection, audio
    level, then one ForwardPacket handed to the consumers of that stream in one C call
    (media/fanout.py). Pausing (chair mute) is server-side state the client cannot undo.
    """

    def __init__(self, *, peer_id: str, transport: WebRtcTransport, mid: str, kind: Kind,
                 source: Source, codec: CodecInfo, pt: int, rtx_pt: int | None,
                 ssrc: int | None, rtx_ssrc: int | None, config: MediaConfig,
                 max_bitrate_bps: int, nack: bool, remb: bool, audio_level_ext: int,
                 app_data: dict[str, Any],
                 on_audio_level: Callable[[Producer, int, float], None] | None,
                 on_close: Callable[[Producer, CloseReason], None],
                 rids: tuple[str, ...] = ()) -> None:
        self.id = uuid.uuid4().hex
        self.peer_id = peer_id
        self.mid = mid
        self.kind = kind
        self.source = source
        self.codec = codec
        self.pt = pt
        self.rtx_pt = rtx_pt
        self.app_data = app_data
        self.paused = False
        self.closed = False
        self.simulcast = bool(rids)
        history_s = config.video_history_s if kind is Kind.VIDEO else None
        nack = nack and kind is Kind.VIDEO
        self.streams = [
            RecvStream(index=i, rid=rid, ssrc=None if rids else ssrc,
                       rtx_ssrc=None if rids else rtx_ssrc, epoch=i, transport=transport,
                       clock_rate=codec.clock_rate, history_s=history_s,
                       keyframe_interval_s=config.keyframe_interval_s, nack=nack)
            for i, rid in enumerate(rids or (None,))]
        self._by_rid = {s.rid: s for s in self.streams if s.rid is not None}
        self._epochs = itertools.count(len(self.streams))
        # A recorder's tap (media/recorder.py): called with each forwarded packet of the top
        # layer; it only appends to a bounded queue, so forwarding never waits on it.
        self.tap: Callable[[ForwardPacket], None] | None = None
        # ... and with each sender report of that layer, as it arrives among its packets (so
        # a recording places each packet by the report known when the packet came)
        self.report_tap: Callable[[SenderReportRef], None] | None = None
        self._transport = transport
        self._keyframe = keyframe_detector(codec)
        self._vp8 = self.simulcast and codec.name == "VP8"
        self._consumers: list[Consumer] = []
        self._remb = remb and kind is Kind.VIDEO
        self._max_bitrate = max_bitrate_bps
        self._level_ext = audio_level_ext if kind is Kind.AUDIO else 0
        self._on_audio_level = on_audio_level
        self._on_close = on_close
        self._first_packet: float | None = None
        self.remb_sent: int | None = None
        self.unknown_rid_packets = 0
        self.unbound_packets = 0
        self.ssrc_changes = 0

    # -- data path -----------------------------------------------------------------
    def receive_rtp(self, pkt: InPacket, now: float, retransmitted: bool = False,
                    stream: RecvStream | None = None) -> None:
        """A media packet of `stream` (the only one if None)."""
        if self.closed:
            return
        if stream is None:
            stream = self.streams[0]
        if pkt.ssrc != stream.ssrc:
            self._new_source(stream, pkt.ssrc)
        ext = stream.receive(pkt, now, retransmitted)
        if ext is None:
            return
        if self._first_packet is None:
            self._first_packet = now
        if self.kind is Kind.VIDEO:
            keyframe = self._keyframe is not None and self._keyframe(pkt.payload)
            if keyframe:
                stream.on_keyframe(now)
            tail = video_ext_block(abs_send_time(now)) + pkt.payload
        else:
            keyframe = False
            level = audio_level(pkt, self._level_ext) if self._level_ext else None
            if level is not None and self._on_audio_level is not None:
                self._on_audio_level(self, level, now)
            tail = audio_ext_block(SILENCE_DBOV if level is None else level) + pkt.payload
        fp = ForwardPacket(ext, pkt.ts, pkt.marker, tail, keyframe, stream.epoch, now,
                           stream.index)
        if self._vp8:
            fp.vp8 = parse_descriptor(pkt.payload, EXT_BLOCK_LEN)
        if stream.history is not None:
            stream.history.put(fp)
        if not self.paused:
            stream.fanout.forward(fp, now, self._transport.rx_batch)
            tap = self.tap
            if tap is not None and stream is self.streams[-1]:
                tap(fp)

    def receive_rtx(self, pkt: InPacket, now: float, stream: RecvStream | None = None) -> None:
        """Unwrap an RFC 4588 retransmission; it is forwarded in its own slot."""
        if stream is None:
            stream = self.streams[0]
        if self.closed or len(pkt.payload) < 2 or stream.ssrc is None:
            return  # payload-less RTX is bandwidth probing padding
        stream.rtx_received += 1
        payload = pkt.payload
        inner = InPacket(stream.ssrc, self.pt, pkt.marker, (payload[0] << 8) | payload[1],
                         pkt.ts, pkt.ext_profile, pkt.ext, payload[2:])
        if self.simulcast:
            self.receive_rtp(inner, now, retransmitted=True, stream=stream)
        else:  # bench/cascade_node.py hooks receive_rtp(self, pkt, now, retransmitted)
            self.receive_rtp(inner, now, retransmitted=True)

    def stream_for_rid(self, rid: str) -> RecvStream | None:
        return self._by_rid.get(rid)

    def _new_source(self, stream: RecvStream, ssrc: int) -> None:
        # The publisher (re)started the stream: consumers re-sync at the next keyframe and
        # keep their sequence numbers continuous.
        if stream.ssrc is not None:
            self.ssrc_changes += 1
            logger.info("producer %s layer %s: SSRC %s -> %s", self.id, stream.index,
                        stream.ssrc, ssrc)
            stream.new_source(ssrc, next(self._epochs))
        else:
            stream.ssrc = ssrc  # bound at last: the epoch it was made with stands

    # -- feedback upstream ---------------------------------------------------------------
    def request_keyframe(self, now: float, count_suppressed: bool = True,
                         layer: int | None = None) -> None:
        """PLI to the publisher for one layer (all if None), at most one per
        keyframe_interval_s per layer."""
        if self.kind is not Kind.VIDEO or self.closed:
            return
        if layer is not None:
            if 0 <= layer < len(self.streams):
                self.streams[layer].request_keyframe(now, count_suppressed)
            return
        for stream in self.streams:
            stream.request_keyframe(now, count_suppressed)

    def on_sender_report(self, packet: rtcp.RtcpSrPacket, now: float,
                         stream: RecvStream | None = None) -> None:
        stream = stream or self.streams[0]
        stream.on_sender_report(packet, now)
        tap = self.report_tap
        if tap is not None and stream is self.streams[-1] and stream.last_sr is not None:
            tap(stream.last_sr)

    def receiver_reports(self, now: float) -> list[rtcp.RtcpReceiverInfo]:
        return [b for s in self.streams if (b := s.receiver_report(now)) is not None]

    def receiver_report(self, now: float) -> rtcp.RtcpReceiverInfo | None:
        return self.streams[0].receiver_report(now)

    def remb(self, now: float) -> bytes | None:
        """REMB for the publisher: the cap, lowered to the lowest fresh consumer estimate
        unless simulcast (each consumer then takes the layer that fits it)."""
        ssrcs = [s.ssrc for s in self.streams if s.ssrc is not None]
        if not self._remb or not ssrcs:
            return None
        bitrate = self._max_bitrate
        if not self.simulcast:
            for consumer in self._consumers:
                if consumer.remb_bps is not None and now - consumer.remb_time < REMB_FRESH_S:
                    bitrate = min(bitrate, consumer.remb_bps)
        self.remb_sent = bitrate
        return rtcp.build_remb(self._transport.rtcp_ssrc, bitrate, ssrcs)

    # -- one stream's view, for single-layer callers (the top layer's for the recorder) --
    @property
    def ssrc(self) -> int | None:
        return self.streams[0].ssrc

    @property
    def rtx_ssrc(self) -> int | None:
        return self.streams[0].rtx_ssrc

    @rtx_ssrc.setter
    def rtx_ssrc(self, value: int | None) -> None:
        self.streams[0].rtx_ssrc = value

    @property
    def epoch(self) -> int:
        return self.streams[0].epoch

    @property
    def history(self) -> PacketHistory | None:
        return self.streams[0].history

    @property
    def last_sr(self) -> SenderReportRef | None:
        return self.streams[-1].last_sr

    @last_sr.setter
    def last_sr(self, value: SenderReportRef | None) -> None:
        self.streams[-1].last_sr = value

    # -- totals over the streams ---------------------------------------------------------
    def _total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.streams)

    packets_received = property(lambda self: self._total("packets_received"))
    bytes_received = property(lambda self: self._total("bytes_received"))
    rtx_received = property(lambda self: self._total("rtx_received"))
    packets_recovered = property(lambda self: self._total("packets_recovered"))
    nacks_sent = property(lambda self: self._total("nacks_sent"))
    keyframe_requests_sent = property(lambda self: self._total("keyframe_requests_sent"))
    keyframe_requests_suppressed = property(
        lambda self: self._total("keyframe_requests_suppressed"))
    keyframes_received = property(lambda self: self._total("keyframes_received"))
    packets_lost = property(lambda self: self._total("packets_lost"))

    # -- consumers and control ---------------------------------------------------------------
    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers)

    def add_consumer(self, consumer: Consumer) -> None:
        if self.closed:
            raise RuntimeError("producer is closed")
        self._consumers.append(consumer)
        self.place(consumer)

    def place(self, consumer: Consumer) -> None:
        """Put the consumer in the fan-out of the layers it forwards or waits for."""
        wanted = consumer.layers_needed()
        for stream in self.streams:
            want = stream.index in wanted
            if want != (consumer in stream.fanout.consumers):
                members = [c for c in stream.fanout.consumers if c is not consumer]
                stream.fanout.set([*members, consumer] if want else members)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)
        for stream in self.streams:
            if consumer in stream.fanout.consumers:
                stream.fanout.set([c for c in stream.fanout.consumers if c is not consumer])

    def pause(self) -> bool:
        """Stop forwarding; True if the state changed."""
        if self.paused or self.closed:
            return False
        self.paused = True
        return True

    def resume(self, now: float) -> bool:
        if not self.paused or self.closed:
            return False
        self.paused = False
        for consumer in self._consumers:
            consumer.resync()
        self.request_keyframe(now, count_suppressed=False)
        return True

    def close(self, reason: CloseReason) -> None:
        """Idempotent; closes every consumer of this producer first."""
        if self.closed:
            return
        self.closed = True
        for consumer in list(self._consumers):
            consumer.close(CloseReason.PRODUCER_CLOSED)
        self._consumers.clear()
        for stream in self.streams:
            stream.fanout.set([])
            if stream.history is not None:
                stream.history.clear()
        self._on_close(self, reason)

    def sample_rate(self, now: float) -> None:
        for stream in self.streams:
            stream.rate.sample(stream.bytes_received, now)

    def layers_never_sent(self, now: float) -> int:
        """Announced layers still silent NEVER_SENT_S after the producer's first packet."""
        first = self._first_packet
        if not self.simulcast or first is None or now - first < NEVER_SENT_S:
            return 0
        return sum(1 for s in self.streams if s.packets_received == 0)

    def info(self) -> ProducerInfo:
        return ProducerInfo(id=self.id, peer_id=self.peer_id, kind=self.kind,
                            source=self.source, codec=self.codec.name, paused=self.paused,
                            app_data=dict(self.app_data))

    def stats(self, now: float | None = None) -> ProducerStats:
        now = time.monotonic() if now is None else now
        first = self.streams[0]
        return ProducerStats(
            id=self.id, peer_id=self.peer_id, kind=self.kind.value, source=self.source.value,
            codec=self.codec.name, paused=self.paused, ssrc=first.ssrc,
            packets_received=self.packets_received, bytes_received=self.bytes_received,
            bitrate_bps=sum(s.rate.bps for s in self.streams),
            packets_lost=max(0, self.packets_lost),
            fraction_lost=max(s.fraction_lost for s in self.streams),
            jitter_ms=round(first.jitter * 1000 / self.codec.clock_rate, 3),
            rtx_received=self.rtx_received, packets_recovered=self.packets_recovered,
            nacks_sent=self.nacks_sent, keyframe_requests_sent=self.keyframe_requests_sent,
            keyframe_requests_suppressed=self.keyframe_requests_suppressed,
            keyframes_received=self.keyframes_received, remb_sent_bps=self.remb_sent,
            consumers=len(self._consumers),
            layers=[s.stats(now) for s in self.streams] if self.simulcast else [],
            unknown_rid_packets=self.unknown_rid_packets,
            unbound_packets=self.unbound_packets, ssrc_changes=self.ssrc_changes,
            layers_never_sent=self.layers_never_sent(now))
