"""media._packetlog_c.TrackLog (the recorder's tap, encoding each packet's record as it is
forwarded) writes exactly what the pure-Python TrackLogPy writes: the same bytes (CRC
included), the same packets handed back as breaking the sequence, the same refusals; and
its flush_all writes with the GIL released, the tap going on meanwhile."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

from media import packetlog
from media.packetlog import (
    EXT_BLOCK_LEN,
    RECORD,
    TYPE_PACKET,
    LoggedPacket,
    LoggedReport,
    LogReader,
    TrackLogPy,
    append_packet,
    append_report,
    flush_all_py,
    header_bytes,
)
from media.recv_stream import SenderReportRef
from media.rtp import ForwardPacket

HEADER = {"codec": "VP8", "clock_rate": 90000, "kind": "video", "file": "x.webm", "start": 0.0}
IMPLS = ["c", "py"]


def impl(name: str) -> tuple[Any, Any]:
    """(TrackLog, flush_all) of one implementation."""
    if name == "py":
        return TrackLogPy, flush_all_py
    # scripts/setup.sh (pip install -e .) builds it; without it the recorder is slower
    assert packetlog.COMPILED, "media._packetlog_c is not built"
    return packetlog.TrackLog, packetlog.flush_all


def random_packets(rng: random.Random, count: int) -> list[ForwardPacket | SenderReportRef]:
    """A video track's packets as a producer taps them: mostly in sequence, with holes,
    reordering, repeats, keyframes, SSRC changes (epochs), the extreme field values and a
    sender report now and then."""
    out: list[ForwardPacket | SenderReportRef] = []
    seq, epoch = rng.choice([0, 65535, 2**40, 2**62]), rng.choice([0, 7, 2**32 - 1])
    for _ in range(count):
        roll = rng.random()
        if roll < 0.03:
            seq += rng.randint(2, 40)  # a hole
        elif roll < 0.05:
            seq -= rng.randint(1, 5)  # late, or repeated
        elif roll < 0.06:
            epoch = rng.randint(0, 2**32 - 1)  # a new source
        elif roll < 0.08:
            out.append(SenderReportRef(1 << 32, rng.randint(0, 2**33), rng.uniform(0, 1e6),
                                       rng.randint(0, 2**33)))
        payload = rng.randbytes(rng.choice([0, 1, 13, 160, 1000, 1200, rng.randint(0, 1400)]))
        out.append(ForwardPacket(
            seq, rng.choice([0, 2**32 - 1, rng.randint(0, 2**32 - 1)]),
            rng.choice([0, 0x80]), rng.randbytes(EXT_BLOCK_LEN) + payload,
            rng.random() < 0.05, epoch,
            rng.choice([rng.uniform(0, 1e6), 0.0, -1.5, 1e300, float("inf")])))
        seq += 1
    return out


def record(name: str, items: list[ForwardPacket | SenderReportRef], video: bool,
           path: Path, flush_every: int) -> tuple[bytes, list[tuple[int, int, int]], int]:
    """Tap `items` into a log (flushed every `flush_every`), as the recorder does: the
    file's bytes, the odd packets (index, nxt, epoch), the packets written."""
    track_log, flush_all = impl(name)
    log = track_log(video, 10_000)
    index = {id(fp): i for i, fp in enumerate(items)}
    odd: list[tuple[int, int, int]] = []
    with open(path, "wb", buffering=0) as f:
        f.write(header_bytes(HEADER))
        for i, item in enumerate(items):
            if isinstance(item, ForwardPacket):
                log(item)
            else:
                log.report(item)
            if i % flush_every == flush_every - 1:
                assert all(isinstance(n, int) for n in flush_all([(log, f.fileno())]))
                odd += [(index[id(fp)], nxt, epoch) for fp, nxt, epoch in log.take_odd()]
        flush_all([(log, f.fileno())])
        odd += [(index[id(fp)], nxt, epoch) for fp, nxt, epoch in log.take_odd()]
    assert log.pending == 0 and log.dropped == 0 and log.invalid == 0
    return path.read_bytes(), odd, log.packets


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("video", [True, False])
def test_c_and_python_write_the_same_records(seed: int, video: bool, tmp_path: Path) -> None:
    items = random_packets(random.Random(seed), 600)
    packets = [fp for fp in items if isinstance(fp, ForwardPacket)]
    c_bytes, c_odd, c_n = record("c", items, video, tmp_path / "c", 1 + seed * 37)
    py_bytes, py_odd, py_n = record("py", items, video, tmp_path / "py", 1 + seed * 37)
    assert c_bytes == py_bytes
    assert c_odd == py_odd and c_n == py_n == len(packets)
    if video:  # the sequence check handed back the holes, keyframes and new sources
        assert len(c_odd) > 10
    else:
        assert c_odd == []

    # and both are the format: append_packet's records, each CRC as the reader checks it
    reference = bytearray(header_bytes(HEADER))
    for item in items:
        if isinstance(item, ForwardPacket):
            append_packet(reference, item.ext_seq, item.ts, item.marker, item.keyframe,
                          item.epoch, item.arrival, item.tail[EXT_BLOCK_LEN:])
        else:
            append_report(reference, item.rtp_ts, item.local, item.epoch)
    assert c_bytes == bytes(reference)
    pos = len(header_bytes(HEADER))
    for item in items:
        length, kind, crc = RECORD.unpack_from(c_bytes, pos)
        body = c_bytes[pos + RECORD.size:pos + RECORD.size + length]
        if isinstance(item, ForwardPacket):
            assert kind == TYPE_PACKET and length == len(item.tail) - EXT_BLOCK_LEN + 25
            assert crc == zlib.crc32(body[:25], length + (TYPE_PACKET << 24))
        pos += RECORD.size + length
    assert pos == len(c_bytes)


def test_the_sequence_check_hands_back_what_the_writer_needs() -> None:
    """In sequence: nothing; a keyframe, a hole, a new source: the packet with the ext_seq
    and epoch expected before it (-1: none yet)."""
    tail = b"\0" * EXT_BLOCK_LEN + b"payload"
    for name in IMPLS:
        track_log, _ = impl(name)
        log = track_log(True, 100)
        packets = [ForwardPacket(s, 0, 0, tail, s == 12, 1, 0.0) for s in (10, 11, 12, 13, 16)]
        packets.append(ForwardPacket(3, 0, 0, tail, False, 2, 0.0))  # a new source
        for fp in packets:
            log(fp)
        odd = [(fp.ext_seq, nxt, epoch) for fp, nxt, epoch in log.take_odd()]
        assert odd == [(10, -1, -1), (12, 12, 1), (16, 14, 1), (3, 17, 1)], name
        assert log.take_odd() == [] and log.pending == 6
        audio = track_log(False, 100)
        for fp in packets:
            audio(fp)
        assert audio.take_odd() == []


def test_a_c_encoded_log_reads_back(tmp_path: Path) -> None:
    items = random_packets(random.Random(99), 300)
    record("c", items, True, tmp_path / "c.rtplog", 50)
    reader = LogReader(tmp_path / "c.rtplog")
    got = reader.read()
    assert reader.corrupt is None and reader.pending_bytes == 0
    assert got == [LoggedPacket(fp.ext_seq, fp.ts, 0x80 if fp.marker else 0, fp.keyframe,
                                fp.epoch, fp.arrival, fp.tail[EXT_BLOCK_LEN:])
                   if isinstance(fp, ForwardPacket) else
                   LoggedReport(fp.rtp_ts & 0xFFFFFFFF, fp.local, fp.epoch & 0xFFFFFFFF)
                   for fp in items]


@pytest.mark.parametrize("field, value", [("ts", 2**32), ("ts", -1), ("epoch", 2**32),
                                          ("ext_seq", 2**63), ("tail", b"short"),
                                          ("tail", bytearray(20)), ("arrival", "x")])
def test_a_field_out_of_range_is_counted_by_both_never_raised_into_forwarding(
        field: str, value: object, tmp_path: Path) -> None:
    for name in IMPLS:
        track_log, flush_all = impl(name)
        log = track_log(False, 100)
        good = ForwardPacket(5, 1, 0, b"\0" * EXT_BLOCK_LEN + b"ok", False, 0, 0.0)
        bad = ForwardPacket(6, 1, 0, b"\0" * EXT_BLOCK_LEN + b"ok", False, 0, 0.0)
        setattr(bad, field, value)
        log(good)
        log(bad)  # the forwarding path's call: never raises
        log("not a packet")
        assert (log.invalid, log.pending) == (2, 1), name
        with open(tmp_path / name, "wb", buffering=0) as f:
            assert flush_all([(log, f.fileno())]) == [1]
        reference = bytearray()
        append_packet(reference, 5, 1, 0, False, 0, 0.0, b"ok")
        assert (tmp_path / name).read_bytes() == reference


def test_a_full_log_drops_the_newest_until_flushed(tmp_path: Path) -> None:
    tail = b"\0" * EXT_BLOCK_LEN + b"x"
    for name in IMPLS:
        track_log, flush_all = impl(name)
        log = track_log(False, 64)
        for i in range(100):
            log(ForwardPacket(i, 0, 0, tail, False, 0, 0.0))
        log.report(SenderReportRef(0, 0, 0.0, 0))
        assert (log.pending, log.dropped) == (64, 37), name
        path = tmp_path / name
        with open(path, "wb", buffering=0) as f:
            assert flush_all([(log, f.fileno())]) == [64]
            log(ForwardPacket(100, 0, 0, tail, False, 0, 0.0))  # room again
            assert flush_all([(log, f.fileno())]) == [1]
        path.write_bytes(header_bytes(HEADER) + path.read_bytes())
        got = LogReader(path).read()
        assert [r.ext_seq for r in got if isinstance(r, LoggedPacket)] == [*range(64), 100]


def test_a_failed_write_is_that_logs_result_the_others_are_written(tmp_path: Path) -> None:
    tail = b"\0" * EXT_BLOCK_LEN + b"x" * 100
    for name in IMPLS:
        track_log, flush_all = impl(name)
        logs = [track_log(True, 100) for _ in range(3)]
        for log in logs:
            for i in range(5):
                log(ForwardPacket(i, 0, 0, tail, False, 0, 0.0))
        with open(tmp_path / f"{name}-a", "wb", buffering=0) as a, \
                open("/dev/full", "wb", buffering=0) as full, \
                open(tmp_path / f"{name}-b", "wb", buffering=0) as b:
            result = flush_all([(logs[0], a.fileno()), (logs[1], full.fileno()),
                                (logs[2], b.fileno())])
        assert result[0] == result[2] == 5, name
        assert isinstance(result[1], OSError) and "space" in str(result[1]).lower()
        assert (tmp_path / f"{name}-a").read_bytes() == (tmp_path / f"{name}-b").read_bytes()
        assert [log.packets for log in logs] == [5, 0, 5]
        logs[1].close()
        logs[1](ForwardPacket(9, 0, 0, tail, False, 0, 0.0))  # closed: the tap does nothing
        assert logs[1].pending == 0


def test_packets_tapped_while_a_flush_writes_go_into_the_next_one(tmp_path: Path) -> None:
    """flush_all writes with the GIL released: the forwarding thread taps on meanwhile (here
    while the write waits on a pipe nobody reads yet), into the spare buffer."""
    track_log, flush_all = impl("c")
    tail = b"\0" * EXT_BLOCK_LEN + b"y" * 1000
    log = track_log(False, 1000)
    for i in range(200):  # 200 kB: more than the pipe holds
        log(ForwardPacket(i, 0, 0, tail, False, 0, 0.0))
    read, write = os.pipe()
    out = tmp_path / "out"
    # nobody reads for 1 s: had the writer held the GIL while blocked on the full pipe,
    # this thread's taps would come after the write, not during it
    reader = subprocess.Popen(["sh", "-c", f"sleep 1; cat > {out}"], stdin=read)
    os.close(read)
    results: list[Any] = []
    flusher = threading.Thread(target=lambda: results.append(flush_all([(log, write)])))
    flusher.start()
    while log.pending:  # swapped: the flush is under way
        pass
    tapped_during = []
    for i in range(200, 203):
        log(ForwardPacket(i, 0, 0, tail, False, 0, 0.0))
        tapped_during.append(flusher.is_alive())
    flusher.join(10)
    os.close(write)
    reader.wait(10)
    assert results == [[200]]
    assert tapped_during == [True] * 3
    assert log.pending == 3
    assert len(out.read_bytes()) == 200 * (RECORD.size + 25 + 1000)


def test_more_records_than_one_writev_takes_are_written_whole_and_in_order(
        tmp_path: Path) -> None:
    """The C log writes each payload from the packet's own bytes: one poll of 3,000 records
    (6,000 pieces, over IOV_MAX) makes the same file as the Python encoder's copy."""
    items = random_packets(random.Random(7), 3000)
    c, _, c_packets = record("c", items, True, tmp_path / "c.rtplog", len(items) + 1)
    py, _, py_packets = record("py", items, True, tmp_path / "py.rtplog", len(items) + 1)
    assert c == py and c_packets == py_packets


def test_a_payload_is_held_until_written_then_let_go(tmp_path: Path) -> None:
    """No copy at the tap: the log holds the packet's tail until the writer has written it
    (the packet itself may be gone by then), and lets go once written or closed."""
    track_log, flush_all = impl("c")
    log = track_log(True, 100)
    tail = b"\0" * EXT_BLOCK_LEN + os.urandom(1000)
    before = sys.getrefcount(tail)
    log(ForwardPacket(5, 0, 0, tail, True, 0, 1.0))
    log.take_odd()  # the first packet's entry held the packet (and so the tail) too
    assert sys.getrefcount(tail) == before + 1  # the packet is gone, its payload kept
    with open(tmp_path / "a", "wb", buffering=0) as f:
        assert flush_all([(log, f.fileno())]) == [1]
    assert sys.getrefcount(tail) == before
    path = tmp_path / "a"
    path.write_bytes(header_bytes(HEADER) + path.read_bytes())
    [got] = LogReader(path).read()
    assert isinstance(got, LoggedPacket) and got.payload == tail[EXT_BLOCK_LEN:]
    log(ForwardPacket(6, 0, 0, tail, False, 0, 1.0))
    assert sys.getrefcount(tail) == before + 1
    log.close()  # pending records discarded: their payloads let go
    assert sys.getrefcount(tail) == before


def read_both(path: Path, piece: int) -> list[tuple[Any, ...]]:
    """The log read as it grows, `piece` bytes at a time, by the C reader and by the Python
    one: per read, (records, corrupt, pending bytes) of each."""
    data = path.read_bytes()
    paths = [path.with_suffix(".c"), path.with_suffix(".py")]
    readers = [LogReader(paths[0]), LogReader(paths[1], pure_python=True)]
    out = []
    for p in paths:
        p.write_bytes(b"")
    for at in range(0, len(data), piece):
        for p in paths:
            with open(p, "ab") as f:
                f.write(data[at:at + piece])
        out.append(tuple((r.read(), r.corrupt, r.pending_bytes) for r in readers))
    for r in readers:
        r.close()
    return out


@pytest.mark.parametrize("seed", range(4))
def test_the_c_reader_reads_what_the_python_one_reads(seed: int, tmp_path: Path) -> None:
    """read_records (the mux process's loop in C) against LogReader's Python loop: the same
    records (types, fields, payloads), the same garbage found at the same place with the same
    words, the same bytes left pending, whether the log arrives whole or in pieces."""
    assert packetlog.read_records is not None, "media._packetlog_c is not built"
    rng = random.Random(seed)
    items = random_packets(rng, 400)
    record("py", items, True, tmp_path / "good.rtplog", 37)
    good = (tmp_path / "good.rtplog").read_bytes()
    head = len(header_bytes(HEADER))
    middle = head + (len(good) - head) // 2
    later = {"future": RECORD.pack(3, ord("Z"), zlib.crc32(b"abc", 3 + (ord("Z") << 24)))
             + b"abc", "short-packet": RECORD.pack(4, TYPE_PACKET, zlib.crc32(
                 b"abcd", 4 + (TYPE_PACKET << 24))) + b"abcd"}
    cases = {"whole": good, "cut": good[:middle + 7],
             "tail-garbage": good + rng.randbytes(500),
             "huge-length": good + b"\xff\xff\xff\x7f" + rng.randbytes(30),
             "skipped-records": good[:head] + later["future"] + later["short-packet"]
             + good[head:]}
    for i in range(6):  # a byte flipped anywhere past the header
        at = rng.randrange(head, len(good))
        cases[f"flip{i}"] = good[:at] + bytes([good[at] ^ (1 << rng.randrange(8))]) \
            + good[at + 1:]
    for name, data in cases.items():
        path = tmp_path / f"{name}.rtplog"
        path.write_bytes(data)
        for piece in (len(data) + 1, 613, 97):
            for c, py in read_both(path, piece):
                assert c == py, (name, piece)
                assert [type(r) for r in c[0]] == [type(r) for r in py[0]]
    whole = read_both(tmp_path / "whole.rtplog", len(good) + 1)[0][0]
    assert len(whole[0]) == len(items) and whole[1] is None


def test_the_c_reader_refuses_what_it_cannot_make() -> None:
    read_records = packetlog.read_records
    assert read_records is not None, "media._packetlog_c is not built"
    data = bytearray()
    append_report(data, 1, 2.0, 3)
    assert read_records(data, 0, LoggedPacket, LoggedReport) == (
        [LoggedReport(1, 2.0, 3)], len(data), None, 0)
    with pytest.raises(TypeError):
        read_records(data, 0, dict, LoggedReport)
    with pytest.raises(ValueError):
        read_records(data, len(data) + 1, LoggedPacket, LoggedReport)
    with pytest.raises(TypeError):
        read_records("text", 0, LoggedPacket, LoggedReport)
