"""aiortc clients for bench/cascade.py, in their own OS process.

    python -m bench.cascade_clients publisher --node URL
    python -m bench.cascade_clients subscribers --node URL --producer ID

The clients are testkit/aiortc_clients.py's: a publisher sending a pre-encoded
VP8 clip (320x240, 15 fps, looping; never encodes while running) and
subscribers that decode every frame. They reach the node's `Peer` over HTTP
(bench/cascade_node.py) through `RemotePeer`, which has the three methods the
helpers call.

The publisher prints `published <video producer id>` and runs until SIGTERM.
The subscriber process reads commands on stdin, one per line:

  count N   grow to N subscribers (each its own RTCPeerConnection) and print
            `ready N` once every one decoded 3 frames
  frames    print `frames [f0, f1, ...]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp

from testkit.aiortc_clients import Publisher, Subscriber, encode_media, wait_for
from testkit.ice import gather_only_on


class RemotePeer:
    """The part of media.Peer the support helpers use, over the node's HTTP."""

    def __init__(self, http: aiohttp.ClientSession, node: str, name: str) -> None:
        self.http, self.node, self.id = http, node, name

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.node + path, json={"peer": self.id, **body}) as r:
            if r.status != 200:
                raise RuntimeError(f"{path}: HTTP {r.status}: {await r.text()}")
            data: dict[str, Any] = await r.json()
            return data

    async def publish(self, sdp: str, sources: Any = None) -> Any:
        data = await self._post("/publish", {"sdp": sdp})
        return SimpleNamespace(sdp=data["sdp"], added=[
            SimpleNamespace(id=p["id"], kind=SimpleNamespace(value=p["kind"]))
            for p in data["added"]])

    async def subscribe(self, *producer_ids: str) -> Any:
        (producer,) = producer_ids
        data = await self._post("/subscribe", {"producer": producer})
        return SimpleNamespace(offer=self._offer(data))

    async def set_answer(self, sdp: str) -> Any:
        return self._offer(await self._post("/answer", {"sdp": sdp}))

    @staticmethod
    def _offer(data: dict[str, Any]) -> Any:
        return None if data["offer"] is None else SimpleNamespace(sdp=data["offer"])


async def run_publisher(http: aiohttp.ClientSession, args: argparse.Namespace,
                        stop: asyncio.Event) -> None:
    media = encode_media(seconds=2.0)
    pub = Publisher(cast(Any, RemotePeer(http, args.node, "pub")), media, audio=False)
    await pub.publish()
    print(f"published {pub.producer_id('video')}", flush=True)
    await stop.wait()
    await pub.close()


async def run_subscribers(http: aiohttp.ClientSession, args: argparse.Namespace,
                          stop: asyncio.Event) -> None:
    subs: list[Subscriber] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("subscribers ready", flush=True)

    async def commands() -> None:
        while line := (await reader.readline()).decode():
            words = line.split()
            if words[:1] == ["count"]:
                want = int(words[1])
                while len(subs) < want:
                    sub = Subscriber(cast(Any, RemotePeer(http, args.node, f"sub{len(subs)}")))
                    subs.append(sub)
                    await sub.subscribe(args.producer)
                await wait_for(lambda: all(s.frames("video") >= 3 for s in subs), timeout=30)
                print(f"ready {len(subs)}", flush=True)
            elif words[:1] == ["frames"]:
                print("frames " + json.dumps([s.frames("video") for s in subs]), flush=True)
        stop.set()

    task = asyncio.ensure_future(commands())
    await stop.wait()
    task.cancel()
    for sub in subs:
        await sub.close()


async def main(args: argparse.Namespace) -> None:
    gather_only_on("127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with aiohttp.ClientSession() as http:
        if args.role == "publisher":
            await run_publisher(http, args, stop)
        else:
            await run_subscribers(http, args, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("publisher", "subscribers"))
    parser.add_argument("--node", required=True)
    parser.add_argument("--producer")
    asyncio.run(main(parser.parse_args()))
