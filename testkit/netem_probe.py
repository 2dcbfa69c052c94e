"""Measures what testkit/netem.py's links really do, with real UDP traffic between two
sockets on loopback: received rate (also across a mid-stream change), random and bursty
loss, added delay and jitter, and that a clean client beside a shaped one stays clean.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python -m testkit.netem_probe [NAME...]'

prints one JSON object of the probes named (all of them by default; PROBES lists the names).
tests/testkit/test_netem.py asserts on it, each group of probes run in a namespace of its
own at the same time as the others (one after another they took ~15 s of the serial pass).
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from testkit.netem import CLEAN, Netem, Shape

PHASE = 1.5  # seconds at each rate
WIRE = 28  # IPv4 + UDP headers: what a link's rate is spent on besides the payload


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    return sock


def port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


class Receiver(threading.Thread):
    """Records (arrival, sequence number, size) of every datagram until stopped."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.got: list[tuple[float, int, int]] = []
        self.sock.settimeout(0.1)
        self.stopped = False

    def run(self) -> None:
        while not self.stopped:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), int.from_bytes(data[:4], "big"), len(data)))

    def stop(self) -> list[tuple[float, int, int]]:
        self.stopped = True
        self.join()
        return self.got


def send_paced(sock: socket.socket, to: list[int], rate_bps: float, seconds: float,
               size: int = 1200, on_tick: Any = None) -> int:
    """Send `size`-byte datagrams (sequence number first) to each port at `rate_bps` each."""
    interval = (size + WIRE) * 8 / rate_bps
    started, seq = time.monotonic(), 0
    while (now := time.monotonic()) - started < seconds:
        due = started + seq * interval
        if now < due:
            time.sleep(min(due - now, 0.005))
            continue
        payload = seq.to_bytes(4, "big") + bytes(size - 4)
        for p in to:
            sock.sendto(payload, ("127.0.0.1", p))
        seq += 1
        if on_tick:
            on_tick(now - started)
    return seq


def rate_in(got: list[tuple[float, int, int]], start: float, end: float) -> float:
    size = sum(n + WIRE for at, _, n in got if start <= at < end)
    return size * 8 / (end - start)


def probe_rates() -> dict[str, Any]:
    """A 1 Mbit/s client and a clean one both offered 2 Mbit/s; then the shaped one's link
    drops to 500 kbit/s and comes back to 4 Mbit/s, mid-stream."""
    net = Netem()
    server, shaped, clean = udp(), udp(), udp()
    net.shape(port(shaped), Shape(rate_bps=1_000_000), CLEAN)
    rx, rx_clean = Receiver(shaped), Receiver(clean)
    rx.start()
    rx_clean.start()
    t0 = time.monotonic()
    marks: dict[str, float] = {}

    def tick(elapsed: float) -> None:
        if elapsed >= PHASE and "drop" not in marks:
            marks["drop"] = time.monotonic()
            net.change(port(shaped), rate_bps=500_000)
        if elapsed >= 2 * PHASE and "restore" not in marks:
            marks["restore"] = time.monotonic()
            net.change(port(shaped), rate_bps=4_000_000)

    send_paced(server, [port(shaped), port(clean)], 2_000_000, 3 * PHASE, on_tick=tick)
    time.sleep(0.3)
    got, got_clean = rx.stop(), rx_clean.stop()
    drop, restore = marks["drop"], marks["restore"]
    counters = net.counters()
    net.close()
    # each phase skips its first 0.4 s: the previous rate's queue (200 ms of data) drains
    return {"offered_bps": 2_000_000,
            "shaped_1m_bps": rate_in(got, t0 + 0.4, drop),
            "shaped_500k_bps": rate_in(got, drop + 0.4, restore),
            "shaped_4m_bps": rate_in(got, restore + 0.4, t0 + 3 * PHASE),
            "clean_bps": rate_in(got_clean, t0 + 0.4, t0 + 3 * PHASE),
            "queue_drops": counters[f"d:{port(shaped)}"].get("dropped", 0)}


def probe_server_side() -> dict[str, float]:
    """A browser's link is known by the server's port: 1 Mbit/s on what leaves that port."""
    net = Netem()
    server, client = udp(), udp()
    net.shape(port(server), Shape(rate_bps=1_000_000), CLEAN, server_side=True)
    rx = Receiver(client)
    rx.start()
    t0 = time.monotonic()
    send_paced(server, [port(client)], 2_000_000, PHASE)
    time.sleep(0.3)
    got = rx.stop()
    net.close()
    return {"shaped_1m_bps": rate_in(got, t0 + 0.4, t0 + PHASE)}


def bursts(sent: int, got: list[tuple[float, int, int]]) -> dict[str, float]:
    seen = {seq for _, seq, _ in got}
    lost = [seq not in seen for seq in range(sent)]
    runs, run = [], 0
    for gone in lost:
        if gone:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    if run:
        runs.append(run)
    return {"loss": sum(lost) / sent, "mean_burst": statistics.mean(runs) if runs else 0.0}


def probe_loss(shape: Shape) -> dict[str, float]:
    net = Netem()
    server, client = udp(), udp()
    net.shape(port(client), shape, CLEAN)
    rx = Receiver(client)
    rx.start()
    sent = send_paced(server, [port(client)], 2_000 * (100 + WIRE) * 8, 2.0, size=100)
    time.sleep(0.3)
    got = rx.stop()
    net.close()
    return bursts(sent, got)


def probe_delay(shape: Shape | None) -> dict[str, float]:
    """Round trips of 150 pings, 8 ms apart, client -> server -> client: `shape` on both
    directions of the client's link."""
    net = Netem()
    server, client = udp(), udp()
    if shape is not None:
        net.shape(port(client), shape)
    stop = threading.Event()

    def echo() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(2048)
            except TimeoutError:
                continue
            server.sendto(data, addr)

    echoer = threading.Thread(target=echo, daemon=True)
    echoer.start()
    rx = Receiver(client)
    rx.start()
    sent_at = []
    for seq in range(150):
        sent_at.append(time.monotonic())
        client.sendto(seq.to_bytes(4, "big") + bytes(96), ("127.0.0.1", port(server)))
        time.sleep(0.008)
    time.sleep(0.3)
    got = rx.stop()
    stop.set()
    echoer.join()
    net.close()
    rtts = sorted((at - sent_at[seq]) * 1000 for at, seq, _ in got)
    return {"rtt_min_ms": rtts[0], "rtt_median_ms": statistics.median(rtts), "rtt_p5_ms": rtts[len(rtts) // 20],
            "rtt_p95_ms": rtts[len(rtts) * 19 // 20], "received": len(rtts)}


PROBES: dict[str, Callable[[], dict[str, Any]]] = {
    "rates": probe_rates,
    "server_side": probe_server_side,
    "random_loss": lambda: probe_loss(Shape(loss=0.05)),
    "burst_loss": lambda: probe_loss(Shape(burst_loss=0.05, burst_len=4)),
    "delay_clean": lambda: probe_delay(None),
    "delay_40ms": lambda: probe_delay(Shape(delay_ms=40)),
    "delay_40ms_jitter_15": lambda: probe_delay(Shape(delay_ms=40, jitter_ms=15)),
}


def main(names: list[str]) -> None:
    unknown = set(names) - set(PROBES)
    if unknown:
        raise SystemExit(f"no such probe: {', '.join(sorted(unknown))} (known: {', '.join(PROBES)})")
    print(json.dumps({name: PROBES[name]() for name in names or PROBES}))


if __name__ == "__main__":
    main(sys.argv[1:])
