"""Micro-benchmark: what transport-wide feedback (media/twcc.py) adds per received packet.

    .venv/bin/python -m bench.twcc_cost [--packets N] [--rounds R]

Times, per packet in thread CPU time (a loaded machine's waits left out), the median of the
rounds: the kernel receive time a publisher's transport reads per datagram (SIOCGSTAMP on a
real loopback socket); on Chrome-shaped packets (one-byte extensions: transport-wide seq, then
mid and rid as before acknowledgement) the work `Publishing.on_rtp` does for it (finding the
extension, `transport_seq`, and `TwccRecorder.record`) and the report
(`TwccRecorder.feedback`) every 13 packets (2.5 Mbit/s of 1,200-byte packets every 50 ms).
Prints JSON.
"""

from __future__ import annotations

import argparse
import array
import json
import socket
import statistics
import struct
import time

from media.rtp import parse_rtp
from media.transport import kernel_receive_time
from media.twcc import TwccRecorder, transport_seq

TWCC_EXT = 3


def packets(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        ext = bytes(((TWCC_EXT << 4) | 1,)) + struct.pack("!H", i & 0xFFFF)
        ext += bytes(((4 << 4) | 0,)) + b"1" + bytes(((10 << 4) | 1,)) + b"r2"
        ext += b"\x00" * (-len(ext) % 4)
        header = struct.pack("!BBHII", 0x90, 96, i & 0xFFFF, i * 3000, 0x1234)
        out.append(header + struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext + bytes(1100))
    return out


def per_packet_us(data: list[bytes], with_twcc: bool, report_every: int) -> float:
    recorder = TwccRecorder(0.0)
    record = recorder.record
    start = time.thread_time()
    now = 1.0
    for n, raw in enumerate(data):
        pkt = parse_rtp(raw)
        assert pkt is not None
        if with_twcc:
            seq = transport_seq(pkt.ext_profile, pkt.ext, TWCC_EXT)
            if seq is not None:
                record(seq, now, pkt.ssrc)
            if n % report_every == report_every - 1:
                recorder.feedback(1)
        now += 0.004
    return (time.thread_time() - start) / len(data) * 1e6


def stamp_us(count: int) -> float:
    """The kernel receive time of a datagram just read (SIOCGSTAMP), per datagram."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    timeval = array.array("q", (0, 0))
    try:
        for _ in range(2):  # the first call turns the socket's timestamps on
            sender.sendto(b"x", receiver.getsockname())
            receiver.recv(16)
            kernel_receive_time(receiver.fileno(), timeval)
        fd = receiver.fileno()
        start = time.thread_time()
        for _ in range(count):
            kernel_receive_time(fd, timeval)
        return (time.thread_time() - start) / count * 1e6
    finally:
        receiver.close()
        sender.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    data = packets(args.packets)
    base, twcc, report, stamp = [], [], [], []
    for _ in range(args.rounds):
        base.append(per_packet_us(data, False, 13))
        twcc.append(per_packet_us(data, True, 10 ** 9))
        report.append(per_packet_us(data, True, 13))
        stamp.append(stamp_us(args.packets))
    b, t, r, k = (statistics.median(x) for x in (base, twcc, report, stamp))
    print(json.dumps({
        "parse_us_per_packet": round(b, 3),
        "kernel_stamp_us_per_packet": round(k, 3),
        "record_us_per_packet": round(t - b, 3),
        "record_and_report_us_per_packet": round(r - b, 3),
        "report_us_per_packet": round(r - t, 3),
        "rounds": args.rounds, "packets": args.packets}))


if __name__ == "__main__":
    main()
