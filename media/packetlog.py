"""A recorded track's packet log: RTP payloads as they arrived, muxed later elsewhere.

Janus's .mjr idea: the SFU process only appends bytes (media/recorder.py), a separate
process (media/recmux.py) turns them into WebM / MPEG-TS. Format, little-endian:

    MAGIC, u32 n, n bytes of JSON header (codec, clock_rate, kind, producer, output file...)
    records: u32 body length, u8 type, u32 check, body
             check = crc32 of the body's first CHECKED bytes (a packet's fields), seeded
             with length + (type << 24): a framing error (garbage, a wrong length) is caught;
             the payload itself is not summed (crc32 of 1000 bytes per packet would cost the
             SFU more than the rest of the record), a flipped byte there is muxed like any
             garbage payload a publisher might send

    type P (packet): i64 ext_seq, u32 rtp ts, f64 arrival (monotonic), u8 flags
                     (1 marker, 2 first packet of a keyframe), u32 epoch, then the payload
    type S (sender report, logged where it arrived among the packets):
                     u32 rtp ts, f64 local arrival (monotonic), u32 epoch

A log cut short (crash, kill, full disk) is read up to its last whole record; a record whose
length or CRC is wrong ends the log there (garbage is never parsed as media).

`encode_packets` is the writer thread's per-packet work (a batch of ForwardPacket into
records): done in C by media._packetlog_c (media/_packetlog_c.c, built by `pip install -e .`
or `python media/packetlog_build.py`) when it is built, in Python otherwise, the same bytes
either way (tests/media/test_packetlog_c.py).
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias

from .rtp import EXT_BLOCK_LEN, ForwardPacket

if TYPE_CHECKING:
    from .recv_stream import SenderReportRef

Queued: TypeAlias = "ForwardPacket | SenderReportRef"  # what a recorder's queue holds

logger = logging.getLogger(__name__)

MAGIC = b"HOPSO-RTPLOG-1\n"
HEADER_LEN = struct.Struct("<I")
RECORD = struct.Struct("<IBI")  # body length, type, check
PACKET = struct.Struct("<qIdBI")
SENDER_REPORT = struct.Struct("<IdI")
TYPE_PACKET = ord("P")
TYPE_SR = ord("S")
CHECKED = PACKET.size
MAX_BODY = 1 << 16  # an RTP payload is far smaller: anything bigger is corruption
MAX_HEADER = 1 << 14
SUFFIX = ".rtplog"

FIELDS_MINUS_EXT = PACKET.size - EXT_BLOCK_LEN  # a record's body length minus its tail's

_pack_record = RECORD.pack
_pack_packet = PACKET.pack
_crc = zlib.crc32


@dataclass(frozen=True)
class MuxLimits:
    """What the mux process (media/recmux.py, which applies them) may take; the recorder
    passes them on its command line."""

    memory_mb: int = 1536  # RLIMIT_AS (idle, the process maps ~240 MB)
    nice: int = 10
    cpu_s_per_s: float = 0.5  # CPU budget per second of recording: a spinning mux hits it
    cpu_min_s: float = 60.0  # ... plus this

    def argv(self) -> list[str]:
        return ["--memory-mb", str(self.memory_mb), "--nice", str(self.nice),
                "--cpu-s-per-s", str(self.cpu_s_per_s), "--cpu-min-s", str(self.cpu_min_s)]


class CorruptLog(Exception):
    """The log holds something that is not a record: it ends where this was found."""


@dataclass(slots=True)
class LoggedPacket:
    ext_seq: int
    ts: int
    marker: int  # 0x80 when set, as in ForwardPacket
    keyframe: bool
    epoch: int
    arrival: float
    payload: bytes


@dataclass(slots=True)
class LoggedReport:
    rtp_ts: int
    local: float
    epoch: int


def header_bytes(header: dict[str, Any]) -> bytes:
    data = json.dumps(header, sort_keys=True).encode()
    return MAGIC + HEADER_LEN.pack(len(data)) + data


def append_packet(out: bytearray, ext_seq: int, ts: int, marker: int, keyframe: bool,
                  epoch: int, arrival: float, payload: bytes | memoryview) -> None:
    """One packet record onto `out` (the writer thread's batch)."""
    fields = _pack_packet(ext_seq, ts, arrival, (1 if marker else 0) | (2 if keyframe else 0),
                          epoch)
    length = len(fields) + len(payload)
    out += _pack_record(length, TYPE_PACKET, _crc(fields, length + (TYPE_PACKET << 24)))
    out += fields
    out += payload


def encode_packets_py(packets: deque[Queued], out: bytearray, video: bool, nxt: int,
                      epoch: int) -> tuple[int, int, Queued | None]:
    """Packet records of `packets` (taken from the left) onto `out`; see `encode_packets`."""
    pack_record, pack_packet, crc = _pack_record, _pack_packet, _crc
    seed = TYPE_PACKET << 24
    popleft = packets.popleft
    start, n = len(out), 0
    try:
        while packets:
            fp = packets[0]
            if type(fp) is not ForwardPacket:  # a sender report, where it arrived
                popleft()
                return n, nxt, fp
            popleft()
            tail = fp.tail
            if len(tail) < EXT_BLOCK_LEN:
                raise ValueError("a packet's tail is shorter than its extension block")
            fields = pack_packet(fp.ext_seq, fp.ts, fp.arrival,
                                 (1 if fp.marker else 0) | (2 if fp.keyframe else 0), fp.epoch)
            length = len(tail) + FIELDS_MINUS_EXT
            out += pack_record(length, TYPE_PACKET, crc(fields, length + seed))
            out += fields
            out += memoryview(tail)[EXT_BLOCK_LEN:]
            n += 1
            if video:
                if fp.ext_seq == nxt and fp.epoch == epoch and not fp.keyframe:
                    nxt += 1  # the usual case: in sequence
                else:
                    return n, nxt, fp
    except BaseException:
        del out[start:]
        raise
    return n, nxt, None


encode_packets: Callable[[deque[Queued], bytearray, bool, int, int],
                         tuple[int, int, Queued | None]]
"""encode_packets(packets, out, video, nxt, epoch) -> (n, nxt, odd)

Appends one packet record per ForwardPacket taken from the left of `packets` to `out` (what
`append_packet` writes; the tail's extension block is left out). For a video track it also
follows the sequence: a packet with ext_seq == nxt, this epoch (-1: none yet) and no keyframe
moves nxt on; any other one ends the call after its record and comes back as `odd`, with nxt
as it was before it, for the writer to look at. An item that is not a ForwardPacket (a
sender report queued where it arrived) ends the call for any track: taken off without a
record and returned as `odd`, for the writer to log with `append_report`. `n`: the records
appended. An exception (a field out of range) leaves the batch unlogged."""
try:
    from ._packetlog_c import encode_packets  # type: ignore[import-not-found, no-redef]
except ImportError:  # pragma: no cover - setup.sh always builds it
    encode_packets = encode_packets_py
    logger.warning("media._packetlog_c is not built (pip install -e . builds it): the "
                   "recorder encodes its packet logs in Python, slower")
COMPILED = encode_packets is not encode_packets_py


def append_report(out: bytearray, rtp_ts: int, local: float, epoch: int) -> None:
    body = SENDER_REPORT.pack(rtp_ts & 0xFFFFFFFF, local, epoch & 0xFFFFFFFF)
    out += _pack_record(len(body), TYPE_SR, _crc(body, len(body) + (TYPE_SR << 24)))
    out += body


class LogReader:
    """Reads a log as it grows: each `read()` returns the records now whole on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] | None = None
        self.corrupt: str | None = None  # why reading stopped early, if it did
        self._file: BinaryIO | None = None
        self._buffer = bytearray()
        self._offset = 0  # bytes of the file consumed into `_buffer`

    def read(self) -> list[LoggedPacket | LoggedReport]:
        if self.corrupt is not None:
            return []
        if self._file is None:
            self._file = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        chunk = self._file.read()
        if chunk:
            self._buffer += chunk
        try:
            if self.header is None and not self._read_header():
                return []
            return self._records()
        except CorruptLog as exc:
            self.corrupt = str(exc)
            self._buffer.clear()
            return []

    def _read_header(self) -> bool:
        buf = self._buffer
        if len(buf) < len(MAGIC) + HEADER_LEN.size:
            if not MAGIC.startswith(bytes(buf[:len(MAGIC)])):
                raise CorruptLog("not a packet log")
            return False
        if bytes(buf[:len(MAGIC)]) != MAGIC:
            raise CorruptLog("not a packet log")
        (n,) = HEADER_LEN.unpack_from(buf, len(MAGIC))
        if n > MAX_HEADER:
            raise CorruptLog("header too long")
        end = len(MAGIC) + HEADER_LEN.size + n
        if len(buf) < end:
            return False
        try:
            header = json.loads(bytes(buf[end - n:end]))
        except ValueError as exc:
            raise CorruptLog(f"bad header: {exc}") from exc
        if not isinstance(header, dict):
            raise CorruptLog("bad header")
        self.header = header
        del buf[:end]
        return True

    def _records(self) -> list[LoggedPacket | LoggedReport]:
        buf = self._buffer
        out: list[LoggedPacket | LoggedReport] = []
        pos = 0
        try:
            while len(buf) - pos >= RECORD.size:
                length, kind, crc = RECORD.unpack_from(buf, pos)
                if length > MAX_BODY:
                    self._corrupt(f"record of {length} bytes at {self._offset + pos}")
                    return out
                start = pos + RECORD.size
                if len(buf) - start < length:
                    break  # not all on disk yet (or cut there)
                body = bytes(buf[start:start + length])
                if _crc(body[:CHECKED], length + (kind << 24)) != crc:
                    self._corrupt(f"bad checksum at {self._offset + pos}")
                    return out
                pos = start + length
                if kind == TYPE_PACKET and length >= PACKET.size:
                    ext_seq, ts, arrival, flags, epoch = PACKET.unpack_from(body)
                    out.append(LoggedPacket(ext_seq, ts, 0x80 if flags & 1 else 0,
                                            bool(flags & 2), epoch, arrival,
                                            body[PACKET.size:]))
                elif kind == TYPE_SR and length == SENDER_REPORT.size:
                    out.append(LoggedReport(*SENDER_REPORT.unpack(body)))
                # any other (whole, checked) record: a later version's, skipped
        finally:
            if self.corrupt is None:
                del buf[:pos]
                self._offset += pos
        return out

    def _corrupt(self, why: str) -> None:
        self.corrupt = why
        self._buffer.clear()

    @property
    def pending_bytes(self) -> int:
        """Bytes read but not yet a whole record (a cut log's unusable tail)."""
        return len(self._buffer)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
