"""One cascade node as its own process, for tests/media/test_cascade_processes.py.

    python -m tests.media.cascade_node_proc --unit city --port P [--parent-url URL
        --secret S] [--child unit=secret ...] [--publish] [--watch PEER --subscribers N]

Runs an SFU and the node link on an aiohttp + python-socketio server
(testkit/cascade_node.py), and aiortc clients in-process: a publisher (peer
"pub-<unit>") and N decoding subscribers that keep subscribing to every
video producer published by peer PEER anywhere in the tree (and subscribe
again when it comes back after a link outage). GET /stats returns JSON.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aiohttp import web

from media.link import LinkLimits
from testkit.aiortc_clients import Publisher, Subscriber, encode_media
from testkit.cascade_node import NodeProcess, node_arguments

MEETING = "province/7"  # a meeting key: "<owner unit>/<id>"


async def main(args: argparse.Namespace) -> None:
    process = NodeProcess(args, MEETING, LinkLimits(release_after_s=1.0))
    node, cascade = process.node, process.cascade
    media = encode_media(seconds=2.0)
    publisher: Publisher | None = None
    if args.publish:
        publisher = Publisher(cascade.router.add_peer(f"pub-{args.unit}"), media, audio=False)
        await publisher.publish()
    subs = [Subscriber(cascade.router.add_peer(f"sub-{args.unit}-{i}"))
            for i in range(args.subscribers)]

    async def stats(request: web.Request) -> web.Response:
        links: dict[str, Any] = {}
        for name, end in cascade.links.items():
            links[name] = {"copies": {}, "imported": sorted(end.imported), "packets": 0}
            if not end.closed:
                for c in end.peer.consumers:
                    copies = links[name]["copies"]
                    copies[c.producer.id] = copies.get(c.producer.id, 0) + 1
                    links[name]["packets"] += c.stats().packets_sent
        return web.json_response({
            "unit": args.unit, "frames": [s.frames("video") for s in subs],
            "available": sorted(cascade.available()),
            "published": publisher.producer_id("video") if publisher else None,
            "published_packets": (cascade.router.get_producer(publisher.producer_id("video"))
                                  .packets_received if publisher else 0),
            "links": links, "view": node.view()})

    process.app.router.add_get("/stats", stats)
    await process.start()
    print("node ready", flush=True)

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.1)
            wanted = [pid for pid, e in cascade.available().items()
                      if e["peer_id"] == args.watch and e["kind"] == "video"]
            for sub in subs:
                have = {c.producer.id for c in sub.peer.consumers}
                for pid in wanted:
                    if pid in have:
                        continue
                    try:
                        await cascade.ensure(pid)
                        await sub.subscribe(pid)
                    except Exception as exc:  # noqa: BLE001 - retried next round
                        print(f"subscribe {pid} failed: {exc}", flush=True)

    watcher = asyncio.ensure_future(watch()) if args.watch else None
    await process.stopped()
    if watcher is not None:
        watcher.cancel()
    for sub in subs:
        await sub.close()
    if publisher is not None:
        await publisher.close()
    await process.close()


if __name__ == "__main__":
    parser = node_arguments("A cascade node with in-process aiortc clients.")
    parser.add_argument("--publish", action="store_true")
    parser.add_argument("--watch")
    parser.add_argument("--subscribers", type=int, default=0)
    asyncio.run(main(parser.parse_args()))
