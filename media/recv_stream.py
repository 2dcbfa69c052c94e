"""RecvStream: one incoming RTP stream (an SSRC, and its RTX SSRC) of a producer.

A single-layer producer has one; a simulcast producer has one per spatial layer (its rid),
as mediasoup's RtpStreamRecv. Each keeps what is per SSRC: sequence unwrapping, loss
detection and NACKs upstream, RFC 3550 receive statistics, the NACK/RTX history, keyframe
counting and keyframe requests (PLI to this SSRC), the sender report clock mapping, the
bit rate, and the fan-out of the consumers currently forwarding it (or waiting for its
keyframe).
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from . import rtcp
from .fanout import FanOut
from .history import PacketHistory
from .rtp import InPacket, SeqUnwrapper
from .stats import LayerStats, RateMeter

if TYPE_CHECKING:
    from .transport import WebRtcTransport

NACK_RETRY_S = 0.04  # resend a NACK this long after the last one...
NACK_TRIES = 3  # ...at most this many times
MAX_MISSING = 512  # a bigger gap is a reset: ask for a keyframe instead
ACTIVE_S = 1.5  # a layer with no packet for this long is not being sent
KEYFRAME_LATENCIES = 8  # the answered requests whose latency is kept


class SenderReportRef:
    """A publisher's last SR: maps its RTP clock to its NTP clock."""

    __slots__ = ("epoch", "local", "ntp", "rtp_ts")

    def __init__(self, ntp: int, rtp_ts: int, local: float, epoch: int) -> None:
        self.ntp = ntp
        self.rtp_ts = rtp_ts
        self.local = local  # our monotonic arrival time
        self.epoch = epoch


class RecvStream:
    """One SSRC of a producer: loss repair, statistics, history, keyframes, SR."""

    def __init__(self, *, index: int, rid: str | None, ssrc: int | None,
                 rtx_ssrc: int | None, epoch: int, transport: WebRtcTransport,
                 clock_rate: int, history_s: float | None, keyframe_interval_s: float,
                 nack: bool) -> None:
        self.index = index  # spatial layer, 0 = lowest
        self.rid = rid
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.epoch = epoch  # unique in the producer: bumps when the SSRC changes
        self.history = PacketHistory(history_s) if history_s is not None else None
        self.fanout = FanOut()
        self.last_sr: SenderReportRef | None = None
        self.last_packet = -math.inf  # arrival of the newest media packet
        self._transport = transport
        self._clock_rate = clock_rate
        self._history_s = history_s or 1.0
        self._keyframe_interval = keyframe_interval_s
        self._nack = nack
        self._last_keyframe_request = -math.inf
        self._keyframes_at_request = 0  # keyframes_received when the last PLI went
        # From a PLI to the first keyframe after it, for the last answered requests.
        self._keyframe_latencies: deque[float] = deque(maxlen=KEYFRAME_LATENCIES)
        self._unwrapper = SeqUnwrapper()
        # Gaps: a reordered packet fills one (forwarded), a repeat does not.
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
        self.fraction_lost = 0.0
        self.rate = RateMeter()

    # -- data path ----------------------------------------------------------------------
    def receive(self, pkt: InPacket, now: float, retransmitted: bool) -> int | None:
        """The packet's extended sequence number, None if it is a repeat."""
        unwrapper = self._unwrapper
        previous = unwrapper.highest
        ext = unwrapper.unwrap(pkt.seq)
        self.packets_received += 1
        self.bytes_received += len(pkt.payload)
        if self._base_ext is None:
            self._base_ext = ext
        if previous is None or ext > previous:
            self._media_received += 1
            self.last_packet = now
            if not retransmitted:
                self._update_jitter(pkt.ts, now)
            if previous is not None and ext > previous + 1:
                self._lost(previous + 1, ext, now)
        elif self._missing.pop(ext, None) is not None:
            self._media_received += 1
            self.packets_recovered += 1
        else:
            return None  # duplicate: already forwarded
        if self._missing and now - self._last_nack_check >= NACK_RETRY_S:
            self._retry_nacks(now)
        return ext

    def new_source(self, ssrc: int, epoch: int) -> None:
        """The publisher restarted this stream with another SSRC: start over."""
        self.ssrc = ssrc
        self.epoch = epoch
        self._unwrapper = SeqUnwrapper()
        self._missing.clear()
        self._base_ext = None
        self._media_received = self._expected_prior = self._received_prior = 0
        self._last_transit = None
        self.last_sr = None
        if self.history is not None:
            self.history.clear()

    def active(self, now: float) -> bool:
        """Media arrived lately: the publisher sends this layer."""
        return now - self.last_packet < ACTIVE_S

    def _update_jitter(self, ts: int, now: float) -> None:
        transit = now * self._clock_rate - ts
        last = self._last_transit
        self._last_transit = transit
        if last is not None:
            d = abs(transit - last)
            if d < self._clock_rate * 10:  # ignore timestamp jumps
                self._jitter += (d - self._jitter) / 16

    # -- feedback upstream -------------------------------------------------------------
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

    def on_keyframe(self, now: float) -> None:
        """A keyframe's first packet arrived (the producer's detector says so)."""
        if (self.keyframes_received == self._keyframes_at_request  # the first since a PLI
                and self._last_keyframe_request > -math.inf):
            self._keyframe_latencies.append(now - self._last_keyframe_request)
        self.keyframes_received += 1

    @property
    def keyframe_latency_s(self) -> float | None:
        """The least time a recent PLI took to bring a keyframe (None: none answered yet).
        The least, since a keyframe that came on its own soon after a PLI reads short: a
        request timed by it brings its keyframe no earlier than it expects."""
        return min(self._keyframe_latencies, default=None)

    def request_keyframe(self, now: float, count_suppressed: bool = True) -> None:
        """PLI for this SSRC, at most one per keyframe_interval_s."""
        if self.ssrc is None:
            return
        if now - self._last_keyframe_request < self._keyframe_interval:
            if count_suppressed:
                self.keyframe_requests_suppressed += 1
            return
        self._last_keyframe_request = now
        self._keyframes_at_request = self.keyframes_received
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

    @property
    def packets_lost(self) -> int:
        highest = self._unwrapper.highest
        if highest is None or self._base_ext is None:
            return 0
        return highest - self._base_ext + 1 - self._media_received

    @property
    def jitter(self) -> float:
        return self._jitter

    @property
    def missing(self) -> dict[int, list[float]]:
        return self._missing

    def stats(self, now: float) -> LayerStats:
        return LayerStats(index=self.index, rid=self.rid, ssrc=self.ssrc,
                          rtx_ssrc=self.rtx_ssrc, active=self.active(now),
                          packets_received=self.packets_received,
                          bitrate_bps=self.rate.bps, packets_lost=max(0, self.packets_lost),
                          keyframes_received=self.keyframes_received,
                          keyframe_requests_sent=self.keyframe_requests_sent,
                          consumers=len(self.fanout.consumers))
