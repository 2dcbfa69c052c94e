"""Transport-wide congestion control feedback to publishers (draft-holmer-rmcat-transport-wide-
cc-extensions-01): the send side of a browser's GCC estimates its uplink from it.

A publisher's send-transport offer with the transport-wide-cc header extension gets it in the
answer (video sections only, with `a=rtcp-fb:* transport-cc`, media/sdp.py). Each RTP packet
then carries a 16-bit transport-wide sequence number; `TwccRecorder.record` keeps its arrival
time (the time the datagram was read from the socket, media/transport.py) in a fixed ring, and
`TwccRecorder.feedback`, every `twcc_interval_s`, writes RTCP RTPFB FMT 15 packets reporting
every sequence number since the last report: received (with its arrival time relative to the
previous one in 250 us units) or not. Encoding follows libwebrtc's `TransportFeedback` (chunk
choice, delta rounding, padding), so its output is byte for byte what Chrome's own receiver
would send for the same arrivals.

Bounded whatever the publisher sends (garbage, huge jumps, wrap-around, reordering): the state
is two lists of `WINDOW` slots; a packet more than `WINDOW` behind the highest sequence number
is dropped and counted; a report covers at most `MAX_SPAN` sequence numbers (older unreported
ones are skipped and counted), in packets of at most `MAX_STATUSES` statuses and
`MAX_RECEIVED` receive deltas (< 1,100 bytes each), at most `MAX_PACKETS` per report.

`parse_feedback` is the inverse, for a subscriber's feedback on what the SFU sent it (the
send-side estimator, media/bwe.py): bounded by the packet's length (`MAX_PARSE_BYTES`) and a
status count of at most `MAX_PARSE_STATUSES`; anything else raises `FeedbackError` with a
reason (`malformed`, `huge`) for the caller to count.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .rtp import EXT_PROFILE_ONE_BYTE, find_extension

URI_TRANSPORT_CC = (
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01")
RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15

WINDOW = 2048  # sequence numbers whose arrival is kept (a power of two)
MASK = WINDOW - 1
MAX_SPAN = 1024  # sequence numbers one report covers at most
MAX_STATUSES = 1500  # per feedback packet
MAX_RECEIVED = 250  # receive deltas per feedback packet
MAX_PACKETS = 8  # feedback packets per report

DELTA_US = 250  # receive delta tick
BASE_US = 64_000  # reference time tick
# Symbols (2-bit status vector values; also the receive delta's size in bytes).
NOT_RECEIVED, SMALL, LARGE = 0, 1, 2
RUN_MAX = 0x1FFF  # run-length chunk capacity
ONE_BIT_CAP, TWO_BIT_CAP = 14, 7

_HEADER = struct.Struct("!BBHIIHHI")  # RTCP header, sender, media, base seq, count, ref|count
_DELTA = struct.Struct("!h")


def transport_seq(profile: int, ext: bytes, ext_id: int) -> int | None:
    """The transport-wide sequence number in a packet's extension block, or None. Chrome
    writes it first (before mid and rid): that case is read without a scan."""
    if len(ext) >= 3 and ext[0] == (ext_id << 4) | 1 and profile == EXT_PROFILE_ONE_BYTE:
        return (ext[1] << 8) | ext[2]
    value = find_extension(profile, ext, ext_id)
    if value is None or len(value) != 2:
        return None
    return (value[0] << 8) | value[1]


def _round_ticks(us: int) -> int:
    """us in 250 us ticks, rounded to the nearest, halves away from zero (libwebrtc)."""
    half = DELTA_US // 2
    return (us + half) // DELTA_US if us >= 0 else -((-us + half) // DELTA_US)


def encode_chunks(symbols: list[int]) -> bytes:
    """The packet status chunks for `symbols`, as libwebrtc's `LastChunk` encodes them: a run
    while all are equal, else a two-bit vector of 7 (one-bit of 14 while none is LARGE)."""
    first = symbols[0] if symbols else 0
    if symbols.count(first) == len(symbols):  # the usual case on a clean link: runs only
        return b"".join(struct.pack("!H", (first << 13) | min(RUN_MAX, len(symbols) - i))
                        for i in range(0, len(symbols), RUN_MAX))
    out = bytearray()
    held: list[int] = []  # the symbols of the chunk being filled (the first 14 of a run)
    size = 0
    all_same = True
    has_large = False

    def run() -> int:
        return (held[0] << 13) | size

    for symbol in symbols:
        can_add = (size < TWO_BIT_CAP
                   or (size < ONE_BIT_CAP and not has_large and symbol != LARGE)
                   or (size < RUN_MAX and all_same and held[0] == symbol))
        if not can_add:  # emit, as LastChunk::Emit
            if all_same:
                out += struct.pack("!H", run())
                held, size, all_same, has_large = [], 0, True, False
            elif size == ONE_BIT_CAP:
                out += struct.pack("!H", _one_bit(held))
                held, size, all_same, has_large = [], 0, True, False
            else:  # the first 7 as a two-bit vector, the rest stays
                out += struct.pack("!H", _two_bit(held[:TWO_BIT_CAP]))
                held = held[TWO_BIT_CAP:]
                size = len(held)
                all_same = all(s == held[0] for s in held) if held else True
                has_large = LARGE in held
        if size < ONE_BIT_CAP:
            held.append(symbol)
        size += 1
        all_same = all_same and symbol == held[0]
        has_large = has_large or symbol == LARGE
    if size:  # as LastChunk::EncodeLast
        if all_same:
            out += struct.pack("!H", run())
        elif size <= TWO_BIT_CAP:
            out += struct.pack("!H", _two_bit(held))
        else:
            out += struct.pack("!H", _one_bit(held))
    return bytes(out)


def _one_bit(symbols: list[int]) -> int:
    chunk = 0x8000
    for i, symbol in enumerate(symbols):
        chunk |= symbol << (13 - i)
    return chunk


def _two_bit(symbols: list[int]) -> int:
    chunk = 0xC000
    for i, symbol in enumerate(symbols):
        chunk |= symbol << (2 * (6 - i))
    return chunk


def build_feedback(sender_ssrc: int, media_ssrc: int, base_seq: int, reference_time: int,
                   fb_count: int, symbols: list[int], deltas: list[int]) -> bytes:
    """One RTPFB FMT 15 packet: `symbols` per sequence number from `base_seq`, `deltas` (in
    250 us ticks) per received one, in order; `reference_time` in 64 ms units (24 bits)."""
    body = bytearray(encode_chunks(symbols))
    for delta in deltas:
        if 0 <= delta <= 0xFF:  # SMALL, as the symbol says
            body.append(delta)
        else:
            body += struct.pack("!h", delta)
    length = 20 + len(body)
    padding = -length % 4
    if padding:
        body += bytes(padding - 1) + bytes((padding,))
    header = _HEADER.pack(0x80 | (0x20 if padding else 0) | FMT_TRANSPORT_CC, RTCP_RTPFB,
                          (length + padding) // 4 - 1, sender_ssrc, media_ssrc,
                          base_seq & 0xFFFF, len(symbols),
                          ((reference_time & 0xFFFFFF) << 8) | (fb_count & 0xFF))
    return header + bytes(body)


@dataclass(frozen=True)
class UplinkStats:
    """A publisher's transport-wide feedback (`Peer.uplink_stats()`), cumulative."""

    transport_cc: bool = False  # negotiated on its send transport
    packets: int = 0  # numbered packets recorded
    feedback_packets: int = 0  # RTPFB FMT 15 packets sent
    too_old: int = 0  # arrived over WINDOW behind the highest: ignored
    skipped: int = 0  # sequence numbers never reported (over MAX_SPAN in one report)


class TwccRecorder:
    """Arrival times of one transport's packets by transport-wide sequence number, and the
    feedback reporting them (see the module's docstring)."""

    __slots__ = ("_fb_count", "_highest", "_media_ssrc", "_origin", "_seqs", "_start",
                 "_times", "feedback_packets", "packets", "skipped", "too_old")

    def __init__(self, origin: float) -> None:
        self._origin = origin  # monotonic seconds: times are kept in us since then
        self._times = [0] * WINDOW
        self._seqs = [-1] * WINDOW  # the extended sequence number each slot holds
        self._highest = -1  # extended (never wraps); -1: nothing yet
        self._start = 0  # the first sequence number the next report covers
        self._media_ssrc = 0
        self._fb_count = 0
        self.packets = 0
        self.too_old = 0  # arrived more than WINDOW behind the highest: not reported
        self.skipped = 0  # sequence numbers a report left out (over MAX_SPAN behind)
        self.feedback_packets = 0

    def record(self, seq: int, arrival: float, ssrc: int) -> None:
        """A packet with transport-wide sequence number `seq` (16 bits) read at `arrival`."""
        highest = self._highest
        if highest < 0:
            ext = self._start = seq | 0x10000  # room below for reordered ones
            self._highest = ext
        else:
            delta = (seq - highest) & 0xFFFF
            if delta < 0x8000:
                ext = highest + delta
                self._highest = ext
            else:
                ext = highest + delta - 0x10000
                if ext <= highest - WINDOW:
                    self.too_old += 1
                    return
                if ext < self._start:  # late: the next report covers it again
                    self._start = ext
        slot = ext & MASK
        self._seqs[slot] = ext
        self._times[slot] = int((arrival - self._origin) * 1_000_000)
        self._media_ssrc = ssrc
        self.packets += 1

    def stats(self) -> UplinkStats:
        return UplinkStats(True, self.packets, self.feedback_packets, self.too_old,
                           self.skipped)

    @property
    def pending(self) -> bool:
        return self._highest >= self._start

    def feedback(self, sender_ssrc: int) -> list[bytes]:
        """RTPFB FMT 15 packets for everything not reported yet (none if nothing arrived)."""
        end = self._highest
        start = self._start
        if end < start:
            return []
        if end - start >= MAX_SPAN:
            self.skipped += end - MAX_SPAN + 1 - start
            start = end - MAX_SPAN + 1
        out: list[bytes] = []
        while start <= end and len(out) < MAX_PACKETS:
            packet, start = self._packet(sender_ssrc, start, end)
            out.append(packet)
        if start <= end:
            self.skipped += end + 1 - start
        self._start = end + 1
        self.feedback_packets += len(out)
        return out

    def _packet(self, sender_ssrc: int, start: int, end: int) -> tuple[bytes, int]:
        """One feedback packet from `start`; the sequence number the next one starts at."""
        seqs, times = self._seqs, self._times
        symbols: list[int] = []
        deltas: list[int] = []
        reference = -1
        last_us = 0
        seq = start
        while seq <= end and len(symbols) < MAX_STATUSES:
            slot = seq & MASK
            if seqs[slot] != seq:
                symbols.append(NOT_RECEIVED)
                seq += 1
                continue
            arrival = times[slot]
            if reference < 0:
                reference = arrival // BASE_US
                last_us = reference * BASE_US
            elif len(deltas) >= MAX_RECEIVED:
                break
            ticks = _round_ticks(arrival - last_us)
            if not -0x8000 <= ticks <= 0x7FFF:
                break  # too far from the previous one: the next packet starts here
            symbols.append(SMALL if 0 <= ticks <= 0xFF else LARGE)
            deltas.append(ticks)
            last_us += ticks * DELTA_US
            seq += 1
        packet = build_feedback(sender_ssrc, self._media_ssrc, start, max(reference, 0),
                                self._fb_count, symbols, deltas)
        self._fb_count = (self._fb_count + 1) & 0xFF
        return packet, seq


# --- Parsing a subscriber's feedback (the encoder's inverse) -------------------------------

MAX_PARSE_STATUSES = 4096  # a feedback declaring more is dropped (`huge`): a run-length
# chunk declares 8,191 statuses in 2 bytes, so the count alone must not size our work; 4,096
# is 80 Mbit/s of 1,200-byte packets between two 50 ms reports.
MAX_PARSE_BYTES = 1500  # nor a longer packet (libwebrtc's own stay under ~1,200 bytes)


class FeedbackError(ValueError):
    """A transport-wide feedback that cannot be read; `reason` is `malformed` or `huge`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class TransportFeedback:
    """One RTPFB FMT 15 packet, read. `arrivals[i]` is sequence number `base_seq + i`'s (mod
    2^16) arrival in us on the receiver's clock (`reference_time` × 64 ms plus the deltas, as
    libwebrtc's `TransportFeedback::GetBaseTime` + deltas), None when reported lost."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int  # 24 bits, 64 ms units (unsigned: its wrap is the reader's affair)
    fb_count: int
    arrivals: tuple[int | None, ...]

    @property
    def received(self) -> int:
        return sum(1 for a in self.arrivals if a is not None)


def feedback_in(compound: bytes) -> list[bytes]:
    """The RTPFB FMT 15 packets of a compound RTCP packet (one `media.rtcp.parse_rtcp`
    accepted), each with its own header, in order; a truncated tail ends the walk."""
    out: list[bytes] = []
    pos, size = 0, len(compound)
    while pos + 4 <= size:
        length = 4 * (((compound[pos + 2] << 8) | compound[pos + 3]) + 1)
        if pos + length > size:
            break
        if compound[pos + 1] == RTCP_RTPFB and compound[pos] & 0x1F == FMT_TRANSPORT_CC:
            out.append(compound[pos:pos + length])
        pos += length
    return out


def parse_feedback(packet: bytes) -> TransportFeedback:
    """One RTCP RTPFB FMT 15 packet (its own header first, as `media.rtcp` splits a compound
    packet); raises `FeedbackError` for anything the draft does not allow (a truncated chunk or
    delta, the reserved symbol 3, a status count over `MAX_PARSE_STATUSES`...). The work is
    bounded by the packet's length and `MAX_PARSE_STATUSES`, whatever its header claims."""
    size = len(packet)
    if size > MAX_PARSE_BYTES:
        raise FeedbackError("huge", f"{size} bytes")
    if size < 20 or size % 4:
        raise FeedbackError("malformed", f"length {size}")
    b0, pt, length = struct.unpack_from("!BBH", packet)
    if b0 >> 6 != 2 or b0 & 0x1F != FMT_TRANSPORT_CC or pt != RTCP_RTPFB:
        raise FeedbackError("malformed", "not an RTPFB FMT 15 packet")
    if (length + 1) * 4 != size:
        raise FeedbackError("malformed", f"header length {length} for {size} bytes")
    end = size
    if b0 & 0x20:
        padding = packet[-1]  # 0: none (pion's vectors; libwebrtc would refuse it)
        if padding > size - 20:
            raise FeedbackError("malformed", f"padding {padding}")
        end -= padding
    sender, media, base, count, ref_and_count = _HEADER.unpack_from(packet)[3:]
    if count == 0:
        raise FeedbackError("malformed", "no status")
    if count > MAX_PARSE_STATUSES:
        raise FeedbackError("huge", f"{count} statuses")
    pos = 20
    symbols: list[int] = []
    while len(symbols) < count:
        if pos + 2 > end:
            raise FeedbackError("malformed", "truncated chunk")
        chunk = (packet[pos] << 8) | packet[pos + 1]
        pos += 2
        if not chunk & 0x8000:  # run length: T=0, S (2 bits), length (13 bits)
            run = chunk & RUN_MAX
            if run == 0:
                raise FeedbackError("malformed", "empty run")
            symbols += [(chunk >> 13) & 3] * min(run, count - len(symbols))
        elif not chunk & 0x4000:  # 14 one-bit symbols
            symbols += [(chunk >> (13 - i)) & 1 for i in range(ONE_BIT_CAP)]
        else:  # 7 two-bit symbols
            symbols += [(chunk >> (2 * (6 - i))) & 3 for i in range(TWO_BIT_CAP)]
    del symbols[count:]
    if 3 in symbols:
        raise FeedbackError("malformed", "reserved status symbol")
    reference = ref_and_count >> 8
    time = reference * BASE_US
    arrivals: list[int | None] = []
    for symbol in symbols:
        if symbol == NOT_RECEIVED:
            arrivals.append(None)
            continue
        if pos + symbol > end:
            raise FeedbackError("malformed", "truncated deltas")
        delta = packet[pos] if symbol == SMALL else _DELTA.unpack_from(packet, pos)[0]
        pos += symbol
        time += delta * DELTA_US
        arrivals.append(time)
    return TransportFeedback(sender, media, base, reference, ref_and_count & 0xFF,
                             tuple(arrivals))
