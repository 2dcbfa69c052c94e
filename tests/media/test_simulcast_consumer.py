"""A consumer of a simulcast producer: layer switches at keyframes with continuous
sequence numbers, timestamps and VP8 ids; NACKs answered from the right layer."""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace

import pytest
from aiortc.rtp import RtcpPsfbPacket, RtcpSenderInfo, RtcpSrPacket

from media import MediaConfig
from media.consumer import Consumer
from media.rtp import RTP_HEADER, InPacket
from media.rtx_budget import RtxBudget
from media.subscribing import Subscribing
from media.vp8 import parse_descriptor

from .fakes import SimulcastLeg

SSRCS = (1000, 2000, 3000)
TS_BASE = (10_000, 5_000_000, 900_000_000)  # each layer's own random RTP clock origin


def vp8(pid: int, tl0: int, key: bool = False, start: bool = True) -> bytes:
    """Descriptor with X, I (15-bit PictureID) and L (TL0PICIDX), then a frame tag."""
    first = 0x90 if start else 0x80
    tag = b"\x00" if key else b"\x01"
    return bytes((first, 0xC0, 0x80 | (pid >> 8), pid & 0xFF, tl0)) + tag + b"x" * 60


class Simulcast(SimulcastLeg):
    """A three-layer producer fed frame by frame, and one consumer of it."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = [100, 20_000, 65_530]  # layer 2 wraps during the test
        self.pid = [7, 3000, 32_760]  # layer 2's PictureID wraps too
        self.tl0 = [250, 10, 128]
        self.frame = 0

    def send_frame(self, now: float, key_on: tuple[int, ...] = (), packets: int = 2,
                   order: tuple[int, ...] = (0, 1, 2)) -> None:
        """One frame on every layer (same capture time), `packets` packets each."""
        for layer in order:
            ts = (TS_BASE[layer] + self.frame * 3000) & 0xFFFFFFFF
            for i in range(packets):
                payload = vp8(self.pid[layer], self.tl0[layer], key=layer in key_on,
                              start=i == 0)
                pkt = InPacket(SSRCS[layer], 96, 0x80 if i == packets - 1 else 0,
                               self.seq[layer] & 0xFFFF, ts, 0, b"", payload)
                self.seq[layer] += 1
                self.producer.receive_rtp(pkt, now, stream=self.producer.streams[layer])
            self.pid[layer] = (self.pid[layer] + 1) & 0x7FFF
            self.tl0[layer] = (self.tl0[layer] + 1) & 0xFF
        self.frame += 1

    def sender_reports(self, now: float) -> None:
        ntp = 0x12345678 << 32
        for layer in range(3):
            ts = (TS_BASE[layer] + self.frame * 3000) & 0xFFFFFFFF
            sr = RtcpSrPacket(ssrc=SSRCS[layer], sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp, rtp_timestamp=ts, packet_count=0, octet_count=0))
            self.producer.on_sender_report(sr, now, self.producer.streams[layer])

    def out(self) -> list[tuple[int, int, int, int, bool]]:
        """(seq, ts, PictureID, TL0PICIDX, keyframe) of each packet sent down."""
        rows = []
        for data in self.down.rtp:
            _, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data, 0)
            assert ssrc == 5555 and b1 & 0x7F == 100
            d = parse_descriptor(data[12 + 8:], 0)
            assert d is not None
            rows.append((seq, ts, d.pid, d.tl0, not data[12 + 8 + 5] & 1 and bool(data[20] & 0x10)))
        return rows

    def plis(self) -> list[int]:
        return [p.media_ssrc for p in self.up.rtcp_packets()
                if isinstance(p, RtcpPsfbPacket) and p.fmt == 1]


def assert_continuous(rows: list[tuple[int, int, int, int, bool]],
                      switches: int) -> None:
    """Seq +1 (+2 once at a switch cut mid-frame is allowed), ts never back, ids +1 per
    frame."""
    gaps = 0
    for (s0, t0, p0, l0, _), (s1, t1, p1, l1, _) in itertools.pairwise(rows):
        step = (s1 - s0) & 0xFFFF
        assert step in (1, 2), (s0, s1)
        gaps += step == 2
        assert 0 <= (t1 - t0) & 0xFFFFFFFF < 90000, (t0, t1)  # monotonic, no jump
        if t1 != t0:  # a new frame: ids advance by one
            assert (p1 - p0) & 0x7FFF == 1 and (l1 - l0) & 0xFF == 1, (p0, p1, l0, l1)
        else:
            assert (p1, l1) == (p0, l0)
    assert gaps <= switches


def test_starts_on_the_preferred_layer_at_its_keyframe() -> None:
    s = Simulcast()
    s.consumer.set_preferred_layers(1, None, 0.0)
    s.send_frame(0.0)
    assert s.down.rtp == [] and s.plis() == [SSRCS[1]]
    s.send_frame(0.033, key_on=(0, 1, 2))
    s.send_frame(0.066)
    assert s.consumer.current_layer == 1 and len(s.down.rtp) == 4
    assert_continuous(s.out(), 0)


def test_switch_up_and_down_waits_for_the_target_keyframe_and_stays_continuous() -> None:
    s = Simulcast()
    s.consumer.set_preferred_layers(0, None, 0.0)
    now = 0.0
    s.send_frame(now, key_on=(0, 1, 2))
    for _ in range(5):
        now += 0.033
        s.send_frame(now)
    s.sender_reports(now)
    assert s.consumer.current_layer == 0
    plis_before = len(s.plis())
    s.consumer.set_preferred_layers(2, None, now)
    assert s.plis()[plis_before:] == [SSRCS[2]]  # a keyframe asked of the target only
    for _ in range(3):  # no keyframe yet: layer 0 goes on
        now += 0.033
        s.send_frame(now)
    assert s.consumer.current_layer == 0 and s.consumer.target_layer == 2
    now += 0.033
    s.send_frame(now, key_on=(2,))
    assert s.consumer.current_layer == 2 and s.consumer.layer_switches == 1
    for _ in range(3):
        now += 0.033
        s.send_frame(now)
    s.consumer.set_preferred_layers(1, None, now)
    now += 0.033
    s.send_frame(now, key_on=(1,))
    assert s.consumer.current_layer == 1 and s.consumer.layer_switches == 2
    rows = s.out()
    assert len(rows) == 2 * 15  # one layer's packets per frame, never two
    assert_continuous(rows, 2)
    # The old layer sent this frame's copy first: the keyframe goes one frame (33 ms) after.
    ts = [t for _, t, *_ in rows[::2]]
    assert {(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(ts)} == {3000, 2970}
    # The leg left the old layers' fan-out: the C loop never sees it there.
    assert [len(st.fanout.consumers) for st in s.producer.streams] == [0, 1, 0]


def test_sender_reports_keep_the_capture_time_across_a_switch() -> None:
    s = Simulcast()
    s.consumer.set_preferred_layers(0, None, 0.0)
    s.send_frame(0.0, key_on=(0,))
    s.send_frame(0.033)
    s.sender_reports(0.04)
    s.consumer.set_preferred_layers(2, None, 0.04)
    s.send_frame(0.066, key_on=(2,), order=(2, 1, 0))  # the new layer's copy comes first
    s.send_frame(0.1)
    rows = s.out()
    assert s.consumer.current_layer == 2
    assert_continuous(rows, 1)
    # Each layer's RTP clock has its own origin; mapped through the reports' NTP time,
    # the keyframe lands exactly one frame (3000 ticks) after the last one sent.
    ts = [t for _, t, *_ in rows[::2]]
    assert [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(ts)] == [3000] * 3


def test_without_sender_reports_timestamps_still_move_forward() -> None:
    s = Simulcast()
    s.consumer.set_preferred_layers(0, None, 0.0)
    s.send_frame(0.0, key_on=(0,))
    s.send_frame(0.033)
    s.consumer.set_preferred_layers(2, None, 0.04)
    s.send_frame(0.066, key_on=(2,))
    s.send_frame(0.1)
    assert s.consumer.current_layer == 2
    assert_continuous(s.out(), 1)


def test_nack_after_a_switch_is_answered_from_the_old_layer() -> None:
    s = Simulcast()
    s.consumer.set_preferred_layers(0, None, 0.0)
    s.send_frame(0.0, key_on=(0,))
    s.send_frame(0.033)
    s.consumer.set_preferred_layers(2, None, 0.04)
    s.send_frame(0.066, key_on=(2,))
    rows = s.out()
    sent = list(s.down.rtp)
    s.down.rtp.clear()
    s.consumer.on_nack([rows[1][0], rows[-1][0]], 0.1)  # one of layer 0, one of layer 2
    assert s.consumer.retransmissions_sent == 2
    for original, rtx in zip((sent[1], sent[-1]), s.down.rtp):
        _, b1, _, ts, ssrc = RTP_HEADER.unpack_from(rtx, 0)
        assert ssrc == 6666 and b1 & 0x7F == 101
        assert ts == RTP_HEADER.unpack_from(original, 0)[3]
        # RTX payload: extension block, original sequence number, the rewritten payload.
        assert rtx[12 + 8:12 + 10] == original[2:4]
        assert rtx[12 + 10:] == original[12 + 8:]


def test_a_layer_the_publisher_stops_sending_is_left_for_the_next_one_down() -> None:
    s = Simulcast()
    now = 0.0
    s.send_frame(now, key_on=(0, 1, 2))
    assert s.consumer.current_layer == 2
    producer = s.producer
    for _ in range(60):  # 2 s with layer 2 silent (the publisher's uplink is short)
        now += 0.033
        for layer in (0, 1):
            ts = TS_BASE[layer] + s.frame * 3000
            pkt = InPacket(SSRCS[layer], 96, 0x80, s.seq[layer] & 0xFFFF, ts, 0, b"",
                           vp8(s.pid[layer], s.tl0[layer], key=layer == 1 and now > 1.8))
            s.seq[layer] += 1
            s.pid[layer] += 1
            s.tl0[layer] = (s.tl0[layer] + 1) & 0xFF
            producer.receive_rtp(pkt, now, stream=producer.streams[layer])
        s.frame += 1
        s.consumer.update_layers(now)  # the RTCP tick
    assert s.consumer.target_layer == 1 and s.consumer.current_layer == 1
    assert s.consumer.preferred_spatial is None  # the preference stands for when it returns


def test_lowered_by_the_allocator_the_old_layer_stops_until_the_new_keyframe() -> None:
    # Congestion: what the old layer would send fills the subscriber's bottleneck ahead of
    # the lower layer's keyframe (and loses it); a preference change (a tile made smaller)
    # keeps the old layer going instead, as above.
    s = Simulcast()
    now = 0.0
    s.send_frame(now, key_on=(0, 1, 2))
    assert s.consumer.current_layer == 2
    now += 0.033
    s.send_frame(now)
    sent = len(s.down.rtp)
    s.consumer.set_allocation(0, now)
    assert s.consumer.target_layer == 0 and s.plis()[-1] == SSRCS[0]
    for _ in range(3):  # no keyframe of layer 0 yet: nothing goes down
        now += 0.033
        s.send_frame(now)
    assert len(s.down.rtp) == sent
    assert [len(st.fanout.consumers) for st in s.producer.streams] == [1, 0, 0]
    now += 0.033
    s.send_frame(now, key_on=(0,))
    assert s.consumer.current_layer == 0 and not s.consumer.shedding
    assert len(s.down.rtp) == sent + 2
    assert_continuous(s.out(), 1)


def test_after_a_fall_the_lower_keyframe_is_asked_for_once_the_hold_ends() -> None:
    # The link fell (media/link_fall.py): what is on its way drains first, then the lower
    # layer's keyframe enters the bottleneck's queue (into the full queue it overflowed it,
    # and the picture froze until its repair); Subscribing sets the hold and ends it.
    s = Simulcast()
    now = 0.0
    s.send_frame(now, key_on=(0, 1, 2))
    now += 0.033
    s.send_frame(now)
    sent, plis = len(s.down.rtp), len(s.plis())
    s.consumer.keyframe_hold_until = now + 0.15
    s.consumer.set_allocation(0, now)
    for _ in range(3):  # held: no keyframe asked for, nothing of the old layer sent
        now += 0.033
        s.send_frame(now)
    assert len(s.plis()) == plis and len(s.down.rtp) == sent
    s.consumer.request_held_keyframe(now + 0.06)
    assert s.plis()[plis:] == [SSRCS[0]]
    now += 0.1
    s.send_frame(now, key_on=(0,))
    assert s.consumer.current_layer == 0 and len(s.down.rtp) == sent + 2


async def test_after_a_fall_the_low_keyframe_is_asked_for_its_latency_before_the_drain_ends(
        ) -> None:
    # What a PLI to the low layer takes to bring its keyframe (the least of the recent ones)
    # is asked for that much before the queue has drained (at most half the hold earlier),
    # so the keyframe reaches the link as it drains, not its latency after (a freeze longer by
    # that: media/subscribing.py).
    s = Simulcast()
    t = time.monotonic()  # the release reads the monotonic clock
    s.send_frame(t - 1.0, key_on=(0, 1, 2))  # on its own: no latency from it
    assert s.producer.streams[0].keyframe_latency_s is None
    s.producer.request_keyframe(t - 0.5, count_suppressed=False, layer=0)
    s.send_frame(t - 0.44, key_on=(0,))  # answered in 60 ms
    s.send_frame(t - 0.4, key_on=(0,))  # not an answer: none was pending
    assert s.producer.streams[0].keyframe_latency_s == pytest.approx(0.06)
    plis = len(s.plis())
    subscribing = Subscribing(SimpleNamespace(router=SimpleNamespace(  # type: ignore[arg-type]
        config=MediaConfig(ice_addresses=("127.0.0.1",)))))
    subscribing.consumers["v"] = s.consumer
    subscribing._hold_keyframes(0.2, t)  # the queue drains in 0.2 s
    assert s.consumer.keyframe_hold_until == pytest.approx(t + 0.14)
    s.consumer.set_allocation(0, t)  # the fall's allocation: to the low layer
    await asyncio.sleep(0.1)
    assert len(s.plis()) == plis  # held
    await asyncio.sleep(0.08)
    assert s.plis()[plis:] == [SSRCS[0]]  # asked for 60 ms before the drain's end


def test_an_allocation_that_moves_the_target_places_the_consumer_once() -> None:
    s = Simulcast()
    now = 0.0
    s.send_frame(now, key_on=(0, 1, 2))
    placed: list[Consumer] = []
    place = s.producer.place
    s.producer.place = lambda consumer: (placed.append(consumer), place(consumer))[1]  # type: ignore[method-assign]
    s.consumer.set_allocation(0, now)  # a new target: one placement, not two
    assert s.consumer.target_layer == 0 and placed == [s.consumer]
    s.consumer.set_allocation(1, now)
    assert s.consumer.target_layer == 1 and placed == [s.consumer] * 2


def test_after_a_step_down_the_new_keyframe_is_repaired_outside_the_byte_budget() -> None:
    """A link that dropped: the low layer's keyframe, which the picture waits for, is
    repaired outside the spent byte budget; the rest stays within it."""
    s = Simulcast()
    s.consumer.set_preferred_layers(2, None, 0.0)
    s.send_frame(0.0, key_on=(2,), packets=4)
    s.send_frame(0.033, packets=4)
    top = [row[0] for row in s.out()]
    s.consumer.set_preferred_layers(0, None, 0.04)
    s.send_frame(0.066, key_on=(0,), packets=4)
    s.send_frame(0.1, packets=4)
    low = [row[0] for row in s.out()][len(top):]
    assert s.consumer.current_layer == 0 and len(low) == 8
    budget = s.consumer.rtx_budget = RtxBudget(min_burst_bytes=100)
    budget.set_basis(8_000, 0.1)  # 1 kB/s, and nothing held: every resend is over budget
    budget.admit(s.consumer.ssrc, 0, 100, 0.1)  # spends what there is
    s.down.rtp.clear()
    s.consumer.on_nack(top + low, 0.12)
    resent = [RTP_HEADER.unpack_from(rtx, 0)[2] for rtx in s.down.rtp]
    assert len(resent) == 4  # the low layer's keyframe: its four packets, nothing else
    assert s.consumer.retransmissions_refused == len(top) + 4  # the rest: no budget left
