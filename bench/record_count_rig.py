"""The harness bench/record_count.py counts: the real forwarding path with and without the
recording taps, in stretches (run under callgrind, and natively).

    python bench/record_count_rig.py OUT.json --n 100 --copies 5 --tap bench --blocks B
        [--clip-blocks C] [--marks LIB] [--prices]

One thread, as bench/simulcast_cost.py: the bench's clip (bench/sfu_media.py: VP8 ~1 Mbit/s in
1,200-byte packets, a frame's packets handed over together as one socket read delivers them,
Opus every 20 ms) into a real video and a real audio `Producer` (stamped with the media clock,
so the same code runs natively and under valgrind however slow), each fanned out by the C loop
to N consumers (one transport per subscriber carrying both, SRTP on its own libsrtp context,
sendmmsg to a loopback sink). In the "on" stretches the producers' recording taps are set:
`--tap bench` is bench/record_server.py's (one Python function per producer calling its K
`media._packetlog_c.TrackLog`s: K = 5 makes bench/record.py's 10 recorded tracks), `--tap
direct` the production form (the TrackLog itself is the producer's tap, as media.Recorder
attaches it; K = 1). After each stretch the writer's `flush_all` writes what the taps encoded
(to /dev/null), as the writer thread does every 0.4 s: the next "on" stretch encodes into
buffers last touched a stretch before.

Stretches of 0.4 s of media (one writer poll) in blocks of four, off on on off / on off off on;
a block's four forward the same payloads (the clip from the same frame), so "on" and "off"
differ by the taps alone; no garbage collection inside a stretch (where one fell would be most
of the difference between two). `--marks LIB` (bench/record_count_helper.c): callgrind counts
only inside the stretches, and dumps each one apart, labelled. Each stretch's packets forwarded
and recorded and its thread CPU go to OUT.json; then the taps' own time per instruction
(`calibrate`); with `--prices`, what a missed cache line costs on this machine too (the
helper's measurements).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

WINDOW_S = 0.4  # a stretch: one writer poll (media.recorder.POLL_S), as bench/record.py's windows


class Marks:
    """Callgrind's client requests (no-ops when not under valgrind)."""

    def __init__(self, library: Path | None) -> None:
        self.lib = ctypes.CDLL(str(library)) if library is not None else None
        if self.lib is not None:
            self.lib.hop_cg_dump.argtypes = [ctypes.c_char_p]

    def start(self) -> None:
        if self.lib is not None:
            self.lib.hop_cg_start()

    def toggle(self) -> None:
        if self.lib is not None:
            self.lib.hop_cg_toggle()

    def dump(self, label: str) -> None:
        if self.lib is not None:
            self.lib.hop_cg_dump(label.encode())

    def prices(self, samples: int = 20) -> dict[str, list[float]]:
        """What a missed cache line costs here (bench/record_count_helper.c), ns."""
        assert self.lib is not None
        stream, chase = self.lib.hop_stream_ns, self.lib.hop_chase_ns
        for f in (stream, chase):
            f.restype = ctypes.c_double
            f.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        return {"stream_line_ns": [stream(64 << 10, 64 << 20) for _ in range(samples)],
                "memory_load_ns": [chase(64 << 20, 200_000) for _ in range(samples // 4)],
                "l3_load_ns": [chase(8 << 20, 200_000) for _ in range(samples // 4)],
                "l2_load_ns": [chase(512 << 10, 200_000) for _ in range(samples // 4)]}


class Rig:
    """A video and an audio producer, N subscribers (one transport each, both consumers on
    it, as a browser's), and `copies` TrackLogs per producer for its recording tap."""

    def __init__(self, n: int, copies: int, tap: str, frames: list[list[bytes]] | None = None,
                 opus: list[bytes] | None = None) -> None:
        """`frames` (each a VP8 frame's packet payloads, the first a keyframe) and `opus`:
        the bench's clip (bench/sfu_media.py) when None."""
        from pylibsrtp import Policy, Session
        from sfu_client import Publisher
        from sfu_media import load_clip

        from media import MediaConfig
        from media.consumer import Consumer
        from media.fanout import LegPath
        from media.packetlog import TrackLog
        from media.producer import Producer
        from media.srtp import SrtpOut
        from media.types import CodecInfo, Kind, Source

        class Transport:
            rtcp_ssrc = 1

            def __init__(self, sock: socket.socket | None = None,
                         sink: tuple[str, int] | None = None) -> None:
                self.leg_path = LegPath()
                self.rx_batch: list[Any] | None = None
                self._srtp = None
                if sock is not None and sink is not None:
                    policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
                    self._srtp = SrtpOut(Session(policy))
                    self.leg_path.set_socket(sock.fileno(), sink)
                    self.leg_path.set_srtp(self._srtp.context_address)

            def forward_rtp(self, b1: int, seq: int, ts: int, ssrc: int, tail: bytes) -> bool:
                return True

            def send_rtp(self, data: bytes) -> bool:
                return True

            def send_rtcp(self, data: bytes) -> None:
                pass

        if frames is None or opus is None:
            clip = load_clip()
            frames, opus = [Publisher._split(f) for f in clip.vp8], clip.opus
        self.frames, self.opus = frames, opus
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # drops: fine
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up = Transport()
        config = MediaConfig(ice_addresses=("127.0.0.1",))

        def producer(kind: Any, codec: Any, pt: int) -> Any:
            video = kind is Kind.VIDEO
            return Producer(
                peer_id="pub", transport=self.up,  # type: ignore[arg-type]
                mid="1" if video else "0", kind=kind,
                source=Source.CAMERA if video else Source.MIC, codec=codec, pt=pt,
                rtx_pt=97 if video else None, ssrc=None, rtx_ssrc=None, config=config,
                max_bitrate_bps=2_000_000, nack=video, remb=video, audio_level_ext=0,
                app_data={}, on_audio_level=None, on_close=lambda p, r: None)
        self.video = producer(Kind.VIDEO, CodecInfo("video/VP8", 90000), 96)
        self.audio = producer(Kind.AUDIO, CodecInfo("audio/opus", 48000, 2), 111)
        self.consumers = []
        for i in range(n):
            down = Transport(self.sender, self.sink.getsockname())
            for k, prod in enumerate((self.video, self.audio)):
                c = Consumer(peer_id=f"s{i}", producer=prod,
                             transport=down,  # type: ignore[arg-type]
                             mid=str(k), pt=prod.pt, rtx_pt=prod.rtx_pt, ssrc=1000 + 2 * i + k,
                             rtx_ssrc=5000 + 2 * i + k, stream_id="x",
                             on_close=lambda c, r: None)
                c.apply_answer(prod.pt, prod.rtx_pt, nack=prod.kind is Kind.VIDEO)
                c.set_active(True)
                prod.add_consumer(c)
                self.consumers.append(c)
        self.logs: list[Any] = []
        self.taps: list[tuple[Any, Callable[[Any], None]]] = []
        for prod in (self.video, self.audio):
            queues = [TrackLog(prod.kind is Kind.VIDEO, 2048) for _ in range(copies)]
            self.logs += queues
            if tap == "direct":
                assert copies == 1, "a direct tap is one TrackLog"
                self.taps.append((prod, queues[0]))
            else:
                self.taps.append((prod, bench_tap(queues)))
        self.null = os.open(os.devnull, os.O_WRONLY)
        self.seq = [1000, 2000]
        self.video_n = 0
        self.audio_n = 0
        self.media_t = 0.0
        self.t0 = time.monotonic()
        self.InPacket = __import__("media.rtp", fromlist=["InPacket"]).InPacket

    def tapping(self, on: bool) -> None:
        for prod, tap in self.taps:
            prod.tap = tap if on else None

    def sent(self) -> int:
        return sum(c.packets_sent for c in self.consumers)

    def stretch(self, seconds: float, clip_at: int = 0) -> None:
        """`seconds` of media: a video frame every 1/30 s (its packets handed over together,
        one socket read), an Opus packet every 20 ms, in time order, stamped with the media
        clock (the same code paths natively and under valgrind, however slow). The clip's
        frames from `clip_at` on (the keyframe, frame 0, only at `clip_at` 0): stretches
        given the same `clip_at` forward the same payloads."""
        end = self.media_t + seconds
        InPacket = self.InPacket
        frames, k_video, k_audio = len(self.frames), 0, 0
        while True:
            tv, ta = self.video_n / 30, self.audio_n / 50
            now = self.t0 + min(tv, ta)
            if min(tv, ta) >= end - 1e-9:
                break
            if tv <= ta:
                index = clip_at + k_video
                chunks = self.frames[index % frames or 1] if index else self.frames[0]
                k_video += 1
                batch: list[Any] = []
                self.up.rx_batch = batch
                pid = self.video_n & 0x7FFF
                last = len(chunks) - 1
                for i, chunk in enumerate(chunks):
                    desc = (b"\x90\x80" if i == 0 else b"\x80\x80") + bytes(
                        (0x80 | (pid >> 8), pid & 0xFF))
                    pkt = InPacket(11, 96, 0x80 if i == last else 0, self.seq[0] & 0xFFFF,
                                   (self.video_n * 3000) & 0xFFFFFFFF, 0, b"", desc + chunk)
                    self.seq[0] += 1
                    self.video.receive_rtp(pkt, now)
                for fan in batch:
                    fan.flush(now)
                self.up.rx_batch = None
                self.video_n += 1
            else:
                payload = self.opus[(clip_at * 5 // 3 + k_audio) % len(self.opus)]
                k_audio += 1
                pkt = InPacket(12, 111, 0, self.seq[1] & 0xFFFF,
                               (self.audio_n * 960) & 0xFFFFFFFF, 0, b"", payload)
                self.seq[1] += 1
                self.audio.receive_rtp(pkt, now)  # a lone packet: forwarded at once
                self.audio_n += 1
        self.media_t = end

    def flush(self) -> int:
        """The writer's poll: every log's records written (to /dev/null); packets written."""
        from media.packetlog import flush_all
        written = flush_all([(q, self.null) for q in self.logs])
        return sum(w for w in written if isinstance(w, int))


def bench_tap(queues: list[Any]) -> Callable[[Any], None]:
    """bench/record_server.py's tap: one producer's packets to its K TrackLogs."""
    def tap(fp: Any) -> None:
        for queue in queues:
            queue(fp)
    return tap


def block_order(block: int) -> tuple[bool, ...]:
    """off on on off, then on off off on: a linear drift cancels in each block."""
    return (False, True, True, False) if block % 2 == 0 else (True, False, False, True)


def harness(args: argparse.Namespace) -> None:
    rig = Rig(args.n, args.copies, args.tap)
    marks = Marks(args.marks)
    marks.start()  # the cache simulation from here: warm before anything is counted
    rig.stretch(1.0)  # frame 0 (the keyframe): every consumer starts (Python path)
    for on in (True, False, True, False):  # both of each log's buffers grown
        rig.tapping(on)
        rig.stretch(WINDOW_S, 30)
        rig.tapping(False)
        rig.flush()
    stretches: list[dict[str, Any]] = []
    per_stretch = round(WINDOW_S * 30)
    for block in range(args.blocks):
        # a block's four stretches forward the same payloads (the clip from the same frame):
        # on and off then differ by the taps alone; the blocks go through the clip
        clip_at = 1 + (block % args.clip_blocks) * per_stretch % (len(rig.frames) - per_stretch)
        for on in block_order(block):
            label = f"b{block}-{len(stretches)}-{'on' if on else 'off'}"
            sent = rig.sent()
            rig.tapping(on)
            # no collection inside a stretch: where one falls would be most of the
            # difference between two stretches (the taps allocate nothing it tracks)
            gc.collect()
            gc.disable()
            thread = time.thread_time()
            marks.toggle()
            rig.stretch(WINDOW_S, clip_at)
            marks.toggle()
            thread = time.thread_time() - thread
            gc.enable()
            rig.tapping(False)
            marks.dump(label)
            forwarded = rig.sent() - sent
            recorded = rig.flush()  # the writer's work: not the forwarding thread's
            stretches.append({"label": label, "block": block, "on": on,
                              "forwarded": forwarded, "recorded": recorded,
                              "thread_s": thread})
    out: dict[str, Any] = {"stretches": stretches,
                           "calibration": calibrate(rig, marks, args.calibration_reps)}
    if args.prices:
        out["prices"] = marks.prices()
    Path(args.harness).write_text(json.dumps(out))


def calibrate(rig: Rig, marks: Marks, reps: int, stretches: int = 8) -> dict[str, Any]:
    """The taps' own time per instruction: `stretches` stretches' packets, as the producers
    handed them to their taps, given to the taps again `reps` times with nothing else between
    (no kernel time in it, caches warm; the logs written out between reps), each rep timed
    natively (thread CPU, ~2,700 TrackLog calls: the clock's own cost is lost in it); under
    callgrind the reps are counted together (dump "calibration")."""
    calls: list[tuple[Callable[[Any], None], Any]] = []
    for prod, tap in rig.taps:
        prod.tap = (lambda t: lambda fp: calls.append((t, fp)))(tap)
    for k in range(stretches):
        rig.stretch(WINDOW_S, 1 + 12 * k)
    rig.tapping(False)

    from media.rtp import ForwardPacket

    def again(shift: int) -> list[tuple[Callable[[Any], None], Any]]:
        """The calls with the packets' sequence numbers moved on: each rep continues the
        sequence (a packet behind it would take the taps' out-of-sequence path)."""
        return [(tap, ForwardPacket(fp.ext_seq + shift, fp.ts, fp.marker, fp.tail, fp.keyframe,
                                    fp.epoch, fp.arrival, fp.layer, fp.vp8))
                for tap, fp in calls]
    span = 1 + max(fp.ext_seq for _, fp in calls) - min(fp.ext_seq for _, fp in calls)
    batches = [again(span * (1 + i)) for i in range(reps + 2)]

    def rep(batch: list[tuple[Callable[[Any], None], Any]], count: bool) -> float:
        gc.collect()
        gc.disable()
        if count:
            marks.toggle()
        thread = time.thread_time()
        for tap, fp in batch:
            tap(fp)
        thread = time.thread_time() - thread
        if count:
            marks.toggle()
        gc.enable()
        return thread
    for batch in batches[:2]:  # both of each log's buffers grown to a rep's size: neither
        rep(batch, False)      # counted nor timed
        rig.flush()
    times = []
    for batch in batches[2:]:
        times.append(rep(batch, True))
        rig.flush()
    marks.dump("calibration")
    return {"calls": len(calls), "reps": reps, "thread_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("harness", help="where the stretches go (JSON)")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--copies", type=int, default=5, help="TrackLogs per producer")
    parser.add_argument("--tap", choices=("bench", "direct"), default="bench")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--clip-blocks", type=int, default=0,
                        help="block b forwards the clip where block b %% C does (default B)")
    parser.add_argument("--marks", type=Path, help="bench/record_count_helper.c, built")
    parser.add_argument("--prices", action="store_true", help="measure a missed line's cost")
    parser.add_argument("--calibration-reps", type=int, default=40)
    args = parser.parse_args()
    args.clip_blocks = args.clip_blocks or args.blocks
    harness(args)


if __name__ == "__main__":
    main()
