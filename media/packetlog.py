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

`TrackLog` is the recorder's tap: each forwarded packet's record is encoded as it is tapped
(the packet still in the cache) into a pending buffer that `flush_all` writes from the
writer thread, the GIL released (the C one keeps a reference to the payload instead of a
copy and writes it from there); in C by media._packetlog_c (media/_packetlog_c.c, built by
`pip install -e .` or `python media/packetlog_build.py`) when it is built, in Python
otherwise, the same bytes either way (tests/media/test_packetlog_c.py). The mux process's
`LogReader` reads the records back with the same module's `read_records` (one C call per
poll and log, a tuple per record) when it is built, in Python otherwise, the same records.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from .rtp import EXT_BLOCK_LEN, ForwardPacket

if TYPE_CHECKING:
    from .recv_stream import SenderReportRef

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


# Tuples, so that the C reader (read_records) makes one with a single allocation: the mux
# process makes one per recorded packet.
class LoggedPacket(NamedTuple):
    ext_seq: int
    ts: int
    marker: int  # 0x80 when set, as in ForwardPacket
    keyframe: bool
    epoch: int
    arrival: float
    payload: bytes


class LoggedReport(NamedTuple):
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


class TrackLogPy:
    """What media._packetlog_c.TrackLog does, in Python (when the C module is not built):
    a track's recording tap that encodes each packet's record as it is tapped (see
    media/_packetlog_c.c for the contract; the same bytes, tests/media/test_packetlog_c.py)."""

    def __init__(self, video: bool, max_packets: int) -> None:
        if max_packets < 1:
            raise ValueError("max_packets must be at least 1")
        self.video = int(video)
        self.max_packets = max_packets
        self.pending = 0  # records (packets and reports) waiting for the next flush
        self.pending_packets = 0
        self.packets = 0  # packet records written by flush_all
        self.dropped = 0
        self.invalid = 0
        self.closed = 0
        self.out = bytearray()
        self._nxt, self._epoch = -1, -1
        self._odd: list[tuple[ForwardPacket, int, int]] = []

    @property
    def pending_bytes(self) -> int:
        return len(self.out)

    def __call__(self, fp: ForwardPacket) -> None:
        if self.closed:
            return
        if self.pending >= self.max_packets:
            self.dropped += 1
            return
        try:
            if type(fp) is not ForwardPacket or type(fp.tail) is not bytes:
                raise TypeError("not a ForwardPacket")
            if len(fp.tail) < EXT_BLOCK_LEN:
                raise ValueError("a packet's tail is shorter than its extension block")
            fields = _pack_packet(fp.ext_seq, fp.ts, fp.arrival,
                                  (1 if fp.marker else 0) | (2 if fp.keyframe else 0), fp.epoch)
        except (TypeError, ValueError, OverflowError, struct.error):
            self.invalid += 1  # the forwarding path never sees the recorder's trouble
            return
        length = len(fp.tail) + FIELDS_MINUS_EXT
        out = self.out
        out += _pack_record(length, TYPE_PACKET, _crc(fields, length + (TYPE_PACKET << 24)))
        out += fields
        out += memoryview(fp.tail)[EXT_BLOCK_LEN:]
        self.pending += 1
        self.pending_packets += 1
        if self.video:
            if fp.ext_seq == self._nxt and fp.epoch == self._epoch and not fp.keyframe:
                self._nxt += 1
                return
            self._odd.append((fp, self._nxt, self._epoch))
            if fp.epoch != self._epoch:
                self._epoch, self._nxt = fp.epoch, -1
            if fp.ext_seq >= self._nxt:
                self._nxt = fp.ext_seq + 1

    def report(self, sr: SenderReportRef) -> None:
        if self.closed:
            return
        if self.pending >= self.max_packets:
            self.dropped += 1
            return
        append_report(self.out, sr.rtp_ts, sr.local, sr.epoch)
        self.pending += 1

    def take_odd(self) -> list[tuple[ForwardPacket, int, int]]:
        odd, self._odd = self._odd, []
        return odd

    def close(self) -> None:
        self.closed = 1
        self.out = bytearray()
        self.pending = self.pending_packets = 0
        self._odd = []


def flush_all_py(pairs: Sequence[tuple[TrackLogPy, int]]) -> list[int | OSError]:
    """flush_all for TrackLogPy: each log's pending records written to its fd."""
    results: list[int | OSError] = []
    for log, fd in pairs:
        data, packets = log.out, log.pending_packets
        log.out, log.pending, log.pending_packets = bytearray(), 0, 0
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                if not written:
                    raise OSError(errno.EIO, "log write made no progress")
                view = view[written:]
        except OSError as exc:
            results.append(exc)
            continue
        log.packets += packets
        results.append(packets)
    return results


TrackLog: Any = TrackLogPy
"""TrackLog(video, max_packets): media._packetlog_c.TrackLog when built, else TrackLogPy.
`log(fp)` encodes a forwarded packet's record (never raises: what cannot be logged is
counted in `dropped` / `invalid`); `log.report(sr)`; `log.take_odd()` -> the video packets
that broke the sequence, each with the ext_seq and epoch (-1: none) expected before it;
`log.close()`."""
flush_all: Callable[[Sequence[tuple[Any, int]]], list[int | OSError]] = flush_all_py
"""flush_all([(log, fd), ...]) -> for each, the packet records written or the OSError that
stopped it; the C one writes them all with the GIL released once."""
read_records: Callable[..., tuple[list[Any], int, str | None, int]] | None = None
"""read_records(buffer, pos, LoggedPacket, LoggedReport) -> (records, pos, bad, bad_at): the
LogReader's loop in C (media/_packetlog_read.c), or None (LogReader does it in Python)."""
try:
    from . import _packetlog_c  # type: ignore[attr-defined]
    TrackLog, flush_all = _packetlog_c.TrackLog, _packetlog_c.flush_all
    # a module built before the reader was added still serves the tap
    read_records = getattr(_packetlog_c, "read_records", None)
except ImportError:  # pragma: no cover - setup.sh always builds it
    logger.warning("media._packetlog_c is not built (pip install -e . builds it): the "
                   "recorder encodes its packet logs in Python, slower")
COMPILED = TrackLog is not TrackLogPy


def append_report(out: bytearray, rtp_ts: int, local: float, epoch: int) -> None:
    body = SENDER_REPORT.pack(rtp_ts & 0xFFFFFFFF, local, epoch & 0xFFFFFFFF)
    out += _pack_record(len(body), TYPE_SR, _crc(body, len(body) + (TYPE_SR << 24)))
    out += body


class LogReader:
    """Reads a log as it grows: each `read()` returns the records now whole on disk."""

    def __init__(self, path: Path, pure_python: bool = False) -> None:
        self.path = path
        self.pure_python = pure_python  # read_records's Python loop even when C is built
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
        if read_records is not None and not self.pure_python:
            records, pos, bad, at = read_records(self._buffer, 0, LoggedPacket, LoggedReport)
            if bad is not None:
                (length,) = HEADER_LEN.unpack_from(self._buffer, at)
                self._corrupt(f"record of {length} bytes at {self._offset + at}"
                              if bad == "length" else f"bad checksum at {self._offset + at}")
                return records
            del self._buffer[:pos]
            self._offset += pos
            return records
        return self._records_py()

    def _records_py(self) -> list[LoggedPacket | LoggedReport]:
        # What read_records does in C: the fields read in place, the CRC over a view, the
        # payload copied once.
        buf = self._buffer
        out: list[LoggedPacket | LoggedReport] = []
        append = out.append
        pos = 0
        end = len(buf)
        unpack_record, unpack_packet = RECORD.unpack_from, PACKET.unpack_from
        fields, record_size = PACKET.size, RECORD.size
        view = memoryview(buf)
        try:
            while end - pos >= record_size:
                length, kind, crc = unpack_record(buf, pos)
                if length > MAX_BODY:
                    view.release()
                    self._corrupt(f"record of {length} bytes at {self._offset + pos}")
                    return out
                start = pos + record_size
                if end - start < length:
                    break  # not all on disk yet (or cut there)
                checked = start + (length if length < CHECKED else CHECKED)
                if _crc(view[start:checked], length + (kind << 24)) != crc:
                    view.release()
                    self._corrupt(f"bad checksum at {self._offset + pos}")
                    return out
                pos = start + length
                if kind == TYPE_PACKET and length >= fields:
                    ext_seq, ts, arrival, flags, epoch = unpack_packet(buf, start)
                    append(LoggedPacket(ext_seq, ts, 0x80 if flags & 1 else 0,
                                        bool(flags & 2), epoch, arrival,
                                        bytes(view[start + fields:pos])))
                elif kind == TYPE_SR and length == SENDER_REPORT.size:
                    append(LoggedReport(*SENDER_REPORT.unpack_from(buf, start)))
                # any other (whole, checked) record: a later version's, skipped
        finally:
            view.release()  # (again: harmless) the buffer cannot be resized under a view
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
