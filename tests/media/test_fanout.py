"""media.fanout: the C loop forwards what Consumer.send would, over a real
DTLS/SRTP link, and hands back to Python every leg it must not handle."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from media import fanout
from media.fanout import FanOut, LegPath, new_leg, sockaddr
from media.rtp import FIRST_BYTE, RTP_HEADER, ForwardPacket, StreamRewriter
from media.transport import WebRtcTransport
from testkit.aiortc_clients import wait_for

from .conftest import make_config
from .transport_pair import Recorder, connected_pair

TAIL = b"\xbe\xde\x00\x01\x32\x00\x00\x01"


class Leg:
    """The smallest consumer FanOut needs: a leg, and a Python path that records."""

    def __init__(self, path: LegPath, pt: int = 96, ssrc: int = 77, epoch: int = 0,
                 seq_offset: int = 0, ts_offset: int = 0) -> None:
        self.leg = new_leg()
        self.leg.path = path.cdata
        self.leg.pt, self.leg.ssrc, self.leg.sending = pt, ssrc, 1
        self.leg.epoch, self.leg.seq_offset, self.leg.ts_offset = epoch, seq_offset, ts_offset
        self.handed_back: list[int] = []

    def send(self, fp: ForwardPacket, now: float) -> None:
        self.handed_back.append(fp.ext_seq)


Link = tuple[WebRtcTransport, Recorder]


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    """A connected server transport and what its client receives."""
    server, _, client, crec = await connected_pair(make_config())
    yield server, crec
    await server.close()
    await client.close()


def packet(ext: int, payload: bytes = b"x" * 900, marker: int = 0, epoch: int = 0,
           ts: int = 0) -> ForwardPacket:
    return ForwardPacket(ext, ts, marker, TAIL + payload, False, epoch, 1.0)


def test_the_c_loop_is_built() -> None:
    # scripts/setup.sh (pip install -e .) builds it; without it every packet is slower.
    assert fanout.COMPILED
    assert fanout.lib.HOP_MAX_BATCH == fanout.MAX_BATCH


async def test_forwards_rewritten_packets_over_a_real_dtls_link(link: Link) -> None:
    server, crec = link
    leg = Leg(server.leg_path, seq_offset=100 - 0x10000, ts_offset=5)
    fan = FanOut()
    fan.set([leg])  # type: ignore[list-item]
    payloads = [bytes([i]) * 900 for i in range(5)]
    for i, payload in enumerate(payloads):
        fan.forward(packet(0x10000 + i, payload, 0x80 if i == 4 else 0, ts=9000 * i), 2.0)
    expected = [RTP_HEADER.pack(FIRST_BYTE, (0x80 if i == 4 else 0) | 96, 100 + i,
                                9000 * i + 5, 77) + TAIL + p for i, p in enumerate(payloads)]
    await wait_for(lambda: len(crec.rtp) == len(expected), 2)
    assert crec.rtp == expected  # unprotected by aiortc's own receiving session
    assert leg.handed_back == []
    assert (leg.leg.packets_sent, leg.leg.payload_bytes) == (5, 5 * 900)
    assert server.packets_sent == 5 and server.packets_dropped == 0
    # What sender reports and NACK mapping read, as StreamRewriter sees it.
    rewriter = StreamRewriter(90000, leg.leg)
    assert (rewriter.out_highest & 0xFFFF, rewriter.last_ts, rewriter.last_time) \
        == (104, 36005, 2.0)
    await server.close()
    fan.forward(packet(0x10005), 3.0)  # closed: no socket any more, so Python's turn
    assert leg.handed_back == [0x10005]


async def test_python_and_c_paths_share_one_stream(link: Link) -> None:
    """A leg restarts in Python (Consumer.send), then the C loop continues it."""
    server, crec = link
    rewriter = StreamRewriter(90000)
    rewriter.leg.path = server.leg_path.cdata
    rewriter.leg.pt, rewriter.leg.ssrc, rewriter.leg.sending = 96, 5, 1
    first = packet(500, ts=1000)
    rewriter.sync(first, 1.0)
    seq, ts = rewriter.map(first, 1.0)  # type: ignore[misc]
    assert server.forward_rtp(96, seq, ts, 5, first.tail)

    class Consumer:
        leg = rewriter.leg

        def send(self, fp: ForwardPacket, now: float) -> None:
            raise AssertionError("handed back")

    fan = FanOut()
    fan.set([Consumer()])  # type: ignore[list-item]
    fan.forward(packet(501, ts=4000), 1.1)
    await wait_for(lambda: len(crec.rtp) == 2, 2)
    headers = [RTP_HEADER.unpack_from(p, 0) for p in crec.rtp]
    assert headers[1][2] == (headers[0][2] + 1) & 0xFFFF  # sequence continues
    assert (headers[1][3] - headers[0][3]) & 0xFFFFFFFF == 3000  # source timestamp step


async def test_a_batch_goes_out_together_in_order_when_flushed(link: Link) -> None:
    server, crec = link
    leg, waiting = Leg(server.leg_path), Leg(server.leg_path, epoch=-1)
    fan = FanOut()
    fan.set([leg, waiting])  # type: ignore[list-item]
    batch: list[FanOut] = []
    for ext in range(40, 45):
        fan.forward(packet(ext, bytes([ext]) * 500), 1.0, batch)
    assert batch == [fan] and crec.rtp == [] and waiting.handed_back == []
    fan.flush(1.0)
    await wait_for(lambda: len(crec.rtp) == 5, 2)
    assert [RTP_HEADER.unpack_from(p, 0)[2] for p in crec.rtp] == list(range(40, 45))
    assert [p[-1] for p in crec.rtp] == list(range(40, 45))
    assert waiting.handed_back == list(range(40, 45))  # every packet, in order
    assert (leg.leg.packets_sent, leg.leg.payload_bytes) == (5, 5 * 500)
    for ext in range(45, 45 + fanout.MAX_BATCH):  # a full batch does not wait
        fan.forward(packet(ext), 1.0, batch)
    await wait_for(lambda: len(crec.rtp) == 5 + fanout.MAX_BATCH, 2)
    fan.flush(1.0)  # nothing left
    assert server.packets_sent == 5 + fanout.MAX_BATCH


def test_hands_back_legs_to_restart_or_without_a_path() -> None:
    no_socket = LegPath()
    waiting = Leg(no_socket, epoch=-1)  # restart at a keyframe: Python decides
    other_epoch = Leg(no_socket, epoch=3)
    no_path = Leg(no_socket)
    paused = Leg(no_socket)
    paused.leg.sending = 0
    fan = FanOut()
    legs = [waiting, other_epoch, no_path, paused]
    fan.set(legs)  # type: ignore[arg-type]
    fan.forward(packet(10), 1.0)
    assert [leg.handed_back for leg in legs] == [[10], [10], [10], []]
    fan.set([])
    fan.forward(packet(11), 1.0)
    assert [leg.handed_back for leg in legs] == [[10], [10], [10], []]


async def test_intercepted_transport_takes_the_python_path_and_old_packets_are_skipped(link: Link) -> None:
    server, crec = link
    leg = Leg(server.leg_path)
    leg.leg.start_ext = 20
    fan = FanOut()
    fan.set([leg])  # type: ignore[list-item]
    fan.forward(packet(19), 1.0)  # before the leg's sync point: dropped silently
    server.fast_path = False
    fan.forward(packet(21), 1.0)
    server.fast_path = True
    fan.forward(packet(22), 1.0)
    await wait_for(lambda: len(crec.rtp) == 1, 2)
    assert leg.handed_back == [21]
    assert RTP_HEADER.unpack_from(crec.rtp[0], 0)[2] == 22


async def test_sends_on_a_dup_of_the_socket_closed_with_the_transport(link: Link) -> None:
    server, _ = link
    dup = server.leg_path.cdata.fd
    assert dup >= 0 and os.fstat(dup)
    assert server._ice.path is not None
    assert dup != server._ice.path[0].get_extra_info("socket").fileno()
    await server.close()
    assert server.leg_path.cdata.fd == -1
    with pytest.raises(OSError):
        os.fstat(dup)


def test_a_socket_refusing_packets_counts_as_blocked_until_it_recovers() -> None:
    path = LegPath()
    assert path.unblock_if_idle(10.0, 1.0) is None
    path.cdata.blocked_since, path.cdata.blocked_last = 4.0, 9.5  # what hop_forward records
    assert path.unblock_if_idle(10.0, 1.0) == 6.0
    assert path.unblock_if_idle(11.0, 1.0) is None  # nothing refused for 1.5 s: recovered
    assert path.cdata.blocked_since == 0.0


@pytest.mark.parametrize("addr, family, size", [(("127.0.0.1", 5004), 2, 16),
                                                (("::1", 5004), 10, 28)])
def test_sockaddr(addr: tuple[str, int], family: int, size: int) -> None:
    raw: Any = sockaddr(addr)
    assert len(raw) == size and raw[0] == family and raw[2:4] == b"\x13\x8c"


async def test_c_loop_rewrites_vp8_ids_as_the_python_path_does(link: Link) -> None:
    """A simulcast consumer's leg: PictureID (15 and 7 bits) and TL0PICIDX moved by its
    offsets in the C copy of the packet, byte for byte as media/vp8.py's rewrite."""
    from media.rtp import EXT_BLOCK_LEN
    from media.vp8 import parse_descriptor, rewrite

    server, crec = link
    leg = Leg(server.leg_path)
    leg.leg.vp8, leg.leg.pid_offset, leg.leg.tl0_offset = 1, 0x7FF0, 200
    fan = FanOut()
    fan.set([leg])  # type: ignore[list-item]
    payloads = [bytes((0x90, 0xC0, 0x80 | 0x01, 0x23, 77)) + b"a" * 50,  # 15-bit, L
                bytes((0x90, 0x80, 0x45)) + b"b" * 50,  # 7-bit PictureID only
                bytes((0x10,)) + b"c" * 50]  # no X: nothing to rewrite
    expected = []
    for i, payload in enumerate(payloads):
        fp = packet(10 + i, payload)
        fp.vp8 = parse_descriptor(payload, EXT_BLOCK_LEN)
        fan.forward(fp, 2.0)
        tail = fp.tail if fp.vp8 is None else rewrite(fp.tail, fp.vp8, 0x7FF0, 200)
        expected.append(RTP_HEADER.pack(FIRST_BYTE, 96, 10 + i, 0, 77) + tail)
    await wait_for(lambda: len(crec.rtp) == 3, 2)
    assert leg.handed_back == []
    assert crec.rtp == expected
    assert crec.rtp[0][12 + 8 + 2:12 + 8 + 5] == bytes((0x80 | 0x01, 0x13, 21))
    assert crec.rtp[1][12 + 8 + 2] == (0x45 + 0x70) & 0x7F
    assert (leg.leg.last_pid, leg.leg.last_tl0) == ((0x45 + 0x70) & 0x7F, 21)


async def test_c_loop_numbers_twcc_legs_as_the_python_path_does(link: Link) -> None:
    """Transport-wide numbering (media/bwe.py): a numbered leg's packets carry the next
    number of its transport after the abs-send-time element, byte for byte what
    fanout.twcc_tail writes (VP8 ids rewritten too), each remembered with its send time
    and size; a leg without it on the same transport is sent as before and not counted."""
    from media.rtp import EXT_BLOCK_LEN
    from media.twcc import transport_seq
    from media.vp8 import parse_descriptor, rewrite

    server, crec = link
    server.leg_path.set_twcc(4)
    ring = server.leg_path.twcc
    ring.next = 0xFFFE  # the 16-bit number wraps within the test
    numbered, plain = Leg(server.leg_path), Leg(server.leg_path, ssrc=78)
    numbered.leg.twcc = 1
    numbered.leg.vp8, numbered.leg.pid_offset, numbered.leg.tl0_offset = 1, 5, 9
    fan = FanOut()
    fan.set([numbered, plain])  # type: ignore[list-item]
    reference = fanout.new_twcc(4)
    reference.next = 0xFFFE
    expected: dict[int, list[bytes]] = {77: [], 78: []}
    for i in range(3):
        payload = bytes((0x90, 0x80, 0x10 + i)) + bytes([i]) * 300
        fp = packet(20 + i, payload)
        fp.vp8 = parse_descriptor(payload, EXT_BLOCK_LEN)
        fan.forward(fp, 3.0 + i)
        assert fp.vp8 is not None
        tail = fanout.twcc_tail(rewrite(fp.tail, fp.vp8, 5, 9), reference, 3.0 + i)
        expected[77].append(RTP_HEADER.pack(FIRST_BYTE, 96, 20 + i, 0, 77) + tail)
        expected[78].append(RTP_HEADER.pack(FIRST_BYTE, 96, 20 + i, 0, 78) + fp.tail)
    await wait_for(lambda: len(crec.rtp) == 6, 2)
    got: dict[int, list[bytes]] = {77: [], 78: []}
    for p in crec.rtp:
        got[RTP_HEADER.unpack_from(p, 0)[4]].append(p)
    assert got == expected
    assert [transport_seq(0xBEDE, p[16:24], 4) for p in got[77]] == [0xFFFE, 0xFFFF, 0]
    assert got[77][0][12:16] == b"\xbe\xde\x00\x02" and got[77][0][16:20] == TAIL[4:8]
    assert ring.next == 0x10001
    assert [(ring.time[n % 4096], ring.size[n % 4096]) for n in range(0xFFFE, 0x10001)] == [
        (3.0 + i, len(p)) for i, p in enumerate(got[77])]
    server.leg_path.set_twcc(None)  # off: the same leg is sent as before
    fan.forward(packet(30), 9.0)
    await wait_for(lambda: len(crec.rtp) == 8, 2)
    assert all(p[12:16] == TAIL[:4] for p in crec.rtp[6:])
