"""Micro-benchmark: CPU per forwarded packet, simulcast consumers vs single-layer ones.

    .venv/bin/python bench/simulcast_cost.py [--consumers 100] [--seconds 3] [--json PATH]
                                             [--twcc]

In one process, without ICE/DTLS: a producer's packets (real Producer and Consumer objects,
the C fan-out, SRTP protect on a libsrtp context per consumer transport, sendmmsg on a dup
of a UDP socket to a loopback sink) forwarded to N consumers, as `WebRtcTransport` does it:
the packets of one socket read handed over together (a batch per frame per layer). Two runs:
* single: one VP8 stream, 30 fps, 4 packets a frame (about 1 Mbit/s);
* simulcast: three layers (1, 2 and 4 packets a frame), every consumer on the top layer,
  so the same packets are forwarded; the producer also takes in the two lower layers.
Both carry L1T3 VP8 descriptors (TID, Y) as Chromium's: a simulcast consumer's leg decides
per picture whether its temporal layer goes out (media/temporal.py), every one here.
A third run, simulcast_tid1, has every consumer at temporal target 1 (half the pictures
dropped in its leg, media/temporal.py): what dropping costs, per packet still sent.
The figure is process CPU seconds / packets the legs sent, in microseconds; the ratio is
simulcast / single (issue 15: at most 1.2). Layer switches are not in it (they are rare and
run in Python). Runs alternate (single, simulcast, ...) to share the machine's drift.
With --twcc the runs are simulcast and simulcast_twcc instead: every consumer's transport
numbers its packets for transport-cc (MediaConfig.subscriber_transport_cc, media/bwe.py: the
C loop's extension block grows by a word, the send time and size kept in a ring); the
summary's twcc_cpu_ratio is simulcast_twcc / simulcast.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pylibsrtp import Policy, Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media import MediaConfig
from media.consumer import Consumer
from media.fanout import FanOut, LegPath
from media.producer import Producer
from media.rtp import InPacket
from media.srtp import SrtpOut
from media.types import CodecInfo, Kind, Source

VP8 = CodecInfo(mime_type="video/VP8", clock_rate=90000)
PACKETS = (1, 2, 4)  # packets a frame per layer, low to high
FPS = 30


class Transport:
    """What a producer and a consumer need of a transport, on a real socket path."""

    rtcp_ssrc = 1

    def __init__(self, sock: socket.socket | None = None,
                 sink: tuple[str, int] | None = None) -> None:
        self.leg_path = LegPath()
        self.rx_batch: list[FanOut] | None = None
        self._srtp: SrtpOut | None = None
        if sock is not None and sink is not None:
            key = os.urandom(30)
            self._srtp = SrtpOut(Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)))
            self.leg_path.set_socket(sock.fileno(), sink)
            self.leg_path.set_srtp(self._srtp.context_address)

    def forward_rtp(self, b1: int, seq: int, ts: int, ssrc: int, tail: bytes) -> bool:
        return True  # restarts only (keyframe sync), before the measured stretch

    def send_rtp(self, data: bytes) -> bool:
        return True

    def send_rtcp(self, data: bytes) -> None:
        pass


def vp8(pid: int, key: bool, start: bool) -> bytes:
    """L1T3 as Chromium sends it: PictureID, TL0PICIDX, TID and Y (pictures 0, 2, 1, 2)."""
    tid, sync = ((0, 0), (2, 0x20), (1, 0x20), (2, 0))[pid % 4]
    return bytes((0x90 if start else 0x80, 0xE0, 0x80 | (pid >> 8) & 0x7F, pid & 0xFF,
                  (pid // 4) & 0xFF, tid << 6 | sync)) + (b"\x00" if key else b"\x01") \
        + b"v" * 1000


def run(simulcast: bool, consumers: int, seconds: float,
        temporal: int | None = None, twcc: bool = False) -> dict[str, Any]:
    """One run; `temporal`: every (simulcast) consumer's temporal target (pictures above
    it dropped)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up = Transport()
    rids = ("r0", "r1", "r2") if simulcast else ()
    producer = Producer(
        peer_id="pub", transport=up, mid="0", kind=Kind.VIDEO,  # type: ignore[arg-type]
        source=Source.CAMERA, codec=VP8, pt=96, rtx_pt=97, ssrc=None, rtx_ssrc=None,
        config=MediaConfig(ice_addresses=("127.0.0.1",)), max_bitrate_bps=2_000_000,
        nack=True, remb=True, audio_level_ext=0, app_data={}, on_audio_level=None,
        on_close=lambda p, r: None, rids=rids)
    downs = [Transport(sender, sink.getsockname()) for _ in range(consumers)]
    legs = []
    for i, down in enumerate(downs):
        c = Consumer(peer_id=f"s{i}", producer=producer, transport=down,  # type: ignore[arg-type]
                     mid="0", pt=100, rtx_pt=101, ssrc=1000 + i, rtx_ssrc=2000 + i,
                     stream_id="x", on_close=lambda c, r: None)
        c.apply_answer(100, 101, nack=True)
        if twcc:
            down.leg_path.set_twcc(4)
            c.leg.twcc = 1
        c.set_active(True)
        producer.add_consumer(c)
        if simulcast:
            c.set_preferred_layers(None, temporal, 0.0)
        legs.append(c)
    layers = [2] if not simulcast else [0, 1, 2]
    seq = [0, 0, 0]
    pid = [0, 0, 0]

    def frame(n: int, now: float) -> None:
        for layer in layers:
            stream = producer.streams[layer if simulcast else 0]
            count = PACKETS[layer]
            up.rx_batch = []  # one socket read: the frame's packets of this layer
            for k in range(count):
                pkt = InPacket(10 + layer, 96, 0x80 if k == count - 1 else 0, seq[layer] & 0xFFFF,
                               n * 3000, 0, b"", vp8(pid[layer], n == 0, k == 0))
                seq[layer] += 1
                producer.receive_rtp(pkt, now, stream=stream)
            for fan in up.rx_batch:
                fan.flush(now)
            up.rx_batch = None
            pid[layer] += 1

    frame(0, time.monotonic())  # the keyframe: every consumer starts (Python path)
    assert all(c.current_layer == 2 or not simulcast for c in legs)
    frames = int(seconds * FPS)
    sent_before = sum(c.packets_sent for c in legs)
    cpu = time.process_time()
    for n in range(1, frames + 1):
        frame(n, time.monotonic())
    cpu = time.process_time() - cpu
    forwarded = sum(c.packets_sent for c in legs) - sent_before
    sink.close()
    sender.close()
    for down in downs:
        down.leg_path.clear()
    mode = "single" if not simulcast else "simulcast" if temporal is None else \
        f"simulcast_tid{temporal}"
    if twcc:
        mode += "_twcc"
        assert all(down.leg_path.twcc.next > 0 for down in downs)
    return {"mode": mode, "consumers": consumers,
            "forwarded": forwarded, "cpu_s": round(cpu, 4),
            "us_per_packet": round(cpu / forwarded * 1e6, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0, help="media seconds per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--twcc", action="store_true",
                        help="simulcast with and without transport-wide numbering")
    args = parser.parse_args()
    results = []
    if args.twcc:
        for _ in range(args.runs):
            for twcc in (False, True):
                results.append(run(True, args.consumers, args.seconds, None, twcc))
                print(results[-1], flush=True)
        plain = statistics.median(r["us_per_packet"] for r in results
                                  if r["mode"] == "simulcast")
        numbered = statistics.median(r["us_per_packet"] for r in results
                                     if r["mode"] == "simulcast_twcc")
        twcc_summary = {"simulcast_us_per_packet": plain, "twcc_us_per_packet": numbered,
                        "twcc_cpu_ratio": round(numbered / plain, 3),
                        "consumers": args.consumers}
        print(twcc_summary)
        if args.json:
            args.json.write_text(json.dumps({"results": results, "summary": twcc_summary},
                                            indent=1))
        return
    for _ in range(args.runs):
        for simulcast, temporal in ((False, None), (True, None), (True, 1)):
            results.append(run(simulcast, args.consumers, args.seconds, temporal))
            print(results[-1], flush=True)

    def median(mode: str) -> float:
        return statistics.median(r["us_per_packet"] for r in results if r["mode"] == mode)

    single, sim, tid1 = median("single"), median("simulcast"), median("simulcast_tid1")
    summary = {"single_us_per_packet": single, "simulcast_us_per_packet": sim,
               "simulcast_cpu_ratio": round(sim / single, 3),
               "tid1_us_per_packet": tid1, "tid1_cpu_ratio": round(tid1 / single, 3),
               "consumers": args.consumers}
    print(summary)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
