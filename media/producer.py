"""Producer: one incoming track, fanned out to its consumers."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import rtcp
from .codecs import keyframe_detector
from .config import MediaConfig
from .fanout import FanOut
from .history import PacketHistory
from .rtp import (
    SILENCE_DBOV,
    ForwardPacket,
    InPacket,
    SeqUnwrapper,
    abs_send_time,
    audio_ext_block,
    audio_level,
    video_ext_block,
)
from .stats import ProducerStats, RateMeter
from .transport import WebRtcTransport
from .types import CloseReason, CodecInfo, Kind, ProducerInfo, Source

if TYPE_CHECKING:
    from .consumer import Consumer

logger = logging.getLogger(__name__)

NACK_RETRY_S = 0.04  # resend a NACK this long after the last one...
NACK_TRIES = 3  # ...at most this many times
MAX_MISSING = 512  # a bigger gap is a reset: ask for a keyframe instead
REMB_FRESH_S = 5.0  # consumers' REMB older than this no longer counts


class SenderReportRef:
    """A publisher's last SR: maps its RTP clock to its NTP clock."""

    __slots__ = ("epoch", "local", "ntp", "rtp_ts")

    def __init__(self, ntp: int, rtp_ts: int, local: float, epoch: int) -> None:
        self.ntp = ntp
        self.rtp_ts = rtp_ts
        self.local = local  # our monotonic arrival time
        self.epoch = epoch


class Producer:
    """An incoming RTP stream from a publisher (audio, camera or screen).

    Packets are handled synchronously: statistics, loss detection (NACK
    upstream), history, keyframe detection, audio level, then one
    ForwardPacket handed to every consumer in one C call (media/fanout.py). Pausing (chair mute) is
    server-side state the client cannot undo.
    """

    def __init__(self, *, peer_id: str, transport: WebRtcTransport, mid: str, kind: Kind,
                 source: Source, codec: CodecInfo, pt: int, rtx_pt: int | None,
                 ssrc: int | None, rtx_ssrc: int | None, config: MediaConfig,
                 max_bitrate_bps: int, nack: bool, remb: bool, audio_level_ext: int,
                 app_data: dict[str, Any],
                 on_audio_level: Callable[[Producer, int, float], None] | None,
                 on_close: Callable[[Producer, CloseReason], None]) -> None:
        self.id = uuid.uuid4().hex
        self.peer_id = peer_id
        self.mid = mid
        self.kind = kind
        self.source = source
        self.codec = codec
        self.pt = pt
        self.rtx_pt = rtx_pt
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.app_data = app_data
        self.paused = False
        self.closed = False
        self.epoch = 0
        self.history = PacketHistory(config.video_history_s) if kind is Kind.VIDEO else None
        # A recorder's tap (media/recorder.py): called with each forwarded packet; it
        # only appends to a bounded queue, so the forwarding path never waits on it.
        self.tap: Callable[[ForwardPacket], None] | None = None
        self.last_sr: SenderReportRef | None = None
        self._transport = transport
        self._clock_rate = codec.clock_rate
        self._keyframe = keyframe_detector(codec)
        self._consumers: list[Consumer] = []
        self._fanout = FanOut()
        self._unwrapper = SeqUnwrapper()
        self._nack = nack and kind is Kind.VIDEO
        self._remb = remb and kind is Kind.VIDEO
        self._max_bitrate = max_bitrate_bps
        self._level_ext = audio_level_ext if kind is Kind.AUDIO else 0
        self._on_audio_level = on_audio_level
        self._on_close = on_close
        self._history_s = config.video_history_s
        self._keyframe_interval = config.keyframe_interval_s
        self._last_keyframe_request = -math.inf
        # Gaps, per kind: a reordered packet fills one (forwarded), a repeat does not.
        self._missing: dict[int, list[float]] = {}  # ext seq -> [first, last sent, tries]
        self._last_nack_check = 0.0
        # statistics (RFC 3550 appendix A)
        self._base_ext: int | None = None
        self._media_received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_transit: float | None = None
        self.packets_received = 0
        self.bytes_received = 0
        self.rtx_received = 0
        self.packets_recovered = 0
        self.nacks_sent = 0
        self.keyframe_requests_sent = 0
        self.keyframe_requests_suppressed = 0
        self.keyframes_received = 0
        self.remb_sent: int | None = None
        self.fraction_lost = 0.0
        self._rate = RateMeter()

    # -- data path -----------------------------------------------------------------
    def receive_rtp(self, pkt: InPacket, now: float, retransmitted: bool = False) -> None:
        if self.closed:
            return
        if pkt.ssrc != self.ssrc:
            self._new_source(pkt.ssrc)
        unwrapper = self._unwrapper
        previous = unwrapper.highest
        ext = unwrapper.unwrap(pkt.seq)
        self.packets_received += 1
        self.bytes_received += len(pkt.payload)
        if self._base_ext is None:
            self._base_ext = ext
        if previous is None or ext > previous:
            self._media_received += 1
            if not retransmitted:
                self._update_jitter(pkt.ts, now)
            if previous is not None and ext > previous + 1:
                self._lost(previous + 1, ext, now)
        elif self._missing.pop(ext, None) is not None:
            self._media_received += 1
            self.packets_recovered += 1
        else:
            return  # duplicate: already forwarded
        if self._missing and now - self._last_nack_check >= NACK_RETRY_S:
            self._retry_nacks(now)

        if self.kind is Kind.VIDEO:
            keyframe = self._keyframe is not None and self._keyframe(pkt.payload)
            if keyframe:
                self.keyframes_received += 1
            tail = video_ext_block(abs_send_time(now)) + pkt.payload
        else:
            keyframe = False
            level = audio_level(pkt, self._level_ext) if self._level_ext else None
            if level is not None and self._on_audio_level is not None:
                self._on_audio_level(self, level, now)
            tail = audio_ext_block(SILENCE_DBOV if level is None else level) + pkt.payload
        fp = ForwardPacket(ext, pkt.ts, pkt.marker, tail, keyframe, self.epoch, now)
        if self.history is not None:
            self.history.put(fp)
        if not self.paused:
            self._fanout.forward(fp, now, self._transport.rx_batch)
            tap = self.tap
            if tap is not None:
                tap(fp)

    def receive_rtx(self, pkt: InPacket, now: float) -> None:
        """Unwrap an RFC 4588 retransmission; it is forwarded in its own slot."""
        if self.closed or len(pkt.payload) < 2 or self.ssrc is None:
            return  # payload-less RTX is bandwidth probing padding
        self.rtx_received += 1
        payload = pkt.payload
        inner = InPacket(self.ssrc, self.pt, pkt.marker, (payload[0] << 8) | payload[1],
                         pkt.ts, pkt.ext_profile, pkt.ext, payload[2:])
        self.receive_rtp(inner, now, retransmitted=True)

    def _new_source(self, ssrc: int) -> None:
        # The publisher restarted its stream: consumers re-sync at the next
        # keyframe and keep their sequence numbers continuous.
        if self.ssrc is not None:
            self.epoch += 1
            logger.info("producer %s: SSRC %s -> %s", self.id, self.ssrc, ssrc)
        self.ssrc = ssrc
        self._unwrapper = SeqUnwrapper()
        self._missing.clear()
        self._base_ext = None
        self._media_received = self._expected_prior = self._received_prior = 0
        self._last_transit = None
        self.last_sr = None
        if self.history is not None:
            self.history.clear()

    def _update_jitter(self, ts: int, now: float) -> None:
        transit = now * self._clock_rate - ts
        last = self._last_transit
        self._last_transit = transit
        if last is not None:
            d = abs(transit - last)
            if d < self._clock_rate * 10:  # ignore timestamp jumps
                self._jitter += (d - self._jitter) / 16

    # -- feedback upstream ---------------------------------------------------------------
    def _lost(self, first: int, end: int, now: float) -> None:
        if end - first > MAX_MISSING:  # a jump, not a loss burst worth repairing
            self._missing.clear()
            self.request_keyframe(now, count_suppressed=False)
            return
        for ext in range(first, end):
            self._missing[ext] = [now, now, 1]
        while len(self._missing) > MAX_MISSING:
            del self._missing[next(iter(self._missing))]
        if self._nack:
            self._send_nack(list(range(first, end)))

    def _retry_nacks(self, now: float) -> None:
        self._last_nack_check = now
        horizon = now - self._history_s
        due = []
        for ext, entry in list(self._missing.items()):
            if entry[0] < horizon or entry[2] >= NACK_TRIES:
                del self._missing[ext]
            elif now - entry[1] >= NACK_RETRY_S:
                entry[1] = now
                entry[2] += 1
                due.append(ext)
        if due and self._nack:
            self._send_nack(due)

    def _send_nack(self, lost: list[int]) -> None:
        if self.ssrc is None:
            return
        self.nacks_sent += 1
        self._transport.send_rtcp(rtcp.build_nack(self._transport.rtcp_ssrc, self.ssrc, lost))

    def request_keyframe(self, now: float, count_suppressed: bool = True) -> None:
        """PLI to the publisher, at most one per keyframe_interval_s."""
        if self.kind is not Kind.VIDEO or self.closed or self.ssrc is None:
            return
        if now - self._last_keyframe_request < self._keyframe_interval:
            if count_suppressed:
                self.keyframe_requests_suppressed += 1
            return
        self._last_keyframe_request = now
        self.keyframe_requests_sent += 1
        self._transport.send_rtcp(rtcp.build_pli(self._transport.rtcp_ssrc, self.ssrc))

    def on_sender_report(self, packet: rtcp.RtcpSrPacket, now: float) -> None:
        info = packet.sender_info
        self.last_sr = SenderReportRef(info.ntp_timestamp, info.rtp_timestamp, now, self.epoch)

    def receiver_report(self, now: float) -> rtcp.RtcpReceiverInfo | None:
        highest = self._unwrapper.highest
        if self.ssrc is None or highest is None or self._base_ext is None:
            return None
        expected = highest - self._base_ext + 1
        interval_expected = expected - self._expected_prior
        interval_received = self._media_received - self._received_prior
        self._expected_prior, self._received_prior = expected, self._media_received
        lost_interval = interval_expected - interval_received
        fraction = 0
        if interval_expected > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // interval_expected)
        self.fraction_lost = fraction / 256
        lsr = dlsr = 0
        sr = self.last_sr
        if sr is not None:
            lsr = rtcp.ntp_middle(sr.ntp)
            dlsr = min(0xFFFFFFFF, int((now - sr.local) * 65536))
        return rtcp.RtcpReceiverInfo(
            ssrc=self.ssrc, fraction_lost=fraction,
            packets_lost=max(-(1 << 23), min(self.packets_lost, (1 << 23) - 1)),
            highest_sequence=(highest - 0x10000) & 0xFFFFFFFF, jitter=int(self._jitter),
            lsr=lsr, dlsr=dlsr)

    def remb(self, now: float) -> bytes | None:
        """REMB for the publisher: the lowest fresh consumer estimate, capped."""
        if not self._remb or self.ssrc is None:
            return None
        bitrate = self._max_bitrate
        for consumer in self._consumers:
            if consumer.remb_bps is not None and now - consumer.remb_time < REMB_FRESH_S:
                bitrate = min(bitrate, consumer.remb_bps)
        self.remb_sent = bitrate
        return rtcp.build_remb(self._transport.rtcp_ssrc, bitrate, [self.ssrc])

    @property
    def packets_lost(self) -> int:
        highest = self._unwrapper.highest
        if highest is None or self._base_ext is None:
            return 0
        return highest - self._base_ext + 1 - self._media_received

    # -- consumers and control ---------------------------------------------------------------
    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers)

    def add_consumer(self, consumer: Consumer) -> None:
        if self.closed:
            raise RuntimeError("producer is closed")
        self._consumers.append(consumer)
        self._fanout.set(self._consumers)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)
            self._fanout.set(self._consumers)

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
        self._fanout.set(self._consumers)
        if self.history is not None:
            self.history.clear()
        self._on_close(self, reason)

    def sample_rate(self, now: float) -> None:
        self._rate.sample(self.bytes_received, now)

    def info(self) -> ProducerInfo:
        return ProducerInfo(id=self.id, peer_id=self.peer_id, kind=self.kind,
                            source=self.source, codec=self.codec.name, paused=self.paused,
                            app_data=dict(self.app_data))

    def stats(self) -> ProducerStats:
        return ProducerStats(
            id=self.id, peer_id=self.peer_id, kind=self.kind.value, source=self.source.value,
            codec=self.codec.name, paused=self.paused, ssrc=self.ssrc,
            packets_received=self.packets_received, bytes_received=self.bytes_received,
            bitrate_bps=self._rate.bps, packets_lost=max(0, self.packets_lost),
            fraction_lost=self.fraction_lost,
            jitter_ms=round(self._jitter * 1000 / self._clock_rate, 3),
            rtx_received=self.rtx_received, packets_recovered=self.packets_recovered,
            nacks_sent=self.nacks_sent, keyframe_requests_sent=self.keyframe_requests_sent,
            keyframe_requests_suppressed=self.keyframe_requests_suppressed,
            keyframes_received=self.keyframes_received, remb_sent_bps=self.remb_sent,
            consumers=len(self._consumers))
