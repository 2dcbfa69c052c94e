"""The userspace stage of testkit/netem.py: delay, jitter and bursty (Gilbert-Elliott) loss
for the UDP packets that iptables hands to an NFQUEUE, in a process of its own.

This kernel has no sch_netem, so what tc cannot do happens here: each queued packet is held
until its due time and then accepted (or dropped by the loss model). It speaks nfnetlink_queue
directly over a netlink socket (a few fixed structs), so no C binding (python-netfilterqueue,
libnetfilter-queue) has to be built. It runs as its own process, not a thread of the test,
so that decoding or the SFU's work in the test process never delays a verdict.

    python -m testkit.nfqueue QUEUE_NUM      # rules on stdin, one JSON object a line:
    {"key": "d:40000", "delay_ms": 50, "jitter_ms": 10, "burst_loss": 0.05, "burst_len": 3}

`d:P` shapes packets to UDP port P, `u:P` packets from it; a later line for a key replaces
it. "ready" is printed on stdout once bound; each change is answered by "ok".
"""

from __future__ import annotations

import heapq
import json
import os
import random
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET, MSG_VERDICT, MSG_CONFIG = 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN = 1, 2, 3
CMD_BIND = 1
COPY_PACKET = 2
PACKET_HDR, PAYLOAD, VERDICT_HDR = 1, 10, 2
NF_DROP, NF_ACCEPT = 0, 1
COPY_RANGE = 64  # the IP and UDP headers are all the stage reads
MAX_QUEUE = 20_000


@dataclass
class Rule:
    """One direction's userspace impairments; burst loss follows a two-state Gilbert model:
    every packet in the bad state is lost, a burst lasts `burst_len` packets on average."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    burst_loss: float = 0.0
    burst_len: float = 1.0
    bad: bool = False
    last_due: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def lose(self) -> bool:
        if self.burst_loss <= 0:
            return False
        leave = 1.0 / max(1.0, self.burst_len)  # P(bad -> good)
        enter = self.burst_loss * leave / max(1e-9, 1.0 - self.burst_loss)  # P(good -> bad)
        self.bad = (self.rng.random() >= leave) if self.bad else (self.rng.random() < enter)
        return self.bad

    def due(self, now: float) -> float:
        """Arrival time: the delay plus a uniform jitter, never before the previous packet
        of this direction (the path's delay varies; it does not reorder)."""
        extra = self.rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        at = now + max(0.0, self.delay_ms + extra) / 1000
        self.last_due = max(self.last_due, at)
        return self.last_due


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _message(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def _attrs(data: bytes) -> dict[int, bytes]:
    found, at = {}, 0
    while at + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, at)
        if size < 4:
            break
        found[kind & 0x7FFF] = data[at + 4:at + size]
        at += (size + 3) & ~3
    return found


class Stage:
    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.rules: dict[str, Rule] = {}
        self.held: list[tuple[float, int, int]] = []  # (due, order, packet id)
        self.order = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self._config(_attr(CFG_CMD, struct.pack("!BBH", CMD_BIND, 0, socket.AF_INET)))
        self._config(_attr(CFG_PARAMS, struct.pack("!IB", COPY_RANGE, COPY_PACKET)))
        self._config(_attr(CFG_QUEUE_MAXLEN, struct.pack("!I", MAX_QUEUE)))

    def _config(self, attrs: bytes) -> None:
        self.sock.send(_message(MSG_CONFIG, self.queue, attrs, NLM_F_REQUEST | NLM_F_ACK))
        reply = self.sock.recv(4096)
        _length, kind = struct.unpack_from("=IH", reply)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", reply, 16)
            if error:
                raise OSError(-error, f"nfqueue config refused: {os.strerror(-error)}")

    def verdict(self, packet_id: int, verdict: int) -> None:
        self.sock.send(_message(MSG_VERDICT, self.queue,
                                _attr(VERDICT_HDR, struct.pack("!II", verdict, packet_id))))

    def configure(self, line: str) -> None:
        spec = json.loads(line)
        rule = self.rules.setdefault(spec.pop("key"), Rule())
        for name, value in spec.items():
            setattr(rule, name, float(value))

    def on_packet(self, attrs: dict[int, bytes], now: float) -> None:
        packet_id = struct.unpack_from("!I", attrs[PACKET_HDR])[0]
        ip = attrs.get(PAYLOAD, b"")
        ihl = (ip[0] & 0x0F) * 4 if ip else 0
        if len(ip) < ihl + 4:
            self.verdict(packet_id, NF_ACCEPT)
            return
        sport, dport = struct.unpack_from("!HH", ip, ihl)
        rule = self.rules.get(f"d:{dport}") or self.rules.get(f"u:{sport}")
        if rule is None:
            self.verdict(packet_id, NF_ACCEPT)
        elif rule.lose():
            self.verdict(packet_id, NF_DROP)
        else:
            self.order += 1
            heapq.heappush(self.held, (rule.due(now), self.order, packet_id))

    def read(self) -> None:
        data = self.sock.recv(1 << 20)
        now = time.monotonic()
        at = 0
        while at + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, at)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | MSG_PACKET:
                self.on_packet(_attrs(data[at + 20:at + length]), now)
            at += (length + 3) & ~3

    def release(self) -> float | None:
        """Accept every packet that is due; seconds until the next one is."""
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            self.verdict(heapq.heappop(self.held)[2], NF_ACCEPT)
        return max(0.0, self.held[0][0] - now) if self.held else None

    def run(self) -> None:
        print("ready", flush=True)
        stdin = sys.stdin.fileno()
        buffered = b""
        while True:
            wait = self.release()
            ready, _, _ = select.select([self.sock, stdin], [], [], wait)
            if self.sock in ready:
                try:
                    self.read()
                except OSError:  # ENOBUFS: the kernel dropped queue messages; carry on
                    pass
            if stdin in ready:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    return  # the harness went away: the rules go with its namespace
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if line.strip():
                        self.configure(line.decode())
                        print("ok", flush=True)


if __name__ == "__main__":
    Stage(int(sys.argv[1])).run()
