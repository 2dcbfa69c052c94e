"""Run under `unshare -n` (tests/server/cascade/test_link_socket.py): one small segment sent
alone on a warm loopback TCP connection is dropped once by iptables (matched by a marker in
its bytes); how long until the receiver has it, with the sender's socket as
server/cascade/link_socket.py tunes a node link's (`tuned`) and as the system leaves it
(`system`). Prints {"tuned_ms": [...], "system_ms": [...], "tuned_rto_min_ms": n} as JSON."""

from __future__ import annotations

import json
import socket
import subprocess
import time

from server.cascade.link_socket import tune
from testkit.netem import iptables


def recovered_ms(rto_min_ms: int, marker: bytes) -> tuple[float, int | None]:
    tool = iptables()
    assert tool is not None
    # The first segment carrying the marker is dropped (nth: 1 of 1000), its retransmission
    # passes, as a WAN that loses one segment.
    subprocess.run([tool, "-A", "INPUT", "-i", "lo", "-p", "tcp", "-m", "string", "--string",
                    marker.decode(), "--algo", "bm", "-m", "statistic", "--mode", "nth",
                    "--every", "1000", "--packet", "0", "-j", "DROP"], check=True)
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
        with sender, receiver:
            sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rto_min = tune(sender, rto_min_ms)
            for _ in range(20):  # a live link: the kernel has measured its RTT
                sender.sendall(b"w" * 100)
                receiver.recv(100)
                time.sleep(0.01)
            sent = time.monotonic()
            sender.sendall(marker + b"p" * 60)  # the push, with nothing behind it
            got = b""
            while len(got) < len(marker) + 60:
                got += receiver.recv(4096)
            return (time.monotonic() - sent) * 1000, rto_min


def main() -> None:
    tuned: list[float] = []
    system: list[float] = []
    rto_min = None
    for n in range(3):
        ms, rto_min = recovered_ms(20, f"HOPSO-TUNED-{n}-{time.time_ns()}".encode())
        tuned.append(round(ms, 1))
        ms, _ = recovered_ms(0, f"HOPSO-SYSTEM-{n}-{time.time_ns()}".encode())
        system.append(round(ms, 1))
    print(json.dumps({"tuned_ms": tuned, "system_ms": system, "tuned_rto_min_ms": rto_min}))


if __name__ == "__main__":
    main()
