"""Run under `unshare -n` (tests/testkit/test_wan.py): pushes both ways across a WanLink with
loss; how many segments each socket sent again (TCP_INFO), for the two ends' own sockets and
the relay's. Prints {"parent": n, "child": n, "relay": n} as JSON."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

from testkit.wan import Impairment, WanLink, loss_rule

PUSHES = 150  # at most: the pushes end once both ends have sent a segment again


def retransmitted(sock: Any) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 100)[0])  # tcpi_total_retrans


async def main() -> None:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def parent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))
    server = await asyncio.start_server(parent, "127.0.0.1", 0)
    link = await WanLink(server.sockets[0].getsockname()[1],
                         Impairment(rate_bps=10_000_000, rtt_ms=2, loss=0.2)).start()
    reason = loss_rule(link)
    assert reason is None, reason
    child_r, child_w = await asyncio.open_connection("127.0.0.1", link.port)
    parent_r, parent_w = await accepted.get()
    ends = (parent_w.get_extra_info("socket"), child_w.get_extra_info("socket"))
    for _ in range(PUSHES):  # small pushes with a pause: each a lone segment, as page turns
        parent_w.write(b"d" * 100)
        await child_r.readexactly(100)
        child_w.write(b"u" * 100)
        await parent_r.readexactly(100)
        # All 150 took ~20 s (each loss waits out a 200 ms retransmission timeout); the
        # first loss on each side, ~5 pushes at 20 %, shows what the test asks.
        if all(map(retransmitted, ends)):
            break
        await asyncio.sleep(0.002)
    relay = sum(retransmitted(w.get_extra_info("socket")) for w in link._writers)
    print(json.dumps({"parent": retransmitted(parent_w.get_extra_info("socket")),
                      "child": retransmitted(child_w.get_extra_info("socket")),
                      "relay": relay}))
    child_w.close()
    await link.close()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
