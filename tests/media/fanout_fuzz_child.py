"""The C fan-out fuzz, run by tests/media/test_fanout_fuzz.py in a child process (a crash
then fails that test instead of killing the test run), with the shipped build or with one
made under AddressSanitizer (HOPSO_FANOUT_SO names it).

Two harnesses, driven by Hypothesis:
- forward: hostile RTP (CSRCs, extensions, padding, lengths that lie, 0 to ~2 KB payloads)
  read by parse_rtp and turned into ForwardPackets as the producer does (with the VP8
  descriptor a simulcast VP8 producer reads), forwarded through FanOut (the cffi entry point
  the SFU uses: batches of up to 32 and more) to legs in every state (sending or not, another
  epoch, no socket, a real UDP socket with SRTP; simulcast VP8 with a temporal target). Every
  datagram that arrives must be exactly one packet's rewritten header and tail, SRTP-valid;
  of a VP8 leg, as the Python path (media/temporal.py, media/vp8.py) would send it.
- lies: lib.hop_forward called directly with what a caller could get wrong: negative
  lengths, a NULL tail or path, batch sizes out of range, lengths shorter than the tail.
  It must not crash and must hand those legs back to Python.

`python fanout_fuzz_child.py overread` instead passes a length longer than its tail: the
one lie C cannot see. Under AddressSanitizer that must be reported (a positive control:
the harness would catch an out-of-bounds read)."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
if os.environ.get("HOPSO_FANOUT_SO"):  # an AddressSanitizer build of media/fanout_build.py
    spec = importlib.util.spec_from_file_location("media._fanout_c",
                                                  os.environ["HOPSO_FANOUT_SO"])
    assert spec is not None and spec.loader is not None
    built = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(built)
    sys.modules["media._fanout_c"] = built

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

from media import fanout, srtp
from media.fanout import FanOut, LegPath, new_leg
from media.rtp import (
    EXT_BLOCK_LEN,
    FIRST_BYTE,
    RTP_HEADER,
    ForwardPacket,
    StreamRewriter,
    audio_ext_block,
    parse_rtp,
    video_ext_block,
)
from media.temporal import restart, step
from media.vp8 import parse_descriptor, rewrite
from tests.media.fuzz_strategies import rtp_packet

PROFILE = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
KEY = bytes(range(30))
EXAMPLES = int(os.environ.get("HOPSO_FANOUT_EXAMPLES", "250"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def session(direction: int) -> Session:
    policy = Policy(key=KEY, ssrc_type=direction, srtp_profile=PROFILE)
    policy.allow_repeat_tx = True
    return Session(policy)


class Leg:
    """The smallest consumer FanOut needs: a leg, and a Python path that records."""

    def __init__(self, path: LegPath, number: int) -> None:
        self.leg = new_leg()
        self.leg.path = path.cdata
        self.leg.pt, self.leg.ssrc = 96 + number, 7000 + number
        self.handed_back: list[int] = []

    def send(self, fp: ForwardPacket, now: float) -> None:
        self.handed_back.append(fp.ext_seq)


receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
receiver.bind(("127.0.0.1", 0))
receiver.setblocking(False)
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
WIRED = LegPath()  # a real socket and SRTP: the C loop sends
WIRED.set_socket(sender.fileno(), receiver.getsockname())
UNWIRED = LegPath()  # no socket yet: Python's turn
COUNTS = {"datagrams checked": 0, "of VP8 legs": 0, "legs handed back": 0,
          "calls with lies": 0}


SENDING: list[srtp.SrtpOut] = []  # the context WIRED protects with, kept alive while set


def fresh_srtp() -> Session:
    """New sessions for each example (a receiver's replay and rollover state must follow
    only what this example sent); returns the receiving one."""
    SENDING[:] = [srtp.SrtpOut(session(Policy.SSRC_ANY_OUTBOUND))]
    WIRED.set_srtp(SENDING[0].context_address)
    return session(Policy.SSRC_ANY_INBOUND)


def unprotect(rx: Session, datagram: bytes) -> bytes:
    """libsrtp's unprotect with room for any datagram (pylibsrtp's own buffer is 1500
    bytes, media.srtp's stops at MAX_PACKET; the C loop sends up to 2048 - trailer)."""
    ffi, lib = srtp._ffi, srtp._lib
    buffer, length = ffi.new("unsigned char[]", 4096), ffi.new("int *", len(datagram))
    ffi.memmove(buffer, datagram, len(datagram))
    assert lib.srtp_unprotect(rx._srtp[0], buffer, length) == 0, "not valid SRTP"
    return bytes(ffi.buffer(buffer, length[0]))


def drain() -> list[bytes]:
    got = []
    while True:
        try:
            got.append(receiver.recv(4096))
        except BlockingIOError:
            return got


@st.composite
def forward_packets(draw: st.DrawFn) -> list[ForwardPacket]:
    packets, ext = [], draw(st.integers(0, 2**40))
    for data in draw(st.lists(rtp_packet(), min_size=1, max_size=40)):
        pkt = parse_rtp(data)
        if pkt is None:
            continue
        ext += draw(st.sampled_from([1, 1, 1, 2, 40]))  # no repeats: SRTP would refuse them
        block = draw(st.sampled_from([audio_ext_block(9), video_ext_block(12345)]))
        fp = ForwardPacket(ext, pkt.ts, pkt.marker, block + pkt.payload, False,
                           draw(st.sampled_from([0, 0, 0, 1])), 1.0)
        fp.vp8 = parse_descriptor(pkt.payload, EXT_BLOCK_LEN)
        packets.append(fp)
    return packets


def vp8_leg(leg: Any, number: int, seq_offset: int, start_ext: int, tid: int) -> None:
    """A simulcast VP8 leg's state from its shape (the C leg and the Python path's copy)."""
    leg.seq_offset, leg.start_ext = seq_offset, start_ext
    leg.vp8, leg.tid_target = 1, tid
    leg.pid_offset, leg.tl0_offset = number * 1000, number * 7
    restart(leg, start_ext)


def python_path(leg: Leg, number: int, packets: list[ForwardPacket], seq_offset: int,
                tid: int) -> set[bytes]:
    """What a VP8 leg's packets the C loop kept would be, sent by the Python path from the
    same starting state."""
    ref = new_leg()
    vp8_leg(ref, number, seq_offset, int(leg.leg.start_ext), tid)
    rewriter = StreamRewriter(90000, ref)
    out = set()
    for fp in packets:
        if fp.ext_seq in leg.handed_back or fp.ext_seq < ref.start_ext:
            continue
        offsets = step(ref, fp)
        if offsets is None:
            continue
        newest = fp.ext_seq + offsets[0] > ref.out_highest
        mapped = rewriter.map(fp, 2.0, offsets[0])
        assert mapped is not None
        if newest:
            ref.last_marker = fp.marker
        tail = fp.tail if fp.vp8 is None else rewrite(fp.tail, fp.vp8, offsets[1],
                                                      ref.tl0_offset)
        out.add(RTP_HEADER.pack(FIRST_BYTE, fp.marker | leg.leg.pt, mapped[0], mapped[1],
                                leg.leg.ssrc) + tail)
    return out


@FUZZ
@given(forward_packets(), st.lists(st.tuples(
    st.sampled_from([True, True, True, False]),  # sending
    st.sampled_from([0, 0, 0, 1, -1]),  # epoch (-1: restart in Python)
    st.sampled_from([True, True, False]),  # a socket and SRTP
    st.integers(-2**32, 2**32),  # sequence offset
    st.sampled_from([-2**40, 0, 0, 3, 2**40]),  # where it started, from the first packet
    st.sampled_from([None, None, 0, 1, 2, 3])),  # VP8 (simulcast) leg: its temporal target
    min_size=1, max_size=4), st.booleans())
def test_forward(packets: list[ForwardPacket],
                 shapes: list[tuple[bool, int, bool, int, int, int | None]],
                 batched: bool) -> None:
    rx = fresh_srtp()
    legs = []
    first = packets[0].ext_seq if packets else 0
    for number, (sending, epoch, wired, seq_offset, start, tid) in enumerate(shapes):
        leg = Leg(WIRED if wired else UNWIRED, number)
        leg.leg.sending, leg.leg.epoch = int(sending), epoch
        leg.leg.seq_offset, leg.leg.start_ext = seq_offset, first + start
        if tid is not None:
            vp8_leg(leg.leg, number, seq_offset, first + start, tid)
        legs.append(leg)
    fan = FanOut()
    fan.set(legs)  # type: ignore[arg-type]
    batch: list[FanOut] = []
    for fp in packets:
        fan.forward(fp, 2.0, batch if batched else None)
    for pending in batch:
        pending.flush(2.0)
    expected = set()
    for number, (leg, (sending, _, wired, seq_offset, _, tid)) in enumerate(zip(legs, shapes)):
        if tid is not None:
            if wired and sending:
                expected |= python_path(leg, number, packets, seq_offset, tid)
            continue
        for fp in packets:
            if wired and fp.ext_seq not in leg.handed_back:
                out, ts = fp.ext_seq + seq_offset, (fp.ts + leg.leg.ts_offset) & 0xFFFFFFFF
                expected.add(RTP_HEADER.pack(FIRST_BYTE, fp.marker | leg.leg.pt, out & 0xFFFF,
                                             ts, leg.leg.ssrc) + fp.tail)
    sent = sum(int(leg.leg.packets_sent) for leg in legs)
    arrived = drain()
    assert len(arrived) == sent, (len(arrived), sent)
    for datagram in arrived:
        assert unprotect(rx, datagram) in expected  # exactly what C was given, nothing else
    COUNTS["datagrams checked"] += len(arrived)
    COUNTS["of VP8 legs"] += sum(int(leg.leg.packets_sent) for leg in legs if leg.leg.vp8)
    COUNTS["legs handed back"] += sum(bool(leg.handed_back) for leg in legs)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 300), st.sampled_from(["honest", "short", "negative",
                                                                 "minimum", "null"]),
                          st.integers(-2**31, 2**31 - 1)), min_size=1, max_size=40),
       st.integers(-40, 40), st.lists(st.sampled_from(["wired", "unwired", "null path"]),
                                      min_size=0, max_size=4))
def test_lies(shapes: list[tuple[int, str, int]], k: int, paths: list[str]) -> None:
    ffi, lib = fanout.ffi, fanout.lib
    fresh_srtp()
    array = ffi.new("hop_packet[]", len(shapes))
    keep = []
    for c, (size, lie, payload_size) in zip(array, shapes):
        tail = ffi.new("char[]", max(size, 1))
        keep.append(tail)
        c.ext, c.ts, c.marker, c.epoch = 5, 1, 0x80, 0
        c.tail, c.payload_size = tail, payload_size
        c.tail_len = {"honest": size, "short": size // 2, "negative": -1 - size,
                      "minimum": -2**31, "null": size}[lie]
        if lie == "null":
            c.tail = ffi.NULL
    legs = []
    for number, kind in enumerate(paths):
        leg = Leg(WIRED if kind == "wired" else UNWIRED, number)
        leg.leg.sending, leg.leg.epoch = 1, 0
        if kind == "null path":
            leg.leg.path = ffi.NULL
        legs.append(leg)
    slow = ffi.new("int[]", max(len(legs), 1))
    pointers = ffi.new("hop_leg *[]", [leg.leg for leg in legs])
    count = lib.hop_forward(fanout._PROTECT, pointers, len(legs), array, min(k, len(shapes)),
                            1.0, slow)
    assert 0 <= count <= len(legs)
    handed = {slow[i] for i in range(count)}
    assert handed <= set(range(len(legs)))
    used = [shape for shape in shapes[:max(min(k, len(shapes), fanout.MAX_BATCH), 0)]]
    lying = any(lie in ("negative", "minimum", "null") or p < 0 for _, lie, p in used)
    for number, kind in enumerate(paths):
        if kind != "wired" or (lying and used):
            assert number in handed
    COUNTS["calls with lies"] += lying
    drain()


def overread() -> None:
    """One leg ready for the C loop, and a tail_len 256 bytes past the tail's memory."""
    ffi, lib = fanout.ffi, fanout.lib
    fresh_srtp()
    tail = ffi.new("char[]", 64)
    packet = ffi.new("hop_packet[]", 1)
    packet[0].ext, packet[0].tail, packet[0].tail_len, packet[0].payload_size = 5, tail, 320, 0
    leg = Leg(WIRED, 0)
    leg.leg.sending, leg.leg.epoch = 1, 0
    slow = ffi.new("int[]", 1)
    lib.hop_forward(fanout._PROTECT, ffi.new("hop_leg *[]", [leg.leg]), 1, packet, 1, 1.0, slow)
    print("overread not reported")


if __name__ == "__main__":
    assert fanout.COMPILED, "media._fanout_c is not built"
    if sys.argv[1:] == ["overread"]:
        overread()
    else:
        test_forward()
        test_lies()
        print("fan-out fuzz: ok;", ", ".join(f"{v} {k}" for k, v in COUNTS.items()))
