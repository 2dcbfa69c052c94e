"""Hypothesis strategies for hostile media input: RTP packets built field by field (CSRCs,
one- and two-byte header extensions, padding, lengths that lie, zero and maximum sizes),
RTCP compounds of the types the SFU reads (counts and lengths that lie), and raw bytes."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

MAX_DATAGRAM = 2048 + 64  # a little over what the SFU's buffers hold

u8, u16, u32 = (st.integers(0, (1 << bits) - 1) for bits in (8, 16, 32))


@st.composite
def extension_block(draw: Any) -> bytes:
    """An RTP header extension: profile, a length in words that may lie, elements whose own
    lengths may lie (RFC 8285 one-byte 0xBEDE or two-byte 0x100x, or anything)."""
    profile = draw(st.sampled_from([0xBEDE, 0x1000, 0x1001, 0x100F, 0x0000, 0xFFFF]) | u16)
    body = b""
    for _ in range(draw(st.integers(0, 6))):
        if profile == 0xBEDE:
            element_id = draw(st.integers(0, 15))
            size = draw(st.integers(0, 15))  # the element says size + 1
            value = draw(st.binary(max_size=18))
            body += bytes([(element_id << 4) | size]) + value
        else:
            body += bytes([draw(u8), draw(u8)]) + draw(st.binary(max_size=260))
    body += bytes(-len(body) % 4) if draw(st.booleans()) else b""
    words = len(body) // 4
    words = draw(st.sampled_from([words, words, words + 1, max(words - 1, 0), 0, 0xFFFF]))
    return struct.pack("!HH", profile, words) + body


@st.composite
def rtp_packet(draw: Any, ssrcs: list[int] | None = None, pts: list[int] | None = None) -> bytes:
    """Raw RTP: mostly version 2, any CSRC count (the list itself maybe short), maybe an
    extension block, a payload of 0 to ~2 KB, maybe padding whose count byte may lie."""
    version = draw(st.sampled_from([2, 2, 2, 2, 0, 1, 3]))
    csrc_count = draw(st.integers(0, 15))
    has_ext = draw(st.booleans())
    has_padding = draw(st.integers(0, 3)) == 0
    marker = draw(st.booleans())
    pt = draw(st.sampled_from(pts) | st.integers(0, 127)) if pts else draw(st.integers(0, 127))
    ssrc = draw(st.sampled_from(ssrcs) | u32) if ssrcs else draw(u32)
    header = struct.pack("!BBHII", (version << 6) | (has_padding << 5) | (has_ext << 4)
                         | csrc_count, (marker << 7) | pt, draw(u16), draw(u32), ssrc)
    csrcs = b"".join(struct.pack("!I", draw(u32))
                     for _ in range(draw(st.integers(0, csrc_count))))
    ext = draw(extension_block()) if has_ext else b""
    size = draw(st.sampled_from([0, 1, 2, 3, 100, 1200, 1400, 1880, 2040]) | st.integers(0, 1500))
    payload = bytes(draw(st.binary(min_size=min(size, 16), max_size=16))) * (size // 16 + 1)
    payload = payload[:size]
    padding = b""
    if has_padding:
        count = draw(st.integers(0, 255))
        padding = bytes(max(count - 1, 0)) + bytes([draw(st.sampled_from([count, 0, 255]) | u8)])
    return (header + csrcs + ext + payload + padding)[:MAX_DATAGRAM]


def _rtcp(packet_type: int, count: int, body: bytes, length_lies: int = 0) -> bytes:
    body += bytes(-len(body) % 4)
    words = max(len(body) // 4 + length_lies, 0) & 0xFFFF
    return struct.pack("!BBH", 0x80 | (count & 0x1F), packet_type, words) + body


@st.composite
def rtcp_packet(draw: Any, ssrcs: list[int] | None = None) -> bytes:
    """One RTCP packet of a type the SFU reads (SR 200, RR 201, SDES 202, BYE 203, RTPFB 205
    with NACK, PSFB 206 with PLI, FIR and REMB) or any type, with counts and lengths that
    may lie."""
    ssrc = draw(st.sampled_from(ssrcs) | u32) if ssrcs else draw(u32)
    kind = draw(st.sampled_from(["sr", "rr", "sdes", "bye", "nack", "pli", "fir", "remb",
                                 "other"]))
    count = draw(st.integers(0, 31))
    blocks = b"".join(struct.pack("!IIIIII", draw(u32), draw(u32), draw(u32), draw(u32),
                                  draw(u32), draw(u32)) for _ in range(draw(st.integers(0, 4))))
    lies = draw(st.sampled_from([0, 0, 0, 1, -1, 50]))
    if kind == "sr":
        body = struct.pack("!IQII I", ssrc, draw(st.integers(0, 2**64 - 1)), draw(u32),
                           draw(u32), draw(u32)) + blocks
        return _rtcp(200, count, body, lies)
    if kind == "rr":
        return _rtcp(201, count, struct.pack("!I", ssrc) + blocks, lies)
    if kind == "sdes":
        return _rtcp(202, count, struct.pack("!I", ssrc) + draw(st.binary(max_size=64)), lies)
    if kind == "bye":
        return _rtcp(203, count, struct.pack("!I", ssrc) + draw(st.binary(max_size=32)), lies)
    media_ssrc = draw(st.sampled_from(ssrcs) | u32) if ssrcs else draw(u32)
    head = struct.pack("!II", draw(u32), media_ssrc)
    if kind == "nack":
        fci = b"".join(struct.pack("!HH", draw(u16), draw(u16))
                       for _ in range(draw(st.integers(0, 8))))
        return _rtcp(205, draw(st.sampled_from([1, 1, 0, 3])), head + fci, lies)
    if kind == "pli":
        return _rtcp(206, draw(st.sampled_from([1, 1, 0])), head + draw(st.binary(max_size=8)),
                     lies)
    if kind == "fir":
        fci = b"".join(struct.pack("!IB3x", draw(st.sampled_from(ssrcs) | u32) if ssrcs
                                   else draw(u32), draw(u8))
                       for _ in range(draw(st.integers(0, 4))))
        return _rtcp(206, 4, head + fci + draw(st.binary(max_size=7)), lies)
    if kind == "remb":
        listed = [draw(st.sampled_from(ssrcs) | u32) if ssrcs else draw(u32)
                  for _ in range(draw(st.integers(0, 4)))]
        claimed = draw(st.sampled_from([len(listed), len(listed) + 1, 255, 0]))
        fci = (b"REMB" + bytes([claimed & 0xFF, draw(u8), draw(u8), draw(u8)])
               + b"".join(struct.pack("!I", s) for s in listed))
        return _rtcp(206, 15, head + fci, lies)
    return _rtcp(draw(st.integers(192, 223)), count, draw(st.binary(max_size=64)), lies)


def rtcp_compound(ssrcs: list[int] | None = None) -> st.SearchStrategy[bytes]:
    return st.lists(rtcp_packet(ssrcs), min_size=1, max_size=4).map(b"".join)


def mutation() -> st.SearchStrategy[Callable[[bytes], bytes]]:
    """A change to some bytes (cut short, extended, a byte flipped), drawn before the bytes
    are known: the draws never depend on the data, so a strategy whose data comes from
    outside state (an SRTP session a live client shares, which may refuse to protect a
    packet twice) still draws the same way each time Hypothesis replays it."""
    def cut(n: int) -> Callable[[bytes], bytes]:
        return lambda data: data[:n % (len(data) + 1)]

    def extend(extra: bytes) -> Callable[[bytes], bytes]:
        return lambda data: data + extra

    def flip(at: int, xor: int) -> Callable[[bytes], bytes]:
        def apply(data: bytes) -> bytes:
            if not data:
                return bytes([xor])
            i = at % len(data)
            return data[:i] + bytes([data[i] ^ xor]) + data[i + 1:]
        return apply
    return st.one_of(st.integers(0, MAX_DATAGRAM).map(cut),
                     st.binary(min_size=1, max_size=40).map(extend),
                     st.builds(flip, st.integers(0, MAX_DATAGRAM), st.integers(1, 255)))


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` cut short, extended, or with a byte flipped."""
    return mutation().map(lambda change: change(data))
