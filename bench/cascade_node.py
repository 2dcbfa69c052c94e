"""One cascade node as its own OS process, for bench/cascade.py.

    python -m bench.cascade_node --unit city --port P [--parent-url URL --secret S]
        [--child unit=secret ...] [--no-uvloop]

Runs an SFU and the node link on an aiohttp + python-socketio server bound
to 127.0.0.1:P (testkit/cascade_node.py), as run.py does (uvloop when
installed). Clients live in other processes (bench/cascade_clients.py) and
signal over HTTP:

  POST /publish   {"peer", "sdp"}           -> {"sdp", "added": [{"id", "kind"}]}
  POST /subscribe {"peer", "producer"}      -> {"offer": sdp | null}  (ensure() first)
  POST /answer    {"peer", "sdp"}           -> {"offer": sdp | null}
  GET  /available                           -> the meeting's Cascade.available()
  GET  /stats                               -> counters (links, producers, forwarded)
  GET  /arrivals?since=T&until=T            -> {"keys": [...], "times": [...]}
  GET  /lag?since=T&until=T                 -> event-loop lag samples (ms) in the span

A probe task sleeps 10 ms in a loop and records how late it woke (loop lag:
this node's loop busy, or its process not scheduled).

Instrumentation (bench only; media/ is not changed): before the SFU is built,
`media.producer.Producer.receive_rtp` is wrapped at class level. For every
video RTP packet a producer on this node receives (first transmissions only,
not RTX), the wrapper records time.monotonic() - CLOCK_MONOTONIC, one clock
for every process on the machine - and a key that survives the hops:
crc32 of the RTP payload plus its length (aiortc's VP8 payload descriptor
carries a 15-bit picture id, so payloads do not repeat within 30 minutes even
though the clip loops; SSRC, sequence number and timestamp are rewritten per
hop, the payload is not). If media/ renames or reshapes that method, the
process exits at once with a message saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import time
import zlib
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web

from media import Kind, NotFoundError, Peer
from media.link import LinkLimits
from media.producer import Producer
from testkit.cascade_node import NodeProcess, node_arguments

MEETING = "province/1"  # a meeting key: "<owner unit>/<id>"
HOOKED = "media.producer.Producer.receive_rtp"


class Arrivals:
    """(key, CLOCK_MONOTONIC) of every first-transmission video packet that
    reaches a producer on this node, in arrival order."""

    def __init__(self) -> None:
        self.keys = array("q")
        self.times = array("d")
        self.calls = 0

    def install(self) -> None:
        original: Any = getattr(Producer, "receive_rtp", None)
        params = list(inspect.signature(original).parameters) if callable(original) else []
        if params[:4] != ["self", "pkt", "now", "retransmitted"]:
            sys.exit(f"bench/cascade_node.py: cannot instrument {HOOKED}: expected "
                     f"receive_rtp(self, pkt, now, retransmitted=False), found "
                     f"{params if params else 'no such method'}. media/ changed: "
                     "update Arrivals.install to hook where a producer receives RTP.")
        keys, times, clock, crc = self.keys, self.times, time.monotonic, zlib.crc32
        video = Kind.VIDEO
        arrivals = self

        def receive_rtp(producer: Producer, pkt: Any, now: float,
                        retransmitted: bool = False) -> None:
            t = clock()
            arrivals.calls += 1
            if not retransmitted and producer.kind is video:
                payload = pkt.payload
                keys.append((len(payload) << 32) | crc(payload))
                times.append(t)
            original(producer, pkt, now, retransmitted)

        setattr(Producer, "receive_rtp", receive_rtp)  # noqa: B010 - bench-only hook

    def window(self, since: float, until: float) -> dict[str, list[Any]]:
        keys, times = [], []
        for k, t in zip(self.keys, self.times, strict=True):
            if since <= t < until:
                keys.append(k)
                times.append(t)
        return {"keys": keys, "times": times}


def json_body(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


async def main(args: argparse.Namespace) -> None:
    arrivals = Arrivals()
    arrivals.install()
    process = NodeProcess(args, MEETING, LinkLimits())
    cascade = process.cascade
    router = cascade.router

    def peer(name: str) -> Peer:
        try:
            return router.peer(name)
        except NotFoundError:
            return router.add_peer(name)

    async def publish(request: web.Request) -> web.Response:
        body = json_body(await request.json())
        result = await peer(body["peer"]).publish(body["sdp"])
        return web.json_response({"sdp": result.sdp, "added": [
            {"id": p.id, "kind": p.kind.value} for p in result.added]})

    async def subscribe(request: web.Request) -> web.Response:
        body = json_body(await request.json())
        await cascade.ensure(body["producer"])
        sub = await peer(body["peer"]).subscribe(body["producer"])
        return web.json_response({"offer": sub.offer.sdp if sub.offer else None})

    async def answer(request: web.Request) -> web.Response:
        body = json_body(await request.json())
        offer = await peer(body["peer"]).set_answer(body["sdp"])
        return web.json_response({"offer": offer.sdp if offer else None})

    async def available(request: web.Request) -> web.Response:
        return web.json_response(cascade.available())

    async def stats(request: web.Request) -> web.Response:
        links: dict[str, Any] = {}
        for name, end in cascade.links.items():
            entry: dict[str, Any] = {"bytes_sent": 0, "packets_sent": 0, "copies": {},
                                     "closed": end.closed}
            if not end.closed:
                for transport in end.peer.transports:
                    entry["bytes_sent"] += transport.bytes_sent
                    entry["packets_sent"] += transport.packets_sent
                for c in end.peer.consumers:
                    entry["copies"][c.producer.id] = entry["copies"].get(c.producer.id, 0) + 1
            links[name] = entry
        producers = {}
        forwarded = 0
        for p in router.peers:
            for producer in p.producers:
                producers[producer.id] = {
                    "peer": p.id, "kind": producer.kind.value,
                    "packets_received": producer.packets_received,
                    "bytes_received": producer.bytes_received}
            for c in p.consumers:
                forwarded += c.stats().packets_sent
        return web.json_response({
            "unit": args.unit, "links": links, "producers": producers,
            "forwarded_packets": forwarded, "hook_calls": arrivals.calls,
            "arrivals": len(arrivals.times), "monotonic": time.monotonic()})

    lag_times, lag_ms = array("d"), array("d")

    async def lag_probe() -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            woke = time.monotonic()
            lag_times.append(woke)
            lag_ms.append(max(0.0, (woke - start - 0.01) * 1000))

    async def get_lag(request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        until = float(request.query.get("until", "inf"))
        return web.json_response([round(v, 3) for t, v in zip(lag_times, lag_ms, strict=True)
                                  if since <= t < until])

    async def get_arrivals(request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        until = float(request.query.get("until", "inf"))
        return web.json_response(arrivals.window(since, until))

    app = process.app
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_post("/answer", answer)
    app.router.add_get("/available", available)
    app.router.add_get("/stats", stats)
    app.router.add_get("/arrivals", get_arrivals)
    app.router.add_get("/lag", get_lag)
    await process.start()
    probe = asyncio.ensure_future(lag_probe())
    print(f"node ready {time.monotonic():.6f}", flush=True)
    await process.stopped()
    probe.cancel()
    await process.close()


if __name__ == "__main__":
    parser = node_arguments("A cascade node for bench/cascade.py, signalling over HTTP.")
    parser.add_argument("--no-uvloop", action="store_true")
    arguments = parser.parse_args()
    if not arguments.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main(arguments))
