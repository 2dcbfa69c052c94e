"""Server processes for bench/sfu.py: Hopso's SFU and the aiortc MediaRelay baseline.

    python bench/sfu_servers.py hopso|mediarelay CONTROL_SOCKET [--cpu 0] [--loop uvloop|asyncio]

Each pins itself to one core, listens for JSON-lines commands on a Unix
socket (signaling and measurement control only; no media), and runs an
event-loop lag probe: a task that sleeps 10 ms and records how late it
wakes up. Media goes over UDP on 127.0.0.1 only.

Commands: {"op": "publish", "sdp"} -> {"sdp"}; {"op": "subscribe", "peer"}
-> {"sdp": offer}; {"op": "answer", "peer", "sdp"} -> {"sdp": next offer or
null}; {"op": "lag", "record": true|false} -> lag samples summary;
{"op": "stats"} -> server-side counters; {"op": "quit"}; any other op that the server
object has an `op_<name>(request)` coroutine for goes to it (bench/record_server.py).

Hopso is used through media's public API only (SFU, Router, Peer). The
MediaRelay baseline is what the spec asks for: an aiortc RTCPeerConnection
receives the publisher, `MediaRelay` fans the decoded track out, and each
subscriber RTCPeerConnection encodes it again (VP8 + Opus, one encoder per
sender). MediaRelay runs unbuffered (a slow encoder skips to the newest
frame instead of queueing without bound), as a live server would.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ADDRESS = "127.0.0.1"
logger = logging.getLogger("sfu_bench_server")
LAG_INTERVAL = 0.010


class LagProbe:
    """Event-loop lag, plus the garbage collector's pauses (gc.callbacks)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.gc_pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self.recording = False
        self._task: asyncio.Task[None] | None = None
        self._gc_start = 0.0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self.recording:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_start))

    async def _run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock has 1 ms steps. uvloop
        # also rounds timers to whole ms, so ~1 ms is the floor of this probe.
        clock = time.perf_counter
        while True:
            t = clock()
            await asyncio.sleep(LAG_INTERVAL)
            lag = clock() - t - LAG_INTERVAL
            if self.recording:
                self.samples.append(max(0.0, lag))

    def control(self, record: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not record:
            out = {"samples_ms": [round(v * 1000, 4) for v in self.samples],
                   "gc_pauses_ms": [(g, round(d * 1000, 3)) for g, d in self.gc_pauses]}
        self.samples = []
        self.gc_pauses = []
        self.recording = record
        return out


class HopsoServer:
    def __init__(self) -> None:
        from media import SFU, MediaConfig

        self.sfu = SFU(MediaConfig(ice_addresses=(ADDRESS,)))
        self.router = self.sfu.router("bench")
        self.producer_ids: list[str] = []
        self.events: dict[str, int] = {}
        self.sfu.add_listener(self._on_event)

    def _on_event(self, event: Any) -> None:
        name = type(event).__name__
        self.events[name] = self.events.get(name, 0) + 1

    async def publish(self, sdp: str) -> dict[str, Any]:
        peer = self.router.add_peer("publisher")
        result = await peer.publish(sdp)
        self.producer_ids = [p.id for p in result.added]
        return {"sdp": result.sdp, "producers": self.producer_ids}

    async def subscribe(self, peer_id: str) -> dict[str, Any]:
        peer = self.router.add_peer(peer_id)
        subscription = await peer.subscribe(*self.producer_ids)
        assert subscription.offer is not None
        return {"sdp": subscription.offer.sdp}

    async def answer(self, peer_id: str, sdp: str) -> dict[str, Any]:
        offer = await self.router.peer(peer_id).set_answer(sdp)
        return {"sdp": offer.sdp if offer else None}

    async def remove(self, peer_id: str) -> dict[str, Any]:
        await self.router.close_peer(peer_id)
        return {}

    def stats(self) -> dict[str, Any]:
        sent = dropped = consumers = with_rr = 0
        for peer in self.router.peers:
            for consumer in peer.consumers:
                consumers += 1
                sent += consumer.packets_sent
                dropped += consumer.packets_dropped
                with_rr += consumer.rtt_ms is not None  # an RR echoing our SR arrived
        producers = {}
        for peer in self.router.peers:
            for producer in peer.producers:
                producers[producer.kind.value] = {
                    "packets_received": producer.packets_received,
                    "packets_lost": max(0, producer.packets_lost),
                    "keyframe_requests_sent": producer.keyframe_requests_sent,
                    "nacks_sent": producer.nacks_sent}
        return {"packets_sent": sent, "packets_dropped": dropped, "consumers": consumers,
                "consumers_with_rtt_from_rr": with_rr,
                "producers": producers, "events": dict(self.events)}

    async def close(self) -> None:
        await self.sfu.close()


class MediaRelayServer:
    def __init__(self) -> None:
        from aiortc import RTCConfiguration
        from aiortc.contrib.media import MediaRelay

        from testkit.ice import gather_only_on

        gather_only_on(ADDRESS)
        self.config = RTCConfiguration(iceServers=[])  # the default is a public STUN server
        self.relay = MediaRelay()
        self.pcs: dict[str, Any] = {}
        self.tracks: dict[str, Any] = {}

    async def publish(self, sdp: str) -> dict[str, Any]:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(self.config)
        self.pcs["publisher"] = pc

        @pc.on("track")
        def on_track(track: Any) -> None:
            self.tracks[track.kind] = track

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp}

    async def subscribe(self, peer_id: str) -> dict[str, Any]:
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection(self.config)
        self.pcs[peer_id] = pc
        for kind in ("audio", "video"):
            pc.addTransceiver(self.relay.subscribe(self.tracks[kind], buffered=False),
                              direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return {"sdp": pc.localDescription.sdp}

    async def answer(self, peer_id: str, sdp: str) -> dict[str, Any]:
        from aiortc import RTCSessionDescription

        await self.pcs[peer_id].setRemoteDescription(RTCSessionDescription(sdp, "answer"))
        return {"sdp": None}

    async def remove(self, peer_id: str) -> dict[str, Any]:
        pc = self.pcs.pop(peer_id, None)
        if pc is not None:
            await pc.close()
        return {}

    def stats(self) -> dict[str, Any]:
        return {"peer_connections": len(self.pcs)}

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs.values()), return_exceptions=True)


async def serve(kind: str, path: str, profile: str | None = None) -> None:
    server: Any = HopsoServer() if kind == "hopso" else MediaRelayServer()
    probe = LagProbe()
    profiler = None
    windows = 0
    if profile:  # development aid: cProfile over each measured window
        import cProfile
        profiler = cProfile.Profile()
    probe.start()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal windows
        while not reader.at_eof():
            try:
                line = await reader.readline()
            except (asyncio.CancelledError, ConnectionError):
                return
            if not line:
                break
            request = json.loads(line)
            op = request.get("op")
            try:
                if op == "publish":
                    reply = await server.publish(request["sdp"])
                elif op == "subscribe":
                    reply = await server.subscribe(request["peer"])
                elif op == "answer":
                    reply = await server.answer(request["peer"], request["sdp"])
                elif op == "remove":
                    reply = await server.remove(request["peer"])
                elif op == "lag":
                    record = bool(request.get("record"))
                    reply = probe.control(record)
                    if profiler is not None:
                        if record:
                            profiler.enable()
                        else:
                            profiler.disable()
                            windows += 1
                            profiler.dump_stats(f"{profile}.{windows}")
                            profiler.__init__()  # type: ignore[misc]
                elif op == "stats":
                    reply = server.stats()
                elif op == "quit":
                    reply = {}
                    done.set()
                elif callable(extra := getattr(server, f"op_{op}", None)):
                    reply = await extra(request)  # a bench server's own op (record_server.py)
                else:
                    reply = {"error": f"unknown op {op}"}
            except Exception as exc:
                logger.exception("control %s failed", op)
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        writer.close()

    unix = await asyncio.start_unix_server(handle, path=path, limit=1 << 22)
    print(json.dumps({"ready": True, "pid": os.getpid(),
                      "cpus": sorted(os.sched_getaffinity(0))}), flush=True)
    await done.wait()
    unix.close()
    await server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("hopso", "mediarelay"))
    parser.add_argument("control")
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--profile", help="development: cProfile each window to PATH.<n>")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    logging.basicConfig(level=logging.WARNING)
    if args.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(serve(args.kind, args.control, args.profile))


if __name__ == "__main__":
    main()
