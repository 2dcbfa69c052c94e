"""RTP packet primitives for forwarding without decoding.

An incoming packet is parsed once into an `InPacket`, turned once into a
`ForwardPacket` whose header extensions are rewritten to the server's fixed
ids, and each consumer then only packs its own 12-byte header in front.
"""

from __future__ import annotations

import random
import struct
import time
from typing import Any

from .fanout import LegField, new_leg
from .vp8 import Vp8Descriptor

RTP_HEADER = struct.Struct("!BBHII")
OSN = struct.Struct("!H")
FIRST_BYTE = 0x90  # V=2, P=0, X=1, CC=0: every forwarded packet has extensions

# Header extension ids the server uses on receive transports (its offers).
# BUNDLE shares one id space, so audio and video ids differ.
EXT_AUDIO_LEVEL = 2
EXT_ABS_SEND_TIME = 3
EXT_TRANSPORT_CC = 4  # offered to subscribers with MediaConfig.subscriber_transport_cc
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_PROFILE_ONE_BYTE = 0xBEDE
EXT_PROFILE_TWO_BYTE = 0x1000
SILENCE_DBOV = 127
EXT_BLOCK_LEN = 8  # profile + length + one 4-byte word


class InPacket:
    """A parsed incoming RTP packet (payload without padding)."""

    __slots__ = ("ext", "ext_profile", "marker", "payload", "pt", "seq", "ssrc", "ts")

    def __init__(self, ssrc: int, pt: int, marker: int, seq: int, ts: int,
                 ext_profile: int, ext: bytes, payload: bytes) -> None:
        self.ssrc = ssrc
        self.pt = pt
        self.marker = marker  # 0 or 0x80, ready to OR into the second byte
        self.seq = seq
        self.ts = ts
        self.ext_profile = ext_profile
        self.ext = ext
        self.payload = payload


def parse_rtp(data: bytes) -> InPacket | None:
    """Parse an RTP packet; None if malformed (never raises)."""
    length = len(data)
    if length < 12:
        return None
    b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data, 0)
    if b0 >> 6 != 2:
        return None
    pos = 12 + 4 * (b0 & 0x0F)
    ext_profile = 0
    ext = b""
    if b0 & 0x10:
        if length < pos + 4:
            return None
        ext_profile = (data[pos] << 8) | data[pos + 1]
        end = pos + 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
        if length < end:
            return None
        ext = data[pos + 4:end]
        pos = end
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or padding > length - pos:
            return None
        length -= padding
    if pos > length:
        return None
    return InPacket(ssrc, b1 & 0x7F, b1 & 0x80, seq, ts, ext_profile, ext, data[pos:length])


def find_extension(profile: int, ext: bytes, ext_id: int) -> bytes | None:
    """Value of one RFC 8285 header extension element, or None."""
    if not ext_id or not ext:
        return None
    pos = 0
    end = len(ext)
    if profile == EXT_PROFILE_ONE_BYTE:
        while pos < end:
            byte = ext[pos]
            if byte == 0:  # padding
                pos += 1
                continue
            element_id = byte >> 4
            size = (byte & 0x0F) + 1
            if element_id == 15:  # reserved: stop parsing (RFC 8285 4.2)
                return None
            if element_id == ext_id:
                return ext[pos + 1:pos + 1 + size] if pos + 1 + size <= end else None
            pos += 1 + size
    elif (profile & 0xFFF0) == EXT_PROFILE_TWO_BYTE:
        while pos + 1 < end:
            element_id = ext[pos]
            if element_id == 0:
                pos += 1
                continue
            size = ext[pos + 1]
            if element_id == ext_id:
                return ext[pos + 2:pos + 2 + size] if pos + 2 + size <= end else None
            pos += 2 + size
    return None


def audio_level(pkt: InPacket, ext_id: int) -> int | None:
    """RFC 6464 level magnitude (0 = loudest, 127 = silence); V bit ignored."""
    value = find_extension(pkt.ext_profile, pkt.ext, ext_id)
    if not value:
        return None
    return value[0] & 0x7F


def find_mid(pkt: InPacket, ext_id: int) -> str | None:
    value = find_extension(pkt.ext_profile, pkt.ext, ext_id)
    if not value:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def abs_send_time(now: float | None = None) -> int:
    """24-bit 6.18 fixed point seconds (only differences matter to receivers)."""
    return int((time.time() if now is None else now) * 262144) & 0xFFFFFF


def audio_ext_block(level: int) -> bytes:
    return bytes((0xBE, 0xDE, 0, 1, EXT_AUDIO_LEVEL << 4, level & 0x7F, 0, 0))


def video_ext_block(send_time: int) -> bytes:
    return bytes((0xBE, 0xDE, 0, 1, (EXT_ABS_SEND_TIME << 4) | 2,
                  (send_time >> 16) & 0xFF, (send_time >> 8) & 0xFF, send_time & 0xFF))


class ForwardPacket:
    """An incoming packet ready to fan out; `tail` = extension block + payload."""

    __slots__ = ("arrival", "epoch", "ext_seq", "keyframe", "layer", "marker", "payload_size",
                 "tail", "ts", "vp8")

    def __init__(self, ext_seq: int, ts: int, marker: int, tail: bytes,
                 keyframe: bool, epoch: int, arrival: float, layer: int = 0,
                 vp8: Vp8Descriptor | None = None) -> None:
        self.ext_seq = ext_seq  # source sequence number, unwrapped
        self.ts = ts
        self.marker = marker
        self.tail = tail
        self.payload_size = len(tail) - EXT_BLOCK_LEN  # once, not per consumer
        self.keyframe = keyframe  # first packet of a keyframe
        self.epoch = epoch  # bumps when the source's SSRC changes
        self.arrival = arrival
        self.layer = layer  # spatial layer (simulcast), 0 otherwise
        self.vp8 = vp8  # simulcast VP8: the ids a switching consumer rewrites

    def build(self, pt: int, seq: int, ts: int, ssrc: int, tail: bytes | None = None) -> bytes:
        """The packet with this header; `tail`: a consumer's rewritten copy of ours."""
        return (RTP_HEADER.pack(FIRST_BYTE, self.marker | pt, seq, ts, ssrc)
                + (self.tail if tail is None else tail))

    def build_rtx(self, pt: int, seq: int, ts: int, ssrc: int, osn: int,
                  tail: bytes | None = None) -> bytes:
        """RFC 4588 retransmission: original sequence number before the payload."""
        tail = self.tail if tail is None else tail
        block = 4 + 4 * ((tail[2] << 8) | tail[3])  # EXT_BLOCK_LEN, or 12 when numbered
        return (RTP_HEADER.pack(FIRST_BYTE, self.marker | pt, seq, ts, ssrc)
                + tail[:block] + OSN.pack(osn) + tail[block:])


class SeqUnwrapper:
    """Extends 16-bit sequence numbers to ints that never wrap."""

    __slots__ = ("highest",)

    def __init__(self) -> None:
        self.highest: int | None = None

    def unwrap(self, seq: int) -> int:
        highest = self.highest
        if highest is None:
            self.highest = ext = seq | 0x10000  # leave room for older packets
            return ext
        delta = (seq - highest) & 0xFFFF
        if delta >= 0x8000:
            return highest + delta - 0x10000
        ext = highest + delta
        self.highest = ext
        return ext


def nearest_ext(seq: int, reference: int) -> int:
    """The extended value of 16-bit `seq` closest to extended `reference`."""
    delta = (seq - reference) & 0xFFFF
    if delta >= 0x8000:
        delta -= 0x10000
    return reference + delta


class StreamRewriter:
    """Maps a source's (sequence, timestamp) into one outgoing stream.

    Offsets are fixed when the stream (re)starts at a packet, chosen so the
    outgoing sequence continues at +1 and the timestamp advances by the wall
    time elapsed: a receiver sees one continuous stream across a switch of
    source (a new publisher SSRC, or another producer).

    The state lives in a C `hop_leg` (media/fanout.py) that the C fan-out
    updates too; these properties are the Python view of it.
    """

    __slots__ = ("clock_rate", "leg")

    def __init__(self, clock_rate: int, leg: Any = None) -> None:
        """A new stream, or a view of an existing `leg`."""
        self.clock_rate = clock_rate
        if leg is None:
            leg = new_leg()
            # Random start in the lower half: avoids an early wrap (see aiortc).
            leg.out_highest = random.randint(0, 0x7FFF)
            leg.last_ts = random.getrandbits(32)
        self.leg = leg

    @property
    def epoch(self) -> int | None:
        epoch = int(self.leg.epoch)
        return None if epoch < 0 else epoch

    @epoch.setter
    def epoch(self, value: int | None) -> None:
        self.leg.epoch = -1 if value is None else value

    start_ext = LegField("start_ext", int)
    seq_offset = LegField("seq_offset", int)
    ts_offset = LegField("ts_offset", int)
    out_highest = LegField("out_highest", int)
    last_ts = LegField("last_ts", int)

    @property
    def last_time(self) -> float | None:
        last = float(self.leg.last_time)
        return None if last < 0 else last

    def sync(self, fp: ForwardPacket, now: float, ts_offset: int | None = None,
             skip: int = 0) -> None:
        """Start forwarding the source at `fp`: its timestamp moved by `ts_offset` (a
        simulcast switch maps it through sender reports), else by the time elapsed since
        the last packet sent; `skip` sequence numbers left out (1 tells the receiver that
        the frame the last packet belonged to is incomplete)."""
        leg = self.leg
        if ts_offset is None:
            if leg.last_time < 0:
                ts = leg.last_ts
            else:
                advance = max(1, int((now - leg.last_time) * self.clock_rate))
                ts = (leg.last_ts + advance) & 0xFFFFFFFF
            ts_offset = ts - fp.ts
        leg.seq_offset = leg.out_highest + 1 + skip - fp.ext_seq
        leg.ts_offset = ts_offset & 0xFFFFFFFF
        leg.start_ext = fp.ext_seq
        leg.epoch = fp.epoch

    def map(self, fp: ForwardPacket, now: float,
            seq_offset: int | None = None) -> tuple[int, int] | None:
        """(seq, ts) for `fp`, None if it predates the sync point (as hop_forward);
        `seq_offset`: the one a late packet had (media/temporal.py), else the leg's."""
        leg = self.leg
        ext = fp.ext_seq
        if ext < leg.start_ext:
            return None
        out = ext + (leg.seq_offset if seq_offset is None else seq_offset)
        ts = (fp.ts + leg.ts_offset) & 0xFFFFFFFF
        if out > leg.out_highest:
            leg.out_highest = out
            leg.last_ts = ts
            leg.last_time = now
        return out & 0xFFFF, ts

    def source_seq(self, seq: int) -> int | None:
        """Source extended sequence number of an outgoing one (for NACKs)."""
        if self.epoch is None:
            return None
        ext = nearest_ext(seq, self.out_highest) - self.seq_offset
        return ext if ext >= self.start_ext else None

    def out_ts(self, source_ts: int) -> int:
        return (source_ts + self.ts_offset) & 0xFFFFFFFF
