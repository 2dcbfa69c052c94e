"""media/trackmux.py's frame assembly, made cheaper for the mux process (issue 16 item 7),
writes what the straightforward one it replaced wrote: the same frames, payloads, times and
keyframe flags, the same counts, for streams with loss, reordering, repeats, garbage, SSRC
changes, late packets and stale frames; and the VP8 descriptor is skipped where aiortc's
parser skips it, refused where it refuses."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from pathlib import Path

import av
import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor

from media.depacketize import frame_start, vp8_descriptor_length, vp8_size
from media.packetlog import LoggedPacket, LoggedReport
from media.trackmux import MAX_REPORT_SKEW_S, STALE_FRAME_S, TrackMuxer

Written = tuple[bytes, int, bool]  # payload, pts (clock units), keyframe


class Reference:
    """The assembly as it was before (commit 0701f1e's TrackMuxer, its muxing left out):
    every packet rescans every pending frame. What it would have written is listed."""

    def __init__(self, codec: str, clock: int, kind: str, start: float) -> None:
        self.codec, self.clock, self.kind, self.start = codec, clock, kind, start
        self.report: LoggedReport | None = None
        self.epoch: int | None = None
        self.last_ts = 0
        self.last_pts: int | None = None
        self.pts = 0
        self.pending: dict[int, dict[int, LoggedPacket]] = {}
        self.last_end: int | None = None
        self.need_keyframe = True
        self.frames = self.dropped_frames = 0
        self.opened = False
        self.written: list[Written] = []

    def feed(self, records: list[LoggedPacket | LoggedReport]) -> None:
        for record in records:
            if isinstance(record, LoggedReport):
                self.report = record
                continue
            try:
                self.packet(record)
            except Exception:  # noqa: BLE001 - a garbage payload costs its frame
                self.drop_frame()

    def packet(self, fp: LoggedPacket) -> None:
        if fp.epoch != self.epoch:
            self.epoch = fp.epoch
            self.pending.clear()
            self.last_end = None
            self.need_keyframe = True
            self.anchor(fp)
        if self.kind == "audio":
            self.write(fp.payload, self.timestamp(fp.ts), True)
            return
        if self.last_end is not None and fp.ext_seq <= self.last_end:
            return
        self.pending.setdefault(fp.ts, {})[fp.ext_seq] = fp
        self.assemble(fp.arrival)

    def anchor(self, fp: LoggedPacket) -> None:
        local = fp.arrival
        sr = self.report
        if sr is not None and sr.epoch == fp.epoch:
            delta = (fp.ts - sr.rtp_ts) & 0xFFFFFFFF
            if delta >= 1 << 31:
                delta -= 1 << 32
            by_report = sr.local + delta / self.clock
            if abs(by_report - fp.arrival) < MAX_REPORT_SKEW_S:
                local = by_report
        pts = round((local - self.start) * self.clock)
        if self.last_pts is not None:
            pts = max(pts, self.last_pts + 1)
        self.pts = max(0, pts)
        self.last_ts = fp.ts

    def timestamp(self, ts: int) -> int:
        delta = (ts - self.last_ts) & 0xFFFFFFFF
        if delta >= 1 << 31:
            delta -= 1 << 32
        self.last_ts = ts
        self.pts += delta
        return self.pts

    def assemble(self, now: float) -> None:
        while True:
            complete = None
            for ts, frame in self.pending.items():
                seqs = sorted(frame)
                if not frame[seqs[-1]].marker or seqs[-1] - seqs[0] + 1 != len(seqs):
                    continue
                follows = self.last_end is not None and seqs[0] == self.last_end + 1
                if follows or frame_start(self.codec, frame[seqs[0]].payload):
                    complete = (ts, seqs, follows)
                    break
            if complete is None:
                break
            ts, seqs, follows = complete
            frame = self.pending.pop(ts)
            for other in [t for t, f in self.pending.items() if min(f) < seqs[0]]:
                del self.pending[other]
                self.drop_frame()
            if not follows and self.last_end is not None:
                self.drop_frame()
            self.last_end = seqs[-1]
            keyframe = frame[seqs[0]].keyframe
            if self.need_keyframe and not keyframe:
                self.dropped_frames += 1
                continue
            payload = b"".join(VpxPayloadDescriptor.parse(frame[s].payload)[1] for s in seqs)
            self.need_keyframe = False
            self.write(payload, self.timestamp(ts), keyframe)
        for ts in [t for t, f in self.pending.items()
                   if now - min(p.arrival for p in f.values()) > STALE_FRAME_S]:
            del self.pending[ts]
            self.drop_frame()

    def drop_frame(self) -> None:
        self.dropped_frames += 1
        if self.kind == "video":
            self.need_keyframe = True

    def write(self, payload: bytes, pts: int, keyframe: bool) -> None:
        if self.last_pts is not None and pts <= self.last_pts:
            self.dropped_frames += 1
            return
        if not self.opened and self.codec == "VP8" and vp8_size(payload) is None:
            self.dropped_frames += 1
            return
        self.opened = True
        self.written.append((payload, pts, keyframe))
        self.last_pts = pts
        self.frames += 1


def vp8_frame(rng: random.Random, keyframe: bool) -> bytes:
    """A VP8 frame's bytes: a keyframe's header (size 320x180) or an interframe's first
    byte, then noise. Never decoded: only muxed."""
    if keyframe:
        return bytes((0x10, 0x02, 0x00)) + b"\x9d\x01\x2a" + (320).to_bytes(2, "little") \
            + (180).to_bytes(2, "little") + rng.randbytes(rng.randrange(10, 300))
    return bytes((0x11, 0x02, 0x00)) + rng.randbytes(rng.randrange(10, 300))


def video_stream(rng: random.Random, frames: int) -> list[LoggedPacket | LoggedReport]:
    """A camera's packets as a log holds them, with every kind of trouble now and then."""
    out: list[LoggedPacket | LoggedReport] = []
    seq, ts, epoch, arrival = rng.choice([0, 65530, 2**33]), rng.randrange(2**32), 0, 10.0
    for i in range(frames):
        roll = rng.random()
        if roll < 0.01:
            epoch += 1  # a new SSRC
            ts = rng.randrange(2**32)
        elif roll < 0.03:
            arrival += STALE_FRAME_S * rng.uniform(0.5, 1.5)  # a stall
        if rng.random() < 0.05:
            out.append(LoggedReport((ts + rng.randrange(-9000, 9000)) & 0xFFFFFFFF,
                                    arrival + rng.uniform(-3, 0.1), epoch))
        frame = vp8_frame(rng, i % 30 == 0 or rng.random() < 0.02)
        size = max(1, -(-len(frame) // rng.randint(1, 4)))
        chunks = [frame[j:j + size] for j in range(0, len(frame), size)]
        packets = []
        for k, chunk in enumerate(chunks):
            descriptor = bytes((0x90 if k == 0 else 0x80, 0x80, 0x80 | (i >> 8 & 0x7F), i & 0xFF))
            payload = descriptor + chunk
            if rng.random() < 0.01:
                payload = rng.choice([b"", b"\x80", b"\x90\x80", bytes((0x90, 0xC0, 0x81))])
            marker = 0x80 if k == len(chunks) - 1 and rng.random() > 0.01 else 0
            packets.append(LoggedPacket(seq, ts, marker, k == 0 and frame[0] & 1 == 0,
                                        epoch, arrival + k * 0.001, payload))
            seq += 1
        for p in packets:
            roll = rng.random()
            if roll < 0.02:
                continue  # lost
            out.append(p)
            if roll < 0.04:
                out.append(p)  # repeated
        if rng.random() < 0.04 and len(out) > 3:  # reordered: a packet moved back
            j = rng.randrange(1, min(len(out), 12))
            out.insert(len(out) - j, out.pop())
        if rng.random() < 0.01:
            seq += rng.randint(1, 5)  # a hole between frames
        ts = (ts + rng.choice([3000, 3000, 3000, 6000, 0, -3000])) & 0xFFFFFFFF
        arrival += rng.uniform(0.0, 0.07)
    return out


def audio_stream(rng: random.Random, count: int) -> list[LoggedPacket | LoggedReport]:
    out: list[LoggedPacket | LoggedReport] = []
    ts, epoch, arrival = rng.randrange(2**32), 3, 5.0
    for seq in range(count):
        if rng.random() < 0.01:
            epoch += 1
        if rng.random() < 0.03:
            out.append(LoggedReport(ts, arrival + rng.uniform(-1, 0.1), epoch))
        # an Opus TOC (one 20 ms frame: what the demuxer's parser reads), then noise
        packet = LoggedPacket(seq, ts, 0x80, False, epoch, arrival, b"\xf8" + rng.randbytes(39))
        if rng.random() > 0.02:
            out.append(packet)
        if rng.random() < 0.03:
            out.append(packet)
        if rng.random() < 0.03 and len(out) > 2:
            out.insert(len(out) - 2, out.pop())
        ts = (ts + rng.choice([960, 960, 960, 1920, -960])) & 0xFFFFFFFF
        arrival += 0.02
    return out


def muxed(path: Path, clock: int) -> list[Written]:
    """What the file holds, read back with PyAV: payload, pts in clock units, keyframe."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        return [(bytes(p), p.pts, p.is_keyframe) for p in container.demux(stream)
                if p.size]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("kind", ["video", "audio"])
def test_the_assembly_writes_what_the_one_it_replaced_wrote(
        kind: str, seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    records = video_stream(rng, 400) if kind == "video" else audio_stream(rng, 600)
    codec, clock = ("VP8", 90000) if kind == "video" else ("opus", 48000)
    reference = Reference(codec, clock, kind, 9.0)
    muxer = TrackMuxer(tmp_path / "out.webm", codec, clock, kind, 9.0)
    at = 0
    while at < len(records):  # the mux process's steps: whatever the log held by then
        step = rng.randint(1, 60)
        reference.feed(records[at:at + step])
        muxer.feed(records[at:at + step])
        at += step
    muxer.finish()
    assert muxer.failed is None
    assert (muxer.frames, muxer.dropped_frames) == (reference.frames, reference.dropped_frames)
    assert reference.frames > 20 and reference.dropped_frames > 5  # the stream was troubled
    got = muxed(muxer.path, clock)
    assert [(p, k) for p, _, k in got] == [(p, k) for p, _, k in reference.written]
    # the file's time base is the WebM's millisecond: each time within its rounding
    ms = Fraction(1000, clock)
    assert all(abs(g - float(r * ms)) <= 0.5 for (_, g, _), (_, r, _)
               in zip(got, reference.written, strict=True))


def test_the_vp8_descriptor_is_skipped_where_aiortc_skips_it() -> None:
    """Every extension byte, the first byte's X bit (and others) both ways, the picture id's
    long-form bit both ways, at every length up to the longest descriptor: the same offset,
    or a ValueError both."""
    firsts = (0x00, 0x10, 0x1F, 0x80, 0x90, 0x9F, 0xFF)
    for b0, b1, b2, n in itertools.product(firsts, range(256), (0x00, 0x80), range(7)):
        payload = bytes((b0, b1, b2, 0x55, 0x66, 0x77))[:n]
        try:
            _, rest = VpxPayloadDescriptor.parse(payload)
        except ValueError:
            with pytest.raises(ValueError):
                vp8_descriptor_length(payload)
            continue
        assert vp8_descriptor_length(payload) == len(payload) - len(rest), payload
