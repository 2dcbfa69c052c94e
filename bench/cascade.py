"""Benchmark: cascade links (province <- city <- ward), one process, loopback.

    .venv/bin/python bench/cascade.py [--quick] [--json PATH]

Three SFUs (one per node) run in this process, each with its own routers,
transports and UDP sockets; publishers and subscribers are aiortc clients
(tests/media/support.py: pre-encoded VP8, decoding subscribers).

* link_bytes_ratio_10_vs_1: bytes the province->city link sends per byte
  the publisher sent, in a window with 10 subscribers at the city, over the
  same with 1 (ideal 1.0: one copy). The raw byte ratio is also reported; it
  swings with the clip's bitrate (keyframes), not with the subscribers.
* added_latency_per_hop_p99_ms: for every video packet, the time between its
  arrival at the province's producer and at the city's relayed producer
  (hop 1), and city -> ward (hop 2), matched by payload bytes (unchanged
  across hops). Includes SRTP, two UDP loopback traversals and aiortc's
  DTLS receive path. Measured in a steady window with two decoding
  subscribers; all three nodes and the aiortc clients (which decode VP8)
  share one event loop, so this is an upper bound for separate processes.
* resume_seconds: nodes linked over real socket.io (server/cascade_link.py);
  the city server is stopped and restarted on the same port; time from the
  restart until the ward's relayed producer receives packets again (the
  ward reconnects with backoff, rejoins and re-pulls by itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aioice.ice
import socketio
from aiohttp import web

from media import SFU, MediaConfig
from media.link import Cascade, LinkLimits, connect_local
from media.producer import Producer
from media.rtp import InPacket
from server.cascade_link import NodeCascade
from server.settings import NodeSettings
from tests.media.support import Publisher, Subscriber, encode_media, wait_for
from tests.server.processes import free_port

MEETING = "bench"


def config() -> MediaConfig:
    return MediaConfig(ice_addresses=("127.0.0.1",), ice_timeout_s=5.0)


class ArrivalProbe:
    """Records when each payload reaches each watched producer."""

    def __init__(self) -> None:
        self.watch: dict[int, str] = {}  # id(producer) -> node
        self.seen: dict[str, dict[bytes, list[float]]] = {}  # the clip loops: many times
        self._orig = Producer.receive_rtp
        probe = self

        def receive_rtp(producer: Producer, pkt: InPacket, now: float,
                        retransmitted: bool = False) -> None:
            node = probe.watch.get(id(producer))
            if node is not None and not retransmitted and len(pkt.payload) > 24:
                probe.seen[node].setdefault(pkt.payload[-24:], []).append(time.perf_counter())
            probe._orig(producer, pkt, now, retransmitted)

        Producer.receive_rtp = receive_rtp

    def add(self, producer: Producer, node: str) -> None:
        self.watch[id(producer)] = node
        self.seen.setdefault(node, {})

    def hop_ms(self, a: str, b: str) -> list[float]:
        """Per packet at b: time since the latest arrival of that payload at a."""
        first, second = self.seen.get(a, {}), self.seen.get(b, {})
        out = []
        for key, times in second.items():
            earlier = first.get(key, [])
            for t2 in times:
                t1 = max((t for t in earlier if t <= t2), default=None)
                if t1 is not None and t2 - t1 < 1.0:
                    out.append((t2 - t1) * 1000)
        return out

    def close(self) -> None:
        Producer.receive_rtp = self._orig


def p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


async def links_and_latency(window: float) -> dict[str, Any]:
    media = encode_media(seconds=2.0)
    sfus = {n: SFU(config()) for n in ("province", "city", "ward")}
    cascades = {n: Cascade(s.router(MEETING), n) for n, s in sfus.items()}
    _, province_down = connect_local(cascades["city"], cascades["province"], "province", "city")
    connect_local(cascades["ward"], cascades["city"], "city", "ward")
    probe = ArrivalProbe()
    clients: list[Any] = []
    try:
        pub = Publisher(cascades["province"].router.add_peer("pub"), media, audio=False)
        clients.append(pub)
        await pub.publish()
        video = pub.producer_id("video")
        await wait_for(lambda: video in cascades["ward"].available(), timeout=10)
        probe.add(cascades["province"].router.get_producer(video), "province")

        async def sub(node: str, name: str) -> Subscriber:
            await cascades[node].ensure(video)
            s = Subscriber(cascades[node].router.add_peer(name))
            clients.append(s)
            await s.subscribe(video)
            return s

        subs = [await sub("city", "c0"), await sub("ward", "w0")]
        probe.add(cascades["city"].router.get_producer(video), "city")
        probe.add(cascades["ward"].router.get_producer(video), "ward")
        await wait_for(lambda: all(s.frames("video") >= 3 for s in subs), timeout=10)

        async def measure() -> tuple[int, int]:
            link = province_down.peer.transports[0]
            producer = cascades["province"].router.get_producer(video)
            b0, p0 = link.bytes_sent, producer.bytes_received
            await asyncio.sleep(window)
            return link.bytes_sent - b0, producer.bytes_received - p0

        await asyncio.sleep(1.0)
        for seen in probe.seen.values():
            seen.clear()  # latency: steady state with 2 subscribers, no joins
        one = await measure()
        hop1, hop2 = probe.hop_ms("province", "city"), probe.hop_ms("city", "ward")
        for i in range(1, 10):
            subs.append(await sub("city", f"c{i}"))
        await wait_for(lambda: all(s.frames("video") >= 3 for s in subs), timeout=15)
        await asyncio.sleep(1.0)
        ten = await measure()
        hops = hop1 + hop2
        return {
            "link_bytes_1": one[0], "link_bytes_10": ten[0],
            # Bytes on the link per byte published, 10 subscribers vs 1 (the clip's
            # bitrate varies between windows, so raw bytes are reported too).
            "link_bytes_ratio_10_vs_1": round((ten[0] / ten[1]) / (one[0] / one[1]), 3),
            "link_bytes_ratio_10_vs_1_raw": round(ten[0] / one[0], 3),
            "link_copies_at_10": sum(1 for c in province_down.peer.consumers
                                     if c.producer.id == video),
            "hop_packets": len(hops),
            "added_latency_per_hop_p50_ms": p(hops, 0.5),
            "added_latency_per_hop_p99_ms": p(hops, 0.99),
            "hop1_p99_ms": p(hop1, 0.99), "hop2_p99_ms": p(hop2, 0.99),
            "mean_hop_ms": round(statistics.fmean(hops), 3) if hops else None,
        }
    finally:
        probe.close()
        for c in clients:
            await c.close()
        for cascade in cascades.values():
            await cascade.close()
        for s in sfus.values():
            await s.close()


async def start_node(unit: str, parent_url: str | None, secret: str | None,
                     children: dict[str, str], port: int
                     ) -> tuple[NodeCascade, web.AppRunner]:
    node = NodeCascade(NodeSettings(unit, parent_url, secret, children), SFU(config()),
                       LinkLimits())
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    node.attach(sio)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    link = node.start_parent_link()
    if link is not None:
        await link.join(MEETING)
        await link.wait_connected(10)
    return node, runner


async def stop_node(node: NodeCascade, runner: web.AppRunner) -> None:
    await node.close()
    await node.sfu.close()
    await runner.cleanup()


async def resume() -> dict[str, Any]:
    media = encode_media(seconds=2.0)
    city_secret, ward_secret = "c" * 20, "w" * 20
    ports = {n: free_port() for n in ("province", "city", "ward")}
    url = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    nodes = {"province": await start_node("province", None, None, {"city": city_secret},
                                          ports["province"])}
    nodes["city"] = await start_node("city", url["province"], city_secret,
                                     {"ward": ward_secret}, ports["city"])
    nodes["ward"] = await start_node("ward", url["city"], ward_secret, {}, ports["ward"])
    clients: list[Any] = []
    try:
        province, ward = nodes["province"][0], nodes["ward"][0]
        pub = Publisher(province.cascade(MEETING).router.add_peer("pub"), media, audio=False)
        clients.append(pub)
        await pub.publish()
        video = pub.producer_id("video")
        wc = ward.cascade(MEETING)
        await wait_for(lambda: video in wc.available(), timeout=10)
        await wc.ensure(video)
        s = Subscriber(wc.router.add_peer("w0"))
        clients.append(s)
        await s.subscribe(video)
        await wait_for(lambda: s.frames("video") >= 3, timeout=10)
        await stop_node(*nodes.pop("city"))
        await asyncio.sleep(1.0)
        started = time.monotonic()
        nodes["city"] = await start_node("city", url["province"], city_secret,
                                         {"ward": ward_secret}, ports["city"])

        def flowing() -> bool:
            try:
                return wc.router.get_producer(video).packets_received > 10
            except Exception:  # noqa: BLE001 - not re-pulled yet
                return False

        await wait_for(flowing, timeout=20)
        return {"resume_seconds": round(time.monotonic() - started, 3)}
    finally:
        for c in clients:
            await c.close()
        for name in ("ward", "city", "province"):
            if name in nodes:
                await stop_node(*nodes[name])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    # aiortc test clients gather on loopback only (the SFUs bind 127.0.0.1 themselves).
    def loopback(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return ["127.0.0.1"]

    aioice.ice.get_host_addresses = loopback
    window = 2.0 if args.quick else 5.0
    results = await links_and_latency(window)
    results.update(await resume())
    results["window_s"] = window
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(main(args))
    for key, value in results.items():
        print(f"{key:42} {value}")
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2))
