"""The child processes of bench/soak.py: tablets (raw socket.io clients) and the video
viewers with their publisher. Each prints READY, then a JSON report every WINDOW_S until
STOP on stdin.

    python bench/soak_children.py tablets|media JSON-ARGS   (started by soak.py, not by hand)
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from soak import gather_limited
from soak_report import WINDOW_S

from testkit.ice import gather_only_on
from testkit.raw_socket import RawSocket

# --- child: tablets (raw engine.io v4 / socket.io v5 over a websocket) -----------------------


@dataclass
class TabletStats:
    acks: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms)
    turns: list[tuple[int, float]] = field(default_factory=list)  # (present seq, received at)
    fetches: list[tuple[float, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    shared_events: int = 0
    disconnects: int = 0

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def report(self) -> dict[str, Any]:
        out = {"acks": self.acks, "turns": self.turns, "fetches": self.fetches,
               "errors": self.errors, "shared_events": self.shared_events,
               "disconnects": self.disconnects}
        self.acks, self.turns, self.fetches, self.errors = [], [], [], {}
        self.shared_events = 0
        return out


async def tablet(http: aiohttp.ClientSession, args: dict[str, Any], cookie: str,
                 stats: TabletStats, ready: asyncio.Event, rnd: random.Random) -> None:
    base, doc, version = args["base"], args["document_id"], args["version"]
    sizes = args["page_sizes"]
    state = {"page": 0}
    mine: list[tuple[str, int]] = []

    def follow(present: dict[str, Any], at: float) -> None:
        stats.turns.append((present["seq"], at))
        if present.get("active") and present.get("document_id") == doc:
            state["page"] = present["page"]

    def on_event(data: str) -> None:
        at = time.time()
        if data.startswith('42["present:state"'):
            follow(json.loads(data[2:])[1], at)
        elif data.startswith('42["annotation:event"'):
            stats.shared_events += 1

    started = time.time()
    async with http.get(f"{base}/api/documents/{doc}/pdf?version={version}",
                        headers={"Cookie": cookie}) as r:
        await r.read()
        assert r.status == 200, r.status
    stats.fetches.append((started, (time.time() - started) * 1000))
    sock = await RawSocket.open(base, cookie, session=http, on_event=on_event, max_msg_size=0)
    try:
        for event, payload in (("meeting:join", {"meeting_id": args["meeting_id"]}),
                               ("document:subscribe", {"document_id": doc}),
                               ("annotation:snapshot", {"document_id": doc, "version": version})):
            ack = await sock.call(event, payload, timeout=60)
            assert ack["ok"], (event, ack)
        present = await sock.call("present:get", {"meeting_id": args["meeting_id"]}, timeout=60)
        follow(present["result"], time.time())
        ready.set()
        try:
            while not sock.closed.is_set():
                every = args["stroke_every"]
                if every <= 0:  # no strokes (to tell their memory from the rest's)
                    await asyncio.sleep(3600)
                    continue
                await asyncio.sleep(rnd.expovariate(1 / every))
                page = state["page"]
                if mine and rnd.random() < 1 / 7:
                    ann_id, on = mine.pop(rnd.randrange(len(mine)))
                    op: dict[str, Any] = {"op_id": str(uuid.uuid4()), "type": "delete",
                                          "page": on, "ids": [ann_id]}
                else:
                    w, h = sizes[page]
                    x, y = rnd.uniform(40, w - 200), rnd.uniform(40, h - 100)
                    points = [[round(x + i * 5, 1), round(y + 20 * math.sin(i / 3), 1), 0.5]
                              for i in range(rnd.randint(15, 40))]
                    ann_id = str(uuid.uuid4())
                    op = {"op_id": str(uuid.uuid4()), "type": "add", "page": page,
                          "annotation": {"id": ann_id, "kind": "ink",
                                         "visibility": "meeting" if rnd.random() < 1 / 3
                                         else "private",
                                         "data": {"points": points, "color": "#c62828",
                                                  "width": 2.0}}}
                started = time.time()
                try:
                    ack = await sock.call("annotation:op", {"document_id": doc,
                                                            "version": version, "op": op},
                                          timeout=60)
                except TimeoutError:
                    stats.error("timeout")
                    continue
                if ack["ok"]:
                    stats.acks.append((started, (time.time() - started) * 1000))
                    if op["type"] == "add":
                        mine.append((ann_id, page))
                else:
                    stats.error(ack["error"]["code"])
        except ConnectionError:
            pass
    finally:
        stats.disconnects += 1
        await sock.close()


async def tablets_child(args: dict[str, Any]) -> None:
    stats = TabletStats()
    rnd = random.Random(args["seed"])
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        readies = [asyncio.Event() for _ in args["cookies"]]
        tasks = [asyncio.ensure_future(tablet(http, args, cookie, stats, ready,
                                              random.Random(rnd.random())))
                 for cookie, ready in zip(args["cookies"], readies, strict=True)]
        waiting = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in readies)))
        await asyncio.wait({waiting, *tasks}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                task.result()  # a tablet that failed to start: its error, not a hang
        if not waiting.done():
            raise RuntimeError("tablets did not connect within 120 s")
        print("READY", flush=True)
        await report_until_stop(lambda: {"kind": "tablets", "t": time.time(), **stats.report()})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def report_until_stop(report: Any) -> None:
    """Print a report line every WINDOW_S until STOP (or EOF) on stdin; one more at the end."""
    loop = asyncio.get_running_loop()
    stop = asyncio.ensure_future(loop.run_in_executor(None, sys.stdin.readline))
    while True:
        done, _ = await asyncio.wait({stop}, timeout=WINDOW_S)
        print(json.dumps(report()), flush=True)
        if done:
            return


# --- child: video (publisher + viewers over socket.io media:*) -------------------------------


async def media_child(args: dict[str, Any]) -> None:
    import socketio
    from sfu_client import Publisher
    from sfu_media import load_clip
    from sfu_subscriber import Subscriber

    address = "127.0.0.1"
    gather_only_on(address)
    clip = await asyncio.to_thread(load_clip)
    base, meeting_id = args["base"], args["meeting_id"]
    closed: list[str] = []

    async def sio_for(cookie: str) -> Any:
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(base, headers={"Cookie": cookie}, transports=["websocket"],
                          wait_timeout=20)
        return sio

    async def call(sio: Any, event: str, payload: dict[str, Any]) -> Any:
        ack = await sio.call(event, {"meeting_id": meeting_id, **payload}, timeout=60)
        if not ack["ok"]:
            raise RuntimeError(f"{event}: {ack['error']}")
        return ack["result"]

    pub_sio = await sio_for(args["publisher"])
    await call(pub_sio, "media:join", {})
    publisher = Publisher(address, clip)
    await publisher.gather()
    published = await call(pub_sio, "media:publish", {"sdp": publisher.offer(),
                                                       "sources": {"0": "mic", "1": "camera"}})
    await asyncio.wait_for(publisher.apply_answer(published["sdp"], address), 30)
    publisher.start()
    producers = [p["id"] for p in published["added"]]

    async def viewer(cookie: str) -> tuple[Any, Any]:
        sio = await sio_for(cookie)
        sub = Subscriber(address, None)
        await sub.gather()

        async def renegotiate(offer: dict[str, Any] | None) -> Any:
            remote = None
            while offer is not None:
                answer, remote = sub.answer(offer["sdp"], address)
                offer = (await call(sio, "media:answer", {"sdp": answer}))["offer"]
            return remote

        async def pushed(data: dict[str, Any]) -> None:
            await renegotiate(data["offer"])

        sio.on("media:offer", pushed)
        sio.on("media:closed", lambda data: closed.append(data.get("reason", "?")))
        await call(sio, "media:join", {})
        subscribed = await call(sio, "media:subscribe", {"producer_ids": producers})
        remote = await renegotiate(subscribed["offer"])
        await asyncio.wait_for(sub.connect_to(remote), 30)
        return sio, sub

    viewers = await gather_limited(6, [viewer(c) for c in args["viewers"]])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(s.has_media() for _, s in viewers):
        await asyncio.sleep(0.2)
    print("READY", flush=True)
    previous = [sub.snapshot() for _, sub in viewers]
    last = time.monotonic()
    sent = publisher.video_frames_sent

    def report() -> dict[str, Any]:
        nonlocal previous, last, sent
        now = time.monotonic()
        current = [sub.snapshot() for _, sub in viewers]
        fps, lost, expected = [], 0, 0
        for before, after in zip(previous, current, strict=True):
            frames = 0
            for ssrc, (kind, received, highest, frames_n, _) in after.items():
                _, received0, highest0, frames0, _ = before.get(ssrc, (kind, 0, 0, 0, 0))
                if kind == "video":
                    frames += frames_n - frames0
                if kind in ("audio", "video"):
                    exp = highest - highest0 if highest0 else received - received0
                    expected += exp
                    lost += max(0, exp - (received - received0))
            fps.append(frames / (now - last))
        out = {"kind": "media", "t": time.time(), "viewers": len(viewers),
               "fps": [round(f, 2) for f in fps], "lost": lost, "expected": expected,
               "sent_fps": round((publisher.video_frames_sent - sent) / (now - last), 2),
               "keyframe_requests": publisher.keyframe_requests,
               "late_ticks": publisher.late_ticks, "closed": list(closed)}
        previous, last, sent = current, now, publisher.video_frames_sent
        return out

    await report_until_stop(report)
    for sio, sub in viewers:
        await sub.close()
        await sio.disconnect()
    await publisher.close()
    await pub_sio.disconnect()


def main() -> None:
    mode, payload = sys.argv[1:3]
    args = json.loads(payload)
    asyncio.run(tablets_child(args) if mode == "tablets" else media_child(args))


if __name__ == "__main__":
    main()
