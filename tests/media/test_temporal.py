"""VP8 temporal layers (media/temporal.py): a consumer drops the pictures above its temporal
target without a keyframe, with continuous sequence numbers, PictureIDs and TL0PICIDX; goes
back up at a layer sync; NACKs map to the right packets; the C loop does it byte for byte as
the Python path."""

from __future__ import annotations

import asyncio
import itertools
import random

from aiortc.rtp import RtcpPsfbPacket

from media.fanout import FanOut, new_leg
from media.rtp import EXT_BLOCK_LEN, FIRST_BYTE, RTP_HEADER, ForwardPacket, InPacket, StreamRewriter
from media.temporal import ALL_TEMPORAL, restart, step
from media.vp8 import parse_descriptor, rewrite
from testkit.aiortc_clients import wait_for

from .fakes import SimulcastLeg
from .test_fanout import TAIL, Leg, Link, link  # noqa: F401 (the fixture)

SSRC = 1000
PATTERN = ((0, False), (2, True), (1, True), (2, False))  # L1T3: (TID, Y) per picture


def vp8(pid: int, tl0: int, tid: int, sync: bool, key: bool = False,
        start: bool = True) -> bytes:
    """Descriptor with X, I (15-bit PictureID), L (TL0PICIDX), T (TID, Y), a frame tag."""
    first = 0x90 if start else 0x80
    tag = b"\x00" if key else b"\x01"
    return (bytes((first, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, tl0,
                   (tid << 6) | (0x20 if sync else 0))) + tag + b"x" * 40)


class L1T3(SimulcastLeg):
    """A three-layer simulcast producer of which layer 0 is fed, L1T3, and one consumer of
    it (the Python path: FakeTransport has no socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.consumer.set_preferred_layers(0, None, 0.0)
        self.seq, self.pid, self.tl0, self.frame = 65_500, 32_700, 254, 0  # all wrap
        self.held: list[InPacket] = []

    def frames(self, count: int, packets: int = 3, key_first: bool = False,
               hold: tuple[int, int] | None = None) -> None:
        """`count` pictures of the L1T3 pattern, `packets` packets each; `hold`: (picture,
        packet) of this call delivered after the next picture's first packet."""
        for n in range(count):
            tid, sync = PATTERN[self.frame % 4]
            if tid == 0 and self.frame:
                self.tl0 = (self.tl0 + 1) & 0xFF
            ts = (90_000 + self.frame * 3000) & 0xFFFFFFFF
            for i in range(packets):
                payload = vp8(self.pid, self.tl0, tid, sync, key=key_first and n == 0,
                              start=i == 0)
                pkt = InPacket(SSRC, 96, 0x80 if i == packets - 1 else 0, self.seq & 0xFFFF,
                               ts, 0, b"", payload)
                self.seq += 1
                if hold == (n, i):
                    self.held.append(pkt)
                    continue
                self.receive(pkt)
                if i == 0 and self.held:
                    self.receive(self.held.pop())
            self.pid = (self.pid + 1) & 0x7FFF
            self.frame += 1

    def receive(self, pkt: InPacket) -> None:
        self.producer.receive_rtp(pkt, 0.1 + self.frame * 0.033,
                                  stream=self.producer.streams[0])

    def out(self) -> list[tuple[int, int, int, int, int, bool]]:
        """(seq, ts, PictureID, TL0PICIDX, TID, marker) of each packet sent down."""
        rows = []
        for data in self.down.rtp:
            _, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data, 0)
            assert ssrc == 5555 and b1 & 0x7F == 100
            d = parse_descriptor(data[12 + EXT_BLOCK_LEN:], 0)
            assert d is not None
            rows.append((seq, ts, d.pid, d.tl0, d.tid, bool(b1 & 0x80)))
        return rows

    def plis(self) -> int:
        return sum(1 for p in self.up.rtcp_packets()
                   if isinstance(p, RtcpPsfbPacket) and p.fmt == 1)


def assert_continuous(rows: list[tuple[int, int, int, int, int, bool]]) -> None:
    """Seq +1 always; ts forward; PictureID +1 per picture; TL0PICIDX +1 at each TID-0
    picture and unchanged otherwise; a picture ends with the marker."""
    for (s0, t0, p0, l0, _, m0), (s1, t1, p1, l1, tid1, _) in itertools.pairwise(rows):
        assert (s1 - s0) & 0xFFFF == 1, (s0, s1)
        assert 0 <= (t1 - t0) & 0xFFFFFFFF < 90000, (t0, t1)
        if t1 != t0:
            assert m0 and (p1 - p0) & 0x7FFF == 1, (p0, p1)
            assert (l1 - l0) & 0xFF == (1 if tid1 == 0 else 0), (l0, l1, tid1)
        else:
            assert not m0 and (p1, l1) == (p0, l0)


def picture_tids(rows: list[tuple[int, int, int, int, int, bool]]) -> list[int]:
    """The TID of each picture sent (by its marker packet)."""
    return [row[4] for row in rows if row[5]]


def test_a_lower_temporal_target_drops_pictures_at_once_without_a_keyframe() -> None:
    s = L1T3()
    s.frames(1, key_first=True)
    s.frames(7)
    assert picture_tids(s.out()) == [0, 2, 1, 2, 0, 2, 1, 2]
    plis = s.plis()
    layers = s.consumer.set_preferred_layers(0, 0, 1.0)
    assert (layers.target_temporal, layers.current_temporal) == (0, ALL_TEMPORAL)  # next
    s.frames(16)
    rows = s.out()
    assert picture_tids(rows)[8:] == [0, 0, 0, 0]  # a quarter of the frame rate
    assert_continuous(rows)
    assert s.plis() == plis  # no keyframe asked for
    assert s.consumer.current_temporal == 0
    stats = s.consumer.stats()
    assert (stats.current_temporal, stats.target_temporal) == (0, 0)
    assert stats.temporal_dropped == 12 * 3
    s.consumer.set_preferred_layers(0, 1, 2.0)
    s.frames(8)
    assert picture_tids(s.out())[12:] == [0, 1, 0, 1]  # half
    assert_continuous(s.out())


def test_up_again_only_at_a_layer_sync() -> None:
    s = L1T3()
    s.frames(1, key_first=True)
    s.consumer.set_preferred_layers(0, 0, 0.1)
    s.frames(4)  # pictures 1..4: 2, 1, 2 dropped, 0 sent
    s.consumer.set_preferred_layers(0, None, 0.2)
    s.frames(4)  # 2 (Y) sent: up to 2; 1 (Y), 2, 0
    assert picture_tids(s.out()) == [0, 0, 2, 1, 2, 0]
    assert s.consumer.current_temporal == 2
    # Up between the Y pictures: picture 3 of the pattern (TID 2 without Y) waits.
    s.consumer.set_preferred_layers(0, 0, 0.3)
    s.frames(2)  # 2, 1 dropped
    s.consumer.set_preferred_layers(0, 2, 0.4)
    s.frames(6)  # 2 (no Y: it may refer to the dropped TID 1) dropped, 0, 2 (Y), 1, 2, 0
    assert picture_tids(s.out())[6:] == [0, 2, 1, 2, 0]
    assert_continuous(s.out())


def test_a_late_packet_takes_its_kept_slot_and_the_old_offsets() -> None:
    s = L1T3()
    s.frames(1, key_first=True)
    s.consumer.set_preferred_layers(0, 0, 0.1)
    s.frames(4, hold=(3, 2))  # picture 4 (TID 0)'s last packet after picture 5's first
    s.frames(4)
    rows = sorted(s.out(), key=lambda r: r[0])
    assert picture_tids(rows) == [0, 0, 0]
    assert_continuous(rows)
    # A packet of a dropped picture coming late is dropped (it is inside its run).
    s2 = L1T3()
    s2.frames(1, key_first=True)
    s2.consumer.set_preferred_layers(0, 0, 0.1)
    s2.frames(2, hold=(0, 1))  # picture 1 (TID 2, dropped): its middle packet late
    s2.frames(3)
    rows = s2.out()
    assert picture_tids(rows) == [0, 0] and len(rows) == 6
    assert_continuous(rows)


def test_nacks_map_through_the_dropped_runs_to_the_packets_sent() -> None:
    s = L1T3()
    s.frames(1, key_first=True)
    s.frames(3)
    s.consumer.set_preferred_layers(0, 0, 0.1)
    s.frames(9)
    s.consumer.set_preferred_layers(0, 1, 0.2)
    s.frames(6)
    sent = list(s.down.rtp)
    rows = s.out()
    s.down.rtp.clear()
    first = rows[0][0]
    s.consumer.on_nack([(first + i) & 0xFFFF for i in range(len(rows) + 3)], 0.9)
    # The 3 numbers not sent yet map to nothing; the TID-2 pictures sent before the step
    # down are above the layer sent now (nothing that follows refers to them): not repaired.
    repaired = [data for data, row in zip(sent, rows, strict=True) if row[4] <= 1]
    assert len(repaired) == len(sent) - 2 * 3
    assert len(s.down.rtp) == len(repaired)
    for original, rtx in zip(repaired, s.down.rtp, strict=True):
        _, b1, _, ts, ssrc = RTP_HEADER.unpack_from(rtx, 0)
        assert ssrc == 6666 and b1 & 0x7F == 101
        assert ts == RTP_HEADER.unpack_from(original, 0)[3]
        assert rtx[12 + 8:12 + 10] == original[2:4]  # its own sequence number
        assert rtx[12 + 10:] == original[12 + 8:]  # and its payload, ids rewritten


def test_a_keyframe_restart_starts_the_current_layer_at_the_target() -> None:
    s = L1T3()
    s.consumer.set_preferred_layers(0, 1, 0.0)
    s.frames(1, key_first=True)
    s.frames(7)
    assert picture_tids(s.out()) == [0, 1, 0, 1]
    assert_continuous(s.out())


# -- the C loop against the Python path -------------------------------------------------------
def python_copy(leg: object, fps: list[ForwardPacket]) -> list[bytes]:
    """What Consumer.send sends for these packets of one epoch (after its start)."""
    rewriter = StreamRewriter(90000, leg)
    out = []
    for fp in fps:
        if fp.ext_seq < rewriter.start_ext:
            continue
        offsets = step(leg, fp)
        if offsets is None:
            continue
        newest = fp.ext_seq + offsets[0] > rewriter.out_highest
        mapped = rewriter.map(fp, 2.0, offsets[0])
        assert mapped is not None
        tail = fp.tail
        if fp.vp8 is not None:
            tail = rewrite(tail, fp.vp8, offsets[1], leg.tl0_offset)  # type: ignore[attr-defined]
            if newest:
                leg.last_pid = (fp.vp8.pid + offsets[1]) & (  # type: ignore[attr-defined]
                    0x7FFF if fp.vp8.pid_wide else 0x7F)
        if newest:
            leg.last_marker = fp.marker  # type: ignore[attr-defined]
        out.append(RTP_HEADER.pack(FIRST_BYTE, fp.marker | 96, mapped[0], mapped[1], 77)
                   + tail)
    return out


def shuffled_stream(rng: random.Random, pictures: int) -> list[tuple[ForwardPacket, int | None]]:
    """L1T3 pictures (7- or 15-bit ids, 1-4 packets), some lost or late; with each packet
    the temporal target to set before it (None: unchanged)."""
    wide = rng.random() < 0.5
    packets: list[tuple[ForwardPacket, int | None]] = []
    ext, pid, tl0 = 0x10000, rng.randrange(0x7FFF), rng.randrange(256)
    for n in range(pictures):
        tid, sync = PATTERN[n % 4]
        if tid == 0 and n:
            tl0 = (tl0 + 1) & 0xFF
        count = rng.randint(1, 4)
        for i in range(count):
            ident = bytes((0x80 | (pid >> 8) & 0x7F, pid & 0xFF)) if wide else bytes((pid & 0x7F,))
            payload = (bytes((0x90 if i == 0 else 0x80, 0xE0)) + ident
                       + bytes((tl0, (tid << 6) | (0x20 if sync else 0))) + b"\x01" + b"p" * 30)
            fp = ForwardPacket(ext, 3000 * n, 0x80 if i == count - 1 else 0, TAIL + payload,
                               n == 0 and i == 0, 0, 1.0)
            fp.vp8 = parse_descriptor(payload, EXT_BLOCK_LEN)
            ext += 1
            target = rng.choice((0, 1, 2, ALL_TEMPORAL)) if rng.random() < 0.05 else None
            if n == 0 or rng.random() > 0.03:  # 3 % lost
                packets.append((fp, target))
        pid += 1
    for _ in range(len(packets) // 20):  # some late by a few packets
        i = rng.randrange(1, len(packets) - 4)
        packets.insert(i + rng.randint(1, 4), packets.pop(i))
    return packets


async def test_c_loop_drops_and_rewrites_as_the_python_path_does(link: Link) -> None:  # noqa: F811
    server, crec = link
    for seed in range(6):
        rng = random.Random(seed)
        stream = shuffled_stream(rng, 120)
        leg = Leg(server.leg_path, epoch=0)
        ref = new_leg()
        for one in (leg.leg, ref):
            one.vp8, one.epoch, one.pid_offset, one.tl0_offset = 1, 0, 0x7F00, 3
            base = 500 + 5000 * seed  # no number twice: SRTP would refuse a replay
            one.out_highest, one.seq_offset = base, base - 0x10000 + 1
            one.start_ext = 0x10000
            one.last_marker = 0x80
            restart(one, 0x10000)
        fan = FanOut()
        fan.set([leg])  # type: ignore[list-item]
        before = len(crec.rtp)
        expected = []
        for fp, target in stream:
            if target is not None:
                leg.leg.tid_target = ref.tid_target = target
            fan.forward(fp, 2.0)
            expected += python_copy(ref, [fp])
        want = before + len(expected)
        await wait_for(lambda want=want: len(crec.rtp) >= want, 2)  # type: ignore[misc]
        await asyncio.sleep(0.05)  # nothing more comes
        assert leg.handed_back == []
        assert crec.rtp[before:] == expected, seed
        for name in ("seq_offset", "pid_offset", "tid_current", "in_highest", "runs",
                     "temporal_dropped", "out_highest", "last_pid"):
            assert getattr(leg.leg, name) == getattr(ref, name), (seed, name)
        assert ref.temporal_dropped > 0


def test_the_allocators_temporal_step_drops_pictures_without_a_keyframe() -> None:
    s = L1T3()
    s.frames(1, key_first=True)
    s.frames(3)
    assert s.consumer.temporal_layers
    plis = s.plis()
    s.consumer.set_allocation(0, 0.2, 1)  # the same spatial layer, TID <= 1
    s.frames(8)
    assert picture_tids(s.out())[4:] == [0, 1, 0, 1]
    assert s.plis() == plis and s.consumer.target_layer == 0
    s.consumer.set_preferred_layers(0, 0, 0.3)  # the lower of preference and allocation
    s.frames(4)
    assert picture_tids(s.out())[8:] == [0]
    s.consumer.set_preferred_layers(0, None, 0.4)
    s.consumer.set_allocation(0, 0.4, None)  # the allocation lifted: up at a layer sync
    s.frames(4)
    assert picture_tids(s.out())[9:] == [0, 2, 1, 2]
    assert_continuous(s.out())
    assert s.plis() == plis


def test_a_late_packet_of_a_dropped_layer_leaves_a_hole_its_nack_does_not_fill() -> None:
    # Picture A (TID 0) loses its last packet, picture B (TID 2, dropped at target 0) has its
    # first packet late: both slots after A's last packet sent were kept (which picture they
    # belonged to could not be told). B's late packet is not sent, and a NACK of its slot
    # retransmits nothing: it must never fill it with another packet.
    s = L1T3()
    s.frames(1, key_first=True)
    s.consumer.set_preferred_layers(0, 0, 0.1)
    s.frames(3)  # 2, 1, 2 dropped
    sent = len(s.down.rtp)
    seq, pid, tl0 = s.seq, s.pid, (s.tl0 + 1) & 0xFF
    a = [InPacket(SSRC, 96, 0x80 if i == 2 else 0, (seq + i) & 0xFFFF, 90_000 + 4 * 3000, 0,
                  b"", vp8(pid, tl0, 0, False, start=i == 0)) for i in range(3)]
    b = [InPacket(SSRC, 96, 0x80 if i == 2 else 0, (seq + 3 + i) & 0xFFFF, 90_000 + 5 * 3000,
                  0, b"", vp8(pid + 1, tl0, 2, True, start=i == 0)) for i in range(3)]
    c = [InPacket(SSRC, 96, 0x80, (seq + 6) & 0xFFFF, 90_000 + 8 * 3000, 0, b"",
                  vp8(pid + 2, (tl0 + 1) & 0xFF, 0, False))]
    for pkt in (a[0], a[1], b[1], b[0], b[2], c[0]):  # a[2] lost, b[0] late
        s.receive(pkt)
    rows = s.out()[sent:]
    assert [row[4] for row in rows] == [0, 0, 0]  # A's two packets and C: B dropped
    first = rows[0][0]
    assert [(row[0] - first) & 0xFFFF for row in rows] == [0, 1, 4]  # slots 2, 3 kept
    s.down.rtp.clear()
    s.consumer.on_nack([(first + 2) & 0xFFFF, (first + 3) & 0xFFFF], 0.5)
    assert s.down.rtp == []  # a[2] never came, b[0] is of a layer not sent
    assert s.consumer.stats().temporal_dropped == 3 * 3 + 3  # b[0] counted too
