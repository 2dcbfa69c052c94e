"""Consumer: one producer forwarded to one subscriber."""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from . import rtcp, temporal
from .errors import MediaError
from .fanout import LegField, padding_packet, twcc_tail
from .layers import ConsumerLayers, Segment, choose_target, mapped_ts_offset, ts_after
from .producer import Producer
from .rtp import ForwardPacket, StreamRewriter, nearest_ext
from .rtx_budget import RtxBudget, RtxOutcome
from .stats import ConsumerStats, RateMeter
from .transport import WebRtcTransport
from .types import CloseReason, ConsumerInfo, Kind, Source
from .vp8 import rewrite, rewritten_ids

MAX_SEGMENTS = 8  # stretches of output (layer switches) whose NACKs are still answered
# A subscriber's PLI/FIR reaches the publisher at most once per this (the producer also
# spaces them per layer, keyframe_interval_s, for all its subscribers): a weak subscriber that
# loses each keyframe asks again at once, and every keyframe at full size overflows its link.
KEYFRAME_REQUEST_INTERVAL_S = 1.0


class Consumer:
    """Rewrites a producer's packets for one subscriber and repairs its losses.

    The consumer has its own SSRC, payload type, sequence and timestamp space
    (`StreamRewriter`). Video starts, and restarts after a pause or a change of
    source, at a keyframe; until one arrives it asks the producer for one
    (rate limited there). It only sends once the subscriber's answer accepted
    it and its transport is connected (`active`).

    Of a simulcast producer it forwards one layer at a time (media/layers.py): it sits in
    the fan-out of its current layer and, while switching, of its target layer too, whose
    packets the C loop hands back (another epoch) until a keyframe starts it here.
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
        self.retransmissions_refused = 0  # by the budget (media/rtx_budget.py)
        self.nacks_received = 0
        self.keyframe_requests_received = 0
        self.keyframe_requests_suppressed = 0  # from this subscriber, within the interval
        self._last_keyframe_request = float("-inf")
        # Its transport's retransmission budget (media/rtx_budget.py); None: unbounded.
        self.rtx_budget: RtxBudget | None = None
        self.packets_lost = 0
        self.fraction_lost = 0.0
        self.jitter_ms = 0.0
        self.rtt_ms: float | None = None
        self._rate = RateMeter()
        # Layers (one for a single-layer producer): media/layers.py.
        self.spatial_layers = len(producer.streams)
        self.current_layer: int | None = None
        self.target_layer = self.spatial_layers - 1
        self.preferred_spatial: int | None = None
        self.preferred_temporal: int | None = None
        self.allocated_temporal: int | None = None  # the allocator's temporal step (VP8)
        # Bandwidth allocation (media/allocator.py): a cap on the layer, or off (None).
        self.allocated_layer: int | None = self.spatial_layers - 1
        self.allocated_off = False
        # Lowered by the allocator (congestion): the layer being left is no longer sent
        # while the lower one's keyframe is waited for (it would fill the subscriber's
        # bottleneck queue ahead of that keyframe, and lose its packets).
        self.shedding = False
        # After a link's fall (media/link_fall.py) the lower layer's keyframe is asked for
        # only once the bottleneck's queue has drained (Subscribing holds it until then): into
        # the full queue it overflowed it, and the picture froze until it was repaired.
        self.keyframe_hold_until = float("-inf")
        self.layer_switches = 0
        self._segments: deque[Segment] = deque(maxlen=MAX_SEGMENTS)
        self._vp8 = producer.simulcast and producer.codec.name == "VP8"
        self.leg.vp8 = int(self._vp8)

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
        if rw.epoch != fp.epoch:  # first packet, resumed, new source, or a layer switch
            if fp.layer != self.target_layer:
                return  # the layer being left, or one not waited for
            if self._video and not fp.keyframe:
                if now >= self.keyframe_hold_until:
                    self.producer.request_keyframe(now, count_suppressed=False,
                                                   layer=fp.layer)
                if rw.epoch is None or fp.layer == self.current_layer:
                    self.packets_dropped += 1  # nothing of this consumer is flowing
                return
            self._start(fp, now)
        if fp.ext_seq < rw.start_ext:
            return
        leg = self.leg
        if self._vp8:  # temporal layers above the target are dropped (media/temporal.py)
            offsets = temporal.step(leg, fp)
            if offsets is None:
                return
            seq_offset, pid_offset = offsets
        else:
            seq_offset, pid_offset = rw.seq_offset, 0
        newest = fp.ext_seq + seq_offset > rw.out_highest
        mapped = rw.map(fp, now, seq_offset)
        if mapped is None:
            return
        tail = fp.tail
        if self._vp8 and fp.vp8 is not None:
            tail = rewrite(tail, fp.vp8, pid_offset, leg.tl0_offset)
            if newest:
                leg.last_pid, leg.last_tl0 = rewritten_ids(fp.vp8, pid_offset, leg.tl0_offset)
        if newest:
            self.leg.last_marker = fp.marker
        if leg.twcc and (twcc := self._transport.leg_path.twcc) is not None:
            tail = twcc_tail(tail, twcc, now)  # as the C loop numbers it
        if self._transport.forward_rtp(fp.marker | self.pt, mapped[0], mapped[1], self.ssrc,
                                       tail):
            self.packets_sent += 1
            self.payload_bytes += fp.payload_size
        else:
            self.packets_dropped += 1

    def _start(self, fp: ForwardPacket, now: float) -> None:
        """(Re)start the output at `fp`, a keyframe of the target layer (or any audio
        packet): sequence numbers and timestamps continue, VP8 ids too."""
        rw, leg = self._rewriter, self.leg
        streams = self.producer.streams
        sent = leg.last_time >= 0
        ts_offset = None
        current = self.current_layer
        if sent and current is not None and current != fp.layer:
            old, new = streams[current].last_sr, streams[fp.layer].last_sr
            if old is not None and old.epoch == rw.epoch and new is not None \
                    and new.epoch == fp.epoch:
                ts_offset = mapped_ts_offset(old, new, rw.ts_offset, rw.clock_rate)
                if ts_offset is not None:
                    ts_offset = ts_after(fp.ts, ts_offset, rw.last_ts, rw.clock_rate)
        # A frame cut short (its last packet not sent) is told by one missing number.
        switching = sent and current is not None and current != fp.layer
        rw.sync(fp, now, ts_offset, skip=1 if switching and not leg.last_marker else 0)
        if self._vp8 and fp.vp8 is not None and sent:
            leg.pid_offset = (leg.last_pid + 1 - fp.vp8.pid) & 0x7FFF
            leg.tl0_offset = (leg.last_tl0 + 1 - fp.vp8.tl0) & 0xFF
        if self._vp8:
            if self._segments and self._segments[-1].runs is None:  # keep its runs
                runs, forgotten = temporal.runs_of(leg)
                self._segments[-1] = self._segments[-1]._replace(runs=runs,
                                                                 forgotten=forgotten)
            temporal.restart(leg, fp.ext_seq)
        self._segments.append(Segment(fp.ext_seq + rw.seq_offset, rw.seq_offset, rw.ts_offset,
                                      fp.epoch, fp.layer, leg.pid_offset, leg.tl0_offset))
        if switching:
            self.layer_switches += 1
        self.current_layer = fp.layer
        self.shedding = False
        if self.spatial_layers > 1:
            self.producer.place(self)  # leave the old layer's fan-out

    def resync(self) -> None:
        """Restart at the next keyframe (video) or packet (audio), seq continuous."""
        self._rewriter.epoch = None

    def send_padding(self, padding: int, now: float) -> int | None:
        """One padding-only packet of `padding` bytes on the RTX SSRC, numbered on the
        transport's transport-wide sequence (a bandwidth probe, media/probe.py): its RTP size,
        or None if this consumer cannot carry one (not sending, no RTX, not numbered)."""
        twcc = self._transport.leg_path.twcc
        if not self._sending or self.rtx_pt is None or not self.leg.twcc or twcc is None:
            return None
        data = padding_packet(self.rtx_pt, self._rtx_seq, self.leg.last_ts, self.rtx_ssrc,
                              padding, twcc, now)
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF  # one RTX sequence with retransmissions
        self._transport.send_rtp(data)  # refused, it keeps its number: reported lost
        return len(data)

    # -- layers (media/layers.py) ---------------------------------------------------------
    def layers_needed(self) -> set[int]:
        """The layers whose fan-out this consumer is in: forwarded, and waited for."""
        if self.closed:
            return set()
        needed = {self.target_layer}
        if self.current_layer is not None and not (
                self.shedding and self.target_layer < self.current_layer):
            needed.add(self.current_layer)
        return needed

    def set_preferred_layers(self, spatial: int | None, temporal_layer: int | None,
                             now: float) -> ConsumerLayers:
        """The layer this subscriber should get (None: the highest). The temporal one
        applies to a simulcast VP8 producer (media/temporal.py): pictures above it are
        dropped from the next picture on, with no keyframe."""
        for value in (spatial, temporal_layer):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= 15):
                raise MediaError(f"a preferred layer is an int 0..15 or None, not {value!r}")
        self.preferred_spatial, self.preferred_temporal = spatial, temporal_layer
        self._update_temporal()
        self.update_layers(now)
        return self.layers()

    @property
    def target_temporal(self) -> int | None:
        """Pictures of TID <= this are sent (simulcast VP8; temporal.ALL_TEMPORAL: all)."""
        return int(self.leg.tid_target) if self._vp8 else None

    @property
    def temporal_layers(self) -> bool:
        """Its pictures carry temporal layer ids (VP8 simulcast; seen since the restart)."""
        return self._vp8 and self.leg.in_pid >= 0

    @property
    def current_temporal(self) -> int | None:
        return int(self.leg.tid_current) if self._vp8 else None

    def _update_temporal(self) -> None:
        target = temporal.ALL_TEMPORAL
        for value in (self.preferred_temporal, self.allocated_temporal):
            if value is not None:
                target = min(target, value)
        self.leg.tid_target = target

    def update_layers(self, now: float) -> None:
        """Re-choose the target (on the RTCP tick and when the preference changes): the
        publisher may have stopped or resumed sending a layer."""
        if self.spatial_layers < 2 or self.closed:
            return
        top = self.spatial_layers - 1
        preferred = top if self.preferred_spatial is None else self.preferred_spatial
        if self.allocated_layer is not None:
            preferred = min(preferred, self.allocated_layer)
        target = choose_target(self.producer.streams, preferred, now)
        if target == self.target_layer:
            return
        self.target_layer = target
        self.producer.place(self)
        if target != self.current_layer and now >= self.keyframe_hold_until:
            self.producer.request_keyframe(now, count_suppressed=False, layer=target)

    def request_held_keyframe(self, now: float) -> None:
        """The hold after a fall is over: ask for the keyframe a switch waits for."""
        self.keyframe_hold_until = float("-inf")
        if self.spatial_layers > 1 and not self.closed and self.target_layer != self.current_layer:
            self.producer.request_keyframe(now, count_suppressed=False, layer=self.target_layer)

    def set_allocation(self, layer: int | None, now: float,
                       temporal_layer: int | None = None) -> None:
        """The allocator's choice for this subscriber's downlink: the highest layer it may
        get, or None: paused (does not fit, or audio only); and the highest temporal layer
        of it (None: all; a step down that needs no keyframe). Independent of pause()."""
        if temporal_layer != self.allocated_temporal:
            self.allocated_temporal = temporal_layer
            self._update_temporal()
        off = layer is None
        if layer is not None and layer != self.allocated_layer:
            self.shedding = self.current_layer is not None and layer < self.current_layer
            self.allocated_layer = layer
            target = self.target_layer
            self.update_layers(now)  # places it when the target moves
            if self.spatial_layers > 1 and self.target_layer == target:
                self.producer.place(self)  # (shedding changes the fan-outs it is in)
        if off != self.allocated_off:
            self.allocated_off = off
            self._sending = self.active and not self.paused and not off
            if not off:
                self.resync()  # restart at a keyframe, sequence numbers continuous

    def layers(self) -> ConsumerLayers:
        return ConsumerLayers(self.id, self.spatial_layers, self.current_layer,
                              self.target_layer, self.preferred_spatial,
                              self.preferred_temporal, self.current_temporal,
                              self.target_temporal)

    # -- feedback from the subscriber ---------------------------------------------------
    def on_nack(self, lost: Iterable[int], now: float) -> None:
        """Retransmit from the history of the layer each packet came from: RTX if
        negotiated, else as is; within the transport's budget (media/rtx_budget.py)."""
        self.nacks_received += 1
        rewriter = self._rewriter
        if not self.active or not self._segments or rewriter.epoch is None:
            return
        streams = self.producer.streams
        budget = self.rtx_budget
        rtt_s = None if self.rtt_ms is None else self.rtt_ms / 1000
        rtx_overhead = 14 if self.rtx_pt is not None else 12  # RTP header (+ OSN)
        newest = self._segments[-1]
        # After a step down, the keyframe that began the newest stretch is what the picture
        # waits for: its repairs go outside the byte budget (still once per round trip).
        repair_ts = self._stepped_down_keyframe_ts(now)
        for seq in lost:
            out = nearest_ext(seq & 0xFFFF, rewriter.out_highest)
            segment = next((g for g in reversed(self._segments) if g.out_start <= out), None)
            if segment is None:
                continue
            ext, pid_offset = out - segment.seq_offset, segment.pid_offset
            if self._vp8:  # through the runs of pictures dropped (media/temporal.py)
                runs, forgotten = (temporal.runs_of(self.leg) if segment.runs is None
                                   else (segment.runs, segment.forgotten))
                source = temporal.source_of(out, segment.seq_offset, segment.pid_offset,
                                            runs, forgotten)
                if source is None:
                    continue
                ext, pid_offset = source
            history = streams[segment.layer].history
            fp = history.get(ext, now) if history is not None else None
            if fp is None or fp.epoch != segment.epoch:
                continue
            vp8 = fp.vp8 if self._vp8 else None
            if vp8 is not None and vp8.pid_pos and vp8.tid > self.leg.tid_current:
                continue  # a late packet of a layer not sent now: its hole stays
            if budget is not None and budget.admit(
                    self.ssrc, seq, len(fp.tail) + rtx_overhead, now, rtt_s,
                    free=segment is newest and fp.ts == repair_ts) is not RtxOutcome.SENT:
                self.retransmissions_refused += 1
                continue  # before numbering it: a transport-wide number is never skipped
            ts = (fp.ts + segment.ts_offset) & 0xFFFFFFFF
            tail = fp.tail
            if vp8 is not None:
                tail = rewrite(tail, vp8, pid_offset, segment.tl0_offset)
            if self.leg.twcc and (twcc := self._transport.leg_path.twcc) is not None:
                tail = twcc_tail(tail, twcc, now)
            if self.rtx_pt is not None:
                data = fp.build_rtx(self.rtx_pt, self._rtx_seq, ts, self.rtx_ssrc,
                                    seq & 0xFFFF, tail)
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            else:
                data = fp.build(self.pt, seq & 0xFFFF, ts, self.ssrc, tail)
            if self._transport.send_rtp(data):
                self.retransmissions_sent += 1

    def _stepped_down_keyframe_ts(self, now: float) -> int | None:
        """The source timestamp of the keyframe that began the newest stretch, when that
        stretch stepped down a layer (or restarted the same one); None otherwise."""
        segments = self._segments
        newest = segments[-1]
        if len(segments) < 2 or newest.layer > segments[-2].layer:
            return None
        history = self.producer.streams[newest.layer].history
        first = history.get(newest.out_start - newest.seq_offset, now) \
            if history is not None else None
        return first.ts if first is not None and first.epoch == newest.epoch else None

    def on_keyframe_request(self, now: float) -> None:
        self.keyframe_requests_received += 1
        if now - self._last_keyframe_request < KEYFRAME_REQUEST_INTERVAL_S:
            self.keyframe_requests_suppressed += 1
            return
        self._last_keyframe_request = now
        layer = self.current_layer if self.current_layer is not None else self.target_layer
        self.producer.request_keyframe(now, layer=layer)

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
        layer = self.current_layer if self.current_layer is not None else 0
        sr = self.producer.streams[layer].last_sr
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
        self._sending = self.active and not self.paused and not self.allocated_off

    def pause(self) -> None:
        self.paused = True
        self._sending = False

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._sending = self.active and not self.allocated_off
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

    @property
    def bitrate_bps(self) -> int:
        """Payload bit rate sent, as of the last RTCP tick."""
        return self._rate.bps

    def info(self) -> ConsumerInfo:
        return ConsumerInfo(id=self.id, mid=self.mid, producer_id=self.producer.id,
                            producer_peer_id=self.producer.peer_id, kind=self.kind,
                            source=self.producer.source, stream_id=self.stream_id)

    def stats(self) -> ConsumerStats:
        stats = ConsumerStats(
            id=self.id, peer_id=self.peer_id, producer_id=self.producer.id,
            kind=self.kind.value, ssrc=self.ssrc, active=self.active, paused=self.paused,
            packets_sent=self.packets_sent, bytes_sent=self.payload_bytes,
            bitrate_bps=self._rate.bps, packets_dropped=self.packets_dropped,
            retransmissions_sent=self.retransmissions_sent,
            nacks_received=self.nacks_received,
            keyframe_requests_received=self.keyframe_requests_received,
            packets_lost=self.packets_lost, fraction_lost=self.fraction_lost,
            jitter_ms=self.jitter_ms, rtt_ms=self.rtt_ms, remb_bps=self.remb_bps,
            retransmissions_refused=self.retransmissions_refused,
            keyframe_requests_suppressed=self.keyframe_requests_suppressed)
        if self.spatial_layers > 1:
            stats.current_layer, stats.target_layer = self.current_layer, self.target_layer
            stats.preferred_layer = self.preferred_spatial
            stats.layer_switches = self.layer_switches
        if self._vp8:
            stats.current_temporal, stats.target_temporal = (self.current_temporal,
                                                             self.target_temporal)
            stats.temporal_dropped = int(self.leg.temporal_dropped)
        return stats


def stream_id_for(peer_id: str, source: Source) -> str:
    """msid stream id: a peer's mic and camera share one (browsers lip-sync a
    stream); screen share and its audio get another."""
    suffix = "screen" if source in (Source.SCREEN, Source.SCREEN_AUDIO) else "av"
    return f"{peer_id}-{suffix}"
