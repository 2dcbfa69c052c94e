"""media._packetlog_c (the recorder's packet-record encoder in C) writes exactly what the
pure-Python `encode_packets_py` writes: the same bytes (CRC included), the same sequence
check, the same packets left in the queue, the same refusals."""

from __future__ import annotations

import random
import zlib
from collections import deque
from pathlib import Path

import pytest

from media import packetlog
from media.packetlog import (
    EXT_BLOCK_LEN,
    RECORD,
    TYPE_PACKET,
    LoggedPacket,
    LogReader,
    append_packet,
    encode_packets_py,
    header_bytes,
)
from media.recv_stream import SenderReportRef
from media.rtp import ForwardPacket

HEADER = {"codec": "VP8", "clock_rate": 90000, "kind": "video", "file": "x.webm", "start": 0.0}


def c_encoder():  # type: ignore[no-untyped-def]
    # scripts/setup.sh (pip install -e .) builds it; without it the recorder is slower
    assert packetlog.COMPILED, "media._packetlog_c is not built"
    return packetlog.encode_packets


def random_packets(rng: random.Random, count: int) -> list[ForwardPacket]:
    """A video track's packets as a producer taps them: mostly in sequence, with holes,
    reordering, repeats, keyframes, SSRC changes (epochs) and the extreme field values."""
    out = []
    seq, epoch = rng.choice([0, 65535, 2**40, 2**62]), rng.choice([0, 7, 2**32 - 1])
    for _ in range(count):
        roll = rng.random()
        if roll < 0.03:
            seq += rng.randint(2, 40)  # a hole
        elif roll < 0.05:
            seq -= rng.randint(1, 5)  # late, or repeated
        elif roll < 0.06:
            epoch = rng.randint(0, 2**32 - 1)  # a new source
        payload = rng.randbytes(rng.choice([0, 1, 13, 160, 1000, 1200, rng.randint(0, 1400)]))
        out.append(ForwardPacket(
            seq, rng.choice([0, 2**32 - 1, rng.randint(0, 2**32 - 1)]),
            rng.choice([0, 0x80]), rng.randbytes(EXT_BLOCK_LEN) + payload,
            rng.random() < 0.05, epoch,
            rng.choice([rng.uniform(0, 1e6), 0.0, -1.5, 1e300, float("inf")])))
        seq += 1
    return out


def drain(encode, packets: list[ForwardPacket], video: bool, prefix: bytes = b""
          ) -> tuple[bytes, list[tuple[int, int, int | None]]]:  # type: ignore[no-untyped-def]
    """What TrackWriter.drain does with `encode`: the bytes and every call's result
    (the odd packet by its index)."""
    queue = deque(packets)
    out = bytearray(prefix)
    index = {id(fp): i for i, fp in enumerate(packets)}
    calls = []
    nxt, epoch = -1, -1
    while queue:
        n, nxt, odd = encode(queue, out, video, nxt, epoch)
        calls.append((n, nxt, None if odd is None else index[id(odd)]))
        if odd is not None:  # TrackWriter._watch_sequence's bookkeeping
            if odd.epoch != epoch:
                epoch, nxt = odd.epoch, -1
            if odd.ext_seq >= nxt:
                nxt = odd.ext_seq + 1
    return bytes(out), calls


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("video", [True, False])
def test_c_and_python_write_the_same_records(seed: int, video: bool) -> None:
    encode = c_encoder()
    packets = random_packets(random.Random(seed), 600)
    prefix = b"an SR record already in the batch"
    c_bytes, c_calls = drain(encode, packets, video, prefix)
    py_bytes, py_calls = drain(encode_packets_py, packets, video, prefix)
    assert c_bytes == py_bytes
    assert c_calls == py_calls
    assert sum(n for n, _, _ in c_calls) == len(packets)
    if video:  # the sequence check stopped at the holes, keyframes and new sources
        assert len(c_calls) > 10
    else:
        assert len(c_calls) == 1

    # and both are the format: append_packet's records, each CRC as the reader checks it
    reference = bytearray(prefix)
    for fp in packets:
        append_packet(reference, fp.ext_seq, fp.ts, fp.marker, fp.keyframe, fp.epoch,
                      fp.arrival, fp.tail[EXT_BLOCK_LEN:])
    assert c_bytes == bytes(reference)
    pos = len(prefix)
    for fp in packets:
        length, kind, crc = RECORD.unpack_from(c_bytes, pos)
        body = c_bytes[pos + RECORD.size:pos + RECORD.size + length]
        assert kind == TYPE_PACKET and length == len(fp.tail) - EXT_BLOCK_LEN + 25
        assert crc == zlib.crc32(body[:25], length + (TYPE_PACKET << 24))
        pos += RECORD.size + length
    assert pos == len(c_bytes)


def test_a_c_encoded_log_reads_back(tmp_path: Path) -> None:
    encode = c_encoder()
    packets = random_packets(random.Random(99), 300)
    data, _ = drain(encode, packets, True, header_bytes(HEADER))
    log = tmp_path / "c.rtplog"
    log.write_bytes(data)
    reader = LogReader(log)
    got = reader.read()
    assert reader.corrupt is None and reader.pending_bytes == 0
    assert got == [LoggedPacket(fp.ext_seq, fp.ts, 0x80 if fp.marker else 0, fp.keyframe,
                                fp.epoch, fp.arrival, fp.tail[EXT_BLOCK_LEN:])
                   for fp in packets]


def test_packets_tapped_after_the_call_stay_queued() -> None:
    """The deque is emptied of what was encoded only: an odd packet's followers stay."""
    encode = c_encoder()
    tail = b"\0" * EXT_BLOCK_LEN + b"payload"
    packets = [ForwardPacket(s, 0, 0, tail, s == 12, 1, 0.0) for s in range(10, 16)]
    for impl in (encode, encode_packets_py):
        queue, out = deque(packets), bytearray()
        n, nxt, odd = impl(queue, out, True, 10, 1)
        assert (n, nxt, odd) == (3, 12, packets[2])  # 10, 11 in sequence; 12 a keyframe
        assert list(queue) == packets[3:]
        n, nxt, odd = impl(queue, out, True, 13, 1)
        assert (n, nxt, odd) == (3, 16, None) and not queue


@pytest.mark.parametrize("field, value", [("ts", 2**32), ("ts", -1), ("epoch", 2**32),
                                          ("ext_seq", 2**63), ("tail", b"short")])
def test_a_field_out_of_range_is_refused_by_both_leaving_the_batch_unwritten(
        field: str, value: object) -> None:
    encode = c_encoder()
    for impl in (encode, encode_packets_py):
        good = ForwardPacket(5, 1, 0, b"\0" * EXT_BLOCK_LEN + b"ok", False, 0, 0.0)
        bad = ForwardPacket(6, 1, 0, b"\0" * EXT_BLOCK_LEN + b"ok", False, 0, 0.0)
        setattr(bad, field, value)
        out = bytearray(b"before")
        with pytest.raises(Exception) as caught:  # the type is checked below
            impl(deque([good, bad]), out, False, -1, -1)
        assert isinstance(caught.value, ValueError | OverflowError | packetlog.struct.error)
        assert out == b"before"


@pytest.mark.parametrize("video", [True, False])
def test_a_queued_sender_report_stops_both_after_the_packets_before_it(video: bool) -> None:
    """A report the producer queued among the packets is taken off, unrecorded, and handed
    back (for the writer to log there); the packets after it stay queued, in either track."""
    encode = c_encoder()
    tail = b"\0" * EXT_BLOCK_LEN + b"payload"
    packets = [ForwardPacket(s, 0, 0, tail, False, 1, 0.0) for s in range(10, 14)]
    report = SenderReportRef(1 << 32, 5, 0.5, 1)
    for impl in (encode, encode_packets_py):
        queue, out = deque([*packets[:2], report, *packets[2:]]), bytearray()
        n, nxt, odd = impl(queue, out, video, 10, 1)
        assert (n, odd) == (2, report) and nxt == (12 if video else 10)
        assert list(queue) == packets[2:]
        reference = bytearray()
        for fp in packets[:2]:
            append_packet(reference, fp.ext_seq, fp.ts, fp.marker, fp.keyframe, fp.epoch,
                          fp.arrival, fp.tail[EXT_BLOCK_LEN:])
        assert out == reference
        assert impl(deque([report]), bytearray(), video, 10, 1) == (0, 10, report)
