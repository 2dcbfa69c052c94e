"""The recorder's packet log (media/packetlog.py) and its mux (media/recmux.py): round trip,
a log cut anywhere still muxes up to its last whole record, garbage never crashes the mux."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from media import SFU
from media.packetlog import (
    MAGIC,
    PACKET,
    RECORD,
    LoggedPacket,
    LoggedReport,
    LogReader,
    MuxLimits,
    append_packet,
    append_report,
    header_bytes,
)
from media.recmux import follow, mux
from media.recorder import MuxProcess, TrackWriter
from media.rtp import ForwardPacket
from testkit.aiortc_clients import EncodedMedia
from tests.media.test_recorder import (
    decode_errors,
    gone_video_producer,
    needs_ffprobe,
    probe,
    vp8_packets,
)

HEADER = {"codec": "VP8", "clock_rate": 90000, "kind": "video", "file": "x.webm", "start": 1.5}


def test_records_read_back_as_written_even_arriving_in_pieces(tmp_path: Path) -> None:
    data = bytearray(header_bytes(HEADER))
    append_report(data, 4_000_000_000, 12.25, 3)
    expected: list[LoggedPacket | LoggedReport] = [LoggedReport(4_000_000_000, 12.25, 3)]
    for i in range(50):
        payload = bytes(random.Random(i).randbytes(i * 20))
        append_packet(data, 2**40 + i, i * 3000, 0x80 if i % 3 == 0 else 0, i == 0, 3,
                      100.0 + i / 30, payload)
        expected.append(LoggedPacket(2**40 + i, i * 3000, 0x80 if i % 3 == 0 else 0, i == 0,
                                     3, 100.0 + i / 30, payload))
    log = tmp_path / "a.rtplog"
    reader = LogReader(log)
    got: list[LoggedPacket | LoggedReport] = []
    with open(log, "wb", buffering=0) as f:  # a writer still appending: odd-sized pieces
        for i in range(0, len(data), 777):
            f.write(data[i:i + 777])
            got += reader.read()
    assert reader.header == HEADER and got == expected
    assert reader.corrupt is None and reader.pending_bytes == 0


async def logged_clip(sfu: SFU, media: EncodedMedia, tmp_path: Path) -> tuple[Path, int]:
    """4 s of the clip's VP8 through a real producer's TrackWriter: its log, its packets."""
    producer = await gone_video_producer(sfu, media, f"ivy{time.monotonic_ns()}")
    start = time.monotonic()
    writer = TrackWriter(producer, tmp_path, start, lambda: None)
    writer.open()
    packets: list[ForwardPacket] = [
        fp for r in range(2) for fp in vp8_packets(media.vp8.frames[:30], seq=r * 1000,
                                                   ts=r * 180000, epoch=0, at=start + 2 * r)]
    for fp in packets:
        writer.queue(fp)
    writer.finish()
    return writer.log_path, len(packets)


@needs_ffprobe
async def test_a_log_cut_mid_record_muxes_up_to_the_cut(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    log, _ = await logged_clip(sfu, media, tmp_path)
    data = log.read_bytes()
    whole = mux([log])[0]
    assert whole["frames"] == 60 and whole["failed"] is None and not log.exists()
    Path(whole["file"]).unlink()
    log.write_bytes(data[:len(data) * 2 // 3 + 5])  # the server killed mid-write
    [cut] = mux([log])
    assert 30 <= cut["frames"] < 60 and cut["failed"] is None
    assert log.exists()  # not muxed to a clean end: kept for another try
    assert decode_errors(cut["file"]) == ""
    assert int(probe(cut["file"], "-count_frames")["streams"][0]["nb_read_frames"]) \
        == cut["frames"]


def record_offsets(log: bytes) -> list[int]:
    pos = len(MAGIC) + 4 + int.from_bytes(log[len(MAGIC):len(MAGIC) + 4], "little")
    out = []
    while pos < len(log):
        out.append(pos)
        pos += RECORD.size + int.from_bytes(log[pos:pos + 4], "little")
    return out


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]


async def test_garbage_in_a_log_never_crashes_the_mux(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    log, _ = await logged_clip(sfu, media, tmp_path)
    good = log.read_bytes()
    middle = record_offsets(good)[len(record_offsets(good)) // 2]
    rng = random.Random(16)
    cases = {
        "random.rtplog": rng.randbytes(5000),
        "empty.rtplog": b"",
        "header-only-garbage.rtplog": header_bytes(HEADER)[:-3] + b"}{x",
        "header-not-a-dict.rtplog": header_bytes(HEADER)[:15] + b"\4\0\0\0[1] ",
        "bad-header-fields.rtplog": header_bytes({"codec": "VP8"}) + good[-3000:],
        "tail-garbage.rtplog": good + rng.randbytes(3000),
        # a record's sequence number flipped; a length pointing into the middle of the next
        "flipped.rtplog": flip(good, middle + RECORD.size + 1),
        "bad-length.rtplog": flip(good, middle),
        "huge-length.rtplog": good[:middle] + b"\xff\xff\xff\x7f" + good[middle + 4:],
        # a payload byte flipped: not summed, muxed like any garbage payload
        "payload-flipped.rtplog": flip(good, middle + RECORD.size + PACKET.size + 2),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    results = {Path(r["log"]).name: r for r in mux([tmp_path / n for n in cases])}
    for name in ("random.rtplog", "empty.rtplog", "header-only-garbage.rtplog",
                 "header-not-a-dict.rtplog", "bad-header-fields.rtplog"):
        assert results[name]["failed"] and results[name]["frames"] == 0, results[name]
    # garbage after or inside good records: everything before it is kept, then it stops
    assert results["tail-garbage.rtplog"]["frames"] == 60
    assert 10 < results["flipped.rtplog"]["frames"] < 60
    assert "checksum" in results["flipped.rtplog"]["failed"]
    assert 10 < results["huge-length.rtplog"]["frames"] < 60
    assert "checksum" in results["bad-length.rtplog"]["failed"]
    assert 10 < results["bad-length.rtplog"]["frames"] < 60
    assert 55 <= results["payload-flipped.rtplog"]["frames"] <= 60
    assert all((tmp_path / n).exists() for n in cases if n != "payload-flipped.rtplog")


@needs_ffprobe
async def test_the_mux_process_finishes_the_files_when_its_recorder_dies(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    """`--follow`: the logs named on stdin are muxed as they grow; stdin's end (here: a
    recorder that went away, its end of the pipe closed) finishes them."""
    log, _ = await logged_clip(sfu, media, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "media.recmux", "--follow"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None
    proc.stdin.write(f"{log}\n")
    proc.stdin.flush()
    out, _ = proc.communicate(timeout=60)  # closes stdin, as the recorder's death would
    [track] = json.loads(out)["tracks"]
    assert track["frames"] == 60 and track["failed"] is None
    assert decode_errors(track["file"]) == ""


def proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/PID/limits: name → (soft, hard)."""
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        out[name] = (soft, hard)
    return out


def test_the_mux_process_runs_within_its_limits() -> None:
    """As the composite's ffmpeg: niced, its address space bounded, no core file, and a CPU
    budget (RLIMIT_CPU's soft limit) that grows with the recording's length."""
    limits = MuxLimits(memory_mb=1000, nice=7, cpu_s_per_s=1.0, cpu_min_s=30)
    expected_nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
    mux_process = MuxProcess(limits)
    pid = mux_process.proc.pid
    try:
        deadline = time.monotonic() + 20
        while proc_limits(pid)["Max address space"][0] != str(1000 * 1024 * 1024):
            assert time.monotonic() < deadline, proc_limits(pid)
            time.sleep(0.1)
        first = proc_limits(pid)
        assert first["Max address space"] == (str(1000 * 1024 * 1024),) * 2
        assert first["Max core file size"] == ("0", "0")
        assert os.getpriority(os.PRIO_PROCESS, pid) == expected_nice
        assert 30 <= int(first["Max cpu time"][0]) <= 32
        time.sleep(2.5)  # a longer recording: a bigger budget
        assert int(proc_limits(pid)["Max cpu time"][0]) >= int(first["Max cpu time"][0]) + 2
    finally:
        assert mux_process.finish() == {}
    assert mux_process.proc.returncode == 0


def test_a_mux_past_its_cpu_budget_is_killed_and_its_log_kept(tmp_path: Path) -> None:
    data = bytearray(header_bytes({"codec": "opus", "clock_rate": 48000, "kind": "audio",
                                   "file": "a.webm", "start": 0.0}))
    # ~3.3 h of audio: ~2 s of CPU to mux, over the 1 s budget with room (200,000 packets
    # took 0.9 s, start-up included, once the mux got cheaper: not enough)
    for i in range(600_000):
        append_packet(data, i, i * 960, 0, False, 0, i * 0.02, b"\xf8\xff\xfe")
    log = tmp_path / "a.webm.rtplog"
    log.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "media.recmux", *MuxLimits(cpu_s_per_s=0, cpu_min_s=1).argv(),
         str(log)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == -signal.SIGXCPU, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout == "" and log.exists()  # no result; the log kept for a second try


def test_the_mux_reads_the_logs_when_the_writer_says_it_wrote(tmp_path: Path) -> None:
    """--follow: an empty line on stdin (the writer's word after each write) makes the mux
    read every log at once; without one it looks only every `poll_s` (here: never)."""
    log = tmp_path / "a.webm.rtplog"
    log.write_bytes(header_bytes({"codec": "opus", "clock_rate": 48000, "kind": "audio",
                                  "file": "a.webm", "start": 0.0}))
    read_fd, write_fd = os.pipe()
    lines = os.fdopen(read_fd, "r")
    stdin = os.fdopen(write_fd, "w")
    results: list[list[dict[str, Any]]] = []
    thread = threading.Thread(target=lambda: results.append(follow(lines, poll_s=600)))
    thread.start()
    try:
        stdin.write(f"{log}\n")
        stdin.flush()
        data = bytearray()
        for i in range(50):
            append_packet(data, i, i * 960, 0, False, 0, i * 0.02, b"\xf8\xff\xfe")
        time.sleep(0.5)  # the name's line was read: its log's header too
        with open(log, "ab") as f:
            f.write(data)
        time.sleep(1.0)
        assert not (tmp_path / "a.webm").exists()  # no word, no look
        stdin.write("\n")
        stdin.flush()
        deadline = time.monotonic() + 20
        while not (tmp_path / "a.webm").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stdin.close()
        thread.join(30)
    [[track]] = results
    assert track["frames"] == 50 and track["failed"] is None
